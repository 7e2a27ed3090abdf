"""Helpers the benchmark scripts share: the launch.py config composed in-process, our Lightning
fit built the way sweet_lightning/train.py builds it, and the header every script prints."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parent.parent
GROUPING_KEY = "data.group_by_length"


def header(args_line: list[str] | None = None) -> str:
    """The exact command and the machine it ran on (first lines of every benchmark's output)."""
    argv = args_line if args_line is not None else sys.argv
    cmd = "python " + " ".join(shlex.quote(a) for a in argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"$ {cmd}\n# {cpu_name()}, {os.cpu_count()} cores, load {load:.2f}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, python {platform.python_version()}"
    )


def cpu_name() -> str:
    """The CPU model (Linux's /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return f"{platform.machine()} {platform.processor() or ''}".strip()


def default_glue_dir() -> None:
    # $GLUE_DIR, else a shared/glue beside the checkout (or beside a worktree folder above it)
    if os.environ.get("GLUE_DIR"):
        return
    for parent in REPO.parents:
        if (parent / "shared" / "glue").is_dir():
            os.environ["GLUE_DIR"] = str(parent / "shared" / "glue")
            return


def compose(overrides: list[str]) -> DictConfig:
    """conf/train.yaml with launch.py-style overrides, composed without starting a Hydra job."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import sweet_lightning  # noqa: F401  (importing the package registers its config resolvers)

    default_glue_dir()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides)


def has_key(cfg: DictConfig, dotted: str) -> bool:
    parent, _, leaf = dotted.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return node is not None and leaf in node


def grouping_available(cfg: DictConfig) -> bool:
    """Whether this checkout has the length-grouped training batches (issue 11's data option)."""
    if has_key(cfg, GROUPING_KEY):
        return True
    print(
        f"# note: {GROUPING_KEY} is not in conf/train.yaml on this checkout (length-grouped batches have not "
        "landed): our side is measured with random batches only"
    )
    return False


def our_overrides(overrides: list[str], steps: int, run_dir: str) -> list[str]:
    """`overrides` plus those of a training-only fit: one epoch without validation, checkpoints,
    loggers or progress bar (what the Trainer side leaves out too); `steps` > 0 cuts it short."""
    return [
        *overrides,
        "trainer=cpu",
        "callbacks=none",
        "trainer.max_epochs=1",
        "++trainer.limit_val_batches=0",
        "++trainer.num_sanity_val_steps=0",
        "++trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false",
        f"trainer.default_root_dir={run_dir}",
        f"run_dir={run_dir}",
        *([f"++trainer.limit_train_batches={steps}"] if steps > 0 else []),
    ]


class EpochTimer(L.Callback):
    """Wall time of the training epoch loop (from its first batch's fetch to the end of its last step),
    and the tokens its batches hold: padded (what the model computes on) and real."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.examples = self.padded_tokens = self.real_tokens = 0
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.examples += int(batch["labels"].shape[0])
        self.padded_tokens += int(batch["input_ids"].numel())
        self.real_tokens += int(batch["attention_mask"].sum())

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds += time.perf_counter() - self._start


def our_datamodule(cfg: DictConfig):
    """sweet_lightning/train.py's datamodule, set up (tokenised rows from its disk cache)."""
    from sweet_lightning.train import build_datamodule, check_config

    check_config(cfg)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    return datamodule


def lightning_parts(cfg: DictConfig):
    """(datamodule, module, EpochSeeding) as sweet_lightning/train.py builds them."""
    from sweet_lightning.seeding import EpochSeeding
    from sweet_lightning.train import build_module

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = our_datamodule(cfg)
    return datamodule, build_module(cfg), EpochSeeding(cfg.seed)


def timed_epoch(
    overrides: list[str], steps: int, run_dir: str
) -> tuple[EpochTimer, DictConfig, object, object]:
    """One training epoch of sweet_lightning (cut at `steps` batches when > 0) under an EpochTimer:
    (the timer, the config, the datamodule, the trained module)."""
    cfg = compose(our_overrides(overrides, steps, run_dir))
    datamodule, module, seeding = lightning_parts(cfg)
    timer = EpochTimer()
    lightning_trainer(cfg, [timer, seeding]).fit(module, datamodule=datamodule)
    return timer, cfg, datamodule, module


def lightning_trainer(cfg: DictConfig, callbacks: list, **kwargs) -> L.Trainer:
    """cfg.trainer as train.py instantiates it, without loggers or checkpoints; kwargs override it."""
    from hydra.utils import instantiate

    return instantiate(cfg.trainer, callbacks=callbacks, logger=False, enable_checkpointing=False, **kwargs)


def quiet() -> None:
    """Keep library chatter (untrained-head warnings, Lightning's tips) out of the tables."""
    import logging
    import warnings

    import transformers

    transformers.logging.set_verbosity_error()
    # untrained exits warn that they predict one class: true of any short timing run, not news
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "sweet_lightning.evaluation"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
