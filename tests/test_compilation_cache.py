"""lm.main keeps a persistent compilation cache by default; LM_COMPILATION_CACHE moves it or
switches it off."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def train(tmp_path, name, cache):
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}  # Not the suite's.
  env.update(LM_COMPILATION_CACHE=cache, XDG_CACHE_HOME=str(tmp_path / "xdg"))
  result = subprocess.run([
      sys.executable, "-m", "lm.main", "--config=experiments/shakespeare_char.py:cpu,smoke",
      f"--workdir={tmp_path / name}"
  ], cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=600)
  assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("setting", ["default", "off"])
def test_cache_location(tmp_path, setting):
  train(tmp_path, "run", "" if setting == "default" else "off")
  place = tmp_path / "xdg" / "lm" / "jax"  # The user's cache directory.
  assert bool(place.exists() and os.listdir(place)) == (setting == "default")
