"""Spread over seeds: mean, sample standard deviation and the 95% confidence interval."""

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Summary:
  n: int
  mean: float
  std: float  # Sample standard deviation (ddof=1); NaN for one value.
  ci95: float  # Half-width of the 95% confidence interval of the mean; NaN for one value.


def summarize(values: Sequence[float]) -> Summary:
  """Mean +- t_{0.975, n-1} * std / sqrt(n): Student's t, since a few seeds are a small sample
  from a distribution of unknown variance."""
  x = np.asarray(values, dtype=np.float64)
  if x.ndim != 1 or not x.size:
    raise ValueError(f"need a non-empty list of numbers, got {values!r}")
  n = x.size
  if n == 1:
    return Summary(1, float(x[0]), math.nan, math.nan)
  std = float(np.std(x, ddof=1))
  t = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df=n - 1))
  return Summary(n, float(np.mean(x)), std, t * std / math.sqrt(n))
