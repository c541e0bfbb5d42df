"""Power laws of loss against training compute (Kaplan et al. 2020; Hoffmann et al. 2022)."""

import dataclasses
from typing import Sequence

import numpy as np
from scipy import optimize

from lm.errors import UserError


@dataclasses.dataclass(frozen=True)
class PowerLaw:
  """loss = a * compute^-b + irreducible."""
  a: float
  b: float
  irreducible: float = 0.0

  def __call__(self, compute):
    return self.a * np.asarray(compute, dtype=np.float64)**-self.b + self.irreducible


def fit_power_law(compute: Sequence[float],
                  loss: Sequence[float],
                  irreducible: bool = False) -> PowerLaw:
  """Least-squares fit of L = a C^-b, a line in log-log space; with `irreducible`, of
  L = a C^-b + E (E >= 0, below the smallest loss), started from the log-log line."""
  c, l = np.asarray(compute, np.float64), np.asarray(loss, np.float64)
  if c.shape != l.shape or c.ndim != 1 or c.size < 2 + irreducible:
    raise UserError(f"fit_power_law needs as many compute as loss values, at least "
                    f"{2 + irreducible}; got {c.size} and {l.size}")
  if not (np.all(np.isfinite(c)) and np.all(np.isfinite(l)) and np.all(c > 0) and np.all(l > 0)):
    raise UserError("fit_power_law needs finite, positive compute and loss values")
  slope, intercept = np.polyfit(np.log(c), np.log(l), 1)
  line = PowerLaw(a=float(np.exp(intercept)), b=float(-slope))
  if not irreducible:
    return line
  # Fitted in log C, with C scaled to ~1, so that a, b and E have comparable magnitudes.
  scale = float(np.exp(np.mean(np.log(c))))
  model = lambda x, a, b, e: a * np.exp(-b * x) + e
  start = (line.a * scale**-line.b, line.b, 0.0)
  (a, b, e), _ = optimize.curve_fit(model, np.log(c / scale), l, p0=start,
                                    bounds=([0, 0, 0], [np.inf, np.inf, float(l.min())]),
                                    maxfev=20000)
  return PowerLaw(a=float(a * scale**b), b=float(b), irreducible=float(e))
