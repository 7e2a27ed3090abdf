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
