"""lm.sweep passes the command line's --config.KEY=VALUE overrides to every run."""

import pytest

from lm.errors import UserError
from lm.sweep import plan
from tests.test_sweep import run_sweep_cli, write_experiment


def test_overrides_reach_every_run_typed_by_their_defaults(tmp_path):
  path = write_experiment(tmp_path, '[{"name": "rms", "model.norm": "rmsnorm"}, {}]')
  variants = plan.load_variants(path, {"train.steps": "7", "train.warmup_steps": "1",
                                       "model.use_bias": "false"})
  assert [v.name for v in variants] == ["rms", "baseline"]  # Names from the variants alone.
  assert variants[0].common == {"train.steps": 7, "train.warmup_steps": 1, "model.use_bias": False}
  run, = plan.make_runs(variants[:1], [0], "DIR", path)
  assert run.main_args()[-4:] == ["--config.train.steps=7", "--config.train.warmup_steps=1",
                                  "--config.model.use_bias=False", "--config.model.norm=rmsnorm"]


@pytest.mark.parametrize("overrides, message", [
    ({"train.stpes": "7"}, "--config.train.stpes: unknown config key"),
    ({"train.steps": "seven"}, "--config.train.steps=seven: must be a int"),
    ({"model.norm": "layernorm"}, "--config.model.norm: sweep() variant 1 of "),
])
def test_bad_overrides(tmp_path, overrides, message):
  path = write_experiment(tmp_path, '[{"name": "rms", "model.norm": "rmsnorm"}, {}]')
  with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
    plan.load_variants(path, overrides)


def test_cli_takes_overrides(tmp_path):
  path = write_experiment(tmp_path, '[{"name": "a"}, {"name": "b", "model.norm": "rmsnorm"}]')
  printed = run_sweep_cli(f"--config={path}", f"--workdir={tmp_path / 'sweep'}", "--seeds=1",
                          "--launcher=print", "--config.train.steps=9", "--config.train.log_every",
                          "3")
  assert printed.returncode == 0, printed.stderr
  lines = printed.stdout.splitlines()
  assert len(lines) == 2
  assert all("--config.train.steps=9 --config.train.log_every=3" in line for line in lines)
