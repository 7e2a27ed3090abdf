"""One training run: the datamodule, the method's LightningModule and the evaluation callback,
each built by Hydra from its node of conf/train.yaml (`data`, `method` + `module`, `evaluation`);
then the final validation's per-exit logits (`logits_<split>.npz`) and its evaluation by the
callback, saved as the run record (`results.json`, sweet_lightning.run_record).

launch.py is a thin wrapper around `train(cfg)` (and imports this module only once a run starts).
"""

from __future__ import annotations

import logging
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from sweet_lightning import host, model_selection, runs
from sweet_lightning.console import end_of_run, quiet_console
from sweet_lightning.evaluation.callback import headline_metrics, warn_collapsed
from sweet_lightning.metrics import check_optimized_metric
from sweet_lightning.modeling import SegmentedEncoder
from sweet_lightning.overrides import CONF_DIR
from sweet_lightning.run_record import CALIBRATION_SPLIT, RunRecord, save_logits
from sweet_lightning.seeding import EpochSeeding
from sweet_lightning.wandb_logging import attach_run_config, log_final

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float:
    """Fit the configured method and return `cfg.optimized_metric` of the final evaluation. The run dir
    is locked while it trains, skipped when it holds a completed run, and a failed or interrupted run
    is recorded in results.json (sweet_lightning.runs.guarded_run: also what a failing run returns)."""
    quiet_console()
    try:
        return runs.guarded_run(cfg, output_dir(cfg), _train)
    finally:
        close_wandb()


def _train(cfg: DictConfig) -> float:
    check_config(cfg)
    check_trainer(cfg)
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    host.configure_run(cfg)
    L.seed_everything(cfg.seed, workers=True)

    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    check_max_seq_length(cfg, module)
    evaluation = build_evaluation(cfg)
    trainer, selector = build_trainer(cfg, evaluation, out)

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=runs.resume_checkpoint(cfg))
    train_time = time.perf_counter() - start

    # recorded before validate(ckpt_path=...), which restores callback states from that checkpoint
    selection = selector.record(datamodule.eval_split_names[0])
    # the last fit epoch's outputs may already be those of the reported weights: then they are final
    if not selector.evaluated_already(trainer, evaluation.outputs):
        ckpt = selector.final_weights(trainer, module)
        trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
    if not trainer.is_global_zero:  # DDP: rank 0 writes the results (every rank holds the same)
        return float("nan")
    weights = selector.weights_file(trainer)
    if not cfg.get("keep_checkpoints", True):
        # a study that keeps only its logits (experiment=cpu_repro): ~0.3-1 GB of weights per run
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        weights = None
    # the device it trained on: Lightning's teardown has already moved the module back to the CPU
    device = str(trainer.strategy.root_device)
    record = write_results(cfg, module, datamodule, evaluation, out, train_time, weights, selection, device)
    try:
        log_final(trainer.loggers, record, out)
    except Exception as err:  # results.json is written: a W&B hiccup must not turn the run into a failure
        log.warning("W&B: the final evaluation was not logged (%s: %s)", type(err).__name__, err)
    close_wandb()  # W&B's own footer (history, summary, sync hint) prints now, above the block below
    log.info("%s", end_of_run(record, out))
    value = record.metrics.get(cfg.get("optimized_metric"))
    return float(value) if value is not None else float("nan")


# ---- the run's objects, built by Hydra from conf/train.yaml's `module`, `data`, `evaluation`


def build(node, **kwargs):
    """hydra.utils.instantiate, with our own one-line errors (offline hub, bad exit layers, an unknown
    exit policy) surfaced instead of Hydra's wrapper around them."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, (ValueError, RuntimeError)):
            raise err.__cause__ from None
        raise


def build_module(cfg: DictConfig):
    """The LightningModule: conf/method's class and keys with the `module` node's arguments (`name`
    aside: it names the run, not the module)."""
    spec = {
        **OmegaConf.to_container(cfg.method, resolve=True),
        **OmegaConf.to_container(cfg.module, resolve=True),
    }
    spec.pop("name", None)
    return build(spec, _convert_="all")


def build_datamodule(cfg: DictConfig):
    return build(cfg.data)


def build_evaluation(cfg: DictConfig):
    return build(cfg.evaluation, _convert_="all")


def build_trainer(cfg: DictConfig, evaluation, out: Path):
    """(Trainer, ModelSelection): the evaluation callback, the configured callbacks and loggers, and
    the callback that chooses which epoch's weights are reported."""
    callbacks = [evaluation, *instantiate_all(cfg.get("callbacks")), EpochSeeding(cfg.seed)]
    loggers = instantiate_all(cfg.get("logger"))
    attach_run_config(loggers, OmegaConf.to_container(cfg, resolve=True))
    # without a configured checkpoint (callbacks=none) Lightning would add its own; keep none
    keep = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    # which epoch is reported (model_selection): without a checkpoint on disk, kept in memory
    selector = model_selection.ModelSelection(selection_rule(cfg), keep_weights=not keep)
    callbacks.append(selector)
    runs.pin_ddp_relaunch(out)
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, enable_checkpointing=keep
    )
    model_selection.configure_checkpoint(trainer.checkpoint_callback, selector.rule)
    return trainer, selector


def instantiate_all(group: DictConfig | None) -> list[Any]:
    return [instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


# ---- the end of a run


def write_results(
    cfg,
    module,
    datamodule,
    evaluation,
    out: Path,
    train_time: float,
    ckpt: str | None,
    selection: dict,
    device: str,
) -> RunRecord:
    """Save the final validation's logits and results.json (fields documented in README, "Outputs"):
    both as the evaluation callback holds them, nothing is evaluated again."""
    report = evaluation.latest
    splits = {}
    for split, arrays in evaluation.outputs.items():
        name = save_logits(out, split, arrays)
        if split != CALIBRATION_SPLIT:
            splits[split] = {"num_examples": int(arrays["labels"].shape[0]), "logits": name}
    primary = next(iter(splits), None)
    holdout = cfg.calibration == "train_holdout"
    record = RunRecord(
        method=cfg.method.name,
        task=module.task.name,
        model=cfg.model.name,
        pretrained=cfg.model.pretrained,
        exit_layers=module.exit_layers,
        num_layers=module.num_layers,
        cost_model=module.cost_model,
        exit_pooling=cfg.model.exit_pooling,
        seed=int(cfg.seed),
        lr=float(cfg.lr),
        train_size=int(cfg.train_size),
        train_examples=int(len(datamodule.train_indices)),
        max_epochs=int(cfg.trainer.max_epochs),
        batch_size=int(cfg.batch_size),
        metric=module.task.metric,
        primary_split=primary,
        exit_policy=cfg.exit_policy,
        calibration={
            "source": cfg.calibration,
            "size": int(len(datamodule.calibration_indices)) if holdout else splits[primary]["num_examples"],
        },
        temperatures=report[primary]["temperatures"] if primary in report else None,
        splits=splits,
        evaluation=report,
        collapsed_exits=warn_collapsed(module, report, cfg.seed, warn=False),
        metrics=headline_metrics(report) if primary is not None else {},
        selection=selection,
        # what bit-identical numbers also depend on: on CPU, gradient reductions vary with the thread count
        environment={"torch": torch.__version__, "threads": torch.get_num_threads(), "device": device},
        train_time_s=round(train_time, 2),
        checkpoint=ckpt,
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    record.save(out)
    return record


def close_wandb() -> None:
    """W&B runs are closed even when training fails (otherwise the next run of a sweep hangs on it)."""
    wandb = sys.modules.get("wandb")  # imported only by a run that used it
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def output_dir(cfg: DictConfig) -> Path:
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # called outside Hydra (tests, notebooks)
        return Path(cfg.get("output_dir") or ".")


# ---- config checks: before any data or model is loaded, one line naming the key and the fix

# key, type, test, what the test asks, example
VALUE_CHECKS = (
    ("seed", int, lambda v: 0 <= v < 2**32, "in [0, 2^32)", "seed=42"),  # numpy's seed range
    ("lr", float, lambda v: v > 0, "> 0", "lr=2e-5"),
    ("train_size", int, lambda v: v > 0, "> 0", "train_size=6000"),
    ("batch_size", int, lambda v: v > 0, "> 0", "batch_size=16"),
    ("eval_batch_size", int, lambda v: v > 0, "> 0", "eval_batch_size=64"),
    # 0 would silently mean "no truncation" to the tokenizer
    ("max_seq_length", int, lambda v: v > 0, "> 0", "max_seq_length=256"),
)


def check_config(cfg: DictConfig) -> None:
    for key, kind, valid, requirement, example in VALUE_CHECKS:
        value = cfg.get(key)
        try:
            number = kind(value)
            exact = kind is float or number == float(value)  # seed=1.5 is not seed 1
        except (TypeError, ValueError):
            exact = False
        if isinstance(value, bool) or not exact:
            what = "a number" if kind is float else "an integer"
            raise ValueError(f"{key}={value} is not {what} (e.g. {example}).")
        if not valid(number):
            raise ValueError(f"{key}={value} must be {requirement} (e.g. {example}).")
    if cfg.calibration == "train_holdout" and int(cfg.calibration_size) <= 0:
        raise ValueError("calibration=train_holdout needs calibration_size > 0 (or use calibration=dev).")
    check_optimized_metric(cfg.optimized_metric, len(cfg.model.exit_layers))
    threads = cfg.get("torch_threads")
    if threads is not None and int(threads) < 1:
        raise ValueError(f"torch_threads={threads} must be >= 1 (or null for torch's default).")
    if cfg.optimizer.get("fused") and cfg.optimizer.get("foreach"):  # torch refuses both, after data loads
        raise ValueError("optimizer.foreach=true needs optimizer.fused=null (fused is the default).")
    selection_rule(cfg)
    # `data.train_size=500` would train on 500 rows while results.json, the report and the skip logic
    # read `train_size`: a passed-on key must keep its top-level key's value
    for key, source in passed_on_keys().items():
        value, wanted = OmegaConf.select(cfg, key), OmegaConf.select(cfg, source)
        if value != wanted:
            raise ValueError(
                f"{key}={value} differs from {source}={wanted}, "
                f"which results.json and the report read: set {source}=... instead of {key}."
            )


def passed_on_keys() -> dict[str, str]:
    """{`data.train_size`: `train_size`, ...}: the constructor nodes' keys that conf/train.yaml writes
    as nothing but another key (`${train_size}`)."""
    raw = OmegaConf.load(CONF_DIR / "train.yaml")
    pairs = {}
    for node in ("module", "data", "evaluation"):
        for key, value in (raw.get(node) or {}).items_ex(resolve=False):
            if isinstance(value, str) and (m := re.fullmatch(r"\$\{([\w.]+)\}", value)):
                pairs[f"{node}.{key}"] = m.group(1)
    return pairs


def selection_rule(cfg: DictConfig) -> model_selection.Rule:
    return model_selection.resolve(cfg.get("model_selection", "auto"), cfg.calibration)


def check_trainer(cfg: DictConfig) -> None:
    """A run that trains nothing would still be written as completed, and the report would use it."""
    for key in ("max_epochs", "max_steps", "limit_train_batches"):
        if cfg.trainer.get(key) == 0:
            raise ValueError(
                f"trainer.{key}=0 trains nothing, yet the run would be recorded as completed: use trainer.{key} >= 1 "
                "(to re-evaluate a trained run: python -m sweet_lightning.evaluate <run_dir>)."
            )


def check_max_seq_length(cfg: DictConfig, module) -> None:
    """Longer inputs than the model has positions for would fail mid-epoch with a tensor-size error."""
    limit = SegmentedEncoder.max_length_of(module)
    if limit is not None and int(cfg.max_seq_length) > limit:
        raise ValueError(
            f"max_seq_length={cfg.max_seq_length} is more than the {limit} positions of model "
            f"{cfg.model.name} ({cfg.model.pretrained}): use max_seq_length <= {limit}."
        )
