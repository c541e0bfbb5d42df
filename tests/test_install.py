"""`pip install` of the project gives the console commands, which work from any directory."""

import os
import shutil
import subprocess
import sys
import sysconfig

from tests.conftest import REPO

COMMANDS = ("lm-train", "lm-generate", "lm-chat", "lm-predict", "lm-score", "lm-convert",
            "lm-sweep", "lm-prepare", "lm-download")


def run(*args, **kwargs):
  result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=600,
                          **kwargs)
  assert result.returncode == 0, result.stdout + result.stderr
  return result


def test_wheel_installs_commands_that_train_from_outside_the_repository(tmp_path):
  source = tmp_path / "source"  # A copy: building writes build/ and *.egg-info beside the code.
  source.mkdir()
  for name in ("pyproject.toml", "README.md", "requirements.txt"):
    shutil.copy(REPO / name, source / name)
  for package in ("lm", "experiments"):
    shutil.copytree(REPO / package, source / package,
                    ignore=shutil.ignore_patterns("__pycache__", "results"))
  run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
      "--quiet", "-w", str(tmp_path / "dist"), str(source))
  wheel, = (tmp_path / "dist").glob("lm-*.whl")

  # A fresh virtual environment; the pinned dependencies are lent from this one (no network).
  venv = tmp_path / "venv"
  run(sys.executable, "-m", "venv", str(venv))
  site = run(str(venv / "bin" / "python"), "-c",
             "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
  with open(os.path.join(site, "lent_dependencies.pth"), "w", encoding="utf-8") as f:
    f.write(sysconfig.get_paths()["purelib"] + "\n")
  run(str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
      str(wheel))
  for command in COMMANDS:
    assert (venv / "bin" / command).exists(), command

  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  result = run(str(venv / "bin" / "lm-train"),
               f"--config={REPO / 'experiments' / 'shakespeare_char.py'}:cpu,smoke",
               "--workdir=run", f"--config.data.source={REPO / 'data/tinyshakespeare/input.txt'}",
               cwd=elsewhere, env=env)
  assert "Done: " in result.stdout
  assert str(venv) in run(str(venv / "bin" / "python"), "-c", "import lm; print(lm.__file__)",
                          cwd=elsewhere, env=env).stdout
  generated = run(str(venv / "bin" / "lm-generate"), "--workdir=run", "--max_new_tokens=5",
                  cwd=elsewhere, env=env)
  assert generated.stdout.startswith("--- prompt 1 ---")
