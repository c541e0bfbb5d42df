"""What a run shows outside a terminal (nohup, SLURM, `| tee`): one plain line per logged step;
and the files to look at afterwards: curves.png and TensorBoard's event files."""

import os
import re
import stat
import subprocess
import sys

from lm.data import atomic
from lm.training import metrics_log
from tests.conftest import REPO


def test_piped_run_prints_a_line_per_log_step_and_draws_curves(tmp_path):
  workdir = tmp_path / "run"
  result = subprocess.run([
      sys.executable, "-m", "lm.main", "--config=experiments/shakespeare_char.py:cpu,smoke",
      f"--workdir={workdir}"
  ], cwd=REPO, capture_output=True, text=True, check=False, timeout=600)
  assert result.returncode == 0, result.stderr
  lines = [l for l in result.stdout.splitlines() if l.startswith("step ")]
  assert [l.split(" | ")[0] for l in lines] == [f"step {s}/4" for s in (1, 2, 3, 4)]
  assert all(re.search(r" \| loss \d", l) for l in lines)
  assert re.search(r"tokens/s [\d.e+]+ \| mfu [\d.]+% \| eval/bpb ", lines[1])  # An eval step.
  png = (workdir / metrics_log.CURVES_FILE).read_bytes()
  assert png.startswith(b"\x89PNG") and not list(workdir.glob("*.tmp.png"))
  assert list((workdir / "tensorboard").iterdir())


def test_plain_line():
  metrics = {"train/loss": 1.92345, "perf/tokens_per_s": 52012.0, "perf/mfu": 0.1234,
             "eval/loss": 1.87, "eval/accuracy": 0.5, "eval/f1/pos": 0.4, "train/grad_norm": 3.0}
  assert metrics_log.plain_line(200, 5000, metrics) == (
      "step 200/5000 | loss 1.923 | tokens/s 5.201e+04 | mfu 12.34% | eval/accuracy 0.5 | "
      "eval/loss 1.87")


def test_tensorboard_is_installed_to_view_the_event_files():
  tensorboard = os.path.join(os.path.dirname(sys.executable), "tensorboard")
  result = subprocess.run([tensorboard, "--version_tb"], capture_output=True, text=True,
                          check=False, timeout=120)
  assert result.returncode == 0 and re.match(r"\d+\.\d+", result.stdout), result.stderr


def test_atomic_writes_get_normal_permissions(tmp_path):
  path = tmp_path / "out.json"
  atomic.atomic_write_text(path, "{}")
  # 0644 under the usual umask 022 (mkstemp alone gives 0600).
  assert stat.S_IMODE(path.stat().st_mode) == atomic.FILE_MODE
