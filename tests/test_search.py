"""lm.sweep --search: search spaces and their errors, a grid enumerating exactly the grid, a
killed search resuming without rerunning finished trials, two workers sharing one study, k-fold
trial values, and the report files. Trials run a stand-in for lm.main (tests/test_sweep.py's
runs are real)."""

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lm import config_file
from lm.errors import UserError
from lm.sweep import search, search_report
from tests.conftest import REPO, xla_flags

EXPERIMENT = '''
from experiments import shakespeare_char

def get_config(arg=None):
  return shakespeare_char.get_config("cpu,smoke")

def search_space(arg=None):
  return {space}
'''

# A stand-in for `python -m lm.main`: logs its call (the second hangs while a file "slow" is
# there), writes a final metric
# that prefers learning rates near 0.003 and batch size 2 (and shifts by fold).
FAKE_MAIN = '''#!{python}
import json, math, os, sys, time
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
workdir = args["--workdir"]
os.makedirs(workdir, exist_ok=True)
root = os.path.dirname(os.path.dirname(__file__))
with open(os.path.join(root, "calls.log"), "a") as f:
  f.write(workdir + "\\n")
with open(os.path.join(root, "calls.log")) as f:
  number = len(f.readlines())
lr = float(args.get("--config.train.learning_rate", 0.001))
batch = int(args.get("--config.train.batch_size", 4))
fold = int(args.get("--config.data.fold", 0))
value = -abs(math.log10(lr / 0.003)) - abs(batch - 2) + 0.1 * fold
if os.path.exists(os.path.join(root, "slow")) and number == 2:
  time.sleep(600)
with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
  f.write(json.dumps({{"step": 1, "eval/accuracy": value}}) + "\\n")
with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
  json.dump({{"step": 1, "metrics": {{"eval/accuracy": value}}}}, f)
'''


def setup(tmp_path, space: str):
  experiment = tmp_path / "exp.py"
  experiment.write_text(EXPERIMENT.format(space=space))
  (tmp_path / "bin").mkdir(exist_ok=True)
  fake = tmp_path / "bin" / "python"
  fake.write_text(FAKE_MAIN.format(python=sys.executable))
  fake.chmod(0o755)
  return str(experiment), str(fake)


def calls(tmp_path) -> list[str]:
  path = tmp_path / "calls.log"
  return path.read_text().splitlines() if path.exists() else []


def trials_of(experiment, fake, workdir, **options):
  space = search.load_space(experiment, {})
  defaults = dict(config_arg=experiment, workdir=workdir, space=space, common={}, seeds=[0],
                  folds=0, metric="eval/accuracy", parallel=1, cache_dir="",
                  report=lambda message: None, python=fake)
  return space, search.Trials(**{**defaults, **options})


@pytest.mark.parametrize("space, message", [
    ('{"train.learnig_rate": ("loguniform", 1e-4, 1e-2)}',
     "unknown config key 'train.learnig_rate'; did you mean train.learning_rate"),
    ('{"train.batch_size": ("choice", [])}', "needs a non-empty list of values"),
    ('{"train.learning_rate": ("loguniform", 0.0, 1e-2)}', "a log-uniform range needs low > 0"),
    ('{"train.learning_rate": ("uniform", 0.1, 0.01)}', "two numbers with low < high"),
    ('{"train.batch_size": ("int", 1, 2.5)}', "needs two numbers|integer bounds"),
    ('{"train.learning_rate": ("normal", 0, 1)}', "a spec is"),
    ('{}', "non-empty dict"),
])
def test_bad_search_spaces_are_named(tmp_path, space, message):
  experiment, _ = setup(tmp_path, space)
  with pytest.raises(UserError, match=message):
    search.load_space(experiment, {})


def test_grid_search_runs_exactly_the_grid_and_reports(tmp_path):
  experiment, fake = setup(
      tmp_path, '{"train.learning_rate": ("choice", [0.001, 0.003, 0.01]), '
      '"train.batch_size": ("int", 1, 2)}')
  workdir = str(tmp_path / "search")
  space, trials = trials_of(experiment, fake, workdir)
  study = search.open_study(workdir, "", "grid", space, "maximize")
  search.run_search(study, trials, 50)  # The grid has 6 points: the study stops there.
  done = [t for t in study.trials if t.state.name == "COMPLETE"]
  assert sorted((t.params["train.learning_rate"], t.params["train.batch_size"]) for t in done) == (
      sorted(itertools.product([0.001, 0.003, 0.01], [1, 2])))
  assert len(calls(tmp_path)) == 6
  assert study.best_trial.params == {"train.learning_rate": 0.003, "train.batch_size": 2}
  table = search_report.write_all(workdir, study, "eval/accuracy", "python -m lm.sweep ...",
                                  experiment)
  text = open(table, encoding="utf-8").read()
  assert "6 trials (6 complete)" in text and "**Best: trial" in text
  assert "`train.batch_size=2`" in text and "Parameter importance" in text
  best = config_file.load(os.path.join(workdir, "best_config.py"))
  assert (best.train.learning_rate, best.train.batch_size) == (0.003, 2)
  with open(os.path.join(workdir, "search.png"), "rb") as f:
    assert f.read(4) == b"\x89PNG"
  with pytest.raises(UserError, match="--search=grid needs choices or int ranges"):
    search.open_study(str(tmp_path / "other"), "", "grid",
                      [search.Param("train.learning_rate", "uniform", low=0.0, high=1.0)],
                      "maximize")


def test_trial_value_is_the_mean_over_folds(tmp_path):
  experiment, fake = setup(tmp_path, '{"train.learning_rate": ("choice", [0.003])}')
  workdir = str(tmp_path / "search")
  space, trials = trials_of(experiment, fake, workdir, folds=3)
  study = search.open_study(workdir, "", "random", space, "maximize")
  search.run_search(study, trials, 1)
  assert study.best_value == pytest.approx(-2 + 0.1 * (0 + 1 + 2) / 3)  # Batch 4: -2.
  assert sorted(os.path.basename(c) for c in calls(tmp_path)) == ["fold0", "fold1", "fold2"]
  # search.md states the spread over the folds (a hand computation with scipy's t).
  from scipy import stats as scipy_stats  # pylint: disable=g-import-not-at-top
  values = np.array([-2 + 0.1 * fold for fold in range(3)])
  low, high = scipy_stats.t.interval(0.95, df=2, loc=values.mean(), scale=scipy_stats.sem(values))
  table = search_report.write_all(workdir, study, "eval/accuracy", "python -m lm.sweep ...",
                                  experiment)
  spread = f"± {np.std(values, ddof=1):.4f} [±{(high - low) / 2:.4f}] over 3 runs"
  assert f"**Best: trial 0, eval/accuracy = {values.mean():.4f}** {spread}" in open(
      table, encoding="utf-8").read()


DRIVER = '''
import sys
from lm.sweep import search
search._HEARTBEAT_SECONDS, search._GRACE_SECONDS = 1, 2
experiment, fake, workdir, count = sys.argv[1:]
space = search.load_space(experiment, {{}})
study = search.open_study(workdir, "", "random", space, "maximize")
trials = search.Trials(config_arg=experiment, workdir=workdir, space=space, common={{}},
                       seeds=[0], folds=0, metric="eval/accuracy", parallel=1, cache_dir="",
                       python=fake)
search.run_search(study, trials, int(count))
'''


def driver(tmp_path, experiment, fake, workdir, count):
  script = tmp_path / "driver.py"
  script.write_text(DRIVER.format())
  return subprocess.Popen([sys.executable, str(script), experiment, fake, workdir, str(count)],
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          start_new_session=True)


def test_a_killed_search_resumes_without_rerunning_finished_trials(tmp_path, monkeypatch):
  experiment, fake = setup(tmp_path, '{"train.learning_rate": ("loguniform", 0.001, 0.01)}')
  workdir = str(tmp_path / "search")
  (tmp_path / "slow").touch()  # The second trial hangs: the search is killed in it.
  process = driver(tmp_path, experiment, fake, workdir, 4)
  deadline = time.time() + 120
  while time.time() < deadline:
    finished = [c for c in calls(tmp_path) if os.path.exists(os.path.join(c, "final_metrics.json"))]
    hanging = [c for c in calls(tmp_path) if c not in finished]
    if hanging:
      break
    time.sleep(0.2)
  assert hanging, process.communicate()[0]
  os.killpg(process.pid, signal.SIGKILL)  # The search and its run, mid-trial.
  process.wait()
  (tmp_path / "slow").unlink()
  before = calls(tmp_path)

  monkeypatch.setattr(search, "_HEARTBEAT_SECONDS", 1)
  monkeypatch.setattr(search, "_GRACE_SECONDS", 2)
  time.sleep(3)  # The killed trial's heartbeat goes stale.
  space, trials = trials_of(experiment, fake, workdir)
  study = search.open_study(workdir, "", "random", space, "maximize")
  search.run_search(study, trials, 4)
  after = calls(tmp_path)[len(before):]
  assert not set(after) & set(finished)  # Finished trials never ran again.
  assert hanging[0] in after  # The killed one ran again, in its own directory.
  states = sorted(t.state.name for t in study.trials)
  assert states.count("COMPLETE") == 4 and states.count("FAIL") == 1


def test_two_workers_share_one_study_with_disjoint_trials(tmp_path):
  experiment, fake = setup(tmp_path, '{"train.learning_rate": ("loguniform", 0.001, 0.01)}')
  workdir = str(tmp_path / "search")
  os.makedirs(workdir)
  space, _ = trials_of(experiment, fake, workdir)
  search.open_study(workdir, "", "random", space, "maximize")  # Created once, then shared.
  workers = [driver(tmp_path, experiment, fake, workdir, 6) for _ in range(2)]
  outputs = [w.communicate(timeout=300)[0] for w in workers]
  assert all(w.returncode == 0 for w in workers), outputs
  study = search.open_study(workdir, "", "random", space, "maximize")
  numbers = [t.number for t in study.trials]
  assert len(numbers) == len(set(numbers)) >= 6
  ran = calls(tmp_path)
  assert len(ran) == len(set(ran)) == len(numbers)  # Every trial's run once, by one worker.
  assert len({json.dumps(t.params) for t in study.trials}) == len(numbers)


def test_a_smoke_search_through_the_command_line(tmp_path):
  experiment = tmp_path / "exp.py"
  experiment.write_text(EXPERIMENT.format(
      space='{"train.learning_rate": ("loguniform", 1e-3, 1e-2)}').replace(
          'return shakespeare_char.get_config("cpu,smoke")',
          'config = shakespeare_char.get_config("cpu,smoke")\n  config.train.sample_prompt = ""'
          '\n  return config'))
  workdir = tmp_path / "search"
  env = dict(os.environ, XLA_FLAGS=xla_flags(1))
  result = subprocess.run([sys.executable, "-m", "lm.sweep", f"--config={experiment}",
                           f"--workdir={workdir}", "--search=random", "--trials=2",
                           "--metric=eval/loss"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "2 trials (2 complete)" in (workdir / "search.md").read_text()
  best = config_file.load(str(workdir / "best_config.py"))
  assert 1e-3 <= best.train.learning_rate <= 1e-2
  missing = subprocess.run([sys.executable, "-m", "lm.sweep",
                            "--config=experiments/shakespeare_char.py:cpu,smoke",
                            f"--workdir={tmp_path / 'other'}", "--search=tpe"], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
  assert missing.returncode == 2 and "search_space" in missing.stderr
