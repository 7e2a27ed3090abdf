"""The Hydra app behind `python launch.py` and the `sweet-train` console script (usage: launch.py).

The configs are read from the checkout's conf/ by absolute path, so the console script works
from any directory.
"""

import os
import sys

import hydra
from omegaconf import DictConfig

# importing the package registers the configs' ${sl.*} resolvers (sweet_lightning/__init__.py)
from sweet_lightning.overrides import CONF_DIR, OverrideError, expand_overrides


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def train_job(cfg: DictConfig) -> float:
    from sweet_lightning.runs import is_multirun
    from sweet_lightning.train import train  # imported late: --help stays fast

    try:
        return train(cfg)
    except (ValueError, RuntimeError, FileNotFoundError) as err:  # our checks' one-line messages
        if is_multirun() or os.environ.get("SWEET_DEBUG"):
            raise
        # a single run fails with one line, not a traceback (SWEET_DEBUG=1 shows it)
        sys.exit(f"error: {err}")


def main() -> None:
    if not (CONF_DIR / "train.yaml").is_file():
        sys.exit(
            f"error: {CONF_DIR}/train.yaml not found: install the package editable from a checkout "
            "(pip install -e .), which keeps conf/ beside it."
        )
    try:
        sys.argv[1:] = expand_overrides(sys.argv[1:])
    except OverrideError as err:
        sys.exit(f"error: {err}")
    train_job()


if __name__ == "__main__":
    main()
