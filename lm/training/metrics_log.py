"""Where metrics go: WORKDIR/metrics.jsonl, TensorBoard event files (`tensorboard --logdir
WORKDIR`), WORKDIR/curves.png (train and eval loss, redrawn at each evaluation), the console (a
progress bar on a terminal, else one plain line per logged step) and WORKDIR/final_metrics.json
once a run has finished."""

import json
import math
import os
import sys

import tqdm
from absl import logging

from lm.data import atomic
from lm.errors import UserError

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
# Written (atomically) when a run ends at its last step or stops early: its presence marks a
# finished run (lm.sweep skips those).
FINAL_FILE = "final_metrics.json"


class MetricsLog:
  """Writes one JSON object per logged step ({"step": s, "train/loss": ..., ...}) and the same
  scalars to TensorBoard; shows the latest loss, tokens/s and MFU in a progress bar on a
  terminal, or as one plain line per logged step when stdout is a file or pipe (nohup, SLURM,
  `| tee`); redraws curves.png whenever the step has evaluation metrics."""

  def __init__(self, workdir: str, total_steps: int, start_step: int, enabled: bool = True):
    self._enabled = enabled
    self._workdir = workdir
    self._total_steps = total_steps
    self._plain = enabled and not sys.stdout.isatty()
    if enabled:
      # Imported here: tensorboardX imports torch (~3 s), which readers of the files (lm.sweep)
      # do not need.
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._jsonl = open(os.path.join(workdir, METRICS_FILE), "a", encoding="utf-8")
      self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))
    self._bar = tqdm.tqdm(total=total_steps,
                          initial=start_step,
                          unit="step",
                          dynamic_ncols=True,
                          file=sys.stdout,
                          disable=not enabled or self._plain,
                          mininterval=1.0)

  def write(self, step: int, metrics: dict[str, float]) -> None:
    if not self._enabled:
      return
    record = {"step": step, **{k: _json_number(v) for k, v in metrics.items()}}
    try:
      self._jsonl.write(json.dumps(record) + "\n")
      self._jsonl.flush()
    except OSError as e:  # A full disk, most likely: say so instead of a traceback.
      raise UserError(f"{self._jsonl.name}: cannot write the metrics of step {step} "
                      f"({e.strerror}); free space and run the same command to resume") from None
    for key, value in metrics.items():
      self._tensorboard.add_scalar(key, value, step)
    if self._plain:
      print(plain_line(step, self._total_steps, metrics), flush=True)
    else:
      shown = {
          "loss": metrics.get("train/loss"),
          "eval": metrics.get("eval/loss"),
          "tok/s": metrics.get("perf/tokens_per_s"),
          "mfu": metrics.get("perf/mfu")
      }
      self._bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items() if v is not None},
                            refresh=False)
    if any(key.startswith("eval/") for key in metrics):
      self._draw_curves()

  def _draw_curves(self) -> None:
    from lm.sweep import plots  # pylint: disable=g-import-not-at-top  # matplotlib: ~1 s.
    path = os.path.join(self._workdir, CURVES_FILE)
    try:
      plots.plot_run_curves(path + ".tmp.png", {os.path.basename(self._workdir): self._workdir})
      os.replace(path + ".tmp.png", path)
    except OSError as e:  # The metrics themselves are safe in metrics.jsonl.
      logging.warning("Cannot draw %s: %s", path, e)

  def advance(self, steps: int) -> None:
    self._bar.update(steps)

  def message(self, text: str) -> None:
    self._bar.write(text)

  def close(self) -> None:
    self._bar.close()
    if self._enabled:
      for close in (self._jsonl.close, self._tensorboard.close):
        try:
          close()
        except OSError as e:  # Already reported by write(), or only the last lines are lost.
          logging.warning("Closing the metrics files in %s: %s", self._jsonl.name, e)


def plain_line(step: int, total_steps: int, metrics: dict[str, float]) -> str:
  """'step 200/5000 | loss 1.923 | tokens/s 5.2e+04 | mfu 12.3% | eval/loss 1.87 | ...'."""
  parts = [f"step {step}/{total_steps}"]
  for key, label in (("train/loss", "loss"), ("perf/tokens_per_s", "tokens/s")):
    if key in metrics:
      parts.append(f"{label} {metrics[key]:.4g}")
  if "perf/mfu" in metrics:
    parts.append(f"mfu {100 * metrics['perf/mfu']:.2f}%")
  parts += [f"{k} {v:.4g}" for k, v in sorted(metrics.items())
            if k.startswith("eval/") and k.count("/") == 1]  # Per class: metrics.jsonl.
  return " | ".join(parts)


def write_final(workdir: str, step: int, metrics: dict[str, float]) -> None:
  """WORKDIR/final_metrics.json: {"step": s, "metrics": {...}} of the run's last evaluation."""
  record = {"step": step, "metrics": {k: _json_number(v) for k, v in sorted(metrics.items())}}
  atomic.atomic_write_text(os.path.join(workdir, FINAL_FILE), json.dumps(record, indent=2) + "\n")


def read_final(workdir: str) -> dict[str, float]:
  """The metrics of WORKDIR/final_metrics.json ({} when it is missing or unreadable)."""
  try:
    with open(os.path.join(workdir, FINAL_FILE), encoding="utf-8") as f:
      return json.load(f).get("metrics", {})
  except (OSError, ValueError, AttributeError):
    return {}


def _json_number(value: float) -> float | str:
  value = float(value)
  return value if math.isfinite(value) else str(value)
