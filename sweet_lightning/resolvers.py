"""OmegaConf resolvers the configs use; registered when the package is imported (sweet_lightning/__init__.py).

`${sl.mkdir:path}` creates the folder and returns its path: the Optuna sweeper opens its sqlite
study (multirun/optuna/<study>/study.db) before any sweep folder exists, and sqlite does not
create parent folders. Only the launching process resolves it (the sweeper's config).

`${sl.sweep_group:default}` is the sweep folder's name inside a multirun job (every job of one
sweep gets the same W&B group, so its methods sit side by side) and `default` otherwise.

`${sl.deterministic:}` is the Trainer's `deterministic`: "warn" (torch's deterministic kernels)
where CUDA is available, False on CPU. CPU kernels already give the same bits at a fixed thread
count (tests/test_determinism.py), and torch's deterministic mode costs a CPU training epoch 6%
(docs/benchmarks.md, "One epoch against the Hugging Face Trainer"); on GPUs it is what makes a seed
repeatable (atomic adds in backward otherwise sum in any order).

`${sl.eq:a,b}` is whether a == b (the module's `learned_exit`: exit_policy=learned), and
`${sl.holdout:calibration,size}` the examples held out of the training pool for calibration: `size`
with calibration=train_holdout, none with calibration=dev (conf/train.yaml, `data`).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def _mkdir(path: str) -> str:
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def _sweep_group(default: str) -> str:
    from hydra.core.hydra_config import HydraConfig

    from sweet_lightning.runs import is_multirun  # False outside a Hydra job too (notebooks)

    return Path(HydraConfig.get().sweep.dir).name if is_multirun() else default


def _deterministic() -> str | bool:
    import torch

    return "warn" if torch.cuda.is_available() else False


RESOLVERS = {
    "sl.mkdir": _mkdir,
    "sl.sweep_group": _sweep_group,
    "sl.deterministic": _deterministic,
    "sl.eq": lambda a, b: a == b,
    "sl.holdout": lambda calibration, size: int(size) if calibration == "train_holdout" else 0,
}


def register_resolvers() -> None:
    for name, resolver in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
