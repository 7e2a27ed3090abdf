"""Which epoch's weights a run reports (`model_selection`): chosen on data the run does not report.

Rules:
- `calibration`: the epoch with the best AUC on the held-out calibration split (temperatures fitted
  on it, curve evaluated on it: `val/calibration/auc`); needs `calibration=train_holdout`;
- `last`: the final weights, as the paper's released code reports them;
- `best_on_reported_dev`: the epoch with the best AUC on the primary dev split, the split that is
  then reported. Each run then reports the best of its epochs on its own test data, and a method
  with noisier epochs gains more; kept for comparison with older runs, never a default;
- `auto` (default): `calibration` where a hold-out exists, else `last`.

The selected epoch is kept on disk by the configured ModelCheckpoint (`checkpoints/best.ckpt`), so a
resumed run still has it; without one (`callbacks=none`) its weights are kept in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

MONITORS = {"calibration": "val/calibration/auc", "last": None, "best_on_reported_dev": "val/auc"}
RULES = ("auto", *MONITORS)


@dataclass(frozen=True)
class Rule:
    name: str
    monitor: str | None  # metric logged at every validation of the fit; None: the final weights


def resolve(model_selection: str, calibration: str) -> Rule:
    """The rule for a config, or a one-line error (before anything trains)."""
    if model_selection not in RULES:
        raise ValueError(
            f"model_selection={model_selection!r}: use one of {', '.join(RULES)} (default auto)."
        )
    name = model_selection
    if name == "auto":
        name = "calibration" if calibration == "train_holdout" else "last"
    if name == "calibration" and calibration != "train_holdout":
        raise ValueError(
            f"model_selection=calibration needs the held-out calibration split, but calibration={calibration}: "
            "use calibration=train_holdout or model_selection=last."
        )
    return Rule(name, MONITORS[name])


def configure_checkpoint(checkpoint: ModelCheckpoint | None, rule: Rule) -> None:
    """Make the checkpoint keep the rule's epoch (`best.ckpt`), or none for `last` (last.ckpt stays)."""
    if checkpoint is None:
        return
    if checkpoint.monitor is not None and checkpoint.monitor != rule.monitor:
        raise ValueError(
            f"callbacks.model_checkpoint.monitor={checkpoint.monitor} disagrees with model_selection={rule.name} "
            f"(monitor {rule.monitor}): leave the monitor unset and choose model_selection instead."
        )
    checkpoint.monitor = rule.monitor
    # with no monitor a top-1 checkpoint would be a second copy of the latest epoch
    checkpoint.save_top_k = 1 if rule.monitor else 0


class ModelSelection(L.Callback):
    """Records the rule's metric after every validation of the fit. The record is part of the
    callback's state, so it is saved in checkpoints and a resumed run knows the epochs before it."""

    def __init__(self, rule: Rule, keep_weights: bool = False):
        self.rule = rule
        self.keep_weights = keep_weights and rule.monitor is not None
        self.per_epoch: dict[int, float | None] = {}  # epoch (from 1) -> metric
        self.kept: dict | None = None  # the chosen epoch's weights (keep_weights only)
        self.validated_step: int | None = None  # optimizer step of this process's latest fit validation

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        epoch = trainer.current_epoch + 1
        self.validated_step = trainer.global_step
        value = trainer.callback_metrics.get(self.rule.monitor) if self.rule.monitor else None
        self.per_epoch[epoch] = None if value is None else float(value)
        if self.keep_weights and self.chosen_epoch() == epoch:
            self.kept = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}

    def chosen_epoch(self) -> int | None:
        """The epoch whose weights are reported: as ModelCheckpoint(mode="max") keeps it, the first
        epoch with the highest value (a later one replaces it only when strictly higher; NaN never)."""
        if self.rule.monitor is None:
            return max(self.per_epoch, default=None)
        valid = [e for e, v in sorted(self.per_epoch.items()) if v is not None and not math.isnan(v)]
        return max(valid, key=self.per_epoch.get, default=None)  # max keeps the first of equal values

    def evaluated_already(self, trainer: L.Trainer, outputs: dict) -> bool:
        """Whether the evaluation callback's latest outputs are those of the reported weights: the
        chosen epoch is the last one validated, in this process, after the fit's last optimizer step
        (not so when max_steps stopped an epoch short, or a resumed fit trained nothing). Then the
        final evaluation would recompute the same logits bit for bit: on QNLI, a third of all the
        evaluation time of a 2-epoch run (docs/benchmarks.md, "Evaluation share")."""
        chosen = self.chosen_epoch()
        return (
            chosen is not None
            and chosen == max(self.per_epoch)
            and self.validated_step == trainer.global_step
            and bool(outputs)
        )

    def final_weights(self, trainer: L.Trainer, module: L.LightningModule) -> str | None:
        """The checkpoint to evaluate for the results (None: the module's current weights, which are
        the selected ones: the last epoch's, or the kept copy loaded here)."""
        if self.rule.monitor is None:
            return None
        if self.kept is not None:
            module.load_state_dict(self.kept)
            return None
        return self.weights_file(trainer)

    def weights_file(self, trainer: L.Trainer) -> str | None:
        """The checkpoint file holding the reported weights (results.json `checkpoint`, what inference
        loads): best.ckpt, or for `last` the last.ckpt of the final epoch; None without checkpoints."""
        checkpoint = trainer.checkpoint_callback
        if checkpoint is None:
            return None
        if self.rule.monitor:
            return checkpoint.best_model_path or None
        # `last`: the file written after the final epoch, by whichever checkpoint callback keeps it
        # (callbacks.last_checkpoint: no monitor, top 1, so its "best" is the latest)
        for callback in trainer.checkpoint_callbacks:
            path = callback.last_model_path or (callback.best_model_path if callback.monitor is None else "")
            if path:
                return path
        return None

    def record(self, primary_split: str | None) -> dict:
        """For results.json: how the reported weights were chosen (epochs count from 1)."""
        split = {"calibration": "calibration", "best_on_reported_dev": primary_split}.get(self.rule.name)
        return {
            "rule": self.rule.name,
            "split": split,
            "metric": self.rule.monitor,
            "epoch": self.chosen_epoch(),
            "epochs_seen": len(self.per_epoch),
            "per_epoch": {str(e): v for e, v in sorted(self.per_epoch.items())} if self.rule.monitor else {},
        }

    def state_dict(self) -> dict:
        return {"per_epoch": dict(self.per_epoch)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.per_epoch = {int(k): v for k, v in state_dict.get("per_epoch", {}).items()}
