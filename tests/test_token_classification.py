"""Token classification: sub-word alignment, windows, the loss, training, lm.predict, errors."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import sst2, wnut17
from lm.data import tagged, tokenizers
from lm.errors import UserError
from lm.evaluation import entity_metrics
from lm.tasks import token_classification as tc
from lm.training import checkpoints, trainer
from tests.conftest import FIXTURES, REPO
from tests.test_finetune import run_main
from tests.test_main_cli import assert_clear_error
from tests.test_tagged import ner_f1

WNUT_DEV = FIXTURES / "wnut17" / "emerging.dev.conll"
WNUT_TRAIN = FIXTURES / "wnut17" / "wnut17train.conll"
WEIBO_DEV = FIXTURES / "weibo-ner" / "weiboNER_2nd_conll.dev"


def char_tokenizer(texts):
  return tokenizers.build_tokenizer("char", texts, byte_fallback=False)


def first_sentences(path, count, target):
  """The first `count` sentences of a CoNLL file, written to `target`."""
  blocks = path.read_text(encoding="utf-8").split("\n\n")[:count]
  target.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
  return str(target)


@pytest.fixture(scope="module")
def wnut_small(tmp_path_factory):
  directory = tmp_path_factory.mktemp("wnut")
  return {
      "train": first_sentences(WNUT_TRAIN, 120, directory / "train.conll"),
      "dev": first_sentences(WNUT_DEV, 40, directory / "dev.conll"),
      "dir": directory,
  }


def smoke_config(wnut_small, **overrides):
  config = wnut17.get_config("scratch,smoke")
  config.data.source = wnut_small["train"]
  config.data.valid_source = wnut_small["dev"]
  config.data.tokenizer = "char"
  for key, value in overrides.items():
    section, name = key.split("__")
    config[section][name] = value
  return config


@pytest.mark.parametrize("causal", [False, True])
def test_only_first_pieces_carry_labels(causal):
  words = [("Redondo", "Beach", "Blvd", "."), ("a",)]
  tokenizer = char_tokenizer(["".join(w) for w in words])
  tag_ids = [np.array([1, 2, 2, 0], np.int32), np.array([0], np.int32)]
  windows = tc.encode_windows(words, tag_ids, tokenizer, max_len=32, causal=causal)
  tokens, targets, weights = windows.tokens[0], windows.targets[0], windows.weights[0]
  # Characters are pieces: word starts at 0, 7, 12, 16 after the optional [CLS].
  offset = 0 if causal else 1
  starts = np.array([0, 7, 12, 16]) + offset
  assert np.flatnonzero(weights).tolist() == starts.tolist()
  assert targets[starts].tolist() == [1, 2, 2, 0]
  assert np.count_nonzero(targets) == 3
  assert len(tokens) == 17 + (1 if causal else 2)


def test_loss_gradient_is_zero_off_first_pieces_and_padding():
  words = [("Redondo", "Beach"), ("Gardena",), ("on", "it")]
  tokenizer = char_tokenizer(["".join(w) for w in words])
  tag_ids = [np.array([1, 2]), np.array([1]), np.array([0, 0])]
  windows = tc.encode_windows(words, [t.astype(np.int32) for t in tag_ids], tokenizer, max_len=32,
                              causal=False)
  batch = tc.windows_batch(windows, np.arange(3), np.ones(3), (16, 32))
  task = tc.TokenClassificationTask.__new__(tc.TokenClassificationTask)
  task.config = wnut17.get_config("scratch,smoke")  # loss_fn reads config.distill.
  logits = jax.random.normal(jax.random.key(0), batch["inputs"].shape + (3,))

  def total(logits):  # As steps.train_step weighs the per-item loss.
    return jnp.sum(task.loss_fn(logits, batch) * batch["weights"])

  grad_norm_BxL = np.abs(np.asarray(jax.grad(total)(logits))).sum(-1)
  assert set(np.flatnonzero(grad_norm_BxL.reshape(-1) > 0)) == set(
      np.flatnonzero(batch["weights"].reshape(-1)))
  assert batch["weights"].sum() == 5  # One per word.


def test_long_sentences_split_into_windows_and_map_back_exactly(tmp_path):
  """Round trip on the dev files (tests/fixtures): windows of a short context cover every word once;
  tags placed at first pieces come back as the gold tags of every word, and the written file
  equals the input."""
  for path in (WNUT_DEV, WEIBO_DEV):
    found = tagged.read_tagged(str(path), position_digits="drop")
    gold, _ = entity_metrics.check_tags([s.tags for s in found.sentences], scheme="iob2",
                                        strict=False, where_of=found.where)
    names = [entity_metrics.OUTSIDE] + sorted({t for s in gold for t in s} - {"O"})
    labels = tc.LabelSet(names)
    ids = tc.tag_ids(labels, gold, found)
    tokenizer = char_tokenizer([" ".join(s.tokens) for s in found.sentences])
    windows = tc.encode_windows([s.tokens for s in found.sentences], ids, tokenizer, max_len=24,
                                causal=False)
    # The short context splits many sentences (> 50 of the full files; a tenth of the slices).
    assert windows.num_split > 0.1 * len(found.sentences)
    one_hot = [np.eye(len(names), dtype=np.float32)[t] for t in windows.targets]
    lengths = [len(s.tokens) for s in found.sentences]
    per_word = tc.word_probs(windows, one_hot, lengths)
    predicted = [[names[i] for i in p.argmax(-1)] for p in per_word]
    assert predicted == gold
    out = tmp_path / path.name
    tagged.write_predictions(found, predicted, str(out))
    if path == WNUT_DEV:  # IOB2 already: the file comes back byte for byte.
      assert out.read_bytes() == path.read_bytes()


def test_train_predict_and_score_agree(tmp_path, wnut_small):
  """A smoke run's final eval/f1 equals lm.predict's on the same file and seqeval's on the files;
  the pmap layout evaluates the same tags."""
  workdir = str(tmp_path / "run")
  final = trainer.train_and_evaluate(smoke_config(wnut_small, model__dropout=0.0), workdir)
  report = json.loads((tmp_path / "run" / "eval_report.json").read_text())
  assert report["micro"]["f1"] == pytest.approx(final["best/f1"])
  output = tmp_path / "dev.pred.conll"
  result = run_predict(workdir, wnut_small["dev"], str(output))
  assert result.returncode == 0, result.stderr
  metrics = json.loads((tmp_path / "dev.pred.conll.metrics.json").read_text())
  assert ner_f1(wnut_small["dev"], output) == pytest.approx(100 * metrics["micro"]["f1"])
  # The same run under jax.pmap: the same training and evaluation, up to float rounding.
  pmapped = trainer.train_and_evaluate(
      smoke_config(wnut_small, model__dropout=0.0, mesh__use_pmap=True), str(tmp_path / "pmap"))
  assert pmapped["eval/loss"] == pytest.approx(final["eval/loss"], rel=1e-4)
  assert pmapped["eval/f1"] == pytest.approx(final["eval/f1"], abs=1e-6)


def run_predict(workdir, input_path, output_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  return subprocess.run([
      sys.executable, "-m", "lm.predict", f"--workdir={workdir}", f"--input={input_path}",
      f"--output={output_path}", "--checkpoint=best"
  ], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_init_from_masked_lm_into_token_classification(tmp_path, wnut_small):
  """A masked-LM encoder fine-tunes as a tagger: with a linear probe its blocks stay exactly the
  pretrained ones and only the new classifier trains."""
  pretrain = sst2.get_config("pretrain,smoke")
  pretrain.data.tokenizer = "char"
  pretrain.data.source = wnut_small["train"]
  pretrain.data.txt_unit = "line"
  pretrained = str(tmp_path / "mlm")
  trainer.train_and_evaluate(pretrain, pretrained)
  config = smoke_config(wnut_small)
  config.model.update(positions=pretrain.model.positions, mlp=pretrain.model.mlp)
  config.init_from = pretrained
  config.finetune.method = "linear_probe"
  workdir = str(tmp_path / "ner")
  trainer.train_and_evaluate(config, workdir)
  _, base, _ = checkpoints.load_for_inference(pretrained)
  cfg, tuned, _ = checkpoints.load_for_inference(workdir)
  assert cfg.num_classes == 13 and cfg.pooling == "none"
  for name in ("token_embed", "block_0", "block_1"):
    for a, b in zip(jax.tree.leaves(base[name]), jax.tree.leaves(tuned[name])):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert "classifier" in tuned and "classifier" not in base


def write(path, text):
  path.write_text(text, encoding="utf-8")
  return str(path)


@pytest.mark.parametrize("train_text, overrides, fragments", [
    ("a\tO\nb\tB-x\tz\n", {}, ["train.conll: line 2", "3 columns"]),
    ("a\tO\nb\tI-x\n\nc\tB-y\n", {"task__strict_tags": True}, ["train.conll: line 2", "I-x"]),
    ("a\tO\nb\tB-x\n\nc\tB-y\n", {"data__labels": "O,B-x"}, ["train.conll: line 4", "B-y"]),
])
def test_bad_tagged_files_get_one_clear_error(tmp_path, wnut_small, train_text, overrides,
                                               fragments):
  source = write(tmp_path / "train.conll", train_text * 3)
  config = smoke_config(wnut_small, data__source=source, **overrides)
  workdir = tmp_path / "run"
  with pytest.raises(UserError) as error:
    trainer.train_and_evaluate(config, str(workdir))
  for fragment in fragments:
    assert fragment in str(error.value)
  # Nothing written that a corrected rerun would pick up.
  assert not (workdir / "checkpoints").exists() and not (workdir / "labels.json").exists()


def test_jsonl_length_mismatch_is_one_error_line(tmp_path, wnut_small):
  source = write(tmp_path / "train.jsonl", '{"tokens": ["a", "b"], "tags": ["O", "O"]}\n'
                 '{"tokens": ["a", "b"], "tags": ["O"]}\n')
  result = run_main("--config=experiments/wnut17.py:scratch,smoke", f"--workdir={tmp_path / 'r'}",
                    f"--config.data.source={source}", f"--config.data.valid_source={source}")
  assert_clear_error(result, "train.jsonl: line 2")
  assert not (tmp_path / "r" / "checkpoints").exists()


def test_repaired_tags_are_counted_and_reported(tmp_path, wnut_small):
  source = write(tmp_path / "train.conll", "a\tO\nb\tI-x\n\nc\tB-y\nd\tI-y\n\n" * 4)
  config = smoke_config(wnut_small, data__source=source, data__valid_source=source)
  trainer.train_and_evaluate(config, str(tmp_path / "run"))
  report = json.loads((tmp_path / "run" / "eval_report.json").read_text())
  assert report["repaired_tags"] == {"train": 4, "validation": 4}
  labels = json.loads((tmp_path / "run" / "labels.json").read_text())["labels"]
  assert labels == ["O", "B-x", "B-y", "I-y"]  # I-x after O was read as B-x.


@pytest.mark.parametrize("digits, pieces_per_word", [("drop", 1), ("keep", 2)])
def test_weibo_position_digits(tmp_path, digits, pieces_per_word):
  """Weibo NER's tokens are a character and its position digit: 'drop' reads one character
  per token (one piece per word with the char tokenizer), 'keep' both."""
  source = first_sentences(WEIBO_DEV, 30, tmp_path / "weibo.conll")
  config = wnut17.get_config("scratch,smoke")
  config.data.update(source=source, valid_source=source, tokenizer="char",
                     position_digits=digits)
  config.model.max_len = 512
  task = tc.TokenClassificationTask(config, str(tmp_path), {})
  words = sum(int(w.sum()) for w in task.train.weights)
  pieces = sum(len(t) - 2 for t in task.train.tokens)  # Less [CLS] and [SEP].
  # A few tokens of the file are two characters (or a character with a two-digit position).
  assert pieces == pytest.approx(pieces_per_word * words, rel=0.02)


def test_segment_positions_train_softword_types_from_a_pretrained_encoder(tmp_path):
  """position_digits='segment': each window's token types are its characters' places in their
  words (0 at the specials); from a masked-LM checkpoint without token types, the type
  embeddings start fresh and train, and lm.predict reads the positions of its input too."""
  source = first_sentences(WEIBO_DEV, 40, tmp_path / "weibo.conll")
  found = tagged.read_tagged(source, position_digits="segment")
  pretrain = sst2.get_config("pretrain,smoke")
  pretrain.data.update(tokenizer="char", txt_unit="line")
  pretrain.data.source = str(tmp_path / "weibo.txt")
  (tmp_path / "weibo.txt").write_text("\n".join("".join(s.tokens) for s in found.sentences))
  pretrained = str(tmp_path / "mlm")
  trainer.train_and_evaluate(pretrain, pretrained)
  config = wnut17.get_config("scratch,smoke")
  config.data.update(source=source, valid_source=source, position_digits="segment")
  config.model.update(positions=pretrain.model.positions, mlp=pretrain.model.mlp)
  config.init_from = pretrained
  workdir = str(tmp_path / "ner")
  task = tc.TokenClassificationTask(config, str(tmp_path / "probe"), {})
  for i, types in enumerate(task.train.token_types):
    s, first = task.train.sentence[i], task.train.first_word[i]
    expected = tagged.softword_types(found.sentences[s].positions)[first:first + len(types) - 2]
    assert types.tolist() == [0] + expected + [0]
  trainer.train_and_evaluate(config, workdir)
  cfg, tuned, _ = checkpoints.load_for_inference(workdir)
  _, base, _ = checkpoints.load_for_inference(pretrained)
  assert cfg.type_vocab_size == len(tagged.SOFTWORD_TYPES) and "type_embed" not in base
  assert tuned["type_embed"]["embedding"].shape == (5, cfg.embed_dim)
  result = run_predict(workdir, source, str(tmp_path / "pred.conll"))
  assert result.returncode == 0, result.stderr
  assert len((tmp_path / "pred.conll").read_text().splitlines()) == len(
      open(source, encoding="utf-8").read().splitlines())


def _changed_modules(before, after, prefix=""):
  """'/'-joined paths of the leaves that differ."""
  changed = set()
  for key in before:
    if isinstance(before[key], dict):
      changed |= _changed_modules(before[key], after[key], f"{prefix}{key}/")
    elif not np.array_equal(np.asarray(before[key]), np.asarray(after[key])):
      changed.add(prefix + key)
  return changed


@pytest.mark.parametrize("causal, finetune, expected", [
    # A decoder backbone (each word's tag from the words up to it): everything trains.
    (True, {}, {"token_embed", "block_0", "block_1", "final_norm", "classifier"}),
    (False, {"method": "lora", "lora_rank": 2}, {"lora", "classifier"}),
    (False, {"freeze_embeddings": True, "freeze_layers": 1}, {"block_1", "final_norm",
                                                              "classifier"}),
])
def test_taggers_train_on_decoders_and_with_lora_or_frozen_layers(tmp_path, wnut_small, causal,
                                                                 finetune, expected):
  config = smoke_config(wnut_small, model__causal=causal, train__steps=2,
                        train__checkpoint_every=1, train__keep_checkpoints=2)
  config.finetune.update(finetune)
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(config, workdir)
  checkpointer = checkpoints.Checkpointer(workdir, read_only=True)
  (one, _), (two, _) = checkpointer.restore_params(1), checkpointer.restore_params(2)
  checkpointer.close()
  changed = _changed_modules(one, two)
  groups = {path.split("/")[0] if "lora_" not in path else "lora" for path in changed}
  assert groups == expected, sorted(changed)
