"""Speedup ratio (paper eq. 1): layers run per example, relative to the full backbone L_M.

Early-Exit / SWEET re-use lower layers, so stopping at exit i costs L_i layers. A Multi-Model
cascade re-runs independent models, so stopping at model i costs L_1 + ... + L_i layers and the
ratio can exceed 1 (kept as is: that overhead is the point of the comparison in Sec. 3.3).
The ratio is computed from integer layer counts with a single division, so "everyone at exit
i" gives exactly cost_i / L_M (e.g. 6/12 and 11/12 for the paper's example).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .checks import check_exit_layers, check_kind


def layers_run(exit_layers: Sequence[int], kind: str) -> np.ndarray:
    """Backbone layers an example pays for when it stops at each exit: [E] ints."""
    layers = np.asarray(exit_layers, dtype=np.int64)
    return np.cumsum(layers) if check_kind(kind) == "cascade" else layers


def speedup_from_counts(
    exit_counts: Sequence[int], exit_layers: Sequence[int], num_layers: int, kind: str
) -> float:
    """Eq. 1: sum_i S_i * cost_i / (L_M * sum_i S_i), with S_i the examples answered by exit i."""
    layers = check_exit_layers(exit_layers, num_layers)
    counts = np.asarray(exit_counts, dtype=np.int64)
    if counts.shape != layers.shape or counts.min() < 0 or counts.sum() == 0:
        raise ValueError(f"exit_counts must be {layers.size} non-negative ints with a positive sum")
    return float(int(counts @ layers_run(layers, kind)) / (num_layers * int(counts.sum())))


def speedup(exit_index: np.ndarray, exit_layers: Sequence[int], num_layers: int, kind: str) -> float:
    """Speedup ratio of per-example exit indices [N] (0-based)."""
    counts = np.bincount(np.asarray(exit_index), minlength=len(exit_layers))
    if counts.size != len(exit_layers):
        raise ValueError(f"exit_index refers to exits beyond the {len(exit_layers)} available")
    return speedup_from_counts(counts, exit_layers, num_layers, kind)
