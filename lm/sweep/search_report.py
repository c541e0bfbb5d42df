"""What a search leaves in its directory: search.md (every trial, the best, the parameters'
importance), search.png (the metric against trial and each parameter) and best_config.py."""

import io
import os
import pprint
from typing import Any

from lm.data import atomic
from lm.errors import UserError
from lm.sweep import stats
from lm.training import metrics_log

MARKDOWN, PLOT, BEST_CONFIG = "search.md", "search.png", "best_config.py"


def write_all(directory: str, study, metric: str, command: str, config_arg: str) -> str:
  """Writes the three files; returns search.md's path. UserError without a finished trial."""
  best = _best(study)
  if best is None:
    raise UserError(f"{directory}: no trial of the search has finished yet")
  write_best_config(directory, config_arg, best.params, best.value, metric)
  plot(directory, study, metric)
  return write_markdown(directory, study, metric, command, best)


def _best(study):
  import optuna  # pylint: disable=g-import-not-at-top
  complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
  return study.best_trial if complete else None


def importances(study) -> dict[str, float]:
  """Optuna's fANOVA importance of each parameter ({} when it cannot be computed: fewer than
  two finished trials, or parameters that never varied)."""
  import optuna  # pylint: disable=g-import-not-at-top
  try:
    return dict(optuna.importance.get_param_importances(study))
  except (ValueError, RuntimeError):
    return {}


def write_markdown(directory: str, study, metric: str, command: str, best) -> str:
  keys = sorted({k for t in study.trials for k in t.params})
  lines = [
      "# Search", "", f"Command: `{command}`", "",
      f"{len(study.trials)} trials ({_states(study)}); {study.direction.name.lower()} "
      f"{metric}, the mean over each trial's runs (seeds, folds). Sampler: "
      f"{type(study.sampler).__name__}; pruner: {type(study.pruner).__name__}.", "",
      f"**Best: trial {best.number}, {metric} = {best.value:.4f}** "
      f"{_spread_text(_spread(best, metric))}: " +
      ", ".join(f"`{k}={_show(v)}`" for k, v in sorted(best.params.items())) + " "
      f"(`{BEST_CONFIG}` holds it).", "",
      f"Spread: the standard deviation [95% CI half-width of the mean, Student's t] of "
      f"{metric} over a trial's finished runs (its folds and seeds), where it has two or more.",
      "",
      f"| trial | state | {metric} | spread | " + " | ".join(keys) + " | minutes | directory |",
      "|" + "---|" * (6 + len(keys)),
  ]
  for t in study.trials:
    value = "" if t.value is None else f"{t.value:.4f}"
    minutes = (f"{(t.datetime_complete - t.datetime_start).total_seconds() / 60:.1f}"
               if t.datetime_complete and t.datetime_start else "")
    cells = [str(t.number), t.state.name.lower(), value, _spread_text(_spread(t, metric))] + [
        _show(t.params[k]) if k in t.params else "" for k in keys
    ] + [minutes, _trial_directory(t, directory)]
    lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
  found = importances(study)
  lines += ["", "Parameter importance (Optuna's fANOVA over the finished trials):", ""]
  lines += ([f"- `{k}`: {v:.3f}" for k, v in found.items()] or
            ["- not computable yet (it needs at least two finished trials that differ)"])
  path = os.path.join(directory, MARKDOWN)
  atomic.atomic_write_text(path, "\n".join(lines) + "\n")
  return path


def _trial_directory(trial, directory: str) -> str:
  """trials/<digest>: the directory of the trial's runs (seed<k>/fold<i> below it)."""
  workdirs = trial.user_attrs.get("workdirs", [])
  return "/".join(os.path.relpath(workdirs[0], directory).split(os.sep)[:2]) if workdirs else ""


def _spread(trial, metric: str) -> stats.Summary | None:
  """`metric` over the trial's finished runs (folds, seeds); None for fewer than two."""
  values = []
  for workdir in trial.user_attrs.get("workdirs", []):
    value = metrics_log.read_final(workdir).get(metric)
    if isinstance(value, (int, float)):
      values.append(float(value))
  return stats.summarize(values) if len(values) > 1 else None


def _spread_text(summary: stats.Summary | None) -> str:
  return "" if summary is None else (f"± {summary.std:.4f} [±{summary.ci95:.4f}] over "
                                     f"{summary.n} runs")


def write_best_config(directory: str, config_arg: str, params: dict[str, Any], value: float,
                      metric: str) -> str:
  """An experiment file: the searched one (with its args) and the best trial's values."""
  path, _, arg = config_arg.partition(":")
  text = (f'"""The best configuration of the search in this directory ({metric} = {value:.4f}):\n'
          f'{os.path.abspath(path)}{":" + arg if arg else ""} with the values below.\n\n'
          f'  python -m lm.main --config={os.path.join(directory, BEST_CONFIG)} --workdir=DIR\n'
          f'"""\n\n'
          f'from lm import config_file\n'
          f'from lm.sweep import plan\n\n'
          f'SEARCHED = {os.path.abspath(path)!r}\n'
          f'ARG = {arg!r}\n'
          f'BEST = {pprint.pformat(dict(sorted(params.items())), indent=4)}\n\n\n'
          f'def get_config(arg=None):\n'
          f'  config = config_file.load(SEARCHED + ":" + (arg or ARG) if (arg or ARG) else '
          f'SEARCHED)\n'
          f'  for key, value in BEST.items():\n'
          f'    plan.set_key(config, key, value, __file__)\n'
          f'  return config\n')
  target = os.path.join(directory, BEST_CONFIG)
  atomic.atomic_write_text(target, text)
  return target


def plot(directory: str, study, metric: str) -> str:
  """The metric of every finished trial against its number (the best so far as a line) and
  against each parameter."""
  import optuna  # pylint: disable=g-import-not-at-top
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  from matplotlib.ticker import NullFormatter  # pylint: disable=g-import-not-at-top
  done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
  keys = sorted({k for t in done for k in t.params})
  figure = Figure(figsize=(4.2 * (1 + len(keys)), 3.6), dpi=100)
  FigureCanvasAgg(figure)
  axes = figure.subplots(1, 1 + len(keys), squeeze=False)[0]
  numbers, values = [t.number for t in done], [t.value for t in done]
  pick = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
  best = [pick(values[:i + 1]) for i in range(len(values))]
  axes[0].plot(numbers, values, "o", label="trial")
  axes[0].step(numbers, best, where="post", label="best so far")
  axes[0].set(xlabel="trial", ylabel=metric)
  axes[0].legend()
  for ax, key in zip(axes[1:], keys):
    points = [(t.params[key], t.value) for t in done if key in t.params]
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _ in points):
      ax.plot([x for x, _ in points], [y for _, y in points], "o")
      if all(x > 0 for x, _ in points) and _log_scaled(study, key):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # 2x10^-4, 3x10^-4 ... overlap.
    else:
      labels = sorted({str(x) for x, _ in points})
      ax.plot([labels.index(str(x)) for x, _ in points], [y for _, y in points], "o")
      ax.set_xticks(range(len(labels)), labels)
    ax.set(xlabel=key, ylabel=metric)
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png")
  path = os.path.join(directory, PLOT)
  atomic.atomic_write_bytes(path, buffer.getvalue())
  return path


def _log_scaled(study, key: str) -> bool:
  for t in study.trials:
    distribution = t.distributions.get(key)
    if distribution is not None:
      return bool(getattr(distribution, "log", False))
  return False


def _states(study) -> str:
  counts = {}
  for t in study.trials:
    counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
  return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def _show(value: Any) -> str:
  return f"{value:.4g}" if isinstance(value, float) else str(value)
