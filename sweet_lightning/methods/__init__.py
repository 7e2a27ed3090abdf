"""The three training methods, one LightningModule each, sharing `AdaptiveModule`."""

from sweet_lightning.methods.base import AdaptiveModule
from sweet_lightning.methods.cascade import CascadeModule
from sweet_lightning.methods.early_exit import EarlyExitModule
from sweet_lightning.methods.sweet import SweetModule

METHODS = {"early_exit": EarlyExitModule, "sweet": SweetModule, "cascade": CascadeModule}

__all__ = ["METHODS", "AdaptiveModule", "CascadeModule", "EarlyExitModule", "SweetModule"]
