"""Batches of windows over a flat token stream; the one place where targets are shifted inputs."""

from typing import Iterator

import numpy as np

from lm.data.tokenizer_base import PAD_ID
from lm.errors import UserError

MODES = ("random", "strided")


def windows_to_example(windows: np.ndarray) -> dict[str, np.ndarray]:
  """[B, T+1] token windows -> inputs = windows[:, :-1], targets = windows[:, 1:] (int32)."""
  windows = np.asarray(windows)
  if windows.ndim != 2 or windows.shape[1] < 2:
    raise ValueError(f"windows must have shape [B, T+1] with T >= 1, got {windows.shape}")
  windows = windows.astype(np.int32, copy=False)
  return {"inputs": windows[:, :-1], "targets": windows[:, 1:]}


class StepCounter:
  """Samplers whose batches follow from a global step counter alone: the counter is their
  whole state, saved with each checkpoint."""
  _step = 0

  @property
  def step(self) -> int:
    return self._step

  def get_state(self) -> dict[str, int]:
    return {"step": self._step}

  def set_state(self, state: dict[str, int]) -> None:
    step = state.get("step") if isinstance(state, dict) else None
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
      raise UserError(f"corrupt data sampler state {state!r}: expected {{'step': int >= 0}}")
    self._step = int(step)


class WindowSampler(StepCounter):
  """Training batches of `seq_len`-token windows, reproducible from a step counter alone.

  `random`: batch s draws start offsets uniformly from [0, N - seq_len - 1] with
  `np.random.default_rng([seed, s])`, so it does not depend on earlier batches.
  `strided`: global window g starts at token (g * seq_len) mod N and wraps around the end of the
  stream, so consecutive windows tile the stream and every token is a target once per pass.
  The global batch has `batch_size` rows; a process reads only its `rows` of it (all by
  default), so the global batch does not depend on the number of processes.
  """

  def __init__(
      self,
      tokens: np.ndarray,
      *,
      batch_size: int,
      seq_len: int,
      mode: str,
      seed: int,
      rows: np.ndarray | None = None,
  ):
    if mode not in MODES:
      raise UserError(f"window sampling mode must be one of {', '.join(MODES)}; got {mode!r}")
    self._rows = check_rows(batch_size, seq_len, rows)
    if tokens.ndim != 1:
      raise ValueError(f"tokens must be 1-D, got shape {tokens.shape}")
    if tokens.shape[0] < seq_len + 1:
      raise UserError(
          f"the split has {tokens.shape[0]} tokens but config.model.max_len (seq_len={seq_len})"
          f" needs at least {seq_len + 1}; use more data or a shorter max_len")
    self._tokens = tokens
    self._batch_size = batch_size
    self._seq_len = seq_len
    self._mode = mode
    self._seed = seed
    self._step = 0

  def global_starts(self, step: int) -> np.ndarray:
    """Start offsets of all `batch_size` windows of the global batch at `step`."""
    n = self._tokens.shape[0]
    if self._mode == "random":
      rng = np.random.default_rng([self._seed, step])
      return rng.integers(0, n - self._seq_len - 1, size=self._batch_size, endpoint=True)
    first = step * self._batch_size
    return ((first + np.arange(self._batch_size, dtype=np.int64)) * self._seq_len) % n

  def next_batch(self) -> dict[str, np.ndarray]:
    """This process's rows of the global batch at the current step; advances the step."""
    starts = self.global_starts(self._step)[self._rows]
    self._step += 1
    offsets = starts[:, None] + np.arange(self._seq_len + 1)
    if self._mode == "strided":
      offsets %= self._tokens.shape[0]  # Only strided windows cross the end of the stream.
    return windows_to_example(self._tokens[offsets])

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    while True:
      yield self.next_batch()


def eval_batches(
    tokens: np.ndarray,
    *,
    batch_size: int,
    seq_len: int,
    max_batches: int | None,
    rows: np.ndarray | None = None,
    pad_id: int = PAD_ID,
) -> Iterator[dict[str, np.ndarray]]:
  """Non-overlapping windows from the start of the stream, each target predicted once.

  Window i covers tokens[i*T : i*T + T + 1]; the last, shorter window and the rows that fill
  up the last batch are padded with `pad_id` (the tokenizer's) and have `weights` 0 on padded
  targets. Every batch has `inputs`, `targets` (int32 [B, T]) and `weights` (float32 [B, T]); a
  process reads only its `rows` of every global batch, as in `WindowSampler`.
  """
  rows = check_rows(batch_size, seq_len, rows)
  n = tokens.shape[0]
  if n < 2:
    raise UserError(f"the evaluation split has {n} tokens; it needs at least 2 to predict one")
  if max_batches is not None and max_batches < 0:
    raise UserError(f"the number of evaluation batches must be >= 0 or None, got {max_batches}")
  num_windows = -(-(n - 1) // seq_len)  # ceil((n - 1) / T): every target in exactly one window.
  num_batches = -(-num_windows // batch_size)
  if max_batches is not None:
    num_batches = min(num_batches, max_batches)
  for b in range(num_batches):
    windows = np.full((batch_size, seq_len + 1), pad_id, dtype=np.int32)
    weights = np.zeros((batch_size, seq_len), dtype=np.float32)
    for r in range(batch_size):
      start = (b * batch_size + r) * seq_len
      if start >= n - 1:
        break
      window = tokens[start:start + seq_len + 1]
      windows[r, :len(window)] = window
      weights[r, :len(window) - 1] = 1.0
    example = windows_to_example(windows[rows])
    example["weights"] = weights[rows]
    yield example


def check_rows(batch_size: int, seq_len: int, rows: np.ndarray | None) -> np.ndarray:
  if batch_size < 1 or seq_len < 1:
    raise UserError(f"batch_size and seq_len must be >= 1, got {batch_size} and {seq_len}")
  if rows is None:
    return np.arange(batch_size)
  rows = np.asarray(rows, dtype=np.int64)
  if rows.ndim != 1 or not rows.size or rows.min() < 0 or rows.max() >= batch_size:
    raise ValueError(f"rows must be a non-empty 1-D subset of 0..{batch_size - 1}, got {rows}")
  return rows
