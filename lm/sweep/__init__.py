"""Sweeps: an experiment file's `sweep()` variants x seeds, run as lm.main processes, aggregated.

  python -m lm.sweep --config=experiments/NAME.py[:ARGS] --workdir=DIR --seeds=3 [--parallel=N]

  plan.py      the variants of sweep() (checked against the config) and one lm.main run per seed
  runner.py    runs them locally, N at a time, skipping finished ones; or prints the commands
  outcome.py   what a finished run left: final metrics, loss curves, parameters, training FLOPs
  stats.py     mean, standard deviation and Student-t 95% confidence interval over seeds
  report.py    DIR/results.md, results.csv and runs.csv
  plots.py     DIR/curves.png, bars.png, scaling.png and against.png
  scaling.py   fit_power_law(compute, loss) for scaling ablations
"""
