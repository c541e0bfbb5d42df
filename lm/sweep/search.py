"""Hyper-parameter search for lm.sweep: Optuna (grid, random or TPE) over an experiment's
`search_space()`, each trial one or more lm.main runs.

`search_space(arg)` (beside get_config) returns {dotted config key: spec}, a spec being
  ("choice", [v1, v2, ...])      any of the values (bool, int, float or str)
  ("uniform", low, high)         a float in [low, high]
  ("loguniform", low, high)      a float in [low, high] on a log scale (0 < low < high)
  ("int", low, high)             an integer in [low, high] (both included)
Grid search enumerates choices and int ranges (every combination); random and TPE (Optuna's
samplers, seeded) draw from any spec.

A trial trains its configuration at each seed (and, with --folds=K, each fold) as an lm.main
run in DIR/trials/<hash of its values>/seed<s>[/fold<i>]; its value is the mean of --metric
over them. Its evaluations feed Optuna's median pruner (a run whose metric is worse than the
median of earlier trials at the same step is stopped), with one run per trial. The study lives
in DIR/study.db (SQLite) or --storage=URL (PostgreSQL, MySQL: workers on several machines share
it); trials keep a heartbeat, so a trial whose worker died is failed and retried with the same
values, in the same directory (lm.main resumes its checkpoint), and finished runs are never
rerun. At the end: DIR/search.md (every trial, the best, each parameter's importance as Optuna's
fANOVA computes it), DIR/search.png (the metric against trial and against each parameter) and
DIR/best_config.py (an experiment file: the searched file with the best values;
`python -m lm.main --config=DIR/best_config.py` trains it).
"""

import copy
import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from typing import Any, Callable

from lm import config_file
from lm.errors import UserError
from lm.sweep import plan, runner
from lm.training import metrics_log

SEARCHES = ("grid", "random", "tpe")
KINDS = ("choice", "uniform", "loguniform", "int")
STUDY_NAME = "lm_search"
STUDY_FILE = "study.db"
_HEARTBEAT_SECONDS = 10
_GRACE_SECONDS = 40
_POLL_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class Param:
  key: str  # Dotted config key.
  kind: str  # One of KINDS.
  values: tuple = ()  # choice
  low: float = 0.0
  high: float = 0.0

  def suggest(self, trial) -> Any:
    if self.kind == "choice":
      return trial.suggest_categorical(self.key, list(self.values))
    if self.kind == "int":
      return trial.suggest_int(self.key, int(self.low), int(self.high))
    return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "loguniform")

  def grid(self) -> list:
    if self.kind == "choice":
      return list(self.values)
    if self.kind == "int":
      return list(range(int(self.low), int(self.high) + 1))
    raise UserError(f"search_space(): {self.key!r} is a {self.kind} range; --search=grid needs "
                    f"choices or int ranges (use random or tpe for continuous ones)")


def load_space(config_arg: str, common: dict[str, Any]) -> list[Param]:
  """The checked search space of the experiment file; UserError names the first bad entry."""
  path = config_arg.partition(":")[0]
  space = config_file.call(config_arg, "search_space")
  where = f"--config={path}: search_space()"
  if not isinstance(space, dict) or not space:
    raise UserError(f"{where} must return a non-empty dict {{config key: spec}}, e.g. "
                    f"{{'train.learning_rate': ('loguniform', 1e-4, 1e-2)}}")
  base = config_file.load(config_arg)
  params = []
  for key, spec in space.items():
    if key in common:
      raise UserError(f"--config.{key}: search_space() of {path} searches this key; leave it off "
                      f"the command line")
    param = _param(key, spec, f"{where}[{key!r}]")
    for value in (param.values if param.kind == "choice" else (param.low, param.high)):
      plan.set_key(copy.deepcopy(base), key, int(value) if param.kind == "int" else value,
                   where)
    params.append(param)
  return params


def _param(key: str, spec: Any, where: str) -> Param:
  if not isinstance(spec, (tuple, list)) or not spec or spec[0] not in KINDS:
    raise UserError(f"{where}: a spec is ('choice', [values]), ('uniform', low, high), "
                    f"('loguniform', low, high) or ('int', low, high); got {spec!r}")
  kind = spec[0]
  if kind == "choice":
    if len(spec) != 2 or not isinstance(spec[1], (list, tuple)) or not spec[1]:
      raise UserError(f"{where}: ('choice', [values]) needs a non-empty list of values")
    return Param(key, kind, values=tuple(spec[1]))
  if (len(spec) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                for v in spec[1:]) or not spec[1] < spec[2]):
    raise UserError(f"{where}: ({kind!r}, low, high) needs two numbers with low < high; got "
                    f"{spec!r}")
  if kind == "loguniform" and spec[1] <= 0:
    raise UserError(f"{where}: a log-uniform range needs low > 0; got {spec!r}")
  if kind == "int" and not all(isinstance(v, int) for v in spec[1:]):
    raise UserError(f"{where}: an int range needs integer bounds; got {spec!r}")
  return Param(key, kind, low=spec[1], high=spec[2])


def direction_of(metric: str, direction: str) -> str:
  """'minimize' or 'maximize': `direction` if given, else by the metric's name (losses,
  perplexity and bits per byte are minimized)."""
  if direction:
    if direction not in ("minimize", "maximize"):
      raise UserError(f"--direction={direction}: use minimize or maximize")
    return direction
  minimized = any(word in metric for word in ("loss", "perplexity", "bpb"))
  return "minimize" if minimized else "maximize"


def open_study(workdir: str, storage: str, search: str, space: list[Param], direction: str):
  """The study in `storage` (default: SQLite in `workdir`), created or resumed."""
  import optuna  # pylint: disable=g-import-not-at-top  # Only searches need it.
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  if search not in SEARCHES:
    raise UserError(f"--search={search}: choose one of {', '.join(SEARCHES)}")
  os.makedirs(workdir, exist_ok=True)
  url = storage or f"sqlite:///{os.path.abspath(os.path.join(workdir, STUDY_FILE))}"
  with warnings.catch_warnings():  # Heartbeats are "experimental" in Optuna's terms.
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    rdb = optuna.storages.RDBStorage(
        url, heartbeat_interval=_HEARTBEAT_SECONDS, grace_period=_GRACE_SECONDS,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=3))
  # Unseeded: workers sharing a study must not draw the same values (a trial's values are in
  # the study, search.md and best_config.py).
  if search == "grid":
    sampler = optuna.samplers.GridSampler({p.key: p.grid() for p in space})
  elif search == "random":
    sampler = optuna.samplers.RandomSampler()
  else:
    sampler = optuna.samplers.TPESampler()
  try:
    return optuna.create_study(storage=rdb, study_name=STUDY_NAME, direction=direction,
                               sampler=sampler, load_if_exists=True,
                               pruner=optuna.pruners.MedianPruner(n_startup_trials=3))
  except ValueError as e:  # E.g. a resumed study with another direction.
    raise UserError(f"--storage / {workdir}: {e}") from None


class Trials:
  """The objective: trains a trial's runs with lm.main, reports their evaluations to the
  pruner, and returns the mean of the metric."""

  def __init__(self, *, config_arg: str, workdir: str, space: list[Param], common: dict,
               seeds: list[int], folds: int, metric: str, parallel: int, cache_dir: str,
               report: Callable[[str], None] = print, python: str = sys.executable):
    self.config_arg, self.workdir, self.space, self.common = config_arg, workdir, space, common
    self.seeds, self.folds, self.metric = seeds, folds, metric
    self.parallel, self.cache_dir, self.report, self.python = parallel, cache_dir, report, python
    self._slots = list(range(parallel))
    self._lock = threading.Lock()
    self.stopping = threading.Event()

  def runs(self, values: dict[str, Any]) -> list[plan.Run]:
    """The lm.main runs of a trial with `values`, in a directory named by them."""
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]
    variant = plan.Variant(f"trials/{digest}", dict(values), self.common)
    return plan.make_runs([variant], self.seeds, self.workdir, self.config_arg, self.folds)

  def __call__(self, trial) -> float:
    import optuna  # pylint: disable=g-import-not-at-top
    values = {p.key: p.suggest(trial) for p in self.space}
    runs = self.runs(values)
    trial.set_user_attr("workdirs", [r.workdir for r in runs])
    results = []
    for index, run in enumerate(runs):
      if self.stopping.is_set():
        raise KeyboardInterrupt
      value = self._train(trial, run, prune=len(runs) == 1)
      results.append(value)
      if len(runs) > 1:  # The running mean after each fold / seed.
        trial.report(sum(results) / len(results), index)
        if trial.should_prune():
          raise optuna.TrialPruned()
    return sum(results) / len(results)

  def _train(self, trial, run: plan.Run, prune: bool) -> float:
    import optuna  # pylint: disable=g-import-not-at-top
    if not runner.is_finished(run):
      slot = self._take_slot()
      try:
        self.report(f"trial {trial.number}: start {run.name} (log: {run.log_path})")
        process = runner.launch(run, slot, self.parallel, self.cache_dir, self.python)
        reported = set()
        while process.poll() is None:
          time.sleep(_POLL_SECONDS)
          if self.stopping.is_set():
            process.send_signal(signal.SIGTERM)
            process.wait()
            raise KeyboardInterrupt
          if prune:
            for step, value in self._evaluations(run):
              if step not in reported:
                reported.add(step)
                trial.report(value, step)
            if reported and process.poll() is None and trial.should_prune():
              process.send_signal(signal.SIGTERM)
              process.wait()
              self.report(f"trial {trial.number}: pruned at step {max(reported)}")
              raise optuna.TrialPruned()
      finally:
        self._give_slot(slot)
      if process.returncode != 0:
        raise RuntimeError(f"{run.name} failed (exit {process.returncode}): "
                           f"{runner.last_error(run.log_path)}")
    final = metrics_log.read_final(run.workdir)
    if self.metric not in final:
      raise UserError(f"--metric={self.metric}: {run.workdir} reports "
                      f"{', '.join(sorted(final)) or 'nothing'}")
    return float(final[self.metric])

  def _evaluations(self, run: plan.Run) -> list[tuple[int, float]]:
    path = os.path.join(run.workdir, metrics_log.METRICS_FILE)
    found = []
    try:
      with open(path, encoding="utf-8") as f:
        for line in f:
          try:
            record = json.loads(line)
          except ValueError:  # A line being written.
            continue
          value = record.get(self.metric)
          if isinstance(value, (int, float)) and math.isfinite(value):
            found.append((int(record["step"]), float(value)))
    except OSError:
      pass
    return found

  def _take_slot(self) -> int:
    while True:
      with self._lock:
        if self._slots:
          return self._slots.pop(0)
      time.sleep(_POLL_SECONDS)

  def _give_slot(self, slot: int) -> None:
    with self._lock:
      self._slots.append(slot)
      self._slots.sort()


def run_search(study, trials: Trials, num_trials: int) -> None:
  """Runs trials until the study has `num_trials` complete or pruned ones (over every worker);
  a failed trial (a run that failed) is recorded and the search goes on."""
  import optuna  # pylint: disable=g-import-not-at-top
  done = lambda: sum(t.state in (optuna.trial.TrialState.COMPLETE,
                                 optuna.trial.TrialState.PRUNED) for t in study.trials)
  if done() >= num_trials:
    trials.report(f"The study has {done()} finished trials already (--trials={num_trials}).")
    return
  stop = optuna.study.MaxTrialsCallback(
      num_trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
  try:
    study.optimize(trials, n_trials=num_trials - done(), n_jobs=trials.parallel,
                   callbacks=[stop], catch=(RuntimeError,))
  except KeyboardInterrupt:
    trials.stopping.set()
    raise
