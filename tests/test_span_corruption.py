"""T5 span corruption: mask counts and shape, span statistics, the paper's example, lossless
round trips (hypothesis) and the raw-length helper against T5's `random_spans_helper`."""

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lm.data import span_corruption as sc

EOS = 1
SENTINELS = tuple(range(1000, 2000))  # Token ids stay below 1000.
PROPERTY = settings(max_examples=300, deadline=None)


def _runs(mask: np.ndarray) -> list[tuple[bool, int]]:
  """(value, length) of each maximal run of equal values."""
  return [(bool(value), len(list(group))) for value, group in itertools.groupby(mask.tolist())]


def _expected_counts(length: int, density: float, mean: float) -> tuple[int, int]:
  """(noise tokens, noise spans), as the spec states them."""
  num_noise = min(max(round(length * density), 1), length - 1)
  return num_noise, min(max(round(num_noise / mean), 1), length - num_noise)


@PROPERTY
@given(length=st.integers(2, 600), density=st.sampled_from([0.05, 0.15, 0.3, 0.5, 0.8, 1.0]),
       mean=st.sampled_from([1.0, 2.0, 3.0, 5.5, 20.0]), seed=st.integers(0, 2**32 - 1))
def test_mask_counts_and_alternating_spans(length, density, mean, seed):
  mask = sc.random_spans_noise_mask(length, density, mean, np.random.default_rng(seed))
  assert mask.dtype == bool and mask.shape == (length,)
  num_noise, num_spans = _expected_counts(length, density, mean)
  assert mask.sum() == num_noise
  runs = _runs(mask)
  # Contiguous spans alternating non-noise, noise, ..., one of each per span: starts with
  # non-noise and (as in T5) ends with noise.
  assert [value for value, _ in runs] == [False, True] * num_spans
  assert all(run_length >= 1 for _, run_length in runs)


def test_mask_edge_cases_and_validation():
  rng = np.random.default_rng(0)
  assert sc.random_spans_noise_mask(0, 0.15, 3.0, rng).shape == (0,)
  np.testing.assert_array_equal(sc.random_spans_noise_mask(1, 0.15, 3.0, rng), [False])
  np.testing.assert_array_equal(sc.random_spans_noise_mask(2, 0.15, 3.0, rng), [False, True])
  assert not sc.random_spans_noise_mask(50, 0.0, 3.0, rng).any()
  assert sc.random_spans_noise_mask(50, 1.0, 3.0, rng).sum() == 49
  with pytest.raises(ValueError, match="noise_density"):
    sc.random_spans_noise_mask(10, 1.5, 3.0, rng)
  with pytest.raises(ValueError, match="mean_noise_span_length"):
    sc.random_spans_noise_mask(10, 0.15, 0.5, rng)


def test_span_length_statistics_at_512():
  rng = np.random.default_rng(1)
  masks = [sc.random_spans_noise_mask(512, 0.15, 3.0, rng) for _ in range(1000)]
  noise_lengths = np.array([n for m in masks for value, n in _runs(m) if value])
  nonnoise_lengths = np.array([n for m in masks for value, n in _runs(m) if not value])
  assert abs(noise_lengths.mean() - 3.0) < 0.3  # 77 tokens in 26 spans: 2.96.
  assert nonnoise_lengths.mean() == pytest.approx(435 / 26)
  # A uniform composition of 77 into 26 parts has P(part = 1) = 25/76, and parts up to 52.
  assert abs(np.mean(noise_lengths == 1) - 25 / 76) < 0.01
  assert noise_lengths.max() > 10
  # Spans fall all over the row, not at fixed places.
  first_noise = np.array([np.argmax(m) for m in masks])
  assert first_noise.min() < 10 and first_noise.max() > 60
  np.testing.assert_array_equal(np.stack(masks).sum(axis=1), 77)


def test_all_masks_equally_likely():
  # Length 8, density 0.5, spans of 2: 4 noise and 4 non-noise tokens, each split into 2
  # positive parts (3 ways each), so 9 masks of probability 1/9 each.
  rng = np.random.default_rng(2)
  draws = 9000
  counts = {}
  for _ in range(draws):
    key = sc.random_spans_noise_mask(8, 0.5, 2.0, rng).tobytes()
    counts[key] = counts.get(key, 0) + 1
  assert len(counts) == 9
  sigma = np.sqrt(draws * (1 / 9) * (8 / 9))
  assert all(abs(count - draws / 9) < 5 * sigma for count in counts.values())


def test_mask_is_reproducible_from_the_generator():
  a = sc.random_spans_noise_mask(300, 0.15, 3.0, np.random.default_rng(7))
  b = sc.random_spans_noise_mask(300, 0.15, 3.0, np.random.default_rng(7))
  c = sc.random_spans_noise_mask(300, 0.15, 3.0, np.random.default_rng(8))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_paper_figure_2_example():
  # "Thank you for inviting me to your party last week ." with "for inviting" and "last" dropped.
  words = "Thank you for inviting me to your party last week .".split()
  ids = {word: 10 + i for i, word in enumerate(words)}
  X, Y, Z = 100, 101, 102
  tokens = np.array([ids[w] for w in words], dtype=np.int32)
  mask = np.array([w in ("for", "inviting", "last") for w in words])
  inputs, targets = sc.corrupt(tokens, mask, (X, Y, Z), EOS)
  t = ids
  np.testing.assert_array_equal(
      inputs, [t["Thank"], t["you"], X, t["me"], t["to"], t["your"], t["party"], Y, t["week"],
               t["."], EOS])
  np.testing.assert_array_equal(targets, [X, t["for"], t["inviting"], Y, t["last"], Z, EOS])
  assert inputs.dtype == targets.dtype == np.int32
  np.testing.assert_array_equal(sc.reconstruct(inputs, targets, (X, Y, Z), EOS), tokens)
  # Without EOS, and with a mask that ends in noise (as T5's always do): no final sentinel.
  inputs, targets = sc.corrupt(tokens[:9], mask[:9], (X, Y, Z), None)
  np.testing.assert_array_equal(inputs, [10, 11, X, 14, 15, 16, 17, Y])
  np.testing.assert_array_equal(targets, [X, 12, 13, Y, 18])


def test_mask_starting_with_noise_follows_t5():
  # T5's pair of functions: noise spans -> sentinels in the inputs, non-noise spans ->
  # sentinels in the targets (the sentinels then do not align; T5's masks never start so).
  tokens = np.array([20, 21, 22, 23])
  inputs, targets = sc.corrupt(tokens, np.array([True, False, True, True]), (7, 8), None)
  np.testing.assert_array_equal(inputs, [7, 21, 8])
  np.testing.assert_array_equal(targets, [20, 7, 22, 23])
  np.testing.assert_array_equal(sc.reconstruct(inputs, targets, (7, 8), None), tokens)


def _check_round_trip(tokens, mask, eos_id):
  inputs, targets = sc.corrupt(tokens, mask, SENTINELS, eos_id)
  runs = _runs(mask)
  num_noise_spans = sum(value for value, _ in runs)
  num_nonnoise_spans = len(runs) - num_noise_spans
  extra = eos_id is not None
  assert len(inputs) == (~mask).sum() + num_noise_spans + extra
  assert len(targets) == mask.sum() + num_nonnoise_spans + extra
  assert inputs.dtype == targets.dtype == tokens.dtype
  np.testing.assert_array_equal(inputs[np.isin(inputs, SENTINELS)], SENTINELS[:num_noise_spans])
  np.testing.assert_array_equal(targets[np.isin(targets, SENTINELS)],
                                SENTINELS[:num_nonnoise_spans])
  np.testing.assert_array_equal(sc.reconstruct(inputs, targets, SENTINELS, eos_id), tokens)


@PROPERTY
@given(tokens=st.lists(st.integers(0, 999), max_size=300), seed=st.integers(0, 2**32 - 1),
       density=st.floats(0.0, 1.0), mean=st.floats(1.0, 10.0), eos=st.booleans())
def test_round_trip_with_random_spans(tokens, seed, density, mean, eos):
  tokens = np.array(tokens, dtype=np.int64)
  mask = sc.random_spans_noise_mask(len(tokens), density, mean, np.random.default_rng(seed))
  _check_round_trip(tokens, mask, EOS if eos else None)


@PROPERTY
@given(pairs=st.lists(st.tuples(st.integers(0, 999), st.booleans()), max_size=300),
       eos=st.booleans())
def test_round_trip_with_any_mask(pairs, eos):
  tokens = np.array([token for token, _ in pairs], dtype=np.int32)
  mask = np.array([noise for _, noise in pairs], dtype=bool)
  _check_round_trip(tokens, mask, EOS if eos else None)


def test_span_corruption_object():
  objective = sc.SpanCorruption(sentinel_ids=range(1000, 1100), eos_id=EOS)
  assert objective.sentinel_ids == tuple(range(1000, 1100))
  assert (objective.noise_density, objective.mean_noise_span_length) == (0.15, 3.0)
  tokens = np.random.default_rng(3).integers(10, 1000, size=568)
  inputs, targets = objective(tokens, np.random.default_rng(4))
  assert (len(inputs), len(targets)) == (512, 114) == (512, objective.lengths(512)[1])
  np.testing.assert_array_equal(sc.reconstruct(inputs, targets, objective.sentinel_ids, EOS),
                                tokens)
  again = objective(tokens, np.random.default_rng(4))
  np.testing.assert_array_equal(again[0], inputs)
  np.testing.assert_array_equal(again[1], targets)
  with pytest.raises(dataclasses.FrozenInstanceError):
    objective.eos_id = 3  # Frozen.


def test_errors():
  tokens = np.array([10, 11, 12, 13, 14])
  three_noise_spans = np.array([True, False, True, False, True])
  with pytest.raises(ValueError, match="sentinel"):
    sc.corrupt(tokens, three_noise_spans, (7, 8), None)
  # Two noise spans fit, but the three non-noise spans of the targets do not.
  with pytest.raises(ValueError, match="sentinel"):
    sc.corrupt(tokens, ~three_noise_spans, (7, 8), None)
  sc.corrupt(tokens, ~three_noise_spans, (7, 8, 9), None)
  with pytest.raises(ValueError, match="contain a sentinel"):
    sc.corrupt(np.array([10, 7, 12]), np.array([False, True, False]), (7, 8), None)
  with pytest.raises(ValueError, match="also a sentinel"):
    sc.corrupt(tokens, three_noise_spans, (7, 8, 9), 9)
  with pytest.raises(ValueError, match="distinct"):
    sc.SpanCorruption(sentinel_ids=(7, 7), eos_id=None)
  with pytest.raises(ValueError, match="mask"):
    sc.corrupt(tokens, three_noise_spans[:4], (7, 8, 9), None)
  with pytest.raises(ValueError, match="EOS"):
    sc.reconstruct(np.array([10, 7]), np.array([7, 11]), (7,), EOS)
  with pytest.raises(ValueError, match="in order"):
    sc.reconstruct(np.array([10, 8]), np.array([8, 11]), (7, 8), None)
  with pytest.raises(ValueError, match="noise spans"):
    sc.reconstruct(np.array([10, 7, 12, 8]), np.array([7, 11, 8]), (7, 8), None)


def _t5_random_spans_helper(inputs_length, noise_density, mean_noise_span_length):
  """T5's `random_spans_helper` (t5/data/preprocessors.py), one sentinel per span."""

  def lengths(tokens_length):
    num_noise_tokens = int(round(tokens_length * noise_density))
    num_nonnoise_tokens = tokens_length - num_noise_tokens
    num_noise_spans = int(round(num_noise_tokens / mean_noise_span_length))
    return (num_nonnoise_tokens + num_noise_spans + 1, num_noise_tokens + num_noise_spans + 1)

  tokens_length = inputs_length - 1
  while lengths(tokens_length + 1)[0] <= inputs_length:
    tokens_length += 1
  inputs_length, targets_length = lengths(tokens_length)
  if noise_density == 0.5 and targets_length > inputs_length:
    tokens_length -= 1
    targets_length -= 1
  return tokens_length, targets_length


def test_lengths_match_t5():
  assert sc.input_and_target_lengths(512, 0.15, 3.0) == (568, 114)
  assert sc.SpanCorruption(SENTINELS, EOS).lengths(512) == (568, 114)
  assert _t5_random_spans_helper(512, 0.15, 3.0) == (568, 114)
  # Below ~64 T5's helper can count 0 spans where its mask makes 1 (e.g. 8 tokens at 0.15 would
  # give 9 inputs with EOS, not 8); here the counts are the mask's own.
  assert _t5_random_spans_helper(8, 0.15, 3.0)[0] == 8
  assert sc.input_and_target_lengths(8, 0.15, 3.0)[0] == 7
  for inputs_length in range(64, 1100, 7):
    for density, mean in [(0.15, 3.0), (0.15, 8.0), (0.3, 3.0), (0.25, 2.0), (0.5, 3.0)]:
      ours = sc.input_and_target_lengths(inputs_length, density, mean)
      t5 = _t5_random_spans_helper(inputs_length, density, mean)
      assert ours[0] == t5[0], (inputs_length, density, mean)
      if density != 0.5:  # T5 guesses the targets after its one-token-less hack for 0.5.
        assert ours[1] == t5[1], (inputs_length, density, mean)


@pytest.mark.parametrize("density,mean", [(0.15, 3.0), (0.15, 1.0), (0.3, 8.0), (0.5, 3.0),
                                          (0.5, 1.0), (0.8, 3.0)])
def test_lengths_are_those_of_the_corrupted_rows(density, mean):
  rng = np.random.default_rng(5)
  for inputs_length in [3, 4, 5, 11, 19, 64, 100, 128, 255, 512]:
    tokens_length, targets_length = sc.input_and_target_lengths(inputs_length, density, mean)
    objective = sc.SpanCorruption(SENTINELS, EOS, density, mean)
    inputs, targets = objective(rng.integers(10, 1000, size=tokens_length), rng)
    assert len(targets) == targets_length
    assert len(inputs) <= inputs_length
    if density == 0.15:
      assert len(inputs) == inputs_length
    if density != 0.5:  # 0.5 may give up a token to keep the targets short (as T5).
      longer, _ = objective(rng.integers(10, 1000, size=tokens_length + 1), rng)
      assert len(longer) > inputs_length
  with pytest.raises(ValueError, match="inputs_length"):
    sc.input_and_target_lengths(2, 0.15, 3.0)
  with pytest.raises(ValueError, match="noise_density"):
    sc.input_and_target_lengths(512, 0.0, 3.0)
