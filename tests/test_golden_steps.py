"""Golden values: two training steps of every task kind from a fixed seed, pinned.

They were recorded before the task seam was redesigned (issue 22) and must not move when code
is reorganized: losses and gradient norms of steps 1 and 2 (from metrics.jsonl) and sums of a
few parameters after step 2 (from the checkpoint), on the 8 fake CPU devices of the suite.

A change that alters the numerics on purpose (a new initializer, another loss) updates them:
run `GOLDEN_PRINT=1 .venv/bin/python -m pytest -n0 tests/test_golden_steps.py -s`, paste the
printed dictionaries below, and say why in the commit message.
"""

import json
import os

import numpy as np
import pytest

from experiments import shakespeare_char, sst2
from lm import defaults
from lm.experiment_args import shrink_to_smoke
from lm.training import checkpoints, trainer
from tests.conftest import FIXTURES

# Relative tolerance: float32 sums over the same programs on the same device count agree to the
# last bits; 1e-6 allows for a different summation order of the float64 host-side sums only.
RTOL = 1e-6
# XLA's CPU kernels round differently on some CPUs (seen on an AVX-512 host, CI's included: the
# masked-LM token embeddings moved by a unit in the last place here and there, losses and
# gradient norms not at all). A signed sum can cancel to near zero, so such moves are bounded by
# float32's unit roundoff times the sum of the magnitudes (the matching abs: value), not by the
# sum itself.
FLOAT32_ROUNDOFF = 2.0**-24

GOLDEN = {
    "causal_lm": {
        "abs:block_0": 221.04849818515333,
        "abs:block_1": 219.62200841110212,
        "abs:final_norm": 31.995776176452637,
        "abs:token_embed": 36.141232477302765,
        "sum:block_0": 61.87118779573291,
        "sum:block_1": 62.432241509241294,
        "sum:final_norm": 31.995776176452637,
        "sum:token_embed": 0.7633905813181627,
        "train/grad_norm@1": 1.343614935874939,
        "train/grad_norm@2": 1.420647382736206,
        "train/loss@1": 4.264311790466309,
        "train/loss@2": 4.290105819702148,
    },
    "lstm": {
        "abs:lstm_0": 1157.4496079697637,
        "abs:lstm_1": 1155.7225449528287,
        "abs:token_embed": 36.23085940022247,
        "sum:lstm_0": -1.6714206749820733,
        "sum:lstm_1": -2.583937683104523,
        "sum:token_embed": 0.752772219833787,
        "train/grad_norm@1": 0.016766101121902466,
        "train/grad_norm@2": 0.016547726467251778,
        "train/loss@1": 4.276683807373047,
        "train/loss@2": 4.276679515838623,
    },
    "masked_lm": {
        "abs:block_0": 221.0845040434458,
        "abs:block_1": 219.59571004029465,
        "abs:final_norm": 32.005042016506195,
        "abs:token_embed": 159.01311660722376,
        "sum:block_0": 61.952332830658406,
        "sum:block_1": 62.42365743156677,
        "sum:final_norm": 32.005042016506195,
        "sum:token_embed": -0.31063161159818264,
        "train/grad_norm@1": 4.0200042724609375,
        "train/grad_norm@2": 3.762303590774536,
        "train/loss@1": 5.766061782836914,
        "train/loss@2": 5.692292213439941,
    },
    "classification": {
        "abs:block_0": 220.70155750053306,
        "abs:block_1": 219.44255910363972,
        "abs:classifier": 1.0715796982622123,
        "abs:final_norm": 31.999051988124847,
        "abs:token_embed": 158.8487799451899,
        "sum:block_0": 61.948741537489624,
        "sum:block_1": 62.43852116826383,
        "sum:classifier": 0.16092798086174298,
        "sum:final_norm": 31.999051988124847,
        "sum:token_embed": -0.9092142486812236,
        "train/grad_norm@1": 1.6117253303527832,
        "train/grad_norm@2": 1.3293272256851196,
        "train/loss@1": 0.7028554677963257,
        "train/loss@2": 0.6881246566772461,
    },
    "classification_lora_from_mlm": {
        "abs:block_0": 324.6177196773863,
        "abs:block_1": 330.6470881033837,
        "abs:classifier": 1.0712556020298507,
        "abs:final_norm": 32.005042016506195,
        "abs:token_embed": 159.01311660722376,
        "sum:block_0": 68.4756285746314,
        "sum:block_1": 61.72383005663559,
        "sum:classifier": 0.16092796921293484,
        "sum:final_norm": 32.005042016506195,
        "sum:token_embed": -0.31063161159818264,
        "train/grad_norm@1": 1.8773571252822876,
        "train/grad_norm@2": 1.5403331518173218,
        "train/loss@1": 0.7069159150123596,
        "train/loss@2": 0.6853207945823669,
    },
    "sft": {
        "abs:block_0": 220.63605385458425,
        "abs:block_1": 219.68056287183737,
        "abs:final_norm": 32.000201761722565,
        "abs:position_embed": 16.321458806184637,
        "abs:token_embed": 11.269473231746815,
        "sum:block_0": 61.95402707292476,
        "sum:block_1": 62.44166404404069,
        "sum:final_norm": 32.000201761722565,
        "sum:position_embed": -0.16273263022867468,
        "sum:token_embed": 0.9431731323129497,
        "train/grad_norm@1": 4.28523063659668,
        "train/grad_norm@2": 4.087749004364014,
        "train/loss@1": 3.1519856452941895,
        "train/loss@2": 3.0710525512695312,
    },
}


def _two_steps(config) -> None:
  config.train.update(steps=2, log_every=1, eval_every=2, checkpoint_every=2, eval_batches=1,
                      final_eval_batches=1, sample_prompt="", sample_tokens=0)
  config.seed = 0


def _observed(workdir: str) -> dict[str, float]:
  """train/loss and train/grad_norm of steps 1 and 2; after step 2, the sum and the sum of
  absolute values of each top-level parameter group."""
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
  values = {}
  for record in records:
    for key in ("train/loss", "train/grad_norm"):
      if key in record:
        values[f"{key}@{record['step']}"] = record[key]
  checkpointer = checkpoints.Checkpointer(workdir, read_only=True)
  params, _ = checkpointer.restore_params(checkpointer.latest_step())
  checkpointer.close()
  for group in sorted(params):  # token_embed, block_0, ..., classifier
    leaves = [np.asarray(x, np.float64) for x in _flat(params[group]).values()]
    values[f"sum:{group}"] = float(sum(np.sum(x) for x in leaves))
    values[f"abs:{group}"] = float(sum(np.sum(np.abs(x)) for x in leaves))
  return values


def _flat(params, prefix=""):
  if not isinstance(params, dict):
    return {prefix: params}
  out = {}
  for key, value in params.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(_flat(value, name + "/"))
    else:
      out[name] = value
  return out


def _check(kind: str, observed: dict[str, float]) -> None:
  if os.environ.get("GOLDEN_PRINT"):
    print(f"\n    {kind!r}: {json.dumps(observed, indent=8, sort_keys=True)},")
    return
  expected = GOLDEN[kind]
  message = (f"{kind}: golden values moved; if on purpose, update GOLDEN (see the module "
             f"docstring). Observed: {json.dumps(observed, sort_keys=True)}")
  assert sorted(observed) == sorted(expected), message
  for key, value in expected.items():
    scale = expected.get("abs:" + key[4:], 0.0) if key.startswith("sum:") else 0.0
    tolerance = max(1e-9, FLOAT32_ROUNDOFF * scale)
    assert observed[key] == pytest.approx(value, rel=RTOL, abs=tolerance), f"{key}; {message}"


@pytest.fixture(scope="module")
def sst2_files(tmp_path_factory):
  """200 training and 40 validation rows of the real SST-2 train split."""
  with open(FIXTURES / "sst2" / "train.tsv", encoding="utf-8") as f:
    lines = f.readlines()[:241]
  directory = tmp_path_factory.mktemp("golden_sst2")
  for name, part in (("train", lines[1:201]), ("valid", lines[201:241])):
    (directory / f"{name}.tsv").write_text(lines[0] + "".join(part), encoding="utf-8")
  return {name: str(directory / f"{name}.tsv") for name in ("train", "valid")}


def _sst2_config(stage: str, sst2_files) -> object:
  config = sst2.get_config(f"{stage},smoke")
  config.data.tokenizer = "char"
  config.data.source = sst2_files["train"]
  if stage != "pretrain":
    config.data.valid_source = sst2_files["valid"]
  _two_steps(config)
  return config


@pytest.fixture(scope="module")
def masked_lm_run(sst2_files, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("golden_mlm"))
  trainer.train_and_evaluate(_sst2_config("pretrain", sst2_files), workdir)
  return workdir


def test_causal_lm(tmp_path):
  config = shakespeare_char.get_config("cpu,smoke")
  _two_steps(config)
  trainer.train_and_evaluate(config, str(tmp_path))
  _check("causal_lm", _observed(str(tmp_path)))


def test_lstm(tmp_path):
  config = shakespeare_char.get_config("cpu,smoke")
  config.model.architecture = "lstm"
  _two_steps(config)
  trainer.train_and_evaluate(config, str(tmp_path))
  _check("lstm", _observed(str(tmp_path)))


def test_masked_lm(masked_lm_run):
  _check("masked_lm", _observed(masked_lm_run))


def test_classification(tmp_path, sst2_files):
  trainer.train_and_evaluate(_sst2_config("no_pretrain", sst2_files), str(tmp_path))
  _check("classification", _observed(str(tmp_path)))


def test_classification_lora_from_mlm(tmp_path, sst2_files, masked_lm_run):
  config = _sst2_config("finetune", sst2_files)
  config.init_from = masked_lm_run
  config.finetune.method = "lora"
  trainer.train_and_evaluate(config, str(tmp_path))
  _check("classification_lora_from_mlm", _observed(str(tmp_path)))


def test_sft(tmp_path):
  pairs = [{"prompt": f"{a} plus {b} is ", "response": str(a + b)} for a in range(8)
           for b in range(8)]
  path = tmp_path / "pairs.jsonl"
  path.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
  config = defaults.base_config()
  config.task.kind = "sft"
  config.data.source = str(path)
  config.data.valid_fraction = 0.1
  config.data.byte_fallback = False
  shrink_to_smoke(config)
  config.model.max_len = 32
  _two_steps(config)
  trainer.train_and_evaluate(config, str(tmp_path / "run"))
  _check("sft", _observed(str(tmp_path / "run")))
