"""One training run: data, method, trainer from the Hydra config; then the final per-exit
evaluation, saved as logits (`logits_<split>.npz`) and a summary (`results.json`).

launch.py is a thin wrapper around `train(cfg)`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def output_dir(cfg: DictConfig) -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # called outside Hydra (tests, notebooks)
        return Path(cfg.get("output_dir") or ".")


def check_config(cfg: DictConfig) -> None:
    if int(cfg.train_size) <= 0:
        raise ValueError(f"train_size={cfg.train_size} must be > 0 (e.g. train_size=6000).")
    if float(cfg.lr) <= 0:
        raise ValueError(f"lr={cfg.lr} must be > 0 (e.g. lr=2e-5).")
    if cfg.calibration == "train_holdout" and int(cfg.calibration_size) <= 0:
        raise ValueError("calibration=train_holdout needs calibration_size > 0 (or use calibration=dev).")
    threads = cfg.get("torch_threads")
    if threads is not None and int(threads) < 1:
        raise ValueError(f"torch_threads={threads} must be >= 1 (or null for torch's default).")
    selection_rule(cfg)


def selection_rule(cfg: DictConfig):
    from sweet_lightning import model_selection

    return model_selection.resolve(cfg.get("model_selection", "auto"), cfg.calibration)


def build_module(cfg: DictConfig):
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    method_cfg = OmegaConf.to_container(cfg.method, resolve=True)
    method_cfg.pop("name", None)
    model = cfg.model
    try:
        return _instantiate_module(instantiate, method_cfg, cfg, model)
    except InstantiationException as err:
        # surface our own one-line errors (offline hub, bad exit layers) instead of Hydra's wrapper
        if isinstance(err.__cause__, (ValueError, RuntimeError)):
            raise err.__cause__ from None
        raise


def _instantiate_module(instantiate, method_cfg, cfg, model):
    return instantiate(
        method_cfg,
        task=cfg.task.name,
        pretrained=model.pretrained,
        exit_layers=list(model.exit_layers),
        exit_pooling=model.exit_pooling,
        dropout=model.dropout,
        random_init=model.random_init,
        config_overrides=OmegaConf.to_container(model.config_overrides) if model.config_overrides else None,
        learned_exit=cfg.exit_policy == "learned",
        lr=cfg.lr,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler),
        _convert_="all",
    )


def build_datamodule(cfg: DictConfig):
    from sweet_lightning.data import GlueDataModule
    from sweet_lightning.models import resolve_pretrained

    return GlueDataModule(
        task=cfg.task.name,
        tokenizer=resolve_pretrained(cfg.model.pretrained),
        glue_dir=cfg.data.glue_dir,
        train_size=cfg.train_size,
        max_seq_length=cfg.max_seq_length,
        batch_size=cfg.batch_size,
        eval_batch_size=cfg.eval_batch_size,
        seed=cfg.seed,
        calibration_size=cfg.calibration_size if cfg.calibration == "train_holdout" else 0,
        num_workers=cfg.data.num_workers,
        cache_dir=cfg.data.cache_dir,
    )


def build_evaluation(cfg: DictConfig):
    from sweet_lightning.evaluation.callback import AdaptiveEvaluation

    ev = cfg.evaluation
    return AdaptiveEvaluation(
        policy=cfg.exit_policy,
        calibration=cfg.calibration,
        thresholds=list(ev.thresholds) if ev.thresholds is not None else None,
        num_thresholds=ev.num_thresholds,
        speedup_points=list(ev.speedup_points) if ev.speedup_points is not None else None,
        policy_kwargs=OmegaConf.to_container(ev.policy_kwargs) if ev.policy_kwargs else None,
        seed=cfg.seed,
    )


def instantiate_all(group: DictConfig | None) -> list[Any]:
    from hydra.utils import instantiate

    if not group:
        return []
    return [instantiate(c) for c in group.values() if c is not None and "_target_" in c]


def close_wandb() -> None:
    """W&B runs are closed even when training fails (otherwise the next run of a sweep hangs on it)."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def train(cfg: DictConfig) -> float:
    """Fit the configured method and return `cfg.optimized_metric` of the final evaluation.

    A run dir with a completed run is skipped (sweet_lightning.runs). A failing run is recorded in
    results.json ("status": "failed"); in a multirun it returns NaN so the other jobs go on (under
    Optuna it raises: a FAIL trial), a single run re-raises.
    """
    from sweet_lightning import runs

    out = output_dir(cfg)
    try:
        done = runs.completed_value(cfg, out)
        return done if done is not None else _train(cfg)
    except Exception as err:
        runs.record_failure(cfg, out, err)
        if not runs.swallow_failures():
            raise
        log.exception("run failed; the sweep goes on")
        return float("nan")
    finally:
        close_wandb()


def _train(cfg: DictConfig) -> float:
    import lightning as L
    from hydra.utils import instantiate

    from sweet_lightning import model_selection, runs
    from sweet_lightning.seeding import EpochSeeding

    check_config(cfg)
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.get("torch_threads") is not None:
        import torch

        torch.set_num_threads(int(cfg.torch_threads))
    L.seed_everything(cfg.seed, workers=True)

    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    evaluation = build_evaluation(cfg)
    callbacks = [evaluation, *instantiate_all(cfg.get("callbacks")), EpochSeeding(cfg.seed)]
    loggers = instantiate_all(cfg.get("logger"))
    from lightning.pytorch.callbacks import ModelCheckpoint

    # without a configured checkpoint (callbacks=none) Lightning would add its own; keep none
    keep = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    # which epoch is reported (model_selection): without a checkpoint on disk, kept in memory
    selector = model_selection.ModelSelection(selection_rule(cfg), keep_weights=not keep)
    callbacks.append(selector)
    runs.pin_ddp_relaunch(out)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, enable_checkpointing=keep)
    model_selection.configure_checkpoint(trainer.checkpoint_callback, selector.rule)

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=runs.resume_checkpoint(cfg))
    train_time = time.perf_counter() - start

    # recorded before validate(ckpt_path=...), which restores callback states from that checkpoint
    selection = selector.record(datamodule.eval_split_names[0])
    ckpt = selector.final_weights(trainer, module)
    trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
    if not trainer.is_global_zero:  # DDP: rank 0 writes the results (every rank holds the same)
        return float("nan")
    weights = selector.weights_file(trainer)
    results = write_results(cfg, module, datamodule, evaluation, out, train_time, weights, selection)
    metric = cfg.get("optimized_metric")
    value = results["metrics"].get(metric)
    log.info("results: %s", out / "results.json")
    return float(value) if value is not None else float("nan")


def write_results(
    cfg, module, datamodule, evaluation, out: Path, train_time: float, ckpt: str | None, selection: dict
) -> dict:
    """Save each split's logits and write results.json (fields documented in README, "Outputs")."""
    import torch

    from sweet_lightning.evaluation.callback import CALIBRATION_SPLIT, warn_collapsed

    task = module.task
    outputs = module.eval_outputs
    splits = {}
    for split, arrays in outputs.items():
        logits_file = f"logits_{split}.npz"
        np.savez_compressed(out / logits_file, **arrays)
        if split == CALIBRATION_SPLIT:
            continue
        scores = module.exit_scores(torch.from_numpy(arrays["logits"]), torch.from_numpy(arrays["labels"]))
        exits = []
        for i, layer in enumerate(module.exit_layers):
            entry = {"exit": i + 1, "layer": layer, "metric": task.metric, "score": scores[task.metric][i]}
            entry.update({m: scores[m][i] for m in task.extra_metrics})
            exits.append(entry)
        splits[split] = {"num_examples": int(arrays["labels"].shape[0]), "exits": exits, "logits": logits_file}
    report = evaluation.evaluate(module, outputs)
    primary = next(iter(splits), None)
    metrics: dict[str, float] = {}
    if primary is not None:
        metrics["val/score"] = splits[primary]["exits"][-1]["score"]
        for e in splits[primary]["exits"]:
            metrics[f"val/exit{e['exit']}/score"] = e["score"]
    if primary in report:
        metrics["val/auc"] = report[primary]["auc"]
    if CALIBRATION_SPLIT in report:
        metrics["val/calibration/auc"] = report[CALIBRATION_SPLIT]["auc"]
    calibration = {"source": cfg.calibration}
    calibration["size"] = (
        int(len(datamodule.calibration_indices)) if cfg.calibration == "train_holdout" else splits[primary]["num_examples"]
    )
    results = {
        "method": cfg.method.name,
        "task": task.name,
        "model": cfg.model.name,
        "pretrained": cfg.model.pretrained,
        "exit_layers": module.exit_layers,
        "num_layers": module.num_layers,
        "kind": module.kind,
        "exit_pooling": cfg.model.exit_pooling,
        "seed": int(cfg.seed),
        "lr": float(cfg.lr),
        "train_size": int(cfg.train_size),
        "train_examples": int(len(datamodule.train_indices)),
        "max_epochs": int(cfg.trainer.max_epochs),
        "batch_size": int(cfg.batch_size),
        "metric": task.metric,
        "primary_split": primary,
        "exit_policy": cfg.exit_policy,
        "calibration": calibration,
        "temperatures": report[primary]["temperatures"] if primary in report else None,
        "splits": splits,
        "evaluation": report,
        "collapsed_exits": warn_collapsed(module, report, cfg.seed, warn=False),
        "metrics": metrics,
        "selection": selection,
        # what bit-identical numbers also depend on: on CPU, gradient reductions vary with the thread count
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(module.device)},
        "train_time_s": round(train_time, 2),
        "checkpoint": ckpt,
        "status": "completed",
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results
