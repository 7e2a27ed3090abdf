"""Lightning callback: at the end of each validation epoch, turn the module's per-exit
logits into the paper's measurements (temperatures, speed-accuracy curve, AUC, scores at
fixed speedups) and log them. `val/auc` (primary dev split) is what sweepers maximise;
`val/calibration/auc` (the held-out calibration split) is what model_selection picks epochs on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L

from sweet_lightning.evaluation.policies import get_policy
from sweet_lightning.evaluation.summary import evaluate_logits

log = logging.getLogger(__name__)

CALIBRATION_SOURCES = ("train_holdout", "dev")
CALIBRATION_SPLIT = "calibration"


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
            raise ValueError(f"evaluation.policy_kwargs={policy_kwargs} do not fit exit_policy={policy}: {err}") from err
        for t in thresholds or ():
            checker.check_threshold(t)
        if int(num_thresholds) < 1:
            raise ValueError(f"evaluation.num_thresholds={num_thresholds} must be >= 1 (default 11).")
        if speedup_points is not None and any(not 0 < float(x) for x in speedup_points):
            raise ValueError(f"evaluation.speedup_points={list(speedup_points)} must all be > 0, e.g. [0.25, 0.5, 1].")
        if calibration not in CALIBRATION_SOURCES:
            raise ValueError(f"calibration={calibration!r}: use calibration=train_holdout or calibration=dev.")
        self.policy = policy
        self.calibration = calibration
        self.thresholds = list(thresholds) if thresholds is not None else None
        self.num_thresholds = num_thresholds
        self.speedup_points = list(speedup_points) if speedup_points is not None else None
        self.policy_kwargs = dict(policy_kwargs or {})
        self.seed = seed
        self.latest: dict[str, dict] = {}  # split -> evaluate_logits output of the latest epoch

    def evaluate(self, module, outputs: dict[str, dict]) -> dict[str, dict]:
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
        task = module.task
        results = {}
        # the hold-out is scored too (temperatures fitted on it, curve on it): model_selection picks
        # the reported epoch on its AUC without looking at the splits that are reported
        held_out = [CALIBRATION_SPLIT] if calib_split == CALIBRATION_SPLIT else []
        for split in eval_splits + held_out:
            out = outputs[split]
            results[split] = evaluate_logits(
                out["logits"], out["labels"], module.exit_layers, module.num_layers, kind=module.kind,
                metric=task.metric, extra_metrics=task.extra_metrics, policy=self.policy,
                policy_kwargs=self.policy_kwargs, thresholds=self.thresholds,
                num_thresholds=self.num_thresholds, speedup_points=self.speedup_points,
                calibration_logits=calib["logits"], calibration_labels=calib["labels"],
                exit_scores=out.get("exit_scores"),
            )
        return results

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        outputs = pl_module.finalize_eval()
        self.latest = self.evaluate(pl_module, outputs)
        if not self.latest:
            return
        primary = next(iter(self.latest))
        for split, res in self.latest.items():
            prefix = "val" if split == primary else f"val/{split}"
            pl_module.log(f"{prefix}/auc", res["auc"], prog_bar=split == primary)
            for point, score in res["at_speedup"].items():
                if score is not None:
                    pl_module.log(f"{prefix}/score@{point}", score)
            for i, t in enumerate(res["temperatures"], start=1):
                pl_module.log(f"{prefix}/exit{i}/temperature", t)
        warn_collapsed(pl_module, self.latest, self.seed)
        log_curve_table(trainer, self.latest[primary])


def warn_collapsed(module, evaluation: dict[str, dict], seed: int | None = None, warn: bool = True) -> list[dict]:
    """Warn about (and return) exits whose predictions collapsed to one class / the majority baseline
    on a reported split (the calibration split only selects)."""
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
                        e["exit"], e["layer"], module.method, split, seed, module.lr, remedy(module),
                    )
    return flagged


def remedy(module) -> str:
    pooling = getattr(module, "hparams", {}).get("exit_pooling", "cls")
    if pooling == "mean":
        return "Try another lr or seed."
    return "Try another lr or seed, or model.exit_pooling=mean."


def log_curve_table(trainer: L.Trainer, res: dict) -> None:
    """The epoch's speed-accuracy curve as a W&B line chart when W&B is on (sweet_lightning.wandb_logging)."""
    from sweet_lightning.wandb_logging import log_epoch_curve

    log_epoch_curve(trainer.loggers, res, step=trainer.global_step)
