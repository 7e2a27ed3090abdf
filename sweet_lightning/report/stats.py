"""Mean, sample standard deviation and a 95% t confidence interval over seeds.

The t quantile is tabulated (df 1..30, from the exact distribution) and beyond that taken from
the Cornish-Fisher expansion (Abramowitz & Stegun 26.7.5, error < 1e-5 for df > 30), so the
report needs no scipy. Anything undefined (n < 2 for the spread, a NaN among the values) is
NaN, which the tables print as "–".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# two-sided 95%: t_{0.975, df} for df = 1..30
T975 = (
    12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836, 2.446911851, 2.364624252,
    2.306004135, 2.262157163, 2.228138852, 2.200985160, 2.178812830, 2.160368656, 2.144786688,
    2.131449546, 2.119905299, 2.109815578, 2.100922040, 2.093024054, 2.085963447, 2.079613845,
    2.073873068, 2.068657610, 2.063898562, 2.059538553, 2.055529439, 2.051830516, 2.048407142,
    2.045229642, 2.042272456,
)  # fmt: skip
Z975 = 1.959963984540054


def t_critical(df: int) -> float:
    """Two-sided 95% critical value of Student's t with df degrees of freedom."""
    if df < 1:
        raise ValueError(f"t distribution needs df >= 1, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = Z975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample std (ddof=1)
    half_width: float  # of the 95% CI for the mean

    @property
    def ci_low(self) -> float:
        return self.mean - self.half_width

    @property
    def ci_high(self) -> float:
        return self.mean + self.half_width


def summarize(values: Sequence[float]) -> Summary:
    """Summary over seeds; a NaN among the values (e.g. a speedup one seed's curve never
    reaches) makes everything NaN rather than averaging the seeds that happen to reach it."""
    arr = np.asarray(values, dtype=np.float64)
    n = int(arr.size)
    if n == 0 or np.isnan(arr).any():
        return Summary(n, math.nan, math.nan, math.nan)
    mean = float(arr.mean())
    if n < 2:
        return Summary(n, mean, math.nan, math.nan)
    std = float(arr.std(ddof=1))
    return Summary(n, mean, std, t_critical(n - 1) * std / math.sqrt(n))
