"""T5 span corruption (Raffel et al. 2020, sections 3.1.4 and 3.3.4), in numpy and reproducible
from a Generator.

A noise mask of random spans covers round(noise_density * length) tokens in
round(noise tokens / mean_noise_span_length) spans; non-noise and noise spans alternate, starting
with non-noise (so, as in T5, the sequence ends in noise). As T5's `noise_span_to_unique_sentinel`
and `nonnoise_span_to_unique_sentinel` do, the inputs replace the k-th noise span by
sentinel_ids[k] and the targets replace the k-th non-noise span by sentinel_ids[k]:

  tokens   Thank you for inviting me to your party last week .
  inputs   Thank you <X> me to your party <Y> week . </s>
  targets  <X> for inviting <Y> last <Z> </s>

A final sentinel (<Z>) appears only when the tokens end in non-noise, which T5's own mask never
does. With an `eos_id`, EOS ends both the inputs and the targets, as T5's task appends it to both
(`append_eos_after_trim`, and `random_spans_helper` counts it in both lengths).
"""

import dataclasses
from typing import Sequence

import numpy as np


def random_spans_noise_mask(length: int, noise_density: float, mean_noise_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
  """bool [length]: True at the noise tokens, as T5's `random_spans_noise_mask` (no roll).

  Noise and non-noise span lengths are uniform random compositions (each part >= 1) of their
  totals (`_span_counts`), interleaved non-noise first. Lengths below 2 and a density of 0 give
  no noise.
  """
  _check_noise(noise_density, mean_noise_span_length)
  if length < 0:
    raise ValueError(f"length must be >= 0, got {length}")
  if length < 2 or noise_density == 0.0:
    return np.zeros(length, dtype=bool)
  num_noise, num_spans = _span_counts(length, noise_density, mean_noise_span_length)
  noise_S = _random_segmentation(num_noise, num_spans, rng)
  nonnoise_S = _random_segmentation(length - num_noise, num_spans, rng)
  lengths_2S = np.stack([nonnoise_S, noise_S], axis=1).reshape(-1)
  return np.repeat(np.tile([False, True], num_spans), lengths_2S)


def corrupt(tokens: np.ndarray, mask: np.ndarray, sentinel_ids: Sequence[int],
            eos_id: int | None) -> tuple[np.ndarray, np.ndarray]:
  """(inputs, targets) of 1-D `tokens` under the bool noise `mask`, in the tokens' dtype.

  The inputs are the tokens with the k-th noise span replaced by sentinel_ids[k], the targets
  the tokens with the k-th non-noise span replaced by sentinel_ids[k] (T5's pair of functions:
  aligned when the mask starts with non-noise, as `random_spans_noise_mask`'s do); `eos_id`
  (unless None) is appended to both. ValueError when there are more spans than sentinels or the
  tokens contain a sentinel.
  """
  tokens = np.asarray(tokens)
  mask = np.asarray(mask)
  if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
    raise ValueError(f"tokens must be a 1-D integer array, got {tokens.dtype} {tokens.shape}")
  if mask.dtype != bool or mask.shape != tokens.shape:
    raise ValueError(f"mask must be bool of shape {tokens.shape}, got {mask.dtype} {mask.shape}")
  sentinels = _check_sentinels(sentinel_ids, eos_id)
  if np.isin(tokens, sentinels).any():
    raise ValueError("tokens contain a sentinel id; the corruption would not be invertible")
  inputs = _spans_to_sentinels(tokens, mask, sentinels)
  targets = _spans_to_sentinels(tokens, ~mask, sentinels)
  if eos_id is not None:
    eos = np.array([eos_id], dtype=tokens.dtype)
    inputs, targets = np.concatenate([inputs, eos]), np.concatenate([targets, eos])
  return inputs, targets


def reconstruct(inputs: np.ndarray, targets: np.ndarray, sentinel_ids: Sequence[int],
                eos_id: int | None) -> np.ndarray:
  """The tokens that `corrupt` turned into (inputs, targets): the inverse, for checks.

  The runs of non-sentinel tokens in the targets are the noise spans, in order; the k-th
  sentinel of the inputs stands for the k-th run. ValueError on a malformed pair.
  """
  sentinels = _check_sentinels(sentinel_ids, eos_id)
  inputs, targets = np.asarray(inputs), np.asarray(targets)
  if eos_id is not None:
    for name, x in (("inputs", inputs), ("targets", targets)):
      if not x.size or x[-1] != eos_id:
        raise ValueError(f"{name} must end with EOS ({eos_id})")
    inputs, targets = inputs[:-1], targets[:-1]
  starts_t = np.flatnonzero(np.isin(targets, sentinels))
  starts_i = np.flatnonzero(np.isin(inputs, sentinels))
  for name, x, starts in (("inputs", inputs, starts_i), ("targets", targets, starts_t)):
    if not np.array_equal(x[starts], sentinels[:len(starts)]):
      raise ValueError(f"{name} must use the sentinels in order, got {x[starts].tolist()}")
  pieces_t = np.split(targets, starts_t)
  runs = [run for run in [pieces_t[0]] + [piece[1:] for piece in pieces_t[1:]] if run.size]
  if len(runs) != len(starts_i):
    raise ValueError(f"inputs have {len(starts_i)} noise spans, targets {len(runs)}")
  pieces_i = np.split(inputs, starts_i)
  out = [pieces_i[0]]
  for run, piece in zip(runs, pieces_i[1:]):
    out += [run, piece[1:]]
  return np.concatenate(out).astype(inputs.dtype)


def input_and_target_lengths(inputs_length: int, noise_density: float,
                             mean_noise_span_length: float) -> tuple[int, int]:
  """(tokens_length, targets_length), as T5's `random_spans_helper` (one sentinel per span, EOS).

  `tokens_length` is the most raw tokens whose corrupted inputs (with EOS) fit in
  `inputs_length` (exactly fill it for the usual densities; a jump of 2 can leave one short);
  `targets_length` the length of their targets (with EOS). As T5, a density of 0.5 takes one
  token less when the targets would otherwise be longer than the inputs; T5 then guesses the
  targets to be 1 shorter, where this recomputes them exactly.
  """
  _check_noise(noise_density, mean_noise_span_length)
  if not 0.0 < noise_density < 1.0:
    raise ValueError(f"noise_density must be in (0, 1), got {noise_density!r}")
  if inputs_length < 3:
    raise ValueError(f"inputs_length must be >= 3 (a token, a sentinel, EOS), got {inputs_length}")

  def lengths(tokens_length: int) -> tuple[int, int]:
    num_noise, num_spans = _span_counts(tokens_length, noise_density, mean_noise_span_length)
    return tokens_length - num_noise + num_spans + 1, num_noise + num_spans + 1

  tokens_length = inputs_length - 1
  while lengths(tokens_length + 1)[0] <= inputs_length:
    tokens_length += 1
  corrupted_length, targets_length = lengths(tokens_length)
  if noise_density == 0.5 and targets_length > corrupted_length:
    tokens_length -= 1
    targets_length = lengths(tokens_length)[1]
  return tokens_length, targets_length


@dataclasses.dataclass(frozen=True)
class SpanCorruption:
  """T5's pretraining objective: `(inputs, targets) = SpanCorruption(...)(tokens, rng)`."""
  sentinel_ids: tuple[int, ...]
  eos_id: int | None
  noise_density: float = 0.15
  mean_noise_span_length: float = 3.0

  def __post_init__(self):
    object.__setattr__(self, "sentinel_ids", tuple(int(i) for i in self.sentinel_ids))
    _check_noise(self.noise_density, self.mean_noise_span_length)
    _check_sentinels(self.sentinel_ids, self.eos_id)

  def __call__(self, tokens: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    mask = random_spans_noise_mask(len(tokens), self.noise_density, self.mean_noise_span_length,
                                   rng)
    return corrupt(tokens, mask, self.sentinel_ids, self.eos_id)

  def lengths(self, inputs_length: int) -> tuple[int, int]:
    """(tokens_length, targets_length): `input_and_target_lengths` with these settings."""
    return input_and_target_lengths(inputs_length, self.noise_density, self.mean_noise_span_length)


def _span_counts(length: int, noise_density: float,
                 mean_noise_span_length: float) -> tuple[int, int]:
  """(noise tokens, noise spans) for `length` >= 2 tokens.

  Python's round (halves to even, as T5's tf.round). The noise is clipped to [1, length - 1]
  and the spans to at least 1, as T5; the spans also to at most the non-noise tokens, where T5
  would fail (e.g. density 0.9 with a mean span of 1).
  """
  num_noise = min(max(round(length * noise_density), 1), length - 1)
  num_spans = max(round(num_noise / mean_noise_span_length), 1)
  return num_noise, min(num_spans, length - num_noise)


def _random_segmentation(num_items: int, num_segments: int,
                         rng: np.random.Generator) -> np.ndarray:
  """int [num_segments]: a uniformly random split of num_items into positive parts."""
  cuts = np.sort(rng.choice(num_items - 1, num_segments - 1, replace=False) + 1)
  return np.diff(np.concatenate([[0], cuts, [num_items]]))


def _spans_to_sentinels(tokens: np.ndarray, mask: np.ndarray, sentinels: np.ndarray) -> np.ndarray:
  """The tokens with the k-th run of True in `mask` replaced by sentinels[k]."""
  previous = np.zeros_like(mask)
  previous[1:] = mask[:-1]
  first = mask & ~previous
  num_spans = int(first.sum())
  if num_spans > len(sentinels):
    raise ValueError(f"{num_spans} spans need more than the {len(sentinels)} sentinel ids")
  replaced = tokens.copy()
  replaced[first] = sentinels[:num_spans]
  return replaced[~(mask & previous)]


def _check_sentinels(sentinel_ids: Sequence[int], eos_id: int | None) -> np.ndarray:
  sentinels = np.asarray(sentinel_ids, dtype=np.int64).reshape(-1)
  if len(np.unique(sentinels)) != len(sentinels):
    raise ValueError(f"sentinel_ids must be distinct, got {list(sentinel_ids)}")
  if eos_id is not None and eos_id in sentinels:
    raise ValueError(f"eos_id {eos_id} is also a sentinel id")
  return sentinels


def _check_noise(noise_density: float, mean_noise_span_length: float) -> None:
  if not 0.0 <= noise_density <= 1.0:
    raise ValueError(f"noise_density must be in [0, 1], got {noise_density!r}")
  if not mean_noise_span_length >= 1.0:
    raise ValueError(f"mean_noise_span_length must be >= 1, got {mean_noise_span_length!r}")
