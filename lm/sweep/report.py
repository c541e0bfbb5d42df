"""The sweep's tables: DIR/results.md (Markdown), results.csv (per variant), runs.csv (per run)."""

import csv
import dataclasses
import io
import math
import os

from lm.data import atomic
from lm.sweep import stats
from lm.sweep.outcome import Outcome
from lm.sweep.plan import Run, Variant
from lm.sweep.scaling import PowerLaw

RESULTS_MD, RESULTS_CSV, RUNS_CSV = "results.md", "results.csv", "runs.csv"


@dataclasses.dataclass
class VariantResult:
  variant: Variant
  outcomes: list[Outcome]
  summaries: dict[str, stats.Summary]  # Metric -> spread over the variant's seeds.
  params: int
  flops: float  # Mean over seeds (runs that stopped early trained less).


def summarize_variants(variants: list[Variant], outcomes: list[Outcome]) -> list[VariantResult]:
  """One result per variant with at least one finished run, in sweep() order."""
  results = []
  for variant in variants:
    mine = [o for o in outcomes if o.run.variant.name == variant.name]
    if not mine:
      continue
    names = sorted({m for o in mine for m in o.metrics})
    summaries = {
        m: stats.summarize([o.metrics[m] for o in mine if m in o.metrics]) for m in names
    }
    results.append(
        VariantResult(variant, mine, summaries, max(o.params for o in mine),
                      sum(o.flops for o in mine) / len(mine)))
  return results


def metric_columns(results: list[VariantResult], headline: str) -> list[str]:
  """The headline metric, then the other validation metrics, the test metrics, train/loss."""
  names = {m for r in results for m in r.summaries} - {headline}
  order = lambda m: (not m.startswith("eval/"), not m.startswith("test/"), m)
  return [headline] + sorted(names, key=order)


def write_markdown(directory: str, results: list[VariantResult], headline: str,
                   seeds: list[int], command: str, missing: list[tuple[Run, str]],
                   folds: int = 0) -> str:
  """results.md: the command, the seeds (and folds), how the spread is stated, and the table."""
  columns = metric_columns(results, headline)
  over = "seeds and folds" if folds else "seeds"
  per_variant = f" x {folds} folds of cross-validation" if folds else ""
  lines = [
      "# Sweep results", "", f"Command: `{command}`", "",
      f"Seeds: {', '.join(map(str, seeds))} ({len(seeds)} per variant{per_variant}). Each "
      f"cell: mean ± standard deviation over {over} (sample, ddof=1) and in brackets the "
      f"half-width of the "
      f"{stats.CONFIDENCE:.0%} confidence interval of the mean (Student's t, n-1 degrees of "
      f"freedom); n = finished runs. Metrics of each run's final evaluation; {columns[0]} is "
      f"the headline metric (--metric). Training FLOPs: tokens seen x FLOPs per token "
      f"(6 N + attention), mean over seeds.", "",
      "| variant | overrides | n | params | train FLOPs | " + " | ".join(columns) + " |",
      "|" + "---|" * (5 + len(columns))
  ]
  for r in results:
    cells = [r.variant.name, r.variant.describe(), str(len(r.outcomes)), f"{r.params:,}",
             f"{r.flops:.3g}"]
    cells += [_cell(r.summaries.get(m)) for m in columns]
    lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
  if missing:
    lines += ["", "Not in the table (not finished):"]
    lines += [f"- {run.name}: {why}" for run, why in missing]
  path = os.path.join(directory, RESULTS_MD)
  atomic.atomic_write_text(path, "\n".join(lines) + "\n")
  return path


def append_power_law(path: str, law: PowerLaw, metric: str, num_points: int) -> None:
  """Adds the fitted power law (plotted in scaling.png) to results.md."""
  form = "a C^-b + E" if law.irreducible else "a C^-b"
  extra = f", E = {law.irreducible:.4g}" if law.irreducible else ""
  lines = [
      "", "## Scaling", "",
      f"Power law fitted by least squares to the {num_points} finished runs' ({metric}, training "
      f"FLOPs C) points: {metric} = {form} with a = {law.a:.4g}, b = {law.b:.4f}{extra}. "
      f"Plot: scaling.png."
  ]
  with open(path, encoding="utf-8") as f:
    text = f.read()
  atomic.atomic_write_text(path, text + "\n".join(lines) + "\n")


def write_csv(directory: str, results: list[VariantResult], headline: str) -> str:
  """results.csv: one row per variant, mean / std / ci95 / n of every metric."""
  columns = metric_columns(results, headline)
  rows = [["variant", "overrides", "n", "seeds", "params", "train_flops"] +
          [f"{m}_{part}" for m in columns for part in ("mean", "std", "ci95", "n")]]
  for r in results:
    row = [r.variant.name, r.variant.describe(), len(r.outcomes),
           " ".join(str(o.run.seed) for o in r.outcomes), r.params, r.flops]
    for m in columns:
      s = r.summaries.get(m)
      row += [s.mean, s.std, s.ci95, s.n] if s else ["", "", "", 0]
    rows.append(row)
  return _write_csv(os.path.join(directory, RESULTS_CSV), rows)


def write_runs_csv(directory: str, outcomes: list[Outcome], headline: str) -> str:
  """runs.csv: one row per finished run with its step, parameters, FLOPs and metrics (the
  points of a loss-vs-compute plot)."""
  columns = [headline] + sorted({m for o in outcomes for m in o.metrics} - {headline})
  rows = [["variant", "seed", "fold", "workdir", "step", "params", "train_flops"] + columns]
  rows += [[o.run.variant.name, o.run.seed, "" if o.run.fold is None else o.run.fold,
            o.run.workdir, o.step, o.params, o.flops] +
           [o.metrics.get(m, "") for m in columns] for o in outcomes]
  return _write_csv(os.path.join(directory, RUNS_CSV), rows)


def _cell(summary: stats.Summary | None) -> str:
  if summary is None:
    return "-"
  if summary.n == 1:
    return f"{_number(summary.mean)} (1 seed)"
  return f"{_number(summary.mean)} ± {_number(summary.std)} [±{_number(summary.ci95)}]"


def _number(x: float) -> str:
  if math.isnan(x) or math.isinf(x):
    return str(x)
  return f"{x:.4f}" if abs(x) < 100 else f"{x:.2f}" if abs(x) < 1e5 else f"{x:.4g}"


def _write_csv(path: str, rows: list[list]) -> str:
  text = io.StringIO()
  csv.writer(text, lineterminator="\n").writerows(rows)
  atomic.atomic_write_text(path, text.getvalue())
  return path
