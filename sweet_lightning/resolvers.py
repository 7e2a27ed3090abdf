"""OmegaConf resolvers the configs use; registered by launch.py before Hydra composes anything.

`${sl.mkdir:path}` creates the folder and returns its path: the Optuna sweeper opens its sqlite
study (multirun/optuna/<study>/study.db) before any sweep folder exists, and sqlite does not
create parent folders. Only the launching process resolves it (the sweeper's config).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def _mkdir(path: str) -> str:
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("sl.mkdir"):
        OmegaConf.register_new_resolver("sl.mkdir", _mkdir)
