"""Sentence-pair classification: BERT's [CLS] a [SEP] b [SEP] layout with token types, logits
equal to transformers' BertForSequenceClassification, longest-first truncation, training."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from lm.convert.importer import import_hf
from lm.data import buckets, examples, tokenizers
from lm.data.labels import LabelSet
from lm.data.reader import Record
from lm.models.transformer import Transformer
from lm.training import checkpoints, steps, trainer
from tests.test_convert import TOLERANCE, bert_config, randomized, save_hf

PAIRS = [("w1 w2 w3", "w4 w5"), ("w6", "w7 w8 w9 w10 w11"), ("w12 w13", "w14")]


def record(a, b, label="0"):
  return Record({"text": a, "text_pair": b, "label": label}, "test")


def test_pair_logits_match_bert_for_sequence_classification(tmp_path):
  model = randomized(transformers.BertForSequenceClassification(bert_config(num_labels=3)))
  source = save_hf(model, tmp_path / "hf")
  import_hf(source, str(tmp_path / "run"))
  cfg, params, tokenizer = checkpoints.load_for_inference(str(tmp_path / "run"))
  cfg = cfg.replace(num_classes=3, pooling="cls", pooler=True)
  params = dict(params)
  params["classifier"] = {
      "kernel": jnp.asarray(model.classifier.weight.detach().numpy().T),
      "bias": jnp.asarray(model.classifier.bias.detach().numpy()),
  }
  data = examples.classification_examples([record(a, b) for a, b in PAIRS], tokenizer, None,
                                          max_len=32, causal=False)
  ids = tokenizer.special_ids
  first = data.tokens[0]
  # [CLS] w1 w2 w3 [SEP] w4 w5 [SEP]; segment B (w4 w5 [SEP]) has token type 1.
  assert first[0] == ids.cls and first[4] == ids.sep and first[-1] == ids.sep
  assert data.token_types[0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
  batch = buckets.classification_batch(data, np.arange(3), np.ones(3), (16,))
  ours = np.asarray(steps.batch_logits(Transformer(cfg).apply, params,
                                       {k: jnp.asarray(v) for k, v in batch.items()}))
  with torch.no_grad():
    theirs = model(torch.tensor(batch["inputs"], dtype=torch.long),
                   attention_mask=torch.tensor(batch["segment_ids"]),
                   token_type_ids=torch.tensor(batch["token_types"], dtype=torch.long)).logits
  np.testing.assert_allclose(ours, theirs.numpy(), atol=TOLERANCE, rtol=0)
  # Token types matter: all zeros gives other logits.
  batch.pop("token_types")
  without = np.asarray(steps.batch_logits(Transformer(cfg).apply, params,
                                          {k: jnp.asarray(v) for k, v in batch.items()}))
  assert np.abs(without - ours).max() > 1e-3


@pytest.mark.parametrize("len_a, len_b, budget, expected", [
    (10, 3, 8, (5, 3)),  # The longer text is cut to fit.
    (6, 6, 8, (4, 4)),
    (6, 5, 8, (4, 4)),
    (5, 6, 8, (4, 4)),
    (5, 5, 7, (4, 3)),  # On a tie the second text loses first.
    (2, 9, 8, (2, 6)),
    (3, 3, 8, (3, 3)),
])
def test_truncation_is_longest_first(len_a, len_b, budget, expected):
  a, b = examples.truncate_longest_first(np.arange(len_a), np.arange(len_b), budget)
  assert (len(a), len(b)) == expected
  np.testing.assert_array_equal(a, np.arange(expected[0]))  # Cut from the end.
  # The same as transformers' slow truncation loop ('longest_first').
  x, y = list(range(len_a)), list(range(len_b))
  for _ in range(max(0, len_a + len_b - budget)):
    if len(x) > len(y):
      x.pop()
    else:
      y.pop()
  assert (len(x), len(y)) == expected


def test_own_tokenizer_pairs_use_the_separator():
  tokenizer = tokenizers.build_tokenizer("char", ["ab cd"], byte_fallback=False)
  ids = tokenizer.special_ids
  for causal, expected in ((False, [ids.cls, "a", "b", ids.sep, "c", "d", ids.sep]),
                           (True, ["a", "b", ids.sep, "c", "d", ids.eos])):
    data = examples.classification_examples([record("ab", "cd")], tokenizer,
                                            LabelSet(["0", "1"]), max_len=16, causal=causal)
    want = [t if isinstance(t, int) else tokenizer.encode(t)[0] for t in expected]
    assert data.tokens[0].tolist() == want
    assert data.token_types[0].tolist() == [0] * (len(want) - 3) + [1] * 3


def test_pair_classifier_trains_and_predicts(tmp_path):
  """The label is in the second text only: a classifier that did not read it scores ~50%."""
  rng = np.random.default_rng(0)
  rows = [{"s1": str(rng.choice(["one", "two", "six"])), "s2": str(rng.choice(["red", "blue"]))}
          for _ in range(200)]
  for row in rows:
    row["label"] = "warm" if row["s2"] == "red" else "cold"
  path = tmp_path / "pairs.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
  from lm import defaults  # pylint: disable=g-import-not-at-top
  from lm.experiment_args import shrink_to_smoke  # pylint: disable=g-import-not-at-top
  config = defaults.base_config()
  config.task.kind = "classification"
  config.model.causal = False
  config.data.update(source=str(path), text_field="s1", text_pair_field="s2",
                     tokenizer="char", byte_fallback=False, valid_fraction=0.2)
  shrink_to_smoke(config)
  config.train.update(steps=150, learning_rate=3e-3, warmup_steps=10, eval_every=150,
                      checkpoint_every=150, log_every=50, batch_size=16, sample_prompt="")
  final = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert final["eval/accuracy"] > 0.9
  from lm.tasks import classification_predict  # pylint: disable=g-import-not-at-top
  metrics = classification_predict.predict_file(str(tmp_path / "run"), str(path), str(tmp_path / "out.jsonl"),
                                 text_column="s1", label_column="label")
  assert metrics["eval/accuracy"] > 0.9
  first = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
  assert first["s1"] == rows[0]["s1"] and first["s2"] == rows[0]["s2"]  # The input's columns.
  assert first["input_label"] == rows[0]["label"]  # The gold label, beside the predicted one.
