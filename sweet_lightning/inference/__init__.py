"""Adaptive inference for trained models: rows leave the batch at their exit.

`AdaptiveClassifier` (text in, labels out) wraps `AdaptiveEngine` (tensors in, per-row exit and
prediction out); `python -m sweet_lightning.predict` is the command-line front end.
"""

from sweet_lightning.inference.classifier import AdaptiveClassifier, Predictions, length_sorted_batches
from sweet_lightning.inference.engine import AdaptiveEngine, EngineOutput
from sweet_lightning.inference.loading import Calibration, RunSource, SourceError, resolve_source

__all__ = [
    "AdaptiveClassifier",
    "AdaptiveEngine",
    "Calibration",
    "EngineOutput",
    "Predictions",
    "RunSource",
    "SourceError",
    "length_sorted_batches",
    "resolve_source",
]
