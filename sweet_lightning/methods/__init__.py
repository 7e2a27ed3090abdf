"""The training methods, one LightningModule each, sharing `AdaptiveModule`.

`METHODS` maps the method a checkpoint records (`checkpoint["sweet_lightning"]["method"]`, the
class's `method`) to the class that loads it; inference builds the network through that class.
Every method but `cascade` trains the same `MultiExitModel`, with `cost_model = "early_exit"` (the cost
model of paper eq. 1), so the inference engine runs them all alike. Config presets that reuse a
class (conf/method/weighted_early_exit.yaml is `EarlyExitModule` with `exit_weights: depth`)
record that class's method.
"""

from sweet_lightning.methods.alternating import AlternatingModule
from sweet_lightning.methods.base import AdaptiveModule
from sweet_lightning.methods.cascade import CascadeModule
from sweet_lightning.methods.early_exit import EarlyExitModule
from sweet_lightning.methods.sweet import SweetModule
from sweet_lightning.methods.sweet_alpha import GradientScaledSweetModule
from sweet_lightning.methods.two_stage import TwoStageModule

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

__all__ = [
    "METHODS",
    "AdaptiveModule",
    "AlternatingModule",
    "CascadeModule",
    "EarlyExitModule",
    "GradientScaledSweetModule",
    "SweetModule",
    "TwoStageModule",
]
