"""Hashing of texts as numpy arrays of code points: any run of code points hashes in O(1) from
prefix sums, so the words, shingles and n-grams of the prepare stages need no Python loop.

The polynomial hash of code points c[i..j) is sum of c[t] * BASE^(t - i) modulo 2^64 (BASE odd,
so it has an inverse modulo 2^64): `PrefixHash(codes).runs(starts, ends)` gives it for many runs
at once, equal for equal runs wherever they start. `mix64` then spreads the bits.
"""

import numpy as np

BASE = 0x9E3779B97F4A7C15
BASE_INVERSE = pow(BASE, -1, 1 << 64)


def code_points(text: str) -> np.ndarray:
  """uint32 code points of `text` (lone surrogates included): index i is text[i]."""
  return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)


def mix64(x: np.ndarray) -> np.ndarray:
  """The splitmix64 finalizer (Steele et al. 2014, with Stafford's Mix13 constants) on uint64s:
  every output bit depends on every input bit."""
  x = x ^ (x >> 30)
  x *= 0xBF58476D1CE4E5B9
  x ^= x >> 27
  x *= 0x94D049BB133111EB
  x ^= x >> 31
  return x


def powers(base: int, count: int) -> np.ndarray:
  """base^0 .. base^(count-1) modulo 2^64 (uint64 products wrap), from a table per base that
  grows by doubling (read-only: a view of it)."""
  table = _POWER_TABLES.get(base)
  if table is None or len(table) < count:
    size = max(count, 2 * len(table) if table is not None else 4096)
    table = np.full(size, base, dtype=np.uint64)
    table[:1] = 1
    np.cumprod(table, out=table)
    table.flags.writeable = False
    _POWER_TABLES[base] = table
  return table[:count]


_POWER_TABLES: dict[int, np.ndarray] = {}


class PrefixHash:
  """Polynomial hashes of the runs of a code point array, from its prefix sums."""

  def __init__(self, codes: np.ndarray):
    self._prefix = np.zeros(len(codes) + 1, dtype=np.uint64)
    np.cumsum(codes * powers(BASE, len(codes)), out=self._prefix[1:])
    self._inverse = powers(BASE_INVERSE, len(codes) + 1)

  def runs(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The raw (not mixed) uint64 hashes of codes[starts[k]:ends[k]] for every k."""
    return (self._prefix[ends] - self._prefix[starts]) * self._inverse[starts]
