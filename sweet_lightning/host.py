"""How a process uses its host: torch's CPU threads and the C allocator. Set once, before training.

Threads: on CPU the gradient reductions depend on the thread count, so the same seed gives the same
bits only with it fixed (`torch_threads`; README, "Same seed, same numbers").

Freed memory: glibc's malloc hands large freed blocks back to the operating system (it unmaps
them, or trims the top of its heap) and takes them back page by page at the next step. A step
whose activations are larger than the last one's (the cascade keeps all its members' graphs alive
at once) then pays ~90,000 page faults, zero-filling every page anew: 20% of a MiniLM-L6 cascade
step (docs/benchmarks.md, `benchmarks/cascade_profile.py`). Keeping freed memory in the heap for
the next step removes them; the peak stays the peak, only the memory between steps is not
returned. The values are glibc's own upper bounds for these knobs.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit: larger blocks are always mapped
TRIM_THRESHOLD = 1 << 30  # trim the heap's top only once 1 GiB of it is free


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks below 32 MiB in the heap; False where there is no glibc."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not Linux, or another C library (musl): nothing to tune
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def configure(threads: int | None, keep_memory: bool) -> None:
    """torch's intra-op threads (None: torch's choice) and, with `keep_memory`, `keep_freed_memory`."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    if keep_memory:
        keep_freed_memory()


def configure_run(cfg) -> None:
    """`configure` from a run's config keys (`torch_threads`, `keep_freed_memory`): training and the
    gradient analysis read them the same way."""
    configure(cfg.get("torch_threads"), cfg.get("keep_freed_memory", True))
