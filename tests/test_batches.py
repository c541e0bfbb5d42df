"""Tests for lm.data.batches: the input/target shift, sampling, resume, processes, evaluation."""

import numpy as np
import pytest

from lm.data import batches
from lm.data.batches import WindowSampler
from lm.data.tokenizers import PAD_ID
from lm.errors import UserError

N = 1000
# Distinct values, so a window's content tells where in the stream it came from.
TOKENS = np.arange(10, 10 + N, dtype=np.uint16)


def _sampler(mode, tokens=TOKENS, **kwargs):
  options = dict(batch_size=8, seq_len=16, mode=mode, seed=0)
  return WindowSampler(tokens, **{**options, **kwargs})


def _starts(batch):
  return batch["inputs"][:, 0].astype(np.int64) - 10


def test_windows_to_example_shifts_by_one():
  windows = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.uint16)
  example = batches.windows_to_example(windows)
  assert example["inputs"].tolist() == [[1, 2, 3], [5, 6, 7]]
  assert example["targets"].tolist() == [[2, 3, 4], [6, 7, 8]]
  assert example["inputs"].dtype == example["targets"].dtype == np.int32
  with pytest.raises(ValueError):
    batches.windows_to_example(np.zeros((2, 1)))


@pytest.mark.parametrize("mode", batches.MODES)
def test_targets_are_the_next_tokens_of_the_stream(mode):
  sampler = _sampler(mode)
  for _ in range(5):
    batch = sampler.next_batch()
    assert batch["inputs"].shape == batch["targets"].shape == (8, 16)
    assert batch["inputs"].dtype == batch["targets"].dtype == np.int32
    for row, start in enumerate(_starts(batch)):
      positions = (start + np.arange(17)) % N
      np.testing.assert_array_equal(batch["inputs"][row], TOKENS[positions[:-1]])
      np.testing.assert_array_equal(batch["targets"][row], TOKENS[positions[1:]])


def test_random_starts_stay_inside_the_stream():
  tokens = np.arange(10, 10 + 20, dtype=np.uint16)  # Only 4 valid starts: 0..3.
  sampler = _sampler("random", tokens=tokens, batch_size=64)
  starts = np.concatenate([_starts(sampler.next_batch()) for _ in range(5)])
  assert starts.min() == 0 and starts.max() == 20 - 16 - 1
  # The shortest possible stream has exactly one window.
  short = _sampler("random", tokens=tokens[:17], batch_size=4).next_batch()
  assert _starts(short).tolist() == [0, 0, 0, 0]


def test_random_batches_are_deterministic_and_seed_dependent():
  a, b, c = _sampler("random"), _sampler("random"), _sampler("random", seed=1)
  for _ in range(3):
    batch_a, batch_b, batch_c = a.next_batch(), b.next_batch(), c.next_batch()
    np.testing.assert_array_equal(batch_a["inputs"], batch_b["inputs"])
    assert not np.array_equal(batch_a["inputs"], batch_c["inputs"])


@pytest.mark.parametrize("mode", batches.MODES)
def test_resume_from_state_continues_the_same_stream(mode):
  uninterrupted = _sampler(mode)
  expected = [uninterrupted.next_batch() for _ in range(10)]
  assert uninterrupted.get_state() == {"step": 10}
  first = _sampler(mode)
  for _ in range(4):
    first.next_batch()
  state = first.get_state()
  assert state == {"step": 4}
  resumed = _sampler(mode)
  resumed.set_state(state)
  for k in range(4, 10):
    batch = resumed.next_batch()
    np.testing.assert_array_equal(batch["inputs"], expected[k]["inputs"])
    np.testing.assert_array_equal(batch["targets"], expected[k]["targets"])


def test_bad_state_is_user_error():
  sampler = _sampler("random")
  for state in ({}, {"step": -1}, {"step": "3"}, None):
    with pytest.raises(UserError, match="sampler state"):
      sampler.set_state(state)


def test_strided_windows_tile_the_stream_and_wrap_around():
  tokens = np.arange(10, 10 + 50, dtype=np.uint16)
  sampler = _sampler("strided", tokens=tokens, batch_size=4, seq_len=8)
  assert _starts(sampler.next_batch()).tolist() == [0, 8, 16, 24]
  second = sampler.next_batch()
  assert _starts(second).tolist() == [32, 40, 48, 6]  # 56 % 50 = 6.
  # The window at 48 runs off the end: 48, 49, then 0, 1, ...
  assert (second["inputs"][2] - 10).tolist() == [48, 49, 0, 1, 2, 3, 4, 5]
  assert (second["targets"][2] - 10).tolist() == [49, 0, 1, 2, 3, 4, 5, 6]
  # One pass of ceil(50 / 8) = 7 consecutive windows predicts every token of the stream.
  one_by_one = _sampler("strided", tokens=tokens, batch_size=1, seq_len=8)
  targets = np.concatenate([one_by_one.next_batch()["targets"][0] for _ in range(7)])
  assert set((targets - 10).tolist()) == set(range(50))


@pytest.mark.parametrize("mode", batches.MODES)
@pytest.mark.parametrize("process_count", [2, 4])
def test_process_rows_reassemble_the_global_batch(mode, process_count):
  single = _sampler(mode)
  # Contiguous blocks of rows, as a mesh's batch sharding gives each process.
  blocks = np.split(np.arange(8), process_count)
  shards = [_sampler(mode, rows=rows) for rows in blocks]
  for _ in range(3):
    expected = single.next_batch()
    parts = [s.next_batch() for s in shards]
    for key in ("inputs", "targets"):
      for rows, part in zip(blocks, parts):
        assert part[key].shape == (8 // process_count, 16)
        np.testing.assert_array_equal(part[key], expected[key][rows])


def test_sampler_errors():
  match = r"the split has 16 tokens but config.model.max_len \(seq_len=16\) needs at least 17"
  with pytest.raises(UserError, match=match):
    _sampler("random", tokens=TOKENS[:16])
  with pytest.raises(UserError, match="mode"):
    _sampler("shuffled")
  with pytest.raises(ValueError, match="rows"):
    _sampler("random", batch_size=6, rows=np.array([5, 6]))


# --- Evaluation ---------------------------------------------------------------------------------


def _check_eval_coverage(tokens, batch_size, seq_len):
  """Every target position 1..n-1 must carry weight exactly once, in stream order."""
  predicted, count = [], 0
  for batch in batches.eval_batches(tokens,
                                    batch_size=batch_size,
                                    seq_len=seq_len,
                                    max_batches=None):
    for key in ("inputs", "targets", "weights"):
      assert batch[key].shape == (batch_size, seq_len)
    assert batch["weights"].dtype == np.float32 and batch["targets"].dtype == np.int32
    real = batch["weights"] > 0
    assert set(np.unique(batch["weights"]).tolist()) <= {0.0, 1.0}
    assert (batch["targets"][~real] == PAD_ID).all()
    # Inputs and targets are one stream shifted by one, also on real rows.
    both = real[:, :-1]  # Positions t whose target t and next input t + 1 are both real.
    np.testing.assert_array_equal(batch["inputs"][:, 1:][both], batch["targets"][:, :-1][both])
    predicted.extend(batch["targets"][real].tolist())
    count += 1
  np.testing.assert_array_equal(predicted, tokens[1:])
  return count


@pytest.mark.parametrize(
    "n, batch_size, seq_len",
    [(1000, 8, 16), (1001, 8, 10), (17, 4, 16), (2, 1, 5), (97, 3, 7)],
)
def test_eval_batches_predict_every_token_exactly_once(n, batch_size, seq_len):
  tokens = np.arange(10, 10 + n, dtype=np.uint16)
  num_windows = -(-(n - 1) // seq_len)
  assert _check_eval_coverage(tokens, batch_size, seq_len) == -(-num_windows // batch_size)


def test_eval_windows_start_at_multiples_of_seq_len():
  first = next(batches.eval_batches(TOKENS, batch_size=4, seq_len=16, max_batches=None))
  assert _starts(first).tolist() == [0, 16, 32, 48]


def test_eval_padding_rows_and_tail_window():
  tokens = np.arange(10, 10 + 30, dtype=np.uint16)  # 29 targets: windows of 8, 8, 8, 5.
  (batch,) = list(batches.eval_batches(tokens, batch_size=6, seq_len=8, max_batches=None))
  assert batch["weights"].sum(axis=1).tolist() == [8, 8, 8, 5, 0, 0]
  assert (batch["inputs"][3] - 10).tolist()[:5] == [24, 25, 26, 27, 28]
  assert batch["inputs"][4:].tolist() == [[PAD_ID] * 8] * 2


def test_eval_max_batches():
  limited = list(batches.eval_batches(TOKENS, batch_size=4, seq_len=16, max_batches=3))
  assert len(limited) == 3
  assert list(batches.eval_batches(TOKENS, batch_size=4, seq_len=16, max_batches=0)) == []


def test_eval_process_rows():
  full = list(batches.eval_batches(TOKENS, batch_size=8, seq_len=16, max_batches=None))
  parts = [
      list(
          batches.eval_batches(TOKENS,
                               batch_size=8,
                               seq_len=16,
                               max_batches=None,
                               rows=rows)) for rows in ([0, 1, 2, 3], [4, 5, 6, 7])
  ]
  for b, expected in enumerate(full):
    for key in ("inputs", "targets", "weights"):
      np.testing.assert_array_equal(parts[0][b][key], expected[key][:4])
      np.testing.assert_array_equal(parts[1][b][key], expected[key][4:])


def test_eval_errors():
  with pytest.raises(UserError, match="has 1 tokens"):
    list(batches.eval_batches(TOKENS[:1], batch_size=4, seq_len=8, max_batches=None))
  with pytest.raises(UserError, match=">= 1"):
    list(batches.eval_batches(TOKENS, batch_size=0, seq_len=8, max_batches=None))
