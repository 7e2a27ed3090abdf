"""Two-stage (DeeBERT, Xin et al., 2020, Sec. 3.2): stage 1 fine-tunes the backbone with the last
classifier alone; stage 2 freezes the backbone and the last classifier and trains the earlier ones.

One Lightning fit, switched at an epoch boundary: epochs 0 .. stage1_epochs-1 are stage 1, the
rest of `trainer.max_epochs` stage 2 (the stage is a function of the epoch alone, so a run resumed
from last.ckpt at the boundary continues in the right stage).

- Stage 1: the loss is the last exit's cross-entropy; the earlier heads get no gradient.
- Stage 2: the loss is the earlier exits' cross-entropies weighted by `method.exit_weights`
  (default: their plain sum, as DeeBERT); the encoder runs without autograd and the last exit is
  left out, so backbone and last head get no gradient (None) and AdamW leaves them exactly as they
  are (no step, no weight decay).

DeeBERT runs each stage with a new AdamW and a new linear schedule. Here one AdamW serves both
stages, which is the same thing: the earlier heads have no optimizer state before stage 2 (AdamW
keeps its step count per parameter), and the stage-1 parameters are never stepped in stage 2. The
learning-rate schedule restarts at the boundary: the configured schedule runs over stage 1's
steps, then again over stage 2's (`SequentialLR`, saved in the checkpoint, so resuming is exact).

With learned exits (`exit_policy=learned`) each exit scorer trains with its classifier: the last
one in stage 1, the earlier ones in stage 2. The network is Early-Exit's (`MultiExitModel`), so
inference is Early-Exit's too.
"""

from __future__ import annotations

import math

import torch

from sweet_lightning.methods.alternating import check_unused_parameters_allowed
from sweet_lightning.methods.early_exit import EarlyExitModule


def stage1_epoch_count(stage1_epochs: int | None, stage2_epochs: int | None, max_epochs: int | None) -> int:
    """Epochs of stage 1; `trainer.max_epochs` is the total, the single source of truth."""
    if max_epochs is None or max_epochs < 2:
        raise ValueError(
            f"method=two_stage needs trainer.max_epochs >= 2 (one epoch per stage at least), got {max_epochs}."
        )
    stage1 = math.ceil(max_epochs / 2) if stage1_epochs is None else stage1_epochs
    if not 1 <= stage1 < max_epochs:
        raise ValueError(
            f"method.stage1_epochs={stage1} must leave stage 2 at least one of trainer.max_epochs={max_epochs} "
            f"epochs: give 1..{max_epochs - 1}."
        )
    if stage2_epochs is not None and stage1 + stage2_epochs != max_epochs:
        raise ValueError(
            f"method.stage1_epochs + method.stage2_epochs = {stage1} + {stage2_epochs} but trainer.max_epochs="
            f"{max_epochs}: set trainer.max_epochs={stage1 + stage2_epochs} or method.stage2_epochs=null."
        )
    return stage1


def _check_count(key: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{key}={value!r} must be an integer >= 1 or null.")


class TwoStageModule(EarlyExitModule):
    method = "two_stage"
    cost_model = "early_exit"

    def __init__(self, *args, stage1_epochs: int | None = None, stage2_epochs: int | None = None, **kwargs):
        _check_count("method.stage1_epochs", stage1_epochs)
        _check_count("method.stage2_epochs", stage2_epochs)
        if kwargs.get("shared_pooler"):
            raise ValueError(
                "method.shared_pooler=true does not apply to method=two_stage: stage 2 trains the earlier "
                "heads while the last head is frozen, so they cannot share a pooler; drop the key."
            )
        super().__init__(*args, **kwargs)
        if len(self.exit_layers) < 2:
            raise ValueError(
                f"method=two_stage needs at least two exits (model.exit_layers={self.exit_layers}): "
                "stage 2 trains the ones before the last."
            )
        self.stage1_epochs = stage1_epochs
        self.stage2_epochs = stage2_epochs

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit":
            stage1_epoch_count(self.stage1_epochs, self.stage2_epochs, self.trainer.max_epochs)
            check_unused_parameters_allowed(self.trainer, self.method)

    def stage1_epoch_count(self) -> int:
        """Stage 1's epochs under the attached Trainer; without one (the gradient analysis, whose
        fine-tuning counts as epoch 0) stage 1 alone."""
        if self._trainer is None:
            return self.stage1_epochs or 1
        return stage1_epoch_count(self.stage1_epochs, self.stage2_epochs, self.trainer.max_epochs)

    def stage(self, epoch: int) -> int:
        return 1 if epoch < self.stage1_epoch_count() else 2

    def step_exit_weights(self, step: int, epoch: int) -> list[float]:
        last = len(self.exit_layers) - 1
        if self.stage(epoch) == 1:
            return [0.0] * last + [1.0]
        return [*self.exit_weights[:last], 0.0]

    def training_forward(self, batch: dict[str, torch.Tensor], step: int, epoch: int):
        if self.stage(epoch) == 1:
            return self.forward_with_scores(batch)
        with torch.no_grad():  # the frozen backbone: no graph, so no gradient can reach it
            states = list(
                self.net.exit_states(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
            )
        return self.net.apply_heads(states, batch["attention_mask"])

    def make_schedule(self, optimizer: torch.optim.Optimizer, total_steps: int):
        if self._trainer is None:
            return super().make_schedule(optimizer, total_steps)
        trainer = self.trainer
        # what Lightning's estimated_stepping_batches counts per epoch (the last partial
        # accumulation of an epoch is a step of its own)
        per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        stage1_steps = per_epoch * self.stage1_epoch_count()
        if stage1_steps >= total_steps:  # trainer.max_steps ends the run within stage 1
            return super().make_schedule(optimizer, total_steps)
        first = super().make_schedule(optimizer, stage1_steps)
        second = super().make_schedule(optimizer, total_steps - stage1_steps)
        return torch.optim.lr_scheduler.SequentialLR(optimizer, [first, second], milestones=[stage1_steps])
