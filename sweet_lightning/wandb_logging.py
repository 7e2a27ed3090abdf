"""Everything this project sends to W&B, in one place (docs/wandb.md): the run's logger (with the
resolved config and an opt-in artifact), each validation epoch's speed-accuracy chart, the final
evaluation's charts and summary values, and a report as a run of its own (job type "report").

Nothing here imports wandb until W&B is really in use.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.logger import _convert_params, _sanitize_callable_params
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger

from sweet_lightning.run_record import RESULTS_FILE, RunRecord, logits_file

PROJECT = "sweet_lightning"
CURVE_COLUMNS = ["threshold", "speedup", "score"]


class WandbLogger(_LightningWandbLogger):
    """Lightning's WandbLogger with this project's config and artifact handling.

    The W&B config is the run's resolved Hydra config (set by `attach_run_config`), so runs can be
    filtered and grouped on `method.name`, `task.name`, `model.exit_layers`, `lr`, `seed`,
    `exit_policy`... The module's and datamodule's constructor arguments, which Lightning logs too,
    go under `hparams`: their flat `task="rte"` would otherwise overwrite the `task` section.
    """

    def __init__(self, *args: Any, log_artifacts: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Lightning always passes anonymous=None, which wandb 0.31 answers with a deprecation warning
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
        self.log_artifacts = bool(log_artifacts)
        self.run_config: dict | None = None

    def log_hyperparams(self, params: Any) -> None:
        hparams = {"hparams": _sanitize_callable_params(_convert_params(params))}
        super().log_hyperparams({**(self.run_config or {}), **hparams})


def wandb_loggers(loggers: Iterable) -> list[_LightningWandbLogger]:
    return [lg for lg in loggers if isinstance(lg, _LightningWandbLogger)]


def attach_run_config(loggers: Iterable, config: dict) -> None:
    """Give our W&B loggers the resolved config; it is sent when Lightning logs hyperparameters."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.run_config = config


def curve_chart(curve: Sequence[dict], title: str):
    """Score against speedup, one point per threshold, as a W&B line chart."""
    import wandb

    table = wandb.Table(columns=CURVE_COLUMNS, data=[[p[c] for c in CURVE_COLUMNS] for p in curve])
    return wandb.plot.line(table, "speedup", "score", title=title)


def exit_chart(exits: Sequence[dict], title: str):
    """Each exit's own score (every example leaves there), one bar per exit layer."""
    import wandb

    rows = [[f"exit {e['exit']} (layer {e['layer']})", e["layer"], e["score"]] for e in exits]
    table = wandb.Table(columns=["exit", "layer", "score"], data=rows)
    return wandb.plot.bar(table, "exit", "score", title=title)


def log_epoch_curve(loggers: Iterable, res: dict, step: int) -> None:
    """This validation epoch's speed-accuracy curve as a chart (W&B shows the latest epoch's)."""
    for logger in wandb_loggers(loggers):
        title = f"speed-accuracy ({res['policy']}, validation)"
        logger.log_metrics({"val/speed_accuracy": curve_chart(res["curve"], title)}, step=step)


def summary_values(record: RunRecord) -> dict[str, float | int | None]:
    """Run-summary numbers of a run record: bare keys for the primary split, `<split>/...` for others."""
    values: dict[str, Any] = {}
    for split, res in record.evaluation.items():
        prefix = "" if split == record.primary_split else f"{split}/"
        values[f"{prefix}auc"] = res["auc"]
        values[f"{prefix}auc_coverage"] = res["auc_coverage"]
        for point, score in res["at_speedup"].items():
            values[f"{prefix}score@{float(point):g}"] = score
        for e in res["exits"]:
            values[f"{prefix}exit{e['exit']}/score"] = e["score"]
        values[f"{prefix}score"] = res["exits"][-1]["score"]
    values["collapsed_exits"] = len(record.collapsed_exits or [])
    values["train_time_s"] = record.train_time_s
    return values


def log_final(loggers: Iterable, record: RunRecord, run_dir: Path) -> None:
    """The final evaluation: a speed-accuracy chart and a per-exit chart per split, summary values, and
    (with log_artifacts) results.json + logits as an artifact."""
    for logger in wandb_loggers(loggers):
        run = logger.experiment
        charts = {}
        for split, res in record.evaluation.items():
            prefix = "final" if split == record.primary_split else f"final/{split}"
            title = f"{record.method} {record.task} {record.model}: {res['metric']}"
            charts[f"{prefix}/speed_accuracy"] = curve_chart(res["curve"], f"{title} vs speedup")
            charts[f"{prefix}/individual_scores"] = exit_chart(res["exits"], f"{title} per exit")
        run.log(charts)
        run.summary.update(summary_values(record))
        if getattr(logger, "log_artifacts", False):
            log_results_artifact(run, record, run_dir)


def log_results_artifact(run, record: RunRecord, run_dir: Path) -> None:
    """results.json and the saved logits: enough to re-evaluate the run without its disk."""
    import wandb

    keys = ("method", "task", "model", "seed", "lr", "exit_layers", "exit_policy")
    metadata = {k: getattr(record, k) for k in keys}
    artifact = wandb.Artifact(f"results-{run.id}", type="run-results", metadata=metadata)
    artifact.add_file(str(run_dir / RESULTS_FILE))
    for logits in sorted(run_dir.glob(logits_file("*"))):
        artifact.add_file(str(logits))
    run.log_artifact(artifact)


def log_report(paths: Sequence[Path], sources: Sequence[Path], out: Path, mode: str = "offline") -> Path:
    """Log a written report (its CSV tables and PNG figures) as one W&B run with job type "report";
    return the run's local folder. One sweep folder as source: the run joins that sweep's group."""
    import pandas as pd
    import wandb

    group = sources[0].resolve().name if len(sources) == 1 else None
    project = os.environ.get("WANDB_PROJECT", PROJECT)  # where the training runs went (logger.wandb.project)
    with wandb.init(
        project=project,
        job_type="report",
        group=group,
        name=f"report-{group or 'sweeps'}",
        dir=str(out),
        mode=mode,
        config={"sources": [str(s) for s in sources], "out": str(out)},
    ) as run:
        logged = {}
        for path in paths:
            if path.suffix == ".csv":
                logged[f"tables/{path.stem}"] = wandb.Table(dataframe=pd.read_csv(path))
            elif path.suffix == ".png":
                logged[f"figures/{path.stem}"] = wandb.Image(str(path))
        run.log(logged)
        return Path(run.dir).parent
