"""Train one adaptive-inference model, or sweep many with -m.

    python launch.py method=sweet task=glue/rte model=minilm_l6
    python launch.py -m method=early_exit,sweet,cascade task=glue/* model=minilm_l6
"""

import sys

import hydra
from omegaconf import DictConfig

from sweet_lightning.cli import OverrideError, expand_overrides
from sweet_lightning.resolvers import register_resolvers

register_resolvers()  # before @hydra.main composes the config


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from sweet_lightning.train import train  # imported late: --help stays fast

    return train(cfg)


if __name__ == "__main__":
    try:
        sys.argv[1:] = expand_overrides(sys.argv[1:])
    except OverrideError as err:
        sys.exit(f"error: {err}")
    main()
