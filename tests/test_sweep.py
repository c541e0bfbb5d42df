"""`python -m lm.sweep`: variants from sweep(), the runner (parallel, skip, failures), the
aggregation's statistics against numpy/scipy, the power-law fit, and one real smoke sweep."""

import csv
import io
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from scipy import stats as scipy_stats

from lm import defaults, sampling
from lm.data import tokenizers
from lm.errors import UserError
from lm.models import architecture
from lm.models.config import model_config_from
from lm.sweep import outcome, plan, plots, report, runner, scaling, stats
from lm.training import checkpoints, flops, metrics_log
from tests.conftest import REPO, xla_flags

EXPERIMENT = '''
from experiments import shakespeare_char

def get_config(arg=None):
  config = shakespeare_char.get_config("cpu,smoke")
  config.data.source = {source!r}
  config.model.architecture = {model}
  config.train.sample_prompt = ""
  return config

def sweep(arg=None):
  return {variants}
'''


def write_experiment(tmp_path, variants: str, name="exp.py", model='"transformer"') -> str:
  path = tmp_path / name
  path.write_text(
      EXPERIMENT.format(source=str(tmp_path / "data.txt"), variants=variants, model=model))
  return str(path)


# One CPU device per run: the test process's 8 fake devices would only slow the runs.
ONE_DEVICE = xla_flags(1)


def run_sweep_cli(*args):
  env = dict(os.environ, XLA_FLAGS=ONE_DEVICE)
  return subprocess.run([sys.executable, "-m", "lm.sweep", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)


# --- Variants and commands -----------------------------------------------------------------------


def test_variants_are_named_and_become_lm_main_commands(tmp_path):
  path = write_experiment(
      tmp_path, '[{"name": "rms", "model.norm": "rmsnorm"}, '
      '{"model.mlp": "swiglu", "train.learning_rate": 0.003}, {}] + ([] if arg is None else '
      '[{"name": "arg_" + arg}])')
  assert [v.name for v in plan.load_variants(path)][-1] == "baseline"  # sweep()
  variants = plan.load_variants(f"{path}:smoke")[:3]  # sweep('smoke')
  assert plan.load_variants(f"{path}:smoke")[3].name == "arg_smoke"
  assert [v.name for v in variants] == ["rms", "mlp=swiglu,learning_rate=0.003", "baseline"]
  assert variants[1].overrides == {"model.mlp": "swiglu", "train.learning_rate": 0.003}
  runs = plan.make_runs(variants, [0, 1], "DIR", f"{path}:smoke")
  assert [r.name for r in runs] == [
      "rms/seed0", "mlp=swiglu,learning_rate=0.003/seed0", "baseline/seed0", "rms/seed1",
      "mlp=swiglu,learning_rate=0.003/seed1", "baseline/seed1"
  ]
  assert runs[4].main_args() == [
      "-m", "lm.main", f"--config={path}:smoke",
      "--workdir=DIR/mlp=swiglu,learning_rate=0.003/seed1", "--config.seed=1",
      "--config.model.mlp=swiglu", "--config.train.learning_rate=0.003"
  ]
  printed = io.StringIO()
  runner.print_commands(runs[3:5], printed)
  assert [shlex.split(line) for line in printed.getvalue().splitlines()] == [
      ["python", *runs[3].main_args()], ["python", *runs[4].main_args()]
  ]


@pytest.mark.parametrize("variants, message", [
    ("[]", "sweep() returned no variants"),
    ('{"model.norm": "rmsnorm"}', "must return a list of dicts"),
    ('[{"model.nrom": "rmsnorm"}]', "variant 1: unknown config key 'model.nrom'; did you mean "
     "model.norm"),
    ('[{}, {"modle.norm": "rmsnorm"}]', "variant 2: unknown config key 'modle.norm'; did you "
     "mean model"),
    ('[{"train.steps": "ten"}]', "config.train.steps='ten': must be a int"),
    ('[{"model.norm": "batchnorm"}]', "variant 1: config.model.norm: unknown value 'batchnorm'"),
    ('[{"model": 3}]', "config.model is a section"),
    ('[{"train.steps": [1, 2]}]', "a value must be a bool, int, float or str"),
    ('[{"seed": 3}]', "seeds come from --seeds"),
    ('[{"name": "a/b"}]', "'name' must be a directory name"),
    ('[{"series": 3}]', "'series' must be a str"),
    ('[{"name": "x"}, {"name": "x", "model.norm": "rmsnorm"}]', "2 variants named 'x'"),
    ('[{}][5]', "line 12: sweep() raised IndexError"),
])
def test_bad_sweeps_are_one_line_user_errors(tmp_path, variants, message):
  path = write_experiment(tmp_path, variants)
  with pytest.raises(UserError, match=re.escape(message)) as error:
    plan.load_variants(path)
  assert str(error.value).startswith(f"--config={path}") and "\n" not in str(error.value)


def test_file_without_sweep(tmp_path):
  path = tmp_path / "plain.py"
  path.write_text("from lm import defaults\ndef get_config():\n  return defaults.base_config()\n")
  with pytest.raises(UserError, match=r"defines no sweep\(\) function"):
    plan.load_variants(str(path))


def test_seeds():
  assert plan.parse_seeds(3, "") == [0, 1, 2]
  assert plan.parse_seeds(3, "4, 7") == [4, 7]
  for count, seed_list in ((0, ""), (3, "1,x"), (3, "2,2"), (3, "-1")):
    with pytest.raises(UserError):
      plan.parse_seeds(count, seed_list)


def test_cli_print_launcher_and_errors(tmp_path):
  path = write_experiment(tmp_path, '[{"name": "a"}, {"name": "b", "model.norm": "rmsnorm"}]')
  printed = run_sweep_cli(f"--config={path}", f"--workdir={tmp_path / 'sweep'}", "--seeds=2",
                          "--launcher=print")
  assert printed.returncode == 0, printed.stderr
  lines = printed.stdout.splitlines()
  assert len(lines) == 4 and all(line.startswith("python -m lm.main --config=") for line in lines)
  assert "--config.seed=1 --config.model.norm=rmsnorm" in lines[3]
  assert not os.path.exists(tmp_path / "sweep")  # Nothing ran.
  bad = write_experiment(tmp_path, '[{"model.nrom": "rmsnorm"}]', name="bad.py")
  failed = run_sweep_cli(f"--config={bad}", f"--workdir={tmp_path / 'sweep'}")
  assert failed.returncode == 2 and "Traceback" not in failed.stderr
  errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "unknown config key 'model.nrom'" in errors[0], failed.stderr


def test_variants_flag_selects_by_name_pattern(tmp_path):
  variants = [plan.Variant(name, {}) for name in ("scratch_n100", "scratch_n500", "mlm_n500")]
  assert [v.name for v in plan.select_variants(variants, "*_n500")] == ["scratch_n500",
                                                                       "mlm_n500"]
  assert [v.name for v in plan.select_variants(variants, "mlm_n500, scratch_n100")] == [
      "scratch_n100", "mlm_n500"]  # sweep() order, not the patterns' order.
  assert plan.select_variants(variants, " ") == variants
  with pytest.raises(UserError, match="'electra_\\*' matches no variant"):
    plan.select_variants(variants, "mlm_n500,electra_*")
  path = write_experiment(tmp_path, '[{"name": "a"}, {"name": "b", "model.norm": "rmsnorm"}]')
  printed = run_sweep_cli(f"--config={path}", f"--workdir={tmp_path / 'sweep'}", "--seeds=2",
                          "--launcher=print", "--variants=b")
  assert printed.returncode == 0, printed.stderr
  lines = printed.stdout.splitlines()
  assert len(lines) == 2 and all("--config.model.norm=rmsnorm" in line for line in lines)
  failed = run_sweep_cli(f"--config={path}", f"--workdir={tmp_path / 'sweep'}", "--variants=c")
  errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
  assert failed.returncode == 2 and len(errors) == 1 and "--variants: 'c'" in errors[0]
  searched = run_sweep_cli(f"--config={path}", f"--workdir={tmp_path / 'sweep'}", "--variants=a",
                           "--search=tpe")
  errors = [line for line in searched.stderr.splitlines() if line.startswith("error: ")]
  assert searched.returncode == 2 and len(errors) == 1 and "--search" in errors[0]


# --- The runner, with a stand-in for lm.main -----------------------------------------------------

FAKE_MAIN = '''#!{python}
"""Stands in for `python -m lm.main`: records when it ran and on which cores, then fails like
lm.main on a user mistake (learning rate 0.5) or writes a finished run's files."""
import json, os, sys, time
args = dict(arg.split("=", 1) for arg in sys.argv[3:])
workdir = args["--workdir"]
start = time.time()
time.sleep(0.6)
trace = {{"start": start, "end": time.time(), "cores": sorted(os.sched_getaffinity(0))}}
with open(os.path.join(workdir, "trace.json"), "w") as f:
  json.dump(trace, f)
if args.get("--config.train.learning_rate") == "0.5":
  print("error: config.train.learning_rate=0.5: made up for the test")
  sys.exit(2)
config = {{"seed": int(args["--config.seed"]), "train": {{"learning_rate": 0.001}}}}
if "--config.train.learning_rate" in args:
  config["train"]["learning_rate"] = float(args["--config.train.learning_rate"])
with open(os.path.join(workdir, "config.json"), "w") as f:
  json.dump(config, f)
with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
  json.dump({{"step": 1, "metrics": {{"eval/loss": 1.0}}}}, f)
'''


@pytest.fixture
def fake_main(tmp_path):
  path = tmp_path / "fake_python"
  path.write_text(FAKE_MAIN.format(python=sys.executable))
  path.chmod(0o755)
  return str(path)


def fake_runs(tmp_path, learning_rates):
  variants = [plan.Variant(f"lr{lr}", {"train.learning_rate": lr}) for lr in learning_rates]
  return plan.make_runs(variants, [0, 1], str(tmp_path / "sweep"), "exp.py")


def read_trace(run):
  with open(os.path.join(run.workdir, "trace.json"), encoding="utf-8") as f:
    return json.load(f)


def test_runner_runs_in_parallel_reports_failures_and_skips_finished_runs(tmp_path, fake_main):
  runs = fake_runs(tmp_path, [0.1, 0.5, 0.2])
  messages = []
  failed, interrupted = runner.run_local(runs, parallel=2, report=messages.append,
                                         python=fake_main)
  assert not interrupted
  assert [r.name for r in failed] == ["lr0.5/seed0", "lr0.5/seed1"]
  failure = next(m for m in messages if m.startswith("FAILED lr0.5/seed0"))
  assert "(exit 2): error: config.train.learning_rate=0.5: made up for the test" in failure
  assert runs[1].log_path in failure
  assert [runner.is_finished(r) for r in runs] == [r.variant.name != "lr0.5" for r in runs]
  traces = [read_trace(r) for r in runs]
  # Never more than 2 at once, and some overlap; each process on its own share of the cores.
  events = sorted([(t["start"], 1) for t in traces] + [(t["end"], -1) for t in traces])
  running = np.cumsum([change for _, change in events])
  assert running.max() == 2
  if len(os.sched_getaffinity(0)) >= 2:
    overlapping = [(a, b) for a in traces for b in traces
                   if a is not b and a["start"] < b["end"] and b["start"] < a["end"]]
    assert overlapping and all(not set(a["cores"]) & set(b["cores"]) for a, b in overlapping)
  with open(runs[0].log_path, encoding="utf-8") as f:
    assert f.readline().strip().endswith(runs[0].command(fake_main))

  messages = []
  failed, _ = runner.run_local(runs, parallel=2, report=messages.append, python=fake_main)
  assert sorted(m for m in messages if m.startswith("skip")) == sorted(
      f"skip {r.name}: finished" for r in runs if r.variant.name != "lr0.5")
  assert len(failed) == 2  # The failed runs ran again (and failed again).

  # The sweep was edited after the runs finished: the stale result is an error, not a skip.
  edited = [plan.Run(plan.Variant("lr0.1", {"train.learning_rate": 0.3}), 0, runs[0].workdir,
                     "exp.py")]
  messages = []
  failed, _ = runner.run_local(edited, report=messages.append, python=fake_main)
  assert failed == edited
  assert "config.train.learning_rate=0.1, but the sweep now asks for 0.3" in messages[0]


def test_a_finished_run_with_a_relative_path_is_not_stale(tmp_path, monkeypatch):
  """lm.main saves paths absolute (config_paths); the sweep's relative ones mean the same."""
  monkeypatch.chdir(tmp_path)
  variant = plan.Variant("mlm", {"init_from": "runs/pre_{seed}", "data.source": "a.txt,b.txt",
                                 "train.learning_rate": 0.1})
  run = plan.make_runs([variant], [2], str(tmp_path / "sweep"), "exp.py")[0]
  os.makedirs(run.workdir)
  saved = {"seed": 2, "init_from": str(tmp_path / "runs" / "pre_2"),
           "data": {"source": f"{tmp_path / 'a.txt'},{tmp_path / 'b.txt'}"},
           "train": {"learning_rate": 0.1}}
  with open(os.path.join(run.workdir, "config.json"), "w", encoding="utf-8") as f:
    json.dump(saved, f)
  assert runner.stale_overrides(run) == ""
  saved["init_from"] = str(tmp_path / "runs" / "other")
  with open(os.path.join(run.workdir, "config.json"), "w", encoding="utf-8") as f:
    json.dump(saved, f)
  assert "config.init_from=" in runner.stale_overrides(run)


def test_a_signal_stops_the_sweep_and_its_processes(tmp_path, fake_main):
  runs = fake_runs(tmp_path, [0.1, 0.2])
  messages = []
  timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))

  def report(message):  # Ctrl-C soon after the first start, when the sweep's handler is set.
    messages.append(message)
    if not timer.is_alive() and len(messages) == 1:
      timer.start()

  failed, interrupted = runner.run_local(runs, parallel=2, report=report, python=fake_main)
  timer.join()
  assert interrupted and not failed
  # The two running processes got SIGTERM (the stand-in dies of it); the others never started.
  assert sorted(m.split(" (")[0] for m in messages if m.startswith("stopped")) == [
      "stopped lr0.1/seed0", "stopped lr0.2/seed0"
  ]
  assert messages[-1] == "Stopped: 2 run(s) not started; run the same command to go on"
  assert not any(runner.is_finished(r) for r in runs)


# --- Aggregation ---------------------------------------------------------------------------------


def fake_finished_run(run, final_metrics, losses, embed_dim=None):
  """A workdir as lm.main leaves it: config.json, tokenizer, metrics.jsonl, final_metrics.json."""
  config = defaults.base_config("tiny").to_dict()
  config["seed"] = run.seed
  if embed_dim:
    config["model"]["embed_dim"] = embed_dim
  checkpoints.save_config(run.workdir, config)
  tokenizers.build_tokenizer("char", ["abcdefgh"]).save(os.path.join(run.workdir, "tokenizer"))
  with open(os.path.join(run.workdir, metrics_log.METRICS_FILE), "w", encoding="utf-8") as f:
    for step, loss in enumerate(losses, 1):
      f.write(json.dumps({"step": step, "train/loss": loss, "eval/loss": loss + 0.1}) + "\n")
  metrics_log.write_final(run.workdir, config["train"]["steps"], final_metrics)
  return config


def test_aggregation_statistics_tables_and_plots(tmp_path):
  rng = np.random.default_rng(0)
  variants = [plan.Variant("a", {}), plan.Variant("b", {"model.norm": "rmsnorm"})]
  runs = plan.make_runs(variants, [0, 1, 2], str(tmp_path), "exp.py")
  finals = {}
  for run in runs:
    finals[run.name] = {"eval/loss": float(rng.uniform(1, 2)), "eval/bpb": float(rng.uniform(2, 3)),
                        "train/loss": float(rng.uniform(1, 2)), "perf/mfu": 0.5}
    config = fake_finished_run(run, finals[run.name], losses=rng.uniform(1, 3, size=4))
  outcomes = [outcome.read_outcome(r) for r in runs]
  results = report.summarize_variants(variants, outcomes)

  tokens = config["train"]["steps"] * config["train"]["batch_size"] * config["model"]["max_len"]
  vocab_size = tokenizers.load_tokenizer(str(tmp_path / "a/seed0/tokenizer")).vocab_size
  model_cfg = model_config_from(config["model"], vocab_size)
  params = sum(math.prod(s) for s in architecture.param_shapes(model_cfg).values())
  assert outcomes[0].params == params
  assert outcomes[0].flops == pytest.approx(tokens * flops.flops_per_token(model_cfg, 64))
  assert outcomes[0].curves["eval/loss"][0][0] == 1 and "perf/mfu" not in outcomes[0].metrics

  report.write_markdown(str(tmp_path), results, "eval/bpb", [0, 1, 2], "python -m lm.sweep X",
                        [])
  report.write_csv(str(tmp_path), results, "eval/bpb")
  with open(tmp_path / report.RESULTS_CSV, encoding="utf-8") as f:
    rows = {row["variant"]: row for row in csv.DictReader(f)}
  for variant in ("a", "b"):
    for metric in ("eval/loss", "eval/bpb", "train/loss"):
      values = np.array([finals[f"{variant}/seed{s}"][metric] for s in range(3)])
      low, high = scipy_stats.t.interval(0.95, df=2, loc=values.mean(),
                                         scale=scipy_stats.sem(values))
      row = rows[variant]
      assert float(row[f"{metric}_mean"]) == pytest.approx(values.mean(), rel=1e-12)
      assert float(row[f"{metric}_std"]) == pytest.approx(np.std(values, ddof=1), rel=1e-12)
      assert float(row[f"{metric}_ci95"]) == pytest.approx((high - low) / 2, rel=1e-9)
      assert row[f"{metric}_n"] == "3" and row["seeds"] == "0 1 2"
  markdown = (tmp_path / report.RESULTS_MD).read_text()
  assert "Seeds: 0, 1, 2 (3 per variant)" in markdown and "Student's t" in markdown
  header = next(line for line in markdown.splitlines() if line.startswith("| variant"))
  assert header.split(" | ")[5] == "eval/bpb"  # The headline metric first.
  b_mean = np.mean([finals[f"b/seed{s}"]["eval/bpb"] for s in range(3)])
  assert f"| b | model.norm='rmsnorm' | 3 | {params:,} |" in markdown
  assert f"{b_mean:.4f} ± " in markdown
  for path in (plots.plot_curves(str(tmp_path), results),
               plots.plot_bars(str(tmp_path), results, "eval/bpb")):
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_against_draws_a_line_per_series_with_all_last(tmp_path):
  """--plot_against: a learning curve per sweep() 'series' (others: one point per variant),
  by the key's value with 0 ('all') last; a key no variant sets is named."""
  variants = plan.load_variants(write_experiment(
      tmp_path, '[{"name": f"{way}_n{n}", "series": way, "data.train_examples": n} '
      'for n in (0, 500, 100) for way in ("scratch", "mlm")] + '
      '[{"name": "lone", "data.train_examples": 1000}]'))
  assert [v.series for v in variants] == ["scratch", "mlm"] * 3 + [""]
  assert "series" not in variants[0].overrides
  runs = plan.make_runs(variants, [0, 1], str(tmp_path), "exp.py")
  accuracy = {}
  for run in runs:
    accuracy[run.name] = 0.5 + run.variant.overrides["data.train_examples"] / 1e4 + run.seed / 100
    fake_finished_run(run, {"eval/accuracy": accuracy[run.name]}, losses=[1.0, 0.5])
  results = report.summarize_variants(variants, [outcome.read_outcome(r) for r in runs])
  lines = plots.against_lines(results, "eval/accuracy", "data.train_examples")
  assert list(lines) == ["scratch", "mlm", "lone"]
  assert [x for x, _ in lines["mlm"]] == [100.0, 500.0, 0.0]
  assert [r.summaries["eval/accuracy"].mean for _, r in lines["scratch"]] == pytest.approx(
      [0.515, 0.555, 0.505])
  path = plots.plot_against(str(tmp_path), results, "eval/accuracy", "data.train_examples")
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(UserError, match="--plot_against=train.steps: no variant"):
    plots.against_lines(results, "eval/accuracy", "train.steps")


def test_plot_run_curves_draws_each_run_with_metrics(tmp_path):
  """plot_run_curves (the Colab notebooks' plot): a line per named workdir's metrics.jsonl; a
  workdir without metrics adds nothing."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  for name, losses in (("a", [3.0, 2.0, 1.5]), ("b", [2.5, 2.6, 1.0])):
    (tmp_path / name).mkdir()
    with open(tmp_path / name / metrics_log.METRICS_FILE, "w", encoding="utf-8") as f:
      for step, loss in enumerate(losses, 1):
        f.write(json.dumps({"step": step, "train/loss": loss, "eval/loss": loss + 0.1}) + "\n")
  (tmp_path / "empty").mkdir()
  pixels = lambda path: np.asarray(Image.open(path).convert("RGB"))
  one, with_empty, two = (
      plots.plot_run_curves(str(tmp_path / png), {n: str(tmp_path / n) for n in names})
      for png, names in (("one.png", ["a"]), ("with_empty.png", ["a", "empty"]),
                         ("two.png", ["a", "b"])))
  assert one == str(tmp_path / "one.png")
  assert np.array_equal(pixels(one), pixels(with_empty))
  assert not np.array_equal(pixels(one), pixels(two))


def test_scaling_fits_a_power_law_to_the_runs(tmp_path):
  """--scaling: the law fitted to the finished runs' (FLOPs, metric) points, in results.md and
  scaling.png; the runs' losses follow a known law, which the fit recovers."""
  widths = (32, 64, 128, 256)
  path = write_experiment(tmp_path,
                          repr([{"name": f"d{d}", "model.embed_dim": d} for d in widths]))
  runs = plan.make_runs(plan.load_variants(path), [0, 1], str(tmp_path / "sweep"), path)
  for run in runs:  # The loss is filled in below, once the run's FLOPs are known.
    fake_finished_run(run, {}, losses=[3.0], embed_dim=run.variant.overrides["model.embed_dim"])
  compute = {run.name: outcome.read_outcome(run).flops for run in runs}
  assert len(set(compute.values())) == len(widths)
  for run in runs:
    loss = 30.0 * compute[run.name]**-0.05 * (1.01 if run.seed else 0.99)
    metrics_log.write_final(run.workdir, 2000, {"eval/loss": loss})
  result = run_sweep_cli(f"--config={path}", f"--workdir={tmp_path / 'sweep'}", "--seeds=2",
                         "--aggregate_only", "--scaling")
  assert result.returncode == 0, result.stderr
  markdown = (tmp_path / "sweep" / report.RESULTS_MD).read_text()
  fit = re.search(r"a = (\S+), b = (\d+\.\d+)", markdown)
  # The seeds' +-1% scatter moves the intercept a little and leaves the slope alone (4 digits
  # printed).
  assert float(fit[2]) == pytest.approx(0.05, abs=1e-4)
  assert float(fit[1]) == pytest.approx(30.0 * math.sqrt(0.99 * 1.01), rel=1e-3)
  with open(tmp_path / "sweep" / plots.SCALING_PNG, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  one_size = run_sweep_cli(f"--config={path}", f"--workdir={tmp_path / 'sweep'}",
                           "--seed_list=0", "--aggregate_only", "--scaling")
  assert one_size.returncode == 0  # Four sizes, even with one seed.
  (tmp_path / "one").mkdir()
  shutil.copytree(tmp_path / "sweep" / "d32", tmp_path / "one" / "d32")
  lonely = run_sweep_cli(f"--config={path}", f"--workdir={tmp_path / 'one'}", "--seeds=2",
                         "--aggregate_only", "--scaling")
  assert lonely.returncode == 2 and "at least two sizes" in lonely.stderr


def test_one_seed_has_no_spread():
  summary = stats.summarize([1.5])
  assert summary.mean == 1.5 and math.isnan(summary.std) and math.isnan(summary.ci95)


@pytest.mark.parametrize("irreducible", [0.0, 1.7])
def test_fit_power_law_recovers_synthetic_law(irreducible):
  compute = np.geomspace(1e12, 1e17, 8)
  loss = 40.0 * compute**-0.08 + irreducible
  law = scaling.fit_power_law(compute, loss, irreducible=bool(irreducible))
  assert law.a == pytest.approx(40.0, rel=1e-3) and law.b == pytest.approx(0.08, rel=1e-3)
  assert law.irreducible == pytest.approx(irreducible, abs=1e-3)
  np.testing.assert_allclose(law(compute), loss, rtol=1e-5)
  with pytest.raises(UserError, match="positive"):
    scaling.fit_power_law([1.0, -2.0], [1.0, 2.0])


# --- A real sweep --------------------------------------------------------------------------------


def test_smoke_sweep_end_to_end(tmp_path, shakespeare_path, monkeypatch):
  """2 variants x 2 seeds of the smoke-sized LSTM (so this also trains, resumes, evaluates and
  samples the LSTM through lm.main; tests/test_lstm.py shows that it learns)."""
  with open(shakespeare_path, encoding="utf-8") as f:
    (tmp_path / "data.txt").write_text(f.read(20_000), encoding="utf-8")
  # Variants that compile the same programs: after the first run, the others find them in the
  # sweep's compilation cache.
  path = write_experiment(tmp_path, '[{"name": "random"}, {"data.sampling": "strided"}]',
                          model='"lstm"')
  workdir = tmp_path / "sweep"
  result = run_sweep_cli(f"--config={path}", f"--workdir={workdir}", "--seeds=2", "--parallel=2")
  assert result.returncode == 0, result.stdout + result.stderr
  assert "Unable to initialize backend" not in result.stdout + result.stderr  # INFO chatter.
  variants = ["random", "sampling=strided"]
  finals = {}
  for variant in variants:
    for seed in (0, 1):
      run_dir = workdir / variant / f"seed{seed}"
      assert "Done: " in (run_dir / "log.txt").read_text()
      finals[variant, seed] = json.loads((run_dir / metrics_log.FINAL_FILE).read_text())
  with open(workdir / report.RESULTS_CSV, encoding="utf-8") as f:
    rows = {row["variant"]: row for row in csv.DictReader(f)}
  for variant in variants:
    losses = [finals[variant, s]["metrics"]["eval/loss"] for s in (0, 1)]
    assert float(rows[variant]["eval/loss_mean"]) == pytest.approx(np.mean(losses))
    assert float(rows[variant]["eval/loss_std"]) == pytest.approx(np.std(losses, ddof=1))
  assert finals["random", 0] != finals["random", 1]  # The seeds differ.
  markdown = (workdir / report.RESULTS_MD).read_text()
  assert f"--config={path} --workdir={workdir} --seeds=2 --parallel=2" in markdown
  for name in (report.RUNS_CSV, plots.CURVES_PNG, plots.BARS_PNG):
    assert (workdir / name).stat().st_size > 0

  # A run that died after its step-2 checkpoint: the same sweep again resumes it (and only it),
  # and it ends exactly as it did uninterrupted.
  interrupted = workdir / "random" / "seed1"
  shutil.rmtree(interrupted / "checkpoints" / "4")
  (interrupted / metrics_log.FINAL_FILE).unlink()
  runs = plan.make_runs(plan.load_variants(path), [0, 1], str(workdir), path)
  monkeypatch.setenv("XLA_FLAGS", ONE_DEVICE)  # The device layout of the first time.
  messages = []
  failed, _ = runner.run_local(runs, parallel=2, report=messages.append)  # On one core again.
  assert not failed and sum(m.startswith("skip") for m in messages) == 3
  resumed = json.loads((interrupted / metrics_log.FINAL_FILE).read_text())
  exact = lambda final: {k: v for k, v in final["metrics"].items() if not k.startswith("perf/")}
  assert exact(resumed) == exact(finals["random", 1]) and resumed["step"] == 4
  assert "Resuming from step 2" in (interrupted / "log.txt").read_text()

  # lm.generate's path samples from the run.
  model_cfg, params, tokenizer = checkpoints.load_for_inference(str(interrupted))
  assert model_cfg.architecture == "lstm"
  text, = sampling.generate_text(model_cfg, params, tokenizer, ["ROMEO:"], max_new_tokens=24,
                                 temperature=0.8, top_k=0, top_p=1.0, seed=0)
  assert text.startswith("ROMEO:") and len(text) > len("ROMEO:")


def test_folds_run_every_fold_and_aggregate_over_folds_and_seeds(tmp_path):
  variants = [plan.Variant("a", {}), plan.Variant("b", {"model.norm": "rmsnorm"})]
  runs = plan.make_runs(variants, [0, 1], str(tmp_path), "exp.py", folds=3)
  assert [r.name for r in runs[:4]] == ["a/seed0/fold0", "a/seed0/fold1", "a/seed0/fold2",
                                        "b/seed0/fold0"]
  assert runs[4].main_args()[-3:] == ["--config.model.norm=rmsnorm", "--config.data.folds=3",
                                      "--config.data.fold=1"]
  assert runs[4].workdir == str(tmp_path / "b" / "seed0" / "fold1")
  with pytest.raises(UserError, match="--folds=3 and config.data.fold in variant 'c'"):
    plan.make_runs([plan.Variant("c", {"data.fold": 1})], [0], "DIR", "exp.py", folds=3)
  with pytest.raises(UserError, match="--folds=1: must be >= 2"):
    plan.make_runs(variants, [0], "DIR", "exp.py", folds=1)
  rng = np.random.default_rng(0)
  accuracy = {}
  for run in runs:
    accuracy[run.name] = float(rng.uniform(0.6, 0.9))
    fake_finished_run(run, {"eval/accuracy": accuracy[run.name]}, losses=[1.0, 0.9])
  results = report.summarize_variants(variants, [outcome.read_outcome(r) for r in runs])
  values = np.array([accuracy[f"b/seed{s}/fold{f}"] for s in (0, 1) for f in range(3)])
  summary = results[1].summaries["eval/accuracy"]
  half = scipy_stats.t.ppf(0.975, df=5) * np.std(values, ddof=1) / np.sqrt(6)
  assert (summary.n, summary.mean, summary.std) == (6, pytest.approx(values.mean()),
                                                    pytest.approx(np.std(values, ddof=1)))
  assert summary.ci95 == pytest.approx(half)
  report.write_markdown(str(tmp_path), results, "eval/accuracy", [0, 1], "python -m lm.sweep",
                        [], folds=3)
  markdown = (tmp_path / report.RESULTS_MD).read_text()
  assert "(2 per variant x 3 folds of cross-validation)" in markdown
  assert "over seeds and folds" in markdown
  report.write_runs_csv(str(tmp_path), [outcome.read_outcome(r) for r in runs], "eval/accuracy")
  with open(tmp_path / report.RUNS_CSV, encoding="utf-8") as f:
    assert [row["fold"] for row in csv.DictReader(f)][:4] == ["0", "1", "2", "0"]
