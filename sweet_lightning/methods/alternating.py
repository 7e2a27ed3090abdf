"""Alternating (BERxiT, Xin et al., 2021, Sec. 3.1): optimizer steps alternate between the
all-exits loss and the last exit's loss alone.

Steps 0, 2, 4, ... (counted in optimizer steps over the whole run, so accumulated micro-batches
share a kind and a resumed run keeps the rhythm) train every exit as Early-Exit does, weighted by
`method.exit_weights`; steps 1, 3, 5, ... train the last exit alone (weight 1), as plain
fine-tuning of the full model would: the earlier classifiers get no gradient then. The network is
Early-Exit's (`MultiExitModel`, no boundary treatment), so inference is Early-Exit's too.

With learned exits (`exit_policy=learned`) each exit scorer trains at the steps its classifier
trains: all of them on all-exits steps, the last one on last-exit steps.
"""

from __future__ import annotations

import lightning as L

from sweet_lightning.methods.early_exit import EarlyExitModule


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


class AlternatingModule(EarlyExitModule):
    method = "alternating"
    cost_model = "early_exit"

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit":
            check_unused_parameters_allowed(self.trainer, self.method)

    def step_exit_weights(self, step: int, epoch: int) -> list[float]:
        if step % 2 == 0:
            return self.exit_weights
        return [0.0] * (len(self.exit_layers) - 1) + [1.0]
