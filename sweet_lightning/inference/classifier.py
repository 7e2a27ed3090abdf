"""`AdaptiveClassifier`: text in, label + exit taken + confidence out, for any of the methods.

    clf = AdaptiveClassifier.from_checkpoint("outputs/rte/sweet-minilm_l6/2025-...")  # or a .ckpt
    out = clf.predict(["a sentence", ...], threshold=0.8)      # or target_speedup=0.5
    out.labels, out.exit_layer, out.confidence

Inputs of any lengths are tokenised once, sorted by length into batches (little padding),
run through `AdaptiveEngine`, and returned in input order.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sweet_lightning.batching import length_order
from sweet_lightning.evaluation import speed_accuracy_curve, speedup
from sweet_lightning.inference.engine import AdaptiveEngine
from sweet_lightning.inference.loading import (
    Calibration,
    RunSource,
    load_calibration,
    load_module,
    resolve_source,
)
from sweet_lightning.methods.base import AdaptiveModule
from sweet_lightning.modeling import SegmentedEncoder, load_tokenizer
from sweet_lightning.run_record import CALIBRATION_SPLIT, logits_file

Text = str | tuple[str, str] | list[str]
DEFAULT_MAX_LENGTH = 512
THRESHOLD_GRID = 201  # candidate thresholds per policy range when aiming at a speedup


@dataclass(frozen=True)
class Predictions:
    """One entry per input, in input order."""

    label_ids: np.ndarray  # [N] class ids
    labels: list[str]  # [N] label strings of the task (e.g. "entailment")
    exit_index: np.ndarray  # [N] 0-based exit that answered
    exit_layer: np.ndarray  # [N] backbone layer of that exit (a cascade: the member's depth)
    confidence: np.ndarray  # [N] max class probability at that exit, after its temperature
    threshold: float
    speedup: float  # paper eq. 1 over these inputs (cost relative to all L_M layers)

    def __len__(self) -> int:
        return len(self.labels)

    def records(self) -> list[dict]:
        """JSON-ready rows: label, label_id, exit (1-based), exit_layer, confidence."""
        keys = ("label", "label_id", "exit", "exit_layer", "confidence")
        arrays = (self.label_ids, self.exit_index + 1, self.exit_layer, self.confidence)
        columns = (self.labels, *(a.tolist() for a in arrays))  # tolist: Python ints and floats
        return [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)]


class AdaptiveClassifier:
    """A trained Early-Exit, SWEET or cascade module with its tokenizer, temperatures and policy."""

    def __init__(
        self,
        module: AdaptiveModule,
        tokenizer,
        temperatures: Sequence[float] | None = None,
        policy: str = "confidence",
        max_length: int | None = None,
        calibration: Calibration | tuple[Path, str] | None = None,
        bf16: bool = False,
        compile: bool = False,
    ):
        self.module = module.eval()
        self.task = module.task
        self.tokenizer = tokenizer
        self.engine = AdaptiveEngine(module.net, policy, temperatures, bf16=bf16, compile=compile)
        self.policy = self.engine.policy
        self.temperatures = self.engine.temperatures
        self.exit_layers = list(module.exit_layers)
        self.num_layers = int(module.num_layers)
        self.cost_model = module.cost_model
        model_max = getattr(tokenizer, "model_max_length", DEFAULT_MAX_LENGTH)
        limit = SegmentedEncoder.max_length_of(module)
        if max_length and limit is not None and max_length > limit:
            # longer inputs would fail inside the position embeddings with a tensor-size error
            raise ValueError(f"max_length={max_length} is more than the {limit} positions of this model")
        self.max_length = int(max_length or min(model_max, DEFAULT_MAX_LENGTH, limit or DEFAULT_MAX_LENGTH))
        if not (calibration is None or isinstance(calibration, (Calibration, tuple))):
            raise TypeError(
                f"calibration={calibration!r}: pass a Calibration, a (run_dir, split) pair such as "
                f"(run_dir, '{CALIBRATION_SPLIT}'), or None (AdaptiveClassifier.from_checkpoint finds it in the run dir)."
            )
        self._calibration = calibration  # (run dir, split): read only when a target asks for it

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | RunSource,
        policy: str | None = None,
        device: str = "cpu",
        bf16: bool | None = None,
        compile: bool = False,
        max_length: int | None = None,
    ) -> AdaptiveClassifier:
        """Load a run dir (results.json: checkpoint, temperatures, policy, precision) or a bare `.ckpt`.

        `bf16=None` runs in the precision the model was trained and evaluated in (bf16 autocast
        for a bf16 run, else float32), so exit decisions near a threshold match the run's cached
        logits; True / False override it."""
        source = path if isinstance(path, RunSource) else resolve_source(path)
        bf16 = source.bf16() if bf16 is None else bool(bf16)
        split = source.calibration_split()
        return cls(
            load_module(source, device),
            load_tokenizer(source.pretrained),
            temperatures=source.temperatures,
            policy=policy or source.policy,
            max_length=max_length or source.max_length,
            calibration=(source.run_dir, split) if split else None,
            bf16=bf16,
            compile=compile,
        )

    # ---- threshold for a target speedup -------------------------------------------------
    def calibration(self) -> Calibration:
        calib = self._calibration
        if calib is None:
            raise ValueError(
                "target_speedup needs cached calibration logits: load a run dir "
                "(logits_calibration.npz or the dev logits) or pass threshold= instead"
            )
        if isinstance(calib, tuple):
            run_dir, split = calib
            if split != CALIBRATION_SPLIT:
                warnings.warn(
                    f"no {logits_file(CALIBRATION_SPLIT)} in the run dir: choosing the threshold on "
                    f"{logits_file(split)} (the primary dev split), so speedups measured on that split are optimistic",
                    stacklevel=3,
                )
            calib = self._calibration = load_calibration(run_dir, split)
        return calib

    def calibration_curve(self):
        """The policy's speed-accuracy curve on the calibration logits, over a fine threshold grid."""
        calib = self.calibration()
        num_exits, _, num_classes = calib.logits.shape
        return speed_accuracy_curve(
            calib.logits,
            calib.labels,
            self.exit_layers,
            self.num_layers,
            cost_model=self.cost_model,
            metric=self.task.metric,
            policy=self.policy,
            thresholds=self.policy.default_thresholds(num_exits, num_classes, THRESHOLD_GRID),
            temperatures=self.temperatures,
            exit_scores=calib.exit_scores,
        )

    def threshold_for_speedup(self, target: float) -> float:
        """The threshold whose simulated speedup on the calibration logits is the largest <= target.

        Candidates are a fine grid over the policy's range (patience: 1..E); among equal
        speedups the one scoring best on the calibration labels wins.
        """
        target = float(target)
        if not target > 0:
            raise ValueError(f"target_speedup must be > 0 (e.g. target_speedup=0.5), got {target}")
        calib = self.calibration()
        curve = self.calibration_curve()
        reachable = [p for p in curve.points if p.speedup <= target]
        if not reachable:
            raise ValueError(
                f"target_speedup={target} is below the fastest this model gets on {Path(calib.source).name} "
                f"({min(curve.speedups):.3f}, everyone at exit 1): ask for at least that"
            )
        best = max(reachable, key=lambda p: (p.speedup, -math.inf if math.isnan(p.score) else p.score))
        return best.threshold

    def threshold_for_drop(self, max_drop: float) -> float:
        """The fastest threshold whose calibration score is at most `max_drop` below the score of
        running every example to the last exit (a score drop in the task metric's units, e.g. 0.01)."""
        max_drop = float(max_drop)
        if not max_drop >= 0:
            raise ValueError(f"target_drop must be >= 0 (e.g. target_drop=0.01), got {max_drop}")
        curve = self.calibration_curve()
        # the reference: every example answered by the last exit (the slowest point of the curve)
        full = max(curve.points, key=lambda p: (p.exit_fractions[-1], p.speedup))
        ok = [p for p in curve.points if not math.isnan(p.score) and p.score >= full.score - max_drop]
        best = min(ok, key=lambda p: (p.speedup, -p.score))
        return best.threshold

    # ---- prediction ---------------------------------------------------------------------
    def predict(
        self,
        texts: Sequence[Text],
        threshold: float | None = None,
        target_speedup: float | None = None,
        batch_size: int = 32,
        progress: bool = False,
        target_drop: float | None = None,
    ) -> Predictions:
        """Classify texts (pairs as 2-tuples for two-sentence tasks) with early exits.

        Give one of: `threshold`; `target_speedup` (fastest threshold not above that speedup on the
        calibration logits); `target_drop` (fastest threshold losing at most that much score there)."""
        if sum(x is not None for x in (threshold, target_speedup, target_drop)) != 1:
            raise ValueError(
                "give exactly one of threshold= (e.g. 0.8), target_speedup= (e.g. 0.5) or target_drop= (e.g. 0.01)"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if target_speedup is not None:
            threshold = self.threshold_for_speedup(target_speedup)
        if target_drop is not None:
            threshold = self.threshold_for_drop(target_drop)
        threshold = self.policy.check_threshold(threshold)
        encodings = self.tokenize(texts)
        n = len(encodings)
        exit_index = np.zeros(n, dtype=np.int64)
        label_ids = np.zeros(n, dtype=np.int64)
        confidence = np.zeros(n)
        batches = length_sorted_batches([len(e["input_ids"]) for e in encodings], batch_size)
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="predict", unit="batch", disable=None)  # None: on a terminal only
        for rows in batches:
            out = self.engine.run(self.collate([encodings[i] for i in rows]), threshold)
            exit_index[rows] = out.exit_index
            label_ids[rows] = out.predictions
            confidence[rows] = out.confidence
        layer_speedup = (
            speedup(exit_index, self.exit_layers, self.num_layers, self.cost_model) if n else math.nan
        )
        return Predictions(
            label_ids=label_ids,
            labels=[self.task.labels[i] for i in label_ids],
            exit_index=exit_index,
            exit_layer=np.asarray(self.exit_layers)[exit_index],
            confidence=confidence,
            threshold=float(threshold),
            speedup=layer_speedup,
        )

    def tokenize(self, texts: Sequence[Text]) -> list[dict[str, list[int]]]:
        """One unpadded encoding per input, truncated to max_length as in training."""
        if isinstance(texts, str):
            raise ValueError("predict takes a list of texts, not one string: wrap it as [text]")
        parts = len(self.task.text_keys)
        pieces = [(text,) if isinstance(text, str) else tuple(text) for text in texts]
        for i, piece in enumerate(pieces):
            if len(piece) != parts:
                need = "one string" if parts == 1 else f"a pair ({', '.join(self.task.text_keys)})"
                raise ValueError(f"input {i} has {len(piece)} text(s); task {self.task.name} takes {need}")
        if not pieces:
            return []
        columns = [list(column) for column in zip(*pieces, strict=True)]  # the first texts (and the second)
        enc = self.tokenizer(*columns, truncation=True, max_length=self.max_length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        return [{k: enc[k][i] for k in keys} for i in range(len(pieces))]

    def collate(self, encodings: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer.pad(encodings, padding=True, return_tensors="pt"))


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Input positions grouped into batches of similar length, longest first (peak memory early)."""
    order = length_order(lengths)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
