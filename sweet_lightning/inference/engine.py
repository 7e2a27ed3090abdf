"""Adaptive inference on tensors: run a multi-exit network or a cascade and stop each row at
the first exit whose policy says so.

Early-Exit / SWEET run the encoder segment by segment. After each exit the rows that leave
are dropped from the batch (hidden states, masks and the layer context are gathered for the
rows that stay), so later layers run only on unresolved rows. A cascade runs member 1 on all
rows and member i only on rows no earlier member resolved; every member embeds its rows
again, as an independent model must.

Exit decisions are made by the evaluation package's own policy code on float64 copies of the
logits, with the same temperature and softmax arithmetic as `simulate_exits`, so the engine
agrees with the simulation on cached logits row for row (tests/test_engine.py checks it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sweet_lightning.evaluation import get_policy, softmax
from sweet_lightning.evaluation.policies import ExitPolicy
from sweet_lightning.multi_exit import CascadeModel, MultiExitModel


@dataclass(frozen=True)
class EngineOutput:
    """Per-row result of one batch (rows in the batch's order)."""

    exit_index: np.ndarray  # [B] 0-based exit that answered
    predictions: np.ndarray  # [B] argmax of that exit's raw logits
    confidence: np.ndarray  # [B] max probability of that exit after its temperature


class AdaptiveEngine:
    """Stops rows early through a `MultiExitModel` or a `CascadeModel` (both in eval mode)."""

    def __init__(
        self,
        net: MultiExitModel | CascadeModel,
        policy: str | ExitPolicy = "confidence",
        temperatures: Sequence[float] | None = None,
        policy_kwargs: dict | None = None,
        bf16: bool = False,
        compile: bool = False,
    ):
        self.net = net.eval()
        self.cascade = isinstance(net, CascadeModel)
        self.exit_layers: list[int] = list(net.exit_layers)
        self.num_exits = len(self.exit_layers)
        self.policy = get_policy(policy, **(policy_kwargs or {}))
        temps = (
            np.ones(self.num_exits) if temperatures is None else np.asarray(temperatures, dtype=np.float64)
        )
        if temps.shape != (self.num_exits,) or not np.all(np.isfinite(temps) & (temps > 0)):
            raise ValueError(
                f"temperatures must be {self.num_exits} finite values > 0 (one per exit), got {temps.tolist()}"
            )
        self.temperatures = temps
        heads = [m.heads[0] for m in net.members] if self.cascade else list(net.heads)
        if self.policy.name == "learned" and any(h.exit_scorer is None for h in heads):
            raise ValueError(
                "policy=learned needs exit-score heads: train with learned_exit=true or use policy=confidence"
            )
        self.device = next(net.parameters()).device
        self.bf16 = bf16
        if compile:
            # in place (nn.Module.compile keeps parameter names); dynamic: row count and length vary
            for module in self._compilable():
                module.compile(dynamic=True)

    def _compilable(self) -> list[nn.Module]:
        nets = list(self.net.members) if self.cascade else [self.net]
        return [m for n in nets for m in (*n.encoder.layers, *n.heads)]

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # ---- public entry points ------------------------------------------------------------
    def run(self, batch: dict[str, torch.Tensor], threshold: float) -> EngineOutput:
        """Adaptive forward of one padded batch (input_ids, attention_mask, optional token_type_ids)."""
        threshold = self.policy.check_threshold(threshold)
        batch = {k: v.to(self.device) for k, v in batch.items() if k in _INPUT_KEYS and v is not None}
        size = batch["input_ids"].shape[0]
        out = _Collector(size)
        with torch.inference_mode(), self._autocast():
            if self.cascade:
                self._run_cascade(batch, threshold, out)
            else:
                self._run_early_exit(batch, threshold, out)
        return EngineOutput(out.exit_index, out.predictions, out.confidence)

    def run_full(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits of the model without exits: every layer, only the last classifier.

        For a cascade that is the largest member alone. This is the baseline of the paper's
        speedup (eq. 1: cost relative to L_M layers) and of the measured time fraction.
        """
        batch = {k: v.to(self.device) for k, v in batch.items() if k in _INPUT_KEYS and v is not None}
        with torch.inference_mode(), self._autocast():
            net = self.net.members[-1] if self.cascade else self.net
            enc, mask = net.encoder, batch["attention_mask"]
            hidden = enc.embed(batch["input_ids"], mask, batch.get("token_type_ids"))
            hidden = enc.run_layers(hidden, enc.context(hidden, mask), 0, net.exit_layers[-1])
            return net.heads[-1](hidden, mask)[0].float()

    # ---- the two ways of stopping ---------------------------------------------------------
    def _run_early_exit(self, batch: dict[str, torch.Tensor], threshold: float, out: _Collector) -> None:
        net = self.net
        enc = net.encoder
        mask = batch["attention_mask"]
        hidden = enc.embed(batch["input_ids"], mask, batch.get("token_type_ids"))
        ctx = enc.context(hidden, mask)
        state = _RowState(hidden.shape[0])
        for i, ((start, end), head) in enumerate(zip(net.segments(), net.heads, strict=True)):
            hidden = enc.run_layers(hidden, ctx, start, end)
            logits, score = head(hidden, mask)
            keep = self._decide(i, logits, score, threshold, state, out)
            if keep is None:
                return
            if keep.numel() < hidden.shape[0]:
                hidden, mask = hidden[keep], mask[keep]
                hidden, mask = _trim_padding(hidden, mask)
                # the context is cheap to rebuild from the sub-batch's 2-D mask. DeBERTa's
                # `embedding_output` is then stale, but only layer 0 reads it and layer 0
                # always runs in the first segment, before any row has left.
                ctx = enc.context(hidden, mask)

    def _run_cascade(self, batch: dict[str, torch.Tensor], threshold: float, out: _Collector) -> None:
        state = _RowState(batch["input_ids"].shape[0])
        inputs = batch
        for i, member in enumerate(self.net.members):
            logits, scores = member(
                inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids")
            )
            keep = self._decide(i, logits[0], scores[0], threshold, state, out)
            if keep is None:
                return
            if keep.numel() < inputs["input_ids"].shape[0]:
                inputs = {k: v[keep] for k, v in inputs.items()}
                length = _real_length(inputs["attention_mask"])
                if length is not None:
                    inputs = {k: v[:, :length] for k, v in inputs.items()}

    def _decide(
        self,
        i: int,
        logits: torch.Tensor,
        score: torch.Tensor | None,
        threshold: float,
        state: _RowState,
        out: _Collector,
    ) -> torch.Tensor | None:
        """Record the rows that exit at exit i; return the batch positions that stay (None: none)."""
        raw = logits.float().cpu().numpy().astype(np.float64)
        # the same arithmetic as simulate_exits: logits / T in float64, then softmax
        probs = softmax(raw / self.temperatures[i])
        state.probs.append(probs)
        if score is not None:
            # sigmoid in float32 as the validation loop caches it, compared in float64 as simulated
            state.scores.append(torch.sigmoid(score.float()).cpu().numpy().astype(np.float64))
        if i == self.num_exits - 1:
            leave = np.ones(raw.shape[0], dtype=bool)
        else:
            # the policy sees this row's whole history (patience counts agreeing exits)
            history = np.stack(state.probs)
            scores = np.stack(state.scores) if len(state.scores) == len(state.probs) else None
            leave = self.policy.may_exit(history, threshold, scores)[-1]
        rows = state.rows[leave]
        out.exit_index[rows] = i
        out.predictions[rows] = raw[leave].argmax(axis=1)
        out.confidence[rows] = probs[leave].max(axis=1)
        if leave.all():
            return None
        stay = ~leave
        state.keep(stay)
        return torch.from_numpy(np.flatnonzero(stay)).to(self.device)


_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


class _Collector:
    def __init__(self, size: int):
        self.exit_index = np.full(size, -1, dtype=np.int64)
        self.predictions = np.full(size, -1, dtype=np.int64)
        self.confidence = np.zeros(size, dtype=np.float64)


class _RowState:
    """Rows still in the batch: their positions in the original batch and exit history."""

    def __init__(self, size: int):
        self.rows = np.arange(size)
        self.probs: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []

    def keep(self, stay: np.ndarray) -> None:
        self.rows = self.rows[stay]
        self.probs = [p[stay] for p in self.probs]
        self.scores = [s[stay] for s in self.scores]


def _real_length(mask: torch.Tensor) -> int | None:
    """Longest real length when padding is on the right and can be cut; else None."""
    length = int(mask.sum(dim=1).max())
    if length == mask.shape[1] or bool(mask[:, length:].any()):  # nothing to cut, or left padding
        return None
    return length


def _trim_padding(hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop padding columns no remaining row needs (the long rows may have left)."""
    length = _real_length(mask)
    if length is None:
        return hidden, mask
    return hidden[:, :length], mask[:, :length]
