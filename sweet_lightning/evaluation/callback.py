"""Lightning callback, the one place a run is evaluated: at the end of each validation epoch it
names the module's per-exit outputs by split, turns them into the paper's measurements (each exit's
scores, temperatures, speed-accuracy curve, AUC, scores at fixed speedups) and logs them; the
final validation's outputs and evaluation are what train.write_results saves. `val/auc` (primary
dev split) is what sweepers maximise; `val/calibration/auc` (the held-out calibration split) is
what model_selection picks epochs on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L

from sweet_lightning.evaluation.policies import get_policy
from sweet_lightning.evaluation.summary import evaluate_logits
from sweet_lightning.evaluation.temperature import bound_hits, fit_temperatures, warn_bound_hits
from sweet_lightning.metrics import run_metrics
from sweet_lightning.run_record import CALIBRATION_SPLIT, EvalSpec
from sweet_lightning.tasks import get_task
from sweet_lightning.wandb_logging import log_epoch_curve

log = logging.getLogger(__name__)


class AdaptiveEvaluation(L.Callback):
    """Evaluate every eval split with one exit policy; temperatures fitted on the calibration split
    (`calibration="train_holdout"`, examples held out of the training pool) or, as the paper did,
    on the primary dev split (`calibration="dev"`)."""

    def __init__(
        self,
        policy: str = "confidence",
        calibration: str = "train_holdout",
        thresholds: Sequence[float] | None = None,
        num_thresholds: int = 11,
        speedup_points: Sequence[float] | None = None,
        policy_kwargs: dict | None = None,
        seed: int | None = None,
    ):
        # bad evaluation settings fail before training, not after the first epoch
        try:
            checker = get_policy(policy, **dict(policy_kwargs or {}))
        except TypeError as err:
            raise ValueError(
                f"evaluation.policy_kwargs={policy_kwargs} do not fit exit_policy={policy}: {err}"
            ) from err
        for t in thresholds or ():
            try:
                checker.check_threshold(t)
            except ValueError as err:  # name the setting, as the messages below do
                raise ValueError(f"evaluation.thresholds={list(thresholds)}: {err}") from err
        if int(num_thresholds) < 1:
            raise ValueError(f"evaluation.num_thresholds={num_thresholds} must be >= 1 (default 11).")
        if speedup_points is not None and any(not 0 < float(x) for x in speedup_points):
            raise ValueError(
                f"evaluation.speedup_points={list(speedup_points)} must all be > 0, e.g. [0.25, 0.5, 1]."
            )
        if calibration not in ("train_holdout", "dev"):
            raise ValueError(
                f"calibration={calibration!r}: use calibration=train_holdout or calibration=dev."
            )
        self.policy = policy
        self.calibration = calibration
        self.seed = seed
        self.options = {  # evaluate_logits' settings, the same for every split
            "policy": policy,
            "policy_kwargs": dict(policy_kwargs or {}),
            "thresholds": list(thresholds) if thresholds is not None else None,
            "num_thresholds": num_thresholds,
            "speedup_points": list(speedup_points) if speedup_points is not None else None,
        }
        # the latest validation's per-exit outputs (split -> logits/labels[/exit_scores]) and their evaluation
        self.outputs: dict[str, dict] = {}
        self.latest: dict[str, dict] = {}  # split -> evaluate_logits output

    def evaluate(self, spec: EvalSpec, outputs: dict[str, dict]) -> dict[str, dict]:
        """evaluate_logits for every evaluation split of `outputs` (split -> logits/labels[/exit_scores]),
        then for the calibration hold-out if there is one (it comes last: the first entry is the primary split)."""
        eval_splits = [s for s in outputs if s != CALIBRATION_SPLIT]
        if not eval_splits:
            return {}
        calib_split = CALIBRATION_SPLIT if self.calibration == "train_holdout" else eval_splits[0]
        if calib_split not in outputs:
            raise ValueError(
                f"calibration={self.calibration} needs the {calib_split!r} split's logits; "
                "set calibration_size > 0 or calibration=dev."
            )
        calib = outputs[calib_split]
        task = get_task(spec.task)
        # fitted once for every split (the fit is deterministic): one fit, one bound-hit warning
        temperatures = fit_temperatures(calib["logits"], calib["labels"])
        results = {}
        # the hold-out is scored too (temperatures fitted on it, curve on it): model_selection picks
        # the reported epoch on its AUC without looking at the splits that are reported
        held_out = [CALIBRATION_SPLIT] if calib_split == CALIBRATION_SPLIT else []
        for split in eval_splits + held_out:
            out = outputs[split]
            results[split] = evaluate_logits(
                out["logits"],
                out["labels"],
                spec.exit_layers,
                spec.num_layers,
                cost_model=spec.cost_model,
                metric=task.metric,
                extra_metrics=task.extra_metrics,
                temperatures=temperatures,
                temperature_source="fitted",
                exit_scores=out.get("exit_scores"),
                **self.options,
            )
        # after evaluate_logits has checked the shapes
        warn_bound_hits(bound_hits(temperatures), spec.exit_layers)
        return results

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        if trainer.sanity_checking:  # its few batches are dropped (the module clears them next epoch)
            return
        # the validation loaders' names, in order: the datamodule's when it says
        names = getattr(getattr(trainer, "datamodule", None), "val_split_names", None)
        names = list(names or pl_module.task.eval_splits)
        by_loader = pl_module.take_eval_outputs()
        self.outputs = {names[i] if i < len(names) else f"eval{i}": out for i, out in by_loader.items()}
        spec = EvalSpec(
            pl_module.task.name, tuple(pl_module.exit_layers), pl_module.num_layers, pl_module.cost_model
        )
        self.latest = self.evaluate(spec, self.outputs)
        if self.latest:
            self.log_epoch(trainer, pl_module, self.latest)

    def log_epoch(self, trainer: L.Trainer, pl_module, report: dict[str, dict]) -> None:
        """An evaluation to the loggers (and model selection), its warnings, its W&B chart. Logged: the
        names runs report (metrics.run_metrics) and per split `val/<split>/exit<i>/<metric>` for each
        exit alone, `auc`, `score@<speedup>`, temperatures."""
        primary = next(iter(report))
        task = pl_module.task
        names = (task.metric, *task.extra_metrics)
        for split, res in report.items():
            for i, e in enumerate(res["exits"], start=1):
                scores = {**e, task.metric: e["score"]}  # the task's metric is stored as "score"
                for name in names:
                    pl_module.log(f"val/{split}/exit{i}/{name}", scores[name])
            prefix = "val" if split == primary else f"val/{split}"
            if split not in (primary, CALIBRATION_SPLIT):  # those two AUCs are among the headline numbers
                pl_module.log(f"{prefix}/auc", res["auc"])
            for point, score in res["at_speedup"].items():
                if score is not None:
                    pl_module.log(f"{prefix}/score@{point}", score)
            for i, t in enumerate(res["temperatures"], start=1):
                pl_module.log(f"{prefix}/exit{i}/temperature", t)
        for name, value in headline_metrics(report).items():
            pl_module.log(name, value, prog_bar=name in ("val/score", "val/auc"))
        warn_collapsed(pl_module, report, self.seed)
        # the epoch's speed-accuracy curve as a W&B line chart when W&B is on
        log_epoch_curve(trainer.loggers, report[primary], step=trainer.global_step)


def headline_metrics(report: dict[str, dict]) -> dict[str, float]:
    """metrics.run_metrics of an evaluation: its primary (first) split's exit scores and AUC, and the
    calibration hold-out's AUC when there is one."""
    primary = report[next(iter(report))]
    calibration_auc = report[CALIBRATION_SPLIT]["auc"] if CALIBRATION_SPLIT in report else None
    return run_metrics([e["score"] for e in primary["exits"]], primary["auc"], calibration_auc)


def warn_collapsed(
    module, evaluation: dict[str, dict], seed: int | None = None, warn: bool = True
) -> list[dict]:
    """Warn about (and return) exits whose predictions collapsed to one class / the majority baseline
    on a reported split (the calibration split only selects)."""
    remedy = "Try another lr or seed."
    if getattr(module, "hparams", {}).get("exit_pooling", "cls") != "mean":
        remedy = "Try another lr or seed, or model.exit_pooling=mean."
    flagged = []
    for split, res in evaluation.items():
        if split == CALIBRATION_SPLIT:
            continue
        for e in res["exits"]:
            if e["collapsed"]:
                flagged.append({"split": split, "exit": e["exit"], "layer": e["layer"]})
                if warn:
                    log.warning(
                        "exit %d (layer %d) of %s did not learn on %s: it predicts one class or scores the "
                        "majority-class baseline (seed %s, lr %s). %s",
                        e["exit"],
                        e["layer"],
                        module.method,
                        split,
                        seed,
                        module.lr,
                        remedy,
                    )
    return flagged
