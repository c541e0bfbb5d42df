"""Tests for lm.data.examples and lm.data.buckets: token layouts, bucketing, batch contents."""

import numpy as np
import pytest

from lm.data import buckets as buckets_lib
from lm.data.buckets import (BucketedBatches, bucket_lengths, classification_batch, eval_order,
                             sft_batch)
from lm.data.examples import classification_examples, sft_examples
from lm.data.labels import LabelSet
from lm.data.reader import Record
from lm.data.tokenizer_base import BOS_ID, CLS_ID, EOS_ID, NUM_SPECIAL, PAD_ID, SEP_ID
from lm.data.tokenizers import ByteTokenizer
from lm.errors import UserError

TOKENIZER = ByteTokenizer()
LABELS = LabelSet(["neg", "pos"])


def _ids(text):
  return [b + NUM_SPECIAL for b in text.encode()]


def _records(*pairs):
  return [Record({"text": text, "label": label}, f"t.tsv: line {i + 2}")
          for i, (text, label) in enumerate(pairs)]


# --- classification_examples --------------------------------------------------------------------


def test_encoder_and_decoder_layouts_and_labels():
  records = _records(("ab", "pos"), ("c", "neg"))
  encoder = classification_examples(records, TOKENIZER, LABELS, max_len=16, causal=False)
  assert [t.tolist() for t in encoder.tokens] == [[CLS_ID, *_ids("ab"), SEP_ID],
                                                  [CLS_ID, *_ids("c"), SEP_ID]]
  assert encoder.labels.tolist() == [1, 0] and encoder.labels.dtype == np.int32
  assert encoder.tokens[0].dtype == np.int32
  decoder = classification_examples(records, TOKENIZER, LABELS, max_len=16, causal=True)
  assert [t.tolist() for t in decoder.tokens] == [[*_ids("ab"), EOS_ID], [*_ids("c"), EOS_ID]]
  assert decoder.lengths.tolist() == [3, 2] and decoder.num_truncated == 0


def test_truncation_keeps_special_tokens():
  records = _records(("abcdefgh", "pos"), ("ab", "neg"))
  encoder = classification_examples(records, TOKENIZER, LABELS, max_len=5, causal=False)
  assert encoder.tokens[0].tolist() == [CLS_ID, *_ids("abc"), SEP_ID]
  decoder = classification_examples(records, TOKENIZER, LABELS, max_len=5, causal=True)
  assert decoder.tokens[0].tolist() == [*_ids("abcd"), EOS_ID]
  assert decoder.tokens[1].tolist() == [*_ids("ab"), EOS_ID]
  assert encoder.num_truncated == decoder.num_truncated == 1
  with pytest.raises(UserError, match=r"config.model.max_len must be an integer >= 3"):
    classification_examples(records, TOKENIZER, LABELS, max_len=2, causal=False)


def test_missing_labels_are_minus_one_and_bad_labels_name_the_line():
  records = [Record({"text": "x"}, "test.tsv: line 2")]
  assert classification_examples(records, TOKENIZER, LABELS, max_len=8,
                                 causal=True).labels.tolist() == [-1]
  assert classification_examples(_records(("x", "pos")), TOKENIZER, None, max_len=8,
                                 causal=True).labels.tolist() == [-1]
  with pytest.raises(UserError, match=r"^t.tsv: line 2: label 'maybe' is not one of neg, pos"):
    classification_examples(_records(("x", "maybe")), TOKENIZER, LABELS, max_len=8, causal=True)


# --- sft_examples -------------------------------------------------------------------------------


def _sft(prompt, response, max_len):
  record = Record({"prompt": prompt, "response": response}, "sft.jsonl: line 1")
  return sft_examples([record], TOKENIZER, max_len=max_len)[0]


def test_sft_layout_and_loss_mask():
  tokens, loss_mask = _sft("hi", "yo!", max_len=32)
  assert tokens.tolist() == [BOS_ID, *_ids("hi"), *_ids("yo!"), EOS_ID]
  assert loss_mask.tolist() == [False] * 3 + [True] * 4  # Response tokens and the EOS.
  assert tokens.dtype == np.int32 and loss_mask.dtype == bool


def test_sft_truncates_the_prompt_from_the_left_then_the_response_end():
  tokens, loss_mask = _sft("abcdef", "xy", max_len=6)  # len(tokens) - 1 <= 6.
  assert tokens.tolist() == [BOS_ID, *_ids("def"), *_ids("xy"), EOS_ID]
  assert loss_mask.sum() == 3
  tokens, loss_mask = _sft("abc", "uvwxyz", max_len=4)
  assert tokens.tolist() == [BOS_ID, *_ids("uvw"), EOS_ID]
  assert loss_mask.tolist() == [False, True, True, True, True]
  with pytest.raises(UserError, match=r"sft.jsonl: line 2: no response"):
    sft_examples([Record({"prompt": "p"}, "sft.jsonl: line 2")], TOKENIZER, max_len=8)


# --- bucket_lengths -----------------------------------------------------------------------------


def test_bucket_lengths():
  assert bucket_lengths(128) == (16, 32, 64, 128)
  assert bucket_lengths(100) == (16, 32, 64, 100)
  assert bucket_lengths(16) == (16,)
  assert bucket_lengths(10) == (10,)
  assert bucket_lengths(40, multiple=8) == (8, 16, 32, 40)
  assert buckets_lib.bucket_length(17, (16, 32, 64)) == 32
  assert buckets_lib.bucket_length(16, (16, 32, 64)) == 16
  with pytest.raises(ValueError, match="longer than the largest bucket 64"):
    buckets_lib.bucket_length(65, (16, 32, 64))


# --- BucketedBatches ----------------------------------------------------------------------------

LENGTHS = np.random.default_rng(0).integers(1, 100, size=203)


def _sampler(**kwargs):
  options = dict(batch_size=8, seed=1, buckets=bucket_lengths(128), chunk_batches=4)
  options.update(kwargs)
  return BucketedBatches(LENGTHS, **options)


def test_every_example_exactly_once_per_epoch_with_weight_zero_filler():
  sampler = _sampler()
  assert sampler.batches_per_epoch == 26  # ceil(203 / 8)
  for epoch in range(2):
    seen, filler = [], 0
    for step in range(epoch * 26, (epoch + 1) * 26):
      indices, weights = sampler.indices(step)
      assert indices.shape == weights.shape == (8,)
      assert indices.dtype == np.int64 and weights.dtype == np.float32
      seen.extend(indices[weights > 0].tolist())
      filler += int((weights == 0).sum())
      assert set(weights.tolist()) <= {0.0, 1.0}
    assert sorted(seen) == list(range(203))
    assert filler == 26 * 8 - 203


def test_batches_group_similar_lengths():
  sampler = _sampler()
  spread = [np.ptp(LENGTHS[sampler.indices(step)[0]]) for step in range(26)]
  shuffled = np.random.default_rng(5).permutation(208) % 203
  random_spread = [np.ptp(LENGTHS[shuffled[i:i + 8]]) for i in range(0, 208, 8)]
  assert np.mean(spread) < np.mean(random_spread) / 2


def test_batches_are_a_function_of_the_step_and_resume_with_set_state():
  first = _sampler()
  run = [first.next_indices() for _ in range(60)]
  assert first.get_state() == {"step": 60}
  resumed = _sampler()
  resumed.set_state({"step": 30})
  for step in range(30, 60):
    indices, weights = resumed.next_indices()
    np.testing.assert_array_equal(indices, run[step][0])
    np.testing.assert_array_equal(weights, run[step][1])
  np.testing.assert_array_equal(_sampler().indices(45)[0], run[45][0])  # Random access.
  # Epochs and seeds differ.
  assert not np.array_equal(first.epoch_batches(0)[0], first.epoch_batches(1)[0])
  assert not np.array_equal(_sampler(seed=2).indices(0)[0], run[0][0])
  with pytest.raises(UserError, match="corrupt data sampler state"):
    resumed.set_state({"step": -1})


def test_rows_select_this_process_part_of_the_global_batch():
  rows = np.array([2, 3])
  part = _sampler(rows=rows)
  whole = _sampler()
  for step in (0, 7, 30):
    np.testing.assert_array_equal(part.indices(step)[0], whole.indices(step)[0][rows])
    np.testing.assert_array_equal(part.indices(step)[1], whole.indices(step)[1][rows])


def test_sampler_errors():
  with pytest.raises(UserError, match="no training examples"):
    BucketedBatches(np.zeros(0), batch_size=2, seed=0, buckets=(16,))
  with pytest.raises(ValueError, match="do not fit the buckets"):
    BucketedBatches(np.array([17]), batch_size=2, seed=0, buckets=(16,))


# --- eval_order ---------------------------------------------------------------------------------


def test_eval_order_covers_all_once_sorted_by_length():
  batches = eval_order(LENGTHS, batch_size=16)
  assert len(batches) == 13
  indices = np.concatenate([i for i, _ in batches])
  weights = np.concatenate([w for _, w in batches])
  real = indices[weights > 0]
  assert sorted(real.tolist()) == list(range(203))
  assert np.all(np.diff(LENGTHS[real]) >= 0)
  assert weights.tolist().count(0.0) == 13 * 16 - 203
  assert np.all(weights[-5:] == 0) and np.all(weights[:-5] == 1)
  assert eval_order(np.zeros(0), batch_size=4) == []


# --- Batch builders -----------------------------------------------------------------------------


def test_classification_batch_pads_to_the_smallest_bucket():
  texts = [("a" * 20, "pos"), ("b" * 3, "neg"), ("c" * 40, "pos")]
  examples = classification_examples(_records(*texts), TOKENIZER, LABELS, max_len=64,
                                     causal=False)
  batch = classification_batch(examples, np.array([0, 1, 0]), np.array([1, 1, 0]),
                               bucket_lengths(64))
  assert batch["inputs"].shape == (3, 32)  # Longest real row: 22 tokens.
  assert batch["inputs"].dtype == batch["segment_ids"].dtype == batch["labels"].dtype == np.int32
  np.testing.assert_array_equal(batch["inputs"][1, :5], [CLS_ID, *_ids("bbb"), SEP_ID])
  assert np.all(batch["inputs"][1, 5:] == PAD_ID)
  assert batch["segment_ids"][0].tolist() == [1] * 22 + [0] * 10
  assert batch["segment_ids"][1].sum() == 5
  assert np.all(batch["segment_ids"][2] == 0) and np.all(batch["inputs"][2] == PAD_ID)
  assert batch["labels"].tolist() == [1, 0, 0]
  assert batch["weights"].tolist() == [1.0, 1.0, 0.0] and batch["weights"].dtype == np.float32
  tiny = classification_batch(examples, np.array([1, 1]), np.array([1, 0]), bucket_lengths(64))
  assert tiny["inputs"].shape == (2, 16)
  longest = classification_batch(examples, np.array([2]), np.array([1]), bucket_lengths(64))
  assert longest["inputs"].shape == (1, 64)


def test_sft_batch_targets_are_shifted_inputs_weighted_on_the_response():
  records = [Record({"prompt": "hello", "response": "ok"}, "a"),
             Record({"prompt": "q", "response": "answer"}, "b")]
  examples = sft_examples(records, TOKENIZER, max_len=32)
  batch = sft_batch(examples, np.array([0, 1, 1]), np.array([1.0, 0.5, 0.0]), (8, 16, 32))
  assert batch["inputs"].shape == batch["targets"].shape == batch["weights"].shape == (3, 8)
  np.testing.assert_array_equal(batch["inputs"][:, 1:] * (batch["segment_ids"][:, 1:] > 0),
                                batch["targets"][:, :-1] * (batch["segment_ids"][:, 1:] > 0))
  tokens = [BOS_ID, *_ids("hello"), *_ids("ok"), EOS_ID]
  assert batch["inputs"][0].tolist() == tokens[:-1]
  assert batch["targets"][0].tolist() == tokens[1:]
  # Weights: only the response's targets ("o", "k") and EOS.
  assert batch["weights"][0].tolist() == [0] * 5 + [1, 1, 1]
  assert batch["weights"][1].tolist() == [0] + [0.5] * 7  # Row weight 0.5; prompt "q" has none.
  assert batch["segment_ids"][1].tolist() == [1] * 8
  assert np.all(batch["weights"][2] == 0) and np.all(batch["segment_ids"][2] == 0)
  assert np.all(batch["targets"][2] == PAD_ID)
  assert batch["weights"].dtype == np.float32


def test_batches_from_the_sampler_end_to_end():
  records = _records(*[("x" * n, "pos" if n % 2 else "neg") for n in range(1, 60)])
  examples = classification_examples(records, TOKENIZER, LABELS, max_len=64, causal=True)
  buckets = bucket_lengths(64)
  sampler = BucketedBatches(examples.lengths, batch_size=8, seed=0, buckets=buckets)
  shapes = set()
  for _ in range(sampler.batches_per_epoch):
    indices, weights = sampler.next_indices()
    batch = classification_batch(examples, indices, weights, buckets)
    longest = examples.lengths[indices[weights > 0]].max()
    assert batch["inputs"].shape[1] == min(b for b in buckets if b >= longest)
    assert batch["segment_ids"].sum() == examples.lengths[indices[weights > 0]].sum()
    shapes.add(batch["inputs"].shape)
  assert shapes <= {(8, b) for b in buckets}
