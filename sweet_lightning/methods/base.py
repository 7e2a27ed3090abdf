"""What every method shares: the LightningModule that builds the network, trains it with a weighted
sum of the exits' cross-entropies, collects per-exit validation outputs for the evaluation callback
(which scores them) and steps the optimizer with a linear-decay schedule.

A method (sweet_lightning/methods/__init__.py) declares only what sets it apart: the gradient across
segment boundaries (`boundary_grad`), the network (`build_network`: the cascade's), which exits a
step trains (`step_exit_weights`, `training_forward`), the schedule (`make_schedule`), and how its
inference cost is counted (`cost_model`: "early_exit" reuses layers, "cascade" re-runs them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from sweet_lightning.batching import LengthOrdered, dataset_order
from sweet_lightning.modeling import MultiExitModel, load_encoder
from sweet_lightning.tasks import get_task

# `method.exit_weights`, the weight of each exit's loss:
# - null: every weight 1, a plain sum (the paper's code, Early-Exit and SWEET).
# - a list: one weight per exit, used as given.
# - "depth": Weighted Early-Exit (PABEE, Zhou et al. 2020, eq. 7), the weighted average
#   sum_j j * L_j / sum_j j. PABEE has a classifier after every layer, so its j is both the exit
#   index and the layer number; here j is the layer number of the exit (`model.exit_layers`), so the
#   weight stays proportional to the depth the classifier sees whichever exits are chosen: exits
#   [1, 3, 4, 6] weigh 1/14, 3/14, 4/14, 6/14. The weights sum to 1 (PABEE's average), where the
#   plain sum's sum to the number of exits; AdamW's steps hardly depend on that scale, gradient
#   clipping by norm does.


def resolve_exit_weights(value: Sequence[float] | str | None, exit_layers: Sequence[int]) -> list[float]:
    if value is None:
        return [1.0] * len(exit_layers)
    if isinstance(value, str):
        if value != "depth":
            raise ValueError(
                f"method.exit_weights={value!r} is no preset: use depth, null or one number per exit."
            )
        total = float(sum(exit_layers))
        return [layer / total for layer in exit_layers]
    if len(value) != len(exit_layers):
        raise ValueError(
            f"method.exit_weights has {len(value)} values for {len(exit_layers)} exits: give one per exit."
        )
    return [float(w) for w in value]


def check_unused_parameters_allowed(trainer: L.Trainer, method: str) -> None:
    """Under DDP, steps that leave parameters without gradient need find_unused_parameters=True.

    Refused up front: otherwise DDP fails at the second step with a long reduction error.
    """
    from lightning.pytorch.strategies import DDPStrategy

    strategy = trainer.strategy
    if isinstance(strategy, DDPStrategy) and not strategy._ddp_kwargs.get("find_unused_parameters"):
        raise ValueError(
            f"method={method} leaves some parameters without gradient at some steps, which DDP refuses "
            "by default: add ++trainer.strategy.find_unused_parameters=true."
        )


def linear_decay_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float = 0.0):
    """Linear warmup (optional) then linear decay to 0, stepped every optimizer step."""
    warmup = int(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def gather_rows(module: L.LightningModule, tensor: torch.Tensor, num_rows: int) -> torch.Tensor:
    """All ranks' rows of an eval tensor ([N] labels or [E, N, ...] per-exit arrays), in dataset order,
    without DistributedSampler's padding.

    Unshuffled, DistributedSampler pads the dataset to a multiple of the world size W by repeating its
    first rows and gives rank r rows r, r+W, r+2W, ...: interleaving the ranks' shards restores the
    order and cutting at the dataset length (`num_rows`) drops the repeats.
    """
    per_exit = tensor if tensor.dim() > 1 else tensor[None]
    gathered = module.all_gather(per_exit)  # [W, E, n, ...]
    interleaved = gathered.movedim(0, 2)  # [E, n, W, ...]: row j of rank r is dataset row j*W + r
    rows = interleaved.reshape(per_exit.shape[0], -1, *per_exit.shape[2:])[:, :num_rows]
    return rows if tensor.dim() > 1 else rows[0]


class AdaptiveModule(L.LightningModule):
    """Base LightningModule for Early-Exit, SWEET and Multi-Model (cascade)."""

    cost_model = "early_exit"  # how speedup is counted (paper eq. 1)
    method = "base"
    # the factor on the gradient crossing a segment boundary backwards (modeling.MultiExitModel):
    # 1 = Early-Exit, 0 = SWEET
    boundary_grad = 1.0
    # some steps train only some exits (the others get no gradient): DDP must be told
    partial_steps = False

    def __init__(
        self,
        task: str,
        pretrained: str,
        exit_layers: Sequence[int],
        exit_pooling: str = "cls",
        dropout: float = 0.1,
        exit_weights: Sequence[float] | str | None = None,
        random_init: bool = False,
        config_overrides: dict[str, Any] | None = None,
        learned_exit: bool = False,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        lr: float | None = None,
        **method_kwargs: Any,
    ):
        super().__init__()
        # optimizer/scheduler are factories (hydra partials): not checkpoint material. `lr` is only
        # what checkpoints written before conf/train.yaml's `module` node recorded (the optimizer
        # carries the learning rate): accepted so that they load, otherwise unused
        self.save_hyperparameters(ignore=["optimizer", "scheduler", "lr"])
        self.task = get_task(task)
        self.optimizer_factory = optimizer
        optimizer_lr = getattr(optimizer, "keywords", {}).get("lr")
        if optimizer is not None and lr is not None and optimizer_lr != lr:
            # the optimizer alone sets the learning rate: a module lr it does not carry would be ignored
            raise ValueError(
                f"lr={lr} is not the optimizer's learning rate ({optimizer_lr}): give it to the optimizer, "
                "e.g. optimizer=functools.partial(torch.optim.AdamW, lr=...), and leave lr out."
            )
        self.lr = optimizer_lr if optimizer_lr is not None else lr  # for messages: the optimizer holds it
        self.scheduler_factory = scheduler
        encoder = load_encoder(pretrained, random_init=random_init, config_overrides=config_overrides)
        self.num_layers = encoder.num_layers
        self.learned_exit = learned_exit
        self.net = self.build_network(
            encoder, list(exit_layers), exit_pooling, dropout, learned_exit=learned_exit, **method_kwargs
        )
        self.exit_layers: list[int] = list(self.net.exit_layers)
        self.exit_weights = resolve_exit_weights(exit_weights, self.exit_layers)
        self._eval_buffers: dict[int, dict[str, list]] = {}  # dataloader index -> this epoch's batches

    def build_network(
        self, encoder, exit_layers, pooling, dropout, learned_exit: bool = False, shared_pooler: bool = False
    ) -> nn.Module:
        """One encoder with a head after each exit layer; shared_pooler=True reproduces the released
        code, where one pooler serves every exit."""
        options = dict(
            boundary_grad=self.boundary_grad, shared_pooler=shared_pooler, learned_exit=learned_exit
        )
        return MultiExitModel(encoder, exit_layers, self.task.num_labels, pooling, dropout, **options)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.partial_steps:
            check_unused_parameters_allowed(self.trainer, self.method)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # hyperparameters alone cannot tell Early-Exit from SWEET, nor say the precision the
        # model was trained and evaluated in (inference follows it): inference loaders read this
        precision = str(self.trainer.precision) if self._trainer is not None else None
        checkpoint["sweet_lightning"] = {"method": self.method, "precision": precision}

    # ---- forward / training -------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Class logits of every exit, [B, C] each."""
        return self.forward_with_scores(batch)[0]

    def forward_with_scores(self, batch: dict[str, torch.Tensor]):
        """(class logits per exit, learned exit-score logits per exit — Nones unless learned_exit)."""
        return self.net(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))

    def exit_losses(self, logits: list[torch.Tensor], labels: torch.Tensor) -> list[torch.Tensor]:
        return [F.cross_entropy(lg, labels) for lg in logits]

    def exit_score_losses(self, logits: list[torch.Tensor], scores: list, labels: torch.Tensor) -> list:
        """Learning to exit: each exit's scorer learns to predict whether its classifier is right."""
        return [
            F.binary_cross_entropy_with_logits(sc, (lg.detach().argmax(-1) == labels).float())
            for lg, sc in zip(logits, scores, strict=True)
        ]

    def step_exit_weights(self, step: int, epoch: int) -> list[float]:
        """The weight of each exit's loss at optimizer step `step` of epoch `epoch` (0-based).

        A weight of 0 leaves the exit out of the step: its classifier and exit scorer get no
        gradient at all (None, not zeros, so AdamW neither moves nor decays them, nor counts the
        step for them). Methods that train different exits at different steps override this.
        """
        return self.exit_weights

    def training_forward(self, batch: dict[str, torch.Tensor], step: int, epoch: int):
        """The forward pass training uses at this step (two-stage freezes the backbone in stage 2)."""
        return self.forward_with_scores(batch)

    def training_loss(
        self, batch: dict[str, torch.Tensor], step: int, epoch: int
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        """(loss, every exit's cross-entropy, the exit scorers' loss or None) at optimizer step `step`.

        loss = sum of the step's exit weights times the exits' cross-entropies, plus, with learned
        exits, the score losses of the exits trained at this step. The step and epoch are passed
        in (not read from a Trainer) so that loops without one (the gradient analysis) follow the
        method's schedule too.
        """
        logits, scores = self.training_forward(batch, step, epoch)
        losses = self.exit_losses(logits, batch["labels"])
        weights = self.step_exit_weights(step, epoch)
        trained = [i for i, w in enumerate(weights) if w != 0]
        loss = sum(weights[i] * losses[i] for i in trained)
        score_loss = None
        if self.learned_exit:
            score_losses = self.exit_score_losses(logits, scores, batch["labels"])
            score_loss = sum(score_losses[i] for i in trained)
            loss = loss + score_loss
        return loss, losses, score_loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # global_step counts optimizer steps: the micro-batches of one accumulated step train the
        # same exits, and a run resumed from last.ckpt continues the schedule where it stopped
        loss, losses, score_loss = self.training_loss(batch, self.global_step, self.current_epoch)
        bs = batch["labels"].shape[0]
        if score_loss is not None:
            self.log("train/exit_score_loss", score_loss, batch_size=bs)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for i, li in enumerate(losses, start=1):
            self.log(f"train/exit{i}/loss", li, batch_size=bs)
        return loss

    def on_train_epoch_start(self) -> None:
        # pretrained submodules come out of from_pretrained in eval mode; make sure dropout is on
        self.net.train()

    # ---- evaluation: every method the same way ----------------------------------------
    # The module only collects each validation dataloader's per-exit outputs; the evaluation
    # callback (evaluation.callback.AdaptiveEvaluation) names the splits, scores and logs them.
    def on_validation_epoch_start(self) -> None:
        self._eval_buffers = {}  # a sanity check's batches never reach the first epoch

    def validation_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        logits, scores = self.forward_with_scores(batch)
        buf = self._eval_buffers.setdefault(dataloader_idx, {"logits": [], "labels": [], "exit_scores": []})
        buf["logits"].append(torch.stack(logits).float().cpu())  # [E, B, C]
        buf["labels"].append(batch["labels"].cpu())
        if self.learned_exit:
            buf["exit_scores"].append(torch.sigmoid(torch.stack(scores).float()).cpu())  # [E, B]

    def take_eval_outputs(self) -> dict[int, dict[str, np.ndarray]]:
        """This epoch's outputs per validation dataloader index, in dataset row order (all DDP ranks'
        rows): {"logits": [E, N, C], "labels": [N], "exit_scores": [E, N] with learned exits}."""
        outputs = {}
        for idx in sorted(self._eval_buffers):
            buf = self._eval_buffers[idx]
            arrays = {"logits": torch.cat(buf["logits"], dim=1), "labels": torch.cat(buf["labels"])}
            if buf["exit_scores"]:
                arrays["exit_scores"] = torch.cat(buf["exit_scores"], dim=1)
            loaders = self.trainer.val_dataloaders if self._trainer is not None else None
            loader = loaders[idx] if isinstance(loaders, (list, tuple)) else loaders
            sampler = getattr(loader, "sampler", None)
            # DDP split the rows over the ranks (without a DistributedSampler each rank saw them all)
            if isinstance(sampler, DistributedSampler) and self.trainer.world_size > 1:
                if sampler.shuffle or sampler.drop_last:
                    raise ValueError(
                        "evaluation under DDP needs an unshuffled DistributedSampler without drop_last"
                    )
                arrays = {k: gather_rows(self, v, len(sampler.dataset)) for k, v in arrays.items()}
            dataset = getattr(loader, "dataset", None)
            # the loader ran a length-sorted view: back to dataset rows
            if isinstance(dataset, LengthOrdered):
                arrays = {k: dataset_order(dataset.order, v) for k, v in arrays.items()}
            outputs[idx] = {k: v.numpy() for k, v in arrays.items()}
        self._eval_buffers = {}
        return outputs

    # ---- optimisation (paper App. A: AdamW, betas 0.9/0.999, linear decay) -------------
    def configure_optimizers(self):
        optimizer = self.make_optimizer()
        total = self.trainer.estimated_stepping_batches if self.trainer else 1
        if not math.isfinite(total):  # trainer.max_epochs=-1 with no max_steps: no end to decay to
            raise ValueError(
                "the linear lr decay needs a finite run: set trainer.max_epochs or trainer.max_steps."
            )
        total = max(1, int(total))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.make_schedule(optimizer, total), "interval": "step"},
        }

    def make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_factory is None:
            raise ValueError(
                "this module was built without an optimizer: pass optimizer= (conf/train.yaml's `optimizer`)."
            )
        return self.optimizer_factory(params)

    def make_schedule(self, optimizer: torch.optim.Optimizer, total_steps: int):
        """The learning-rate schedule over `total_steps` optimizer steps (stepped every step)."""
        factory = self.scheduler_factory or linear_decay_schedule
        return factory(optimizer, total_steps=total_steps)
