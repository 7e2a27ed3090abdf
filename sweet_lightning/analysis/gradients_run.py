"""The gradient-conflict job: fine-tune `steps` optimizer steps, then measure on `batches`
NEW training batches (the ones right after the fine-tuning batches in the same shuffled
pass, so never seen in training), and write `gradients.json` + one heatmap per batch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from sweet_lightning.analysis.gradients import AnalysisError, batch_report, measured_layers, to_device
from sweet_lightning.analysis.heatmap import format_table, plot_heatmap

log = logging.getLogger(__name__)


def check_request(cfg: DictConfig) -> tuple[int, int]:
    """(steps, batches), validated before any data or model is loaded."""
    for key, minimum in (("steps", 0), ("batches", 1)):
        value = cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise AnalysisError(
                f"{key}={value} must be an integer >= {minimum} (e.g. {key}={max(minimum, 1)})."
            )
    measured_layers(cfg.model.exit_layers)
    return cfg.steps, cfg.batches


def fine_tune(
    module, batches: Iterator[dict], steps: int, loggers: Sequence[Any] = (), progress: bool = True
) -> list[float]:
    """`steps` optimizer steps with the module's own training loss, in train mode (dropout on)."""
    device = next(module.parameters()).device
    # what `configure_optimizers` builds, sized for `steps` (it asks a Trainer otherwise)
    optimizer = module.make_optimizer()
    scheduler = module.make_schedule(optimizer, max(1, steps))
    module.train()
    losses = []
    # disable=None: a bar on a terminal only, not in redirected logs
    bar = tqdm(
        range(steps), desc="fine-tuning", unit="step", disable=True if not progress or steps == 0 else None
    )
    for step in bar:
        batch = to_device(next(batches), device)
        # the method's own loss at this optimizer step (alternating alternates); the steps count as
        # epoch 0, so two_stage fine-tunes in its stage 1 (backbone with the last classifier)
        loss = module.training_loss(batch, step, 0)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        for logger in loggers:
            logger.log_metrics({"train/loss": losses[-1]}, step=step)
    optimizer.zero_grad(set_to_none=True)  # leave no optimizer gradients behind
    return losses


def _log_results(loggers, result: dict, images: list[Path]) -> None:
    metrics = {
        f"gradients/batch{entry['batch']}/layer{layer}/{pair}": value
        for entry in result["batches"]
        for layer, report in entry["layers"].items()
        for pair, value in report["pairs"].items()
        if isinstance(value, float)
    }
    for logger in loggers:
        if metrics:
            logger.log_metrics(metrics, step=result["steps"])
        if type(logger).__name__ == "WandbLogger":
            logger.log_image(
                key="gradients/heatmap", images=[str(p) for p in images], caption=[p.stem for p in images]
            )
        logger.finalize("success")


def run(cfg: DictConfig) -> dict:
    import lightning as L

    from sweet_lightning import host, train
    from sweet_lightning.console import quiet_console

    quiet_console()
    steps, batches = check_request(cfg)
    needed = (steps + batches) * int(cfg.batch_size)
    if cfg.train_size is None:  # just enough for the fine-tuning batches and the new ones
        cfg.train_size = needed
    train.check_config(cfg)
    out = Path(cfg.output_dir) if cfg.get("output_dir") else train.output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    host.configure_run(cfg)
    L.seed_everything(cfg.seed, workers=True)

    datamodule = train.build_datamodule(cfg)
    datamodule.setup("fit")
    available = len(datamodule.train_dataset)
    if needed > available:
        # the measured batches must be unseen, so fine-tuning may not wrap around into a second epoch
        fix = "raise train_size or lower" if available == cfg.train_size else "the task has no more; lower"
        raise AnalysisError(
            f"steps={steps} + batches={batches} need {needed} unseen training examples at batch_size="
            f"{cfg.batch_size}, but the training sample has {available}: {fix} steps, batches or batch_size."
        )
    # trainer.precision is not applied: the loop runs in float32, so gradients are compared at
    # full precision whatever the training runs use
    accelerator = str(cfg.get("trainer", {}).get("accelerator", "auto"))
    module = train.build_module(cfg).to(
        "cuda" if accelerator != "cpu" and torch.cuda.is_available() else "cpu"
    )
    loggers = train.instantiate_all(cfg.get("logger"))
    try:
        stream = iter(datamodule.train_dataloader())  # one shuffled pass: no batch repeats
        losses = fine_tune(module, stream, steps, loggers)
        entries, images = [], []
        for b in range(1, batches + 1):
            batch = next(stream)
            report = batch_report(module, batch)
            title = f"{cfg.method.name} / {cfg.task.name} / {cfg.model.name}: batch {b}, after {steps} steps"
            images.append(plot_heatmap(report, out / f"gradients_batch{b}.png", title))
            size = int(batch["labels"].shape[0])
            entries.append({"batch": b, "num_examples": size, "heatmap": images[-1].name, "layers": report})
            log.info("mean row-cosine of classifier gradients\n%s", format_table(report, title))
        result = {
            "method": cfg.method.name,
            "task": cfg.task.name,
            "model": cfg.model.name,
            "pretrained": cfg.model.pretrained,
            "exit_layers": list(module.exit_layers),
            "measured_layers": measured_layers(module.exit_layers),
            "steps": steps,
            "num_batches": batches,
            "batch_size": int(cfg.batch_size),
            "lr": float(cfg.lr),
            "seed": int(cfg.seed),
            "train_size": int(cfg.train_size),
            "final_train_loss": losses[-1] if losses else None,
            "measurement": "gradient of each classifier's own loss w.r.t. the layer's last feed-forward "
            "matrix, eval mode (no dropout); cell = mean over rows of the cosine between two "
            "classifiers' gradient rows",
            "batches": entries,
            "config": OmegaConf.to_container(cfg, resolve=True),
        }
        (out / "gradients.json").write_text(json.dumps(result, indent=2))
        _log_results(loggers, result, images)
        log.info("gradients: %s", out / "gradients.json")
        return result
    finally:
        train.close_wandb()
