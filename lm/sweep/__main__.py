"""Runs an experiment's sweep() over seeds and aggregates the results.

  python -m lm.sweep --config=experiments/NAME.py[:ARGS] --workdir=DIR --seeds=3 \
      [--parallel=N] [--launcher=local|print] [--aggregate_only] [--metric=eval/loss] [--scaling]
      [--folds=K] [--config.KEY=VALUE ...]

Each variant x seed trains as `python -m lm.main ... --workdir=DIR/<variant>/seed<k>
--config.seed=k --config.KEY=VALUE ...` (log in its log.txt): the command line's own
--config.KEY=VALUE overrides (e.g. --config.train.steps=200 for a short sweep) go to every run,
then the variant's (a key both set is an error). With --folds=K every variant x seed runs the
K folds of k-fold cross-validation (DIR/<variant>/seed<k>/fold<i>, config.data.folds/fold), and
the tables state mean, spread and CI over folds and seeds. Finished runs are skipped, so
the same command resumes an interrupted sweep. Then DIR/results.md, results.csv, runs.csv,
curves.png and bars.png are written from every finished run (with --scaling, for sweeps over
model sizes, also a power law of the metric against training compute and scaling.png; with
--plot_against=KEY, the metric against a config key's value, a line per series, against.png).
--launcher=print prints the commands instead (one per line, for a cluster or TPU VMs);
--aggregate_only then builds the tables from their workdirs. Exit status: 0, 1 if a run
failed, 2 for a user mistake, 130 when stopped by a signal.
"""

from lm import runtime

if __name__ == "__main__":  # Ctrl-C while importing: one line, not a traceback.
  runtime.exit_on_ctrl_c()

import os
import shlex
import sys

from absl import flags

from lm import cli
from lm.errors import UserError

_CONFIG = flags.DEFINE_string("config", None, "Experiment file[:ARGS] that defines sweep().")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep directory: DIR/<variant>/seed<k>, tables.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds 0..N-1 of every variant.")
_SEED_LIST = flags.DEFINE_string("seed_list", "", "Comma-separated seeds (instead of --seeds).")
_FOLDS = flags.DEFINE_integer("folds", 0, "k-fold cross-validation: every variant x seed runs "
                              "folds 0..k-1 (config.data.folds/fold); 0: off.")
_VARIANTS = flags.DEFINE_string("variants", "", "Comma-separated shell patterns of variant names "
                                "(e.g. 'scratch_n500,mlm_*'): run and report only those.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Runs at once (local launcher).")
_LAUNCHER = flags.DEFINE_enum("launcher", "local", ["local", "print"],
                              "local: run here; print: print one lm.main command per run.")
_AGGREGATE_ONLY = flags.DEFINE_boolean("aggregate_only", False,
                                       "Run nothing; build the tables from finished runs.")
_METRIC = flags.DEFINE_string("metric", "eval/loss", "Headline metric of the table and bars.")
_SEARCH = flags.DEFINE_string("search", "", "Hyper-parameter search over the experiment's "
                              "search_space(): grid, random or tpe (Optuna); '' runs sweep().")
_TRIALS = flags.DEFINE_integer("trials", 20, "Search: finished (complete or pruned) trials to "
                               "reach, over every worker sharing the study.")
_DIRECTION = flags.DEFINE_string("direction", "", "Search: minimize or maximize --metric; '': "
                                 "minimize losses, perplexity and bpb, maximize the rest.")
_STORAGE = flags.DEFINE_string("storage", "", "Search: the Optuna storage URL the workers share "
                               "(e.g. postgresql://user:pass@host/db); '': DIR/study.db.")
_PLOT_AGAINST = flags.DEFINE_string("plot_against", "", "A config key with a number per variant "
                                    "(e.g. data.train_examples): also plot --metric against "
                                    "it in DIR/against.png, a line per sweep() 'series' (a "
                                    "learning curve).")
_SCALING = flags.DEFINE_boolean("scaling", False,
                                "Also fit metric = a C^-b to the runs' training FLOPs C: the fit "
                                "in results.md, the plot in scaling.png.")
# --config.KEY=VALUE of the command line (KEY -> VALUE as typed): passed to every run.
_OVERRIDES: dict[str, str] = {}
# JAX's persistent compilation cache of the runs, in the sweep directory.
COMPILATION_CACHE = ".jax_cache"


def _run() -> int:
  from lm.sweep import plan, runner  # pylint: disable=g-import-not-at-top
  for name in ("config", "workdir"):
    if not flags.FLAGS[name].value:
      raise UserError(f"--{name} is required")
  if _PARALLEL.value < 1:
    raise UserError(f"--parallel={_PARALLEL.value}: must be >= 1")
  if not _METRIC.value.startswith(("eval/", "test/", "train/")):
    raise UserError(f"--metric={_METRIC.value}: name a final metric such as eval/loss, eval/bpb,"
                    f" eval/perplexity, eval/accuracy or test/perplexity")
  if _SEARCH.value:
    if _VARIANTS.value:
      raise UserError("--variants picks among sweep()'s variants; a --search samples "
                      "search_space() instead: leave one of them out")
    return _search()
  variants = plan.select_variants(plan.load_variants(_CONFIG.value, _OVERRIDES), _VARIANTS.value)
  seeds = plan.parse_seeds(_SEEDS.value, _SEED_LIST.value)
  runs = plan.make_runs(variants, seeds, _WORKDIR.value, _CONFIG.value, _FOLDS.value)
  if _LAUNCHER.value == "print":
    runner.print_commands(runs)
    return 0
  failed, interrupted = [], False
  if not _AGGREGATE_ONLY.value:
    folds = f" x {_FOLDS.value} folds" if _FOLDS.value else ""
    print(f"Sweep: {len(variants)} variant(s) x {len(seeds)} seed(s){folds} = {len(runs)} runs "
          f"in {_WORKDIR.value}, {_PARALLEL.value} at a time")
    cache_dir = os.path.join(_WORKDIR.value, COMPILATION_CACHE)
    failed, interrupted = runner.run_local(runs, _PARALLEL.value, cache_dir)
  if interrupted:
    return 130
  _aggregate(variants, seeds, runs, failed)
  if failed:
    print(f"{len(failed)} run(s) failed: {', '.join(r.name for r in failed)}", file=sys.stderr)
  return 1 if failed else 0


def _search() -> int:
  """--search: Optuna trials over search_space() (lm/sweep/search.py), then the report."""
  from lm.sweep import plan, search, search_report  # pylint: disable=g-import-not-at-top
  if _TRIALS.value < 1:
    raise UserError(f"--trials={_TRIALS.value}: must be >= 1")
  common = plan.typed_overrides(_CONFIG.value, _OVERRIDES)
  space = search.load_space(_CONFIG.value, common)
  # One seed per trial unless --seeds / --seed_list ask for more.
  explicit = flags.FLAGS["seeds"].present or flags.FLAGS["seed_list"].present
  seeds = plan.parse_seeds(_SEEDS.value, _SEED_LIST.value) if explicit else [0]
  direction = search.direction_of(_METRIC.value, _DIRECTION.value)
  study = search.open_study(_WORKDIR.value, _STORAGE.value, _SEARCH.value, space, direction)
  trials = search.Trials(config_arg=_CONFIG.value, workdir=_WORKDIR.value, space=space,
                         common=common, seeds=seeds, folds=_FOLDS.value,
                         metric=_METRIC.value, parallel=_PARALLEL.value,
                         cache_dir=os.path.join(_WORKDIR.value, COMPILATION_CACHE))
  if not _AGGREGATE_ONLY.value:
    print(f"Search: {_SEARCH.value}, {_TRIALS.value} trials of {len(seeds)} seed(s)"
          f"{f' x {_FOLDS.value} folds' if _FOLDS.value else ''}, {direction} {_METRIC.value}, "
          f"{_PARALLEL.value} at a time, study in {_STORAGE.value or _WORKDIR.value}")
    try:
      search.run_search(study, trials, _TRIALS.value)
    except KeyboardInterrupt:
      print("Stopped: run the same command to go on (finished trials are kept)",
            file=sys.stderr)
      return 130
  command = _command()
  table = search_report.write_all(_WORKDIR.value, study, _METRIC.value, command, _CONFIG.value)
  with open(table, encoding="utf-8") as f:
    print(f.read())
  print(f"Wrote {table}, {search_report.PLOT} and {search_report.BEST_CONFIG} in "
        f"{_WORKDIR.value}")
  return 0


def _aggregate(variants, seeds, runs, failed) -> None:
  """Tables and plots from the finished runs."""
  # pylint: disable=g-import-not-at-top
  from lm.sweep import outcome, plots, report, runner
  finished = [r for r in runs if runner.is_finished(r) and r not in failed]
  missing = [(r, "failed, see " + r.log_path if r in failed else "not run yet")
             for r in runs if r not in finished]
  if not finished:
    raise UserError(f"--workdir={_WORKDIR.value}: no finished runs to aggregate yet")
  outcomes = [outcome.read_outcome(r) for r in finished]
  metric = _METRIC.value
  if not any(metric in o.metrics for o in outcomes):
    reported = sorted({m for o in outcomes for m in o.metrics})
    raise UserError(f"--metric={metric}: no run reports it; they report {', '.join(reported)}")
  results = report.summarize_variants(variants, outcomes)
  command = _command()
  directory = _WORKDIR.value
  table = report.write_markdown(directory, results, metric, seeds, command, missing,
                                folds=_FOLDS.value)
  report.write_csv(directory, results, metric)
  report.write_runs_csv(directory, outcomes, metric)
  plots.plot_curves(directory, results)
  plots.plot_bars(directory, results, metric)
  if _PLOT_AGAINST.value:
    plots.plot_against(directory, results, metric, _PLOT_AGAINST.value)
  if _SCALING.value:
    _fit_scaling(directory, table, results, metric)
  with open(table, encoding="utf-8") as f:
    print(f.read())
  print(f"Wrote {table}, results.csv, runs.csv, curves.png and bars.png in {directory}")


def _fit_scaling(directory, table, results, metric) -> None:
  """The power law of `metric` against training FLOPs, over every finished run."""
  from lm.sweep import plots, report, scaling  # pylint: disable=g-import-not-at-top
  points = [(o.flops, o.metrics[metric]) for r in results for o in r.outcomes
            if metric in o.metrics]
  if len({c for c, _ in points}) < 2:
    raise UserError("--scaling needs finished runs of at least two sizes (training FLOPs)")
  law = scaling.fit_power_law(*zip(*points))
  report.append_power_law(table, law, metric, len(points))
  plots.plot_scaling(directory, results, metric, law)


def _command() -> str:
  """The command that ran the sweep, for its report: this one without --aggregate_only (which
  only rebuilt the report)."""
  args = [a for a in sys.argv[1:] if a.split("=")[0] not in ("--aggregate_only",
                                                               "--noaggregate_only")]
  return shlex.join(["python", "-m", "lm.sweep", *args])


def _parse_flags(argv: list[str]) -> list[str]:
  """absl flags, after taking out the --config.KEY=VALUE overrides (for every run)."""
  rest, position = [], 0
  while position < len(argv):
    arg = argv[position]
    if arg.startswith("--config."):
      key, equals, value = arg[len("--config."):].partition("=")
      if not equals:  # --config.KEY VALUE
        position += 1
        if position == len(argv):
          cli.fail(f"{arg}: give a value, e.g. {arg}=VALUE")
        value = argv[position]
      _OVERRIDES[key] = value
    else:
      rest.append(arg)
    position += 1
  return cli.parse_flags(rest)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    status = _run()
  except UserError as e:
    cli.fail(str(e))
  sys.exit(status)


def run() -> None:
  """The console command (pyproject.toml [project.scripts])."""
  cli.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
