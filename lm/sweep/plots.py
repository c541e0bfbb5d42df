"""The sweep's figures: DIR/curves.png (loss against step per run), DIR/bars.png (the headline
metric per variant, with 95% confidence intervals over seeds), for scaling sweeps
DIR/scaling.png (the headline metric against training compute, with a fitted power law), and
with --plot_against DIR/against.png (the headline metric against a config key's value, a line
per series: a learning curve)."""

import math
import os

import matplotlib

matplotlib.use("Agg")  # Files only; no display needed.
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib import ticker  # pylint: disable=g-import-not-at-top,wrong-import-position

import numpy as np

from lm.errors import UserError
from lm.sweep.outcome import CURVES, read_curves
from lm.sweep.report import VariantResult
from lm.sweep.scaling import PowerLaw

CURVES_PNG, BARS_PNG, SCALING_PNG, AGAINST_PNG = ("curves.png", "bars.png", "scaling.png",
                                                  "against.png")


def plot_curves(directory: str, results: list[VariantResult]) -> str:
  """One panel per CURVES metric; a line per run, one colour per variant."""
  lines = [(result.variant.name if number == 0 else None, index, outcome.curves)
           for index, result in enumerate(results)
           for number, outcome in enumerate(result.outcomes)]
  return _draw_curves(os.path.join(directory, CURVES_PNG), lines)


def plot_run_curves(path: str, workdirs: dict[str, str]) -> str:
  """The CURVES of single runs (name -> workdir, e.g. a pretraining and its fine-tuning), one
  colour each, from their metrics.jsonl into the PNG `path`; returns `path`."""
  return _draw_curves(path, [(name, index, read_curves(workdir))
                             for index, (name, workdir) in enumerate(workdirs.items())])


def _draw_curves(path: str, lines: list[tuple[str | None, int, dict]]) -> str:
  """One panel per CURVES metric; a line per (legend label or None, colour index, curves)."""
  figure, axes = plt.subplots(1, len(CURVES), figsize=(6 * len(CURVES), 4.2), squeeze=False)
  colours = plt.get_cmap("tab10")
  for panel, name in zip(axes[0], CURVES):
    for label, colour, curves in lines:
      points = curves.get(name, [])
      if points:
        steps, values = zip(*points)
        panel.plot(steps, values, color=colours(colour % 10), alpha=0.8, linewidth=1.2,
                   marker="o" if len(points) < 10 else None, markersize=3, label=label)
    panel.set(title=name, xlabel="step", ylabel=name)
    panel.grid(alpha=0.3)
  if axes[0][0].get_legend_handles_labels()[0]:  # An evaluation-only run has no train curve.
    axes[0][0].legend(fontsize="small")
  return _save(figure, path)


def plot_bars(directory: str, results: list[VariantResult], metric: str) -> str:
  """Mean of `metric` per variant, error bars the 95% CI half-width, dots the seeds."""
  figure, axis = plt.subplots(figsize=(max(4.0, 1.2 * len(results) + 2), 4.2))
  shown = [r for r in results if metric in r.summaries]
  means = [r.summaries[metric].mean for r in shown]
  errors = [0.0 if math.isnan(r.summaries[metric].ci95) else r.summaries[metric].ci95
            for r in shown]
  positions = range(len(shown))
  axis.bar(positions, means, yerr=errors, capsize=6, color="tab:blue", alpha=0.6)
  for x, result in zip(positions, shown):
    values = [o.metrics[metric] for o in result.outcomes if metric in o.metrics]
    axis.plot([x] * len(values), values, "k.", markersize=6)
  axis.set_xticks(list(positions), [r.variant.name for r in shown], rotation=20, ha="right")
  axis.set(ylabel=metric, title=f"{metric}: mean over seeds, 95% CI")
  if means:  # Differences between variants are small next to the bars' height from 0.
    low = min(min(means) - max(errors), min(v for r in shown for v in _values(r, metric)))
    high = max(max(means) + max(errors), max(v for r in shown for v in _values(r, metric)))
    margin = 0.1 * (high - low) or 0.05 * abs(high) or 1.0
    axis.set_ylim(low - margin, high + margin)
  axis.grid(axis="y", alpha=0.3)
  return _save(figure, os.path.join(directory, BARS_PNG))


def plot_scaling(directory: str, results: list[VariantResult], metric: str,
                 law: PowerLaw) -> str:
  """`metric` against training FLOPs on log-log axes: a dot per run, the variant means, and
  the fitted power law."""
  figure, axis = plt.subplots(figsize=(6.4, 4.6))
  flops = [o.flops for r in results for o in r.outcomes if metric in o.metrics]
  for result in results:
    points = [(o.flops, o.metrics[metric]) for o in result.outcomes if metric in o.metrics]
    if points:
      axis.plot(*zip(*points), "k.", markersize=5, alpha=0.6)
      axis.plot(result.flops, result.summaries[metric].mean, "o", markersize=8,
                label=f"{result.variant.name} ({result.params:,} params)")
  grid = np.geomspace(min(flops) / 1.5, max(flops) * 1.5, 100)
  fit = f"{law.a:.3g} C^-{law.b:.3f}" + (f" + {law.irreducible:.3g}" if law.irreducible else "")
  axis.plot(grid, law(grid), "k--", linewidth=1, label=f"fit: {fit}")
  axis.set(xscale="log", yscale="log", xlabel="training FLOPs (C)", ylabel=metric,
           title=f"{metric} against training compute")
  axis.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.3g"))  # 2.8, not 2.8 x 10^0.
  axis.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%.3g"))
  axis.grid(alpha=0.3, which="both")
  axis.legend(fontsize="small")
  return _save(figure, os.path.join(directory, SCALING_PNG))


def _save(figure, path: str) -> str:
  """Writes `figure` (laid out) to the PNG `path` and closes it; returns `path`."""
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)
  return path


def _values(result: VariantResult, metric: str) -> list[float]:
  return [o.metrics[metric] for o in result.outcomes if metric in o.metrics]


def against_lines(results: list[VariantResult], metric: str,
                  key: str) -> dict[str, list[tuple[float, VariantResult]]]:
  """The points of plot_against: series (plan.SERIES_KEY, else the variant's name) -> (the
  variant's value of config `key`, its result), by value with 0 ('all') last; variants that
  do not set `key` to a number, or without `metric`, are left out."""
  lines: dict[str, list[tuple[float, VariantResult]]] = {}
  for result in results:
    value = result.variant.overrides.get(key, result.variant.common.get(key))
    if isinstance(value, (int, float)) and not isinstance(value, bool) and (
        metric in result.summaries):
      lines.setdefault(result.variant.series or result.variant.name, []).append(
          (float(value), result))
  for line in lines.values():
    line.sort(key=lambda point: (point[0] == 0, point[0]))
  if not lines:
    raise UserError(f"--plot_against={key}: no variant with a finished {metric} sets it to a "
                    f"number (in sweep() or as --config.{key})")
  return lines


def plot_against(directory: str, results: list[VariantResult], metric: str, key: str) -> str:
  """The mean of `metric` against each variant's value of the config `key`, a line per series
  (against_lines) with 95% CI error bars and a dot per seed. A log x axis when the values are
  positive and span a decade or more; the value 0 ('all', as config.data.train_examples reads
  it) is drawn past the largest, labelled 'all'."""
  lines = against_lines(results, metric, key)
  positive = sorted({x for line in lines.values() for x, _ in line if x > 0})
  log = bool(positive) and positive[-1] >= 10 * positive[0]
  has_all = any(x == 0 for line in lines.values() for x, _ in line)
  all_at = (positive[-1] * (3 if log else 1.2) if positive else 1.0) if has_all else None
  figure, axis = plt.subplots(figsize=(7, 4.5))
  colours = plt.get_cmap("tab10")
  for index, (label, line) in enumerate(lines.items()):
    xs = [all_at if x == 0 else x for x, _ in line]
    summaries = [r.summaries[metric] for _, r in line]
    errors = [0.0 if math.isnan(s.ci95) else s.ci95 for s in summaries]
    colour = colours(index % 10)
    axis.errorbar(xs, [s.mean for s in summaries], yerr=errors, color=colour, marker="o",
                  capsize=4, label=label)
    for x, (_, result) in zip(xs, line):
      seeds = _values(result, metric)
      axis.plot([x] * len(seeds), seeds, ".", color=colour, alpha=0.4, markersize=4)
  if log:
    axis.set_xscale("log")
  axis.set_xticks(positive + ([all_at] if has_all else []),
                  [f"{x:g}" for x in positive] + (["all"] if has_all else []))
  axis.xaxis.set_minor_locator(ticker.NullLocator())
  axis.set(xlabel=key, ylabel=metric, title=f"{metric} against {key}: mean over seeds, 95% CI")
  axis.grid(alpha=0.3)
  axis.legend(fontsize="small")
  return _save(figure, os.path.join(directory, AGAINST_PNG))
