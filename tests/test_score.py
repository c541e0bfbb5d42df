"""`lm.scoring` / `lm.score`: candidate log-likelihoods equal one full forward pass (decoders,
with and without the shared-prefix KV cache, and encoder–decoders), whatever the batching; and
the `fewshot` task: seeded demonstrations that never include the example classified,
evaluation of a causal LM and of an encoder–decoder without training."""

import csv
import json
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import multi30k, sst2_fewshot
from lm import config_checks, scoring
from lm.data import tokenizers
from lm.errors import UserError
from lm.models.architecture import make_model
from lm.models.config import ModelConfig
from lm.score_files import read_items
from lm.tasks import fewshot, registry
from lm.training import checkpoints, init_from, trainer
from tests.conftest import FIXTURES, REPO

SST2_TRAIN = FIXTURES / "sst2" / "train.tsv"
ITEMS = [("Once upon a time", [" there", " was a king", "!"]), ("ab", [" cd"]),
         ("The end", [" of it", " now"])]
SEQ2SEQ_TASK = {"kind": "seq2seq", "source_prefix": "", "source_bos": False,
                "decoder_start_id": -1}
# (architecture and model fields, the run's task): BOS first (sft), the scanned cache layout,
# the LSTM (whole sequences only) and T5's relative positions with the cross-attention cache.
FAMILIES = {
    "sft": ({}, {"kind": "sft"}),
    "causal_scanned_learned": ({"scan_layers": True, "positions": "learned"},
                               {"kind": "causal_lm"}),
    "lstm": ({"architecture": "lstm"}, {"kind": "causal_lm"}),
    "encoder_decoder": ({"architecture": "encoder_decoder", "positions": "relative"},
                        SEQ2SEQ_TASK),
}


def random_run(fields: dict, task: dict):
  """A scorer and random parameters (init_std 0.5: peaked distributions, so that a score read
  at a wrong position or token would differ clearly)."""
  tokenizer = tokenizers.ByteTokenizer()
  cfg = ModelConfig(vocab_size=tokenizer.vocab_size, num_layers=2, num_heads=2, embed_dim=32,
                    max_len=32, init_std=0.5, **fields)
  params = make_model(cfg).init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]
  if cfg.architecture == "lstm":  # Its recurrent kernels ignore init_std.
    params = jax.tree.map(lambda x: 4 * x, params)
  run_config = {"task": task, "model": {"max_len": cfg.max_len}}
  return scoring.Scorer(run_config, cfg, tokenizer), params


def full_forward_score(scorer, params, context: str, candidate: str) -> float:
  """log p(candidate | context) from one plain forward pass over the whole sequence."""
  model, tokenizer = make_model(scorer.model_config), scorer.tokenizer
  context_ids = registry.task_class(scorer.run_config["task"]["kind"]).generation_ids(
      scorer.run_config, tokenizer, context)
  candidate_ids = tokenizer.encode(candidate)
  if scorer.encoder_decoder:
    decoder_ids = [tokenizer.special_ids.bos, *candidate_ids[:-1]]
    logits = model.apply({"params": params}, jnp.array([context_ids]), jnp.array([decoder_ids]))
    rows = range(len(candidate_ids))
  else:
    logits = model.apply({"params": params}, jnp.array([context_ids + candidate_ids]))
    rows = range(len(context_ids) - 1, len(context_ids) + len(candidate_ids) - 1)
  log_probs = np.asarray(jax.nn.log_softmax(logits[0].astype(jnp.float32)), np.float64)
  return float(sum(log_probs[row, token] for row, token in zip(rows, candidate_ids)))


@pytest.mark.parametrize("family", FAMILIES)
def test_scores_equal_a_full_forward_pass_however_batched(family):
  scorer, params = random_run(*FAMILIES[family])
  if family == "sft":
    assert scorer.encode("ab", ["c"]).prefix[0] == scorer.tokenizer.special_ids.bos
  # Shared prefixes in chunks of 2 candidates (3 = 2 + 1), single candidates as rows; then
  # every candidate as a row, 4 a batch.
  shared = scorer.score(params, ITEMS, batch_size=2)
  rows = scorer.score(params, ITEMS, batch_size=4, share_prefix=False)
  for (context, candidates), shared_scores, row_scores in zip(ITEMS, shared, rows):
    for candidate, a, b in zip(candidates, shared_scores, row_scores):
      expected = full_forward_score(scorer, params, context, candidate)
      assert a.logprob_sum == pytest.approx(expected, rel=1e-5, abs=1e-4), candidate
      assert b.logprob_sum == pytest.approx(expected, rel=1e-5, abs=1e-4), candidate
      assert a.tokens == b.tokens == len(scorer.tokenizer.encode(candidate))
      assert a.logprob_mean == pytest.approx(a.logprob_sum / a.tokens)
      assert not a.truncated
  spread = np.std([s.logprob_mean for row in rows for s in row])
  assert spread > 0.5  # The comparison tells positions and tokens apart.


def test_a_long_context_loses_its_first_tokens():
  scorer, params = random_run(*FAMILIES["sft"])
  context = "x" * 20 + "the last words"  # [BOS] + 34 bytes; 32 - 4 fit with the candidate.
  (long,), = scorer.score(params, [(context, [" end"])])
  assert long.truncated and not scorer.fits(context, [" end"])
  kept = scorer.encode(context, [" end"]).prefix
  assert kept == scorer.tokenizer.encode(context)[-28:]
  (short,), = scorer.score(params, [("the last words", [" end"])])
  assert not short.truncated and short.logprob_sum != long.logprob_sum


@pytest.mark.parametrize("task, context, candidates, message", [
    ({"kind": "causal_lm"}, "", [" a"], "the context has no tokens"),
    ({"kind": "causal_lm"}, "a", [], "no candidates"),
    ({"kind": "causal_lm"}, "a", [" b", ""], "candidate 2 ('') has no tokens"),
    ({"kind": "causal_lm"}, "a", ["b" * 32], "a candidate of 32 tokens is too long"),
    (SEQ2SEQ_TASK, "a", ["b" * 33], "a candidate of 33 tokens is too long"),
])
def test_items_that_cannot_be_scored_are_refused_by_name(task, context, candidates, message):
  architecture = "encoder_decoder" if task["kind"] == "seq2seq" else "transformer"
  scorer = scoring.Scorer({"task": task, "model": {"max_len": 32}},
                          ModelConfig(vocab_size=263, max_len=32, architecture=architecture,
                                      positions="learned"), tokenizers.ByteTokenizer())
  scorer.encode("a", ["b" * (32 if architecture == "encoder_decoder" else 31)])  # Fits.
  with pytest.raises(UserError, match="^item 1: " + re.escape(message)):
    scorer.score({}, [(context, candidates)])


def test_a_run_without_token_probabilities_is_refused():
  with pytest.raises(UserError, match="config.task.kind='classification': its model gives no"):
    scoring.Scorer({"task": {"kind": "classification"}},
                   ModelConfig(vocab_size=263, num_classes=2), tokenizers.ByteTokenizer())


# --- Few-shot demonstrations -----------------------------------------------------------------


def test_demonstrations_are_seeded_and_never_the_example_classified():
  texts = ["a", "b", "c", "a", "d", "e", "a", "f", "g", "h"]
  sampler = fewshot.DemonstrationSampler(texts, seed=0)
  for index in range(50):
    chosen = sampler.choose("a", index, 4)
    assert len(set(chosen)) == 4 and not {0, 3, 6} & set(chosen)
    assert chosen == fewshot.DemonstrationSampler(texts, seed=0).choose("a", index, 4)
  choices = lambda seed: [fewshot.DemonstrationSampler(texts, seed).choose("a", i, 4)
                          for i in range(10)]
  assert choices(0) != choices(1)
  assert len(sampler.choose("a", 0, 100)) == 7  # All the other texts, no more.


def test_verbalizers_and_template_are_parsed():
  assert fewshot.parse_verbalizers("neg: bad|awful ,pos:good") == {"neg": ["bad", "awful"],
                                                                   "pos": ["good"]}
  assert fewshot.split_template("Q: {text}\nA:  {answer}.") == ("Q: {text}\nA:", "  ", ".")


@pytest.mark.parametrize("override, message", [
    ({"train.steps": 1, "train.warmup_steps": 0}, "evaluates config.init_from's model as it is"),
    ({"task.verbalizers": "0:terrible"}, "at least 2 labels"),
    ({"task.verbalizers": "0:terrible,0:great"}, "distinct labels"),
    ({"task.prompt_template": "{answer} {text}"}, "needs {text} once and then {answer}"),
    ({"task.shots": -1}, "must be >= 0"),
    ({"task.label_score": "sum"}, "choose one of max, mean"),
])
def test_fewshot_config_mistakes_are_refused(override, message):
  config = sst2_fewshot.get_config("fewshot,smoke")
  config.init_from = "runs/somewhere"
  for key, value in override.items():
    section, name = key.split(".")
    config[section][name] = value
  with pytest.raises(UserError, match=re.escape(message)):
    config_checks.validate_config(config)


# --- Trained runs: lm.score and the fewshot task ---------------------------------------------


@pytest.fixture(scope="module")
def causal_run(tmp_path_factory):
  """experiments/sst2_fewshot.py:smoke, the tiny causal LM (4 steps)."""
  workdir = str(tmp_path_factory.mktemp("causal") / "run")
  config = sst2_fewshot.get_config("smoke")
  config.model.max_len = 256  # Room for demonstrations.
  config.train.sample_prompt = ""
  trainer.train_and_evaluate(config, workdir)
  return workdir


def score_command(*args):
  return subprocess.run([sys.executable, "-m", "lm.score", *args], cwd=REPO,
                        capture_output=True, text=True, check=False, timeout=300)


def test_lm_score_writes_every_candidate_and_the_best(causal_run, tmp_path):
  items = [{"id": "a", "context": "a charming film", "candidates": [" great", " terrible"],
            "label": " great"},
           {"context": "it was", "candidates": [" fine"]},
           {"id": 3, "context": "dull", "candidates": [" yes", " no", " maybe"], "label": 1}]
  (tmp_path / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
  output = tmp_path / "out" / "scores.jsonl"
  result = score_command(f"--workdir={causal_run}", f"--input={tmp_path / 'items.jsonl'}",
                         f"--output={output}", "--batch_size=2")
  assert result.returncode == 0, result.stderr
  assert "accuracy of best (sum)" in result.stdout and "over 2 labeled items" in result.stdout
  lines = [json.loads(line) for line in output.read_text().splitlines()]
  config = checkpoints.load_config(causal_run)
  model_config, params, tokenizer = checkpoints.load_for_inference(causal_run)
  expected = scoring.Scorer(config, model_config, tokenizer).score(
      params, [(i["context"], i["candidates"]) for i in items], share_prefix=False)
  assert [line.get("id") for line in lines] == ["a", None, 3]
  assert lines[2]["label"] == 1 and "label" not in lines[1]
  for line, item, scores in zip(lines, items, expected):
    assert [c["text"] for c in line["candidates"]] == item["candidates"]
    for written, score in zip(line["candidates"], scores):
      assert written["logprob_sum"] == pytest.approx(score.logprob_sum, rel=1e-5)
      assert written["logprob_mean"] == pytest.approx(score.logprob_mean, rel=1e-5)
      assert written["tokens"] == score.tokens
    best = max(line["candidates"], key=lambda c: c["logprob_sum"])["text"]
    assert line["best"] == best and line["context_truncated"] is False


def test_lm_score_names_the_line_of_a_bad_item_and_writes_nothing(causal_run, tmp_path):
  path = tmp_path / "items.jsonl"
  path.write_text(json.dumps({"context": "a", "candidates": [" b"]}) + "\n" +
                  json.dumps({"context": "a", "candidates": " b"}) + "\n")
  output = tmp_path / "scores.jsonl"
  result = score_command(f"--workdir={causal_run}", f"--input={path}", f"--output={output}")
  assert result.returncode == 2 and not output.exists()
  assert result.stderr.strip().splitlines() == [
      f"error: {path}: line 2: 'candidates' must be a non-empty list of strings"]


@pytest.mark.parametrize("content, message", [
    ('{"candidates": [" b"]}\n', "line 1: 'context' must be a string, got nothing"),
    ('{"context": 3, "candidates": [" b"]}\n', "line 1: 'context' must be a string, got int"),
    ('{"context": "a", "candidates": []}\n', "line 1: 'candidates' must be a non-empty list"),
    ('{"context": "a", "candidates": [" b"], "label": " c"}\n', "line 1: 'label' ' c' is "
     "neither one of the candidates nor an index of one"),
    ('\n{"context": "a", "candidates": [" b"], "label": 1}\n', "line 2: 'label' 1 is neither"),
    ('{"context": "a"\n', "line 1: not valid JSON"),
    ("\n\n", "no items"),
])
def test_bad_input_files_are_refused_naming_the_line(tmp_path, content, message):
  path = tmp_path / "items.jsonl"
  path.write_text(content)
  with pytest.raises(UserError, match=re.escape(f"{path}: {message}")):
    read_items(str(path))


def fewshot_config(init_from: str, **task):
  """experiments/sst2_fewshot.py:fewshot,smoke on init_from's model (16 dev sentences)."""
  config = sst2_fewshot.get_config("fewshot,smoke")
  config.init_from = init_from
  config.task.update(task)
  return config


def test_fewshot_prompts_are_seeded_and_never_show_the_example(causal_run, tmp_path):
  """Classifying the training file itself: no prompt shows its own sentence (or a copy)."""
  with open(SST2_TRAIN, encoding="utf-8") as f:
    texts = {f"{SST2_TRAIN}: line {n}": row["sentence"].strip()
             for n, row in enumerate(csv.DictReader(f, delimiter="\t"), start=2)}

  def build(seed: int, name: str):
    config = fewshot_config(causal_run, shots=4, shot_seed=seed)
    config.data.valid_source = str(SST2_TRAIN)
    return registry.build_task(init_from.adopt_architecture(config), str(tmp_path / name), {})

  task = build(0, "a")
  assert len(task.examples) == len(texts)
  for example in task.examples:
    own = texts[example["where"]]
    assert all(texts[where] != own for where in example["demonstrations"])
    assert example["prompt"].endswith(own + " it was")
  assert np.mean([len(e["demonstrations"]) for e in task.examples]) > 1
  prompts = lambda t: [e["prompt"] for e in t.examples]
  assert prompts(build(0, "b")) == prompts(task)
  assert prompts(build(1, "c")) != prompts(task)


def test_fewshot_evaluates_a_causal_lm_without_training(causal_run, tmp_path):
  workdir = tmp_path / "eval"
  final = trainer.train_and_evaluate(fewshot_config(causal_run, shots=4), str(workdir))
  assert 0 <= final["eval/accuracy"] <= 1 and final["eval/loss"] > 0 and "eval/f1" in final
  assert 0 < final["eval/mean_shots"] <= 4
  report = json.loads((workdir / "eval_report.json").read_text())
  assert report["metrics"]["eval/accuracy"] == final["eval/accuracy"]
  assert report["num_examples"] == 16  # final_eval_batches=2 x eval_batch_size=8.
  lines = [json.loads(line) for line in (workdir / "eval_predictions.jsonl").open()]
  assert len(lines) == 16 and lines[0]["where"].endswith("dev.tsv: line 2")
  # The label scores are lm.scoring's of the prompt written.
  config = checkpoints.load_config(causal_run)
  model_config, params, tokenizer = checkpoints.load_for_inference(causal_run)
  terrible, great = scoring.Scorer(config, model_config, tokenizer).score(
      params, [(lines[0]["prompt"], [" terrible", " great"])])[0]
  assert lines[0]["scores"] == pytest.approx({"0": terrible.logprob_sum,
                                              "1": great.logprob_sum}, rel=1e-5)
  assert lines[0]["prediction"] == ("1" if great.logprob_sum > terrible.logprob_sum else "0")
  assert checkpoints.Checkpointer(str(workdir), read_only=True).latest_step() is None


def test_fewshot_scores_an_encoder_decoder_by_the_same_api(tmp_path):
  config = multi30k.get_config("cpu,smoke")
  config.data.tokenizer = "char"
  config.train.update(batch_size=8, eval_batch_size=8, eval_examples=4)
  trainer.train_and_evaluate(config, str(tmp_path / "seq2seq"))
  workdir = tmp_path / "eval"
  final = trainer.train_and_evaluate(fewshot_config(str(tmp_path / "seq2seq"), shots=2),
                                     str(workdir))
  assert 0 <= final["eval/accuracy"] <= 1 and final["eval/loss"] > 0
  first = json.loads((workdir / "eval_predictions.jsonl").open().readline())
  assert first["prompt"].endswith(" it was")
