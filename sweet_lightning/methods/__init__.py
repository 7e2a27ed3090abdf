"""The training methods, each a declaration on top of `AdaptiveModule` (methods/base.py): what sets
it apart from Early-Exit is the gradient across segment boundaries, the network, which exits a step
trains, or the learning-rate schedule.

`METHODS` maps the method a checkpoint records (`checkpoint["sweet_lightning"]["method"]`, the
class's `method`) to the class that loads it; inference builds the network through that class.
Every method but `cascade` trains the same `MultiExitModel`, with `cost_model = "early_exit"` (the cost
model of paper eq. 1), so the inference engine runs them all alike. Config presets that reuse a
class (conf/method/weighted_early_exit.yaml is `EarlyExitModule` with `exit_weights: depth`, PABEE's
depth-weighted loss, methods/base.py `resolve_exit_weights`) record that class's method.
"""

from __future__ import annotations

import math

import torch
from lightning.pytorch.utilities import GradClipAlgorithmType

from sweet_lightning.methods.base import AdaptiveModule
from sweet_lightning.modeling import CascadeModel


class EarlyExitModule(AdaptiveModule):
    """Early-Exit (Schwartz et al., 2020): classifiers after chosen layers, losses summed, every
    loss reaching every layer below its classifier."""

    method = "early_exit"


class SweetModule(AdaptiveModule):
    """SWEET (Rotem et al., 2023, Sec. 4): classifier i's loss updates only the layers after exit
    i-1 up to exit i (classifier 1 also owns the embeddings). All exits still train in one
    forward/backward pass; the state entering each later segment is detached."""

    method = "sweet"
    boundary_grad = 0.0


class GradientScaledSweetModule(AdaptiveModule):
    """Gradient-scaled SWEET (new here): between SWEET and Early-Exit.

    Where SWEET detaches the state entering each later segment, this multiplies the gradient flowing
    back across that boundary by `method.alpha` in [0, 1] (identity forward), so exit j's loss reaches
    segment i <= j scaled by alpha ** (j - i) (`MultiExitModel`). alpha = 0 is SWEET and alpha = 1 is
    Early-Exit, computed exactly as those methods compute them. A sweep over alpha traces the trade-off
    of paper Sec. 4.2 between the early classifiers (SWEET leads at fast speeds) and the late ones
    (Early-Exit leads at slow speeds: its later classifiers also shape the early layers).

    The run's method name carries alpha (`sweet_alpha0.25`, conf/method/sweet_alpha.yaml), so the
    report shows each alpha as a method of its own and a sweep's runs land in different dirs.
    """

    method = "sweet_alpha"

    def __init__(self, *args, alpha: float = 0.5, **kwargs):
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:  # also refuses NaN
            raise ValueError(f"method.alpha={alpha} must be in [0, 1] (0 = SWEET, 1 = Early-Exit).")
        self.boundary_grad = alpha  # read by build_network
        super().__init__(*args, **kwargs)


class CascadeModule(AdaptiveModule):
    """Multi-Model cascade: independent truncated models trained in one run with the same
    hyperparameters and seed; at inference they run small to large, so a sample stopping at
    model i has paid for L_1 + ... + L_i layers."""

    method = "cascade"
    cost_model = "cascade"

    def build_network(self, encoder, exit_layers, pooling, dropout, learned_exit=False, shared_pooler=False):
        if shared_pooler:
            raise ValueError(
                "method.shared_pooler=true does not apply to method=cascade: its members are independent "
                "models and share nothing; drop the key."
            )
        heads = {"pooling": pooling, "dropout": dropout, "learned_exit": learned_exit}
        return CascadeModel(encoder, exit_layers, self.task.num_labels, **heads)

    # ---- training member by member ------------------------------------------------------------
    # One joint loss keeps every member's activations alive until its backward: 4 models' worth of
    # memory, which the allocator hands back to the OS and faults in again each step (about 5% of a
    # MiniLM-L6 cascade step even with keep_freed_memory; docs/benchmarks.md, "The cascade phase by
    # phase"). The members share no parameter, so running each member's forward and backward before
    # the next member's forward gives the joint loss's gradients bit for bit
    # (tests/test_methods.py::test_cascade_trains_member_by_member_with_the_joint_gradients), with one
    # member's activations alive at a time. Lightning still clips, steps and schedules as usual.

    def _by_member(self) -> bool:
        """Where the backward may run inside training_step: full precision on one process. A 16-bit
        loss scaler and DDP's gradient hooks expect Lightning's one backward of the returned loss."""
        if self._trainer is None:
            return True
        return str(self.trainer.precision) in ("32-true", "32") and self.trainer.world_size == 1

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if not self._by_member():
            return super().training_step(batch, batch_idx)
        accumulate = self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        if self._trainer is not None and batch_idx % accumulate == 0:
            # what Lightning's zero_grad would do after this step, before its backward (skipped below)
            self.trainer.optimizers[0].zero_grad(set_to_none=True)
        weights = self.step_exit_weights(self.global_step, self.current_epoch)
        labels, bs = batch["labels"], batch["labels"].shape[0]
        total, score_total = 0, 0  # summed as training_loss sums them: the same logged value
        for i, member in enumerate(self.net.members):
            (logits,), (score,) = member(
                batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
            )
            loss_i = self.exit_losses([logits], labels)[0]
            self.log(f"train/exit{i + 1}/loss", loss_i, batch_size=bs)
            if weights[i] == 0:
                continue  # as training_loss: an exit left out of the step gets no gradient
            member_loss = weights[i] * loss_i
            total = total + member_loss.detach()
            if self.learned_exit:
                score_loss = self.exit_score_losses([logits], [score], labels)[0]
                member_loss = member_loss + score_loss
                score_total = score_total + score_loss.detach()
            (member_loss / accumulate).backward()  # as Lightning scales an accumulated step's loss
        if self.learned_exit:
            self.log("train/exit_score_loss", score_total, batch_size=bs)
            total = total + score_total
        self.log("train/loss", total, prog_bar=True, batch_size=bs)
        # the gradients are in place: Lightning's own backward of this leaf changes no parameter
        return torch.as_tensor(total).detach().requires_grad_()

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        if not self._by_member():  # member by member, training_step zeroed them before its backward
            super().optimizer_zero_grad(epoch, batch_idx, optimizer)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Clip each member's gradient norm on its own.

        Lightning clips the norm over all parameters together, so one member's large gradient
        would shrink every other member's step and the jointly trained members would no longer
        be the independent models the paper's Multi-Model baseline is. Clipping by value acts
        element by element and couples nothing: Lightning's own clipping does it. Under
        16-bit AMP Lightning has unscaled the gradients before this hook, as for its own.
        """
        algorithm = gradient_clip_algorithm or GradClipAlgorithmType.NORM  # None: Lightning's default
        if not gradient_clip_val or GradClipAlgorithmType(algorithm) != GradClipAlgorithmType.NORM:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        for member in self.net.members:  # parameters without a gradient are skipped
            torch.nn.utils.clip_grad_norm_(member.parameters(), float(gradient_clip_val))


class AlternatingModule(AdaptiveModule):
    """Alternating (BERxiT, Xin et al., 2021, Sec. 3.1): optimizer steps alternate between the
    all-exits loss and the last exit's loss alone.

    Steps 0, 2, 4, ... (counted in optimizer steps over the whole run, so accumulated micro-batches
    share a kind and a resumed run keeps the rhythm) train every exit as Early-Exit does, weighted by
    `method.exit_weights`; steps 1, 3, 5, ... train the last exit alone (weight 1), as plain
    fine-tuning of the full model would: the earlier classifiers get no gradient then. The network is
    Early-Exit's, so inference is Early-Exit's too. With learned exits each exit scorer trains at the
    steps its classifier trains.
    """

    method = "alternating"
    partial_steps = True

    def step_exit_weights(self, step: int, epoch: int) -> list[float]:
        if step % 2 == 0:
            return self.exit_weights
        return [0.0] * (len(self.exit_layers) - 1) + [1.0]


def stage1_epoch_count(stage1_epochs: int | None, stage2_epochs: int | None, max_epochs: int | None) -> int:
    """Epochs of two-stage's stage 1; `trainer.max_epochs` is the total, the single source of truth."""
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


class TwoStageModule(AdaptiveModule):
    """Two-stage (DeeBERT, Xin et al., 2020, Sec. 3.2): stage 1 fine-tunes the backbone with the last
    classifier alone; stage 2 freezes the backbone and the last classifier and trains the earlier ones.

    One Lightning fit, switched at an epoch boundary: epochs 0 .. stage1_epochs-1 are stage 1, the
    rest of `trainer.max_epochs` stage 2 (the stage is a function of the epoch alone, so a run resumed
    from last.ckpt at the boundary continues in the right stage). Stage 2's loss is the earlier exits'
    cross-entropies weighted by `method.exit_weights` (default: their plain sum, as DeeBERT); the
    encoder runs without autograd and the last exit is left out, so backbone and last head get no
    gradient (None) and AdamW leaves them exactly as they are (no step, no weight decay).

    DeeBERT runs each stage with a new AdamW and a new linear schedule. Here one AdamW serves both
    stages, which is the same thing: the earlier heads have no optimizer state before stage 2 (AdamW
    keeps its step count per parameter), and the stage-1 parameters are never stepped in stage 2. The
    learning-rate schedule restarts at the boundary: the configured schedule runs over stage 1's
    steps, then again over stage 2's (`SequentialLR`, saved in the checkpoint, so resuming is exact).

    With learned exits each exit scorer trains with its classifier: the last one in stage 1, the
    earlier ones in stage 2. The network is Early-Exit's, so inference is Early-Exit's too.
    """

    method = "two_stage"
    partial_steps = True

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

    def stage1_epoch_count(self) -> int:
        """Stage 1's epochs under the attached Trainer, checked against its max_epochs (a fit calls this
        in configure_optimizers, before the first step); without one (the gradient analysis, whose
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


METHODS = {
    cls.method: cls
    for cls in (
        EarlyExitModule,
        SweetModule,
        CascadeModule,
        TwoStageModule,
        AlternatingModule,
        GradientScaledSweetModule,
    )
}
