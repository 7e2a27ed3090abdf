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

At batch 1 the per-exit overhead is paid once per exit per example, so it is kept small; each
shortcut is commented where it is taken, and docs/inference.md lists them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sweet_lightning.evaluation import ExitPolicy, PerExitPolicy, get_policy, softmax_row, tempered_softmax
from sweet_lightning.modeling import CascadeModel, MultiExitModel, PoolingCache, inference_heads


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
        bf16: bool = False,
        compile: bool = False,
    ):
        self.net = net.eval()
        self.cascade = isinstance(net, CascadeModel)
        self.num_exits = len(net.exit_layers)
        self.policy = get_policy(policy)
        temps = np.asarray([1.0] * self.num_exits if temperatures is None else temperatures, dtype=np.float64)
        if temps.shape != (self.num_exits,) or not np.all(np.isfinite(temps) & (temps > 0)):
            raise ValueError(
                f"temperatures must be {self.num_exits} finite values > 0 (one per exit), got {temps.tolist()}"
            )
        self.temperatures = temps
        nets = list(net.members) if self.cascade else [net]
        heads = [m.heads[0] for m in nets] if self.cascade else list(net.heads)
        if self.policy.name == "learned" and any(h.exit_scorer is None for h in heads):
            raise ValueError(
                "policy=learned needs exit-score heads: train with exit_policy=learned or use policy=confidence"
            )
        self.device = next(net.parameters()).device
        self.bf16 = bf16
        # a per-exit policy sees exit i alone; any other gets each row's whole history
        self._per_exit = self.policy.per_exit
        self._needs_scores = self.policy.uses_exit_scores or not self._per_exit
        self._row_rule = self._per_exit and isinstance(self.policy, PerExitPolicy)  # has should_exit
        self._segments = [] if self.cascade else net.segments()
        if compile:
            # in place (nn.Module.compile keeps parameter names); dynamic: row count and length vary
            for n in nets:
                for module in (*n.encoder.layers, *n.heads):
                    module.compile(dynamic=True)
        # the heads' arithmetic without module-call overhead (bit-identical; compiled heads and
        # heads with hooks keep their module): taken now, like eval() and compile above. Mean
        # pooling's mask weights are shared by the heads within one run
        self._pooling = PoolingCache()
        self._heads = inference_heads(heads, self._pooling)

    def autocast(self):
        """The engine's precision as a context: bf16 autocast when `bf16`, else nothing (float32).
        `AdaptiveClassifier.from_checkpoint` sets `bf16` from the run it loads."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def run(self, batch: dict[str, torch.Tensor], threshold: float) -> EngineOutput:
        """Adaptive forward of one padded batch (input_ids, attention_mask, optional token_type_ids)."""
        threshold = self.policy.check_threshold(threshold)
        # exits before `first` cannot answer at this threshold: their heads are not run
        first = self.num_exits - 1 if self.policy.only_last_exit_answers(threshold, self.num_exits) else 0
        with self._forward(batch) as batch:
            rows = _Rows(batch["input_ids"].shape[0])
            if self.cascade:
                self._run_cascade(batch, threshold, first, rows)
            else:
                self._run_early_exit(batch, threshold, first, rows)
        return rows.out

    def run_full(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits of the model without exits: every layer, only the last classifier.

        For a cascade that is the largest member alone. This is the baseline of the paper's
        speedup (eq. 1: cost relative to L_M layers) and of the measured time fraction.
        """
        with self._forward(batch) as batch:
            net = self.net.members[-1] if self.cascade else self.net
            return _through(net, batch, self._heads[-1])[0].float()

    @contextlib.contextmanager
    def _forward(self, batch: dict[str, torch.Tensor]):
        """The batch's model inputs on the engine's device, under inference mode in the engine's
        precision; mean pooling's mask weights are cleared around it (a caller may refill a mask
        tensor in place between runs)."""
        self._pooling.clear()
        with torch.inference_mode(), self.autocast():
            yield {k: v.to(self.device) for k, v in batch.items() if k in _INPUT_KEYS and v is not None}
        self._pooling.clear()

    # ---- the two ways of stopping ---------------------------------------------------------
    def _run_early_exit(
        self, batch: dict[str, torch.Tensor], threshold: float, first: int, rows: _Rows
    ) -> None:
        enc = self.net.encoder
        mask = batch["attention_mask"]
        hidden = enc.embed(batch["input_ids"], mask, batch.get("token_type_ids"))
        ctx = enc.context(hidden, mask)
        for i, (start, end) in enumerate(self._segments):
            hidden = enc.run_layers(hidden, ctx, start, end)
            if i < first:  # layers only
                continue
            keep = self._decide(i, *self._heads[i](hidden, mask), threshold, rows)
            if keep is None:
                return
            if keep is not _EVERY_ROW:
                kept = _keep_rows(keep, {"hidden": hidden, "attention_mask": mask})
                hidden, mask = kept["hidden"], kept["attention_mask"]
                # the context is cheap to rebuild from the sub-batch's 2-D mask. DeBERTa's
                # `embedding_output` is then stale, but only layer 0 reads it and layer 0
                # always runs in the first segment, before any row has left.
                ctx = enc.context(hidden, mask)

    def _run_cascade(self, batch: dict[str, torch.Tensor], threshold: float, first: int, rows: _Rows) -> None:
        inputs = batch
        for i, member in enumerate(self.net.members):
            if i < first:  # this member cannot answer: not run at all
                continue
            keep = self._decide(i, *_through(member, inputs, self._heads[i]), threshold, rows)
            if keep is None:
                return
            if keep is not _EVERY_ROW:
                inputs = _keep_rows(keep, inputs)

    def _decide(
        self, i: int, logits: torch.Tensor, score: torch.Tensor | None, threshold: float, rows: _Rows
    ) -> torch.Tensor | slice | None:
        """Record the rows that exit at exit i; return the batch positions that stay.

        None: no row stays; `_EVERY_ROW`: no row left (nothing to gather); else an index tensor.
        """
        last = i == self.num_exits - 1
        if logits.shape == (1, 2) and (self._row_rule or last):
            raw = logits.tolist()[0]  # float32 (or bf16) values as Python floats: exact
            if all(math.isfinite(x) for x in raw):  # else NumPy's NaN handling below applies
                return self._decide_one_binary(i, raw, score, threshold, rows)
        if logits.dtype != torch.float32 or logits.device.type != "cpu":
            logits = logits.float().cpu()
        raw = logits.numpy()  # predictions: argmax of the raw logits, as simulated
        probs = tempered_softmax(raw, self.temperatures[i])  # the same arithmetic as simulate_exits
        if not last:  # the last exit answers whatever is left
            if self._per_exit:
                # the policy on this exit alone ([1, B, C]): row for row what it computes on [E, N, C]
                scores = _sigmoid64(score)[None] if self._needs_scores and score is not None else None
                leave = self.policy.may_exit(probs[None], threshold, scores)[0]
            else:
                # the policy sees each row's whole history (patience counts agreeing exits)
                rows.probs.append(probs)
                if score is not None:
                    rows.scores.append(_sigmoid64(score))
                scores = np.stack(rows.scores) if len(rows.scores) == len(rows.probs) else None
                leave = self.policy.may_exit(np.stack(rows.probs), threshold, scores)[-1]
            leaving = np.count_nonzero(leave)
            if leaving == 0:
                return _EVERY_ROW
            if leaving < leave.size:
                rows.record(i, raw[leave].argmax(axis=1), probs[leave].max(axis=1), leave)
                keep = torch.from_numpy(np.flatnonzero(~leave))
                return keep if self.device.type == "cpu" else keep.to(self.device)
        rows.record(i, raw.argmax(axis=1), probs.max(axis=1))
        return None

    def _decide_one_binary(
        self, i: int, raw: list[float], score: torch.Tensor | None, threshold: float, rows: _Rows
    ) -> slice | None:
        """`_decide` for one row of two finite logits, on Python floats: at batch 1 each NumPy call
        costs microseconds (cold caches after a layer), more than the arithmetic. `softmax_row` and
        the policy's `should_exit` repeat the NumPy path's IEEE operations in the same order, so
        the same bits (tests/test_engine.py feeds it ties)."""
        probs = softmax_row(raw, float(self.temperatures[i]))
        if i < self.num_exits - 1:
            # sigmoid in float32 as the validation loop caches it
            exit_score = (
                float(torch.sigmoid(score.float())) if self._needs_scores and score is not None else None
            )
            if not self.policy.should_exit(probs, threshold, exit_score):
                return _EVERY_ROW
        rows.record(i, raw.index(max(raw)), max(probs))  # argmax: the first of equal maxima
        return None


def _through(net: MultiExitModel, inputs: dict[str, torch.Tensor], head) -> tuple:
    """A network's forward up to its last exit layer, answered by `head` (the engine's fast head):
    a cascade member (one exit), or the full model without earlier exits."""
    enc, mask = net.encoder, inputs["attention_mask"]
    hidden = enc.embed(inputs["input_ids"], mask, inputs.get("token_type_ids"))
    hidden = enc.run_layers(hidden, enc.context(hidden, mask), 0, net.exit_layers[-1])
    return head(hidden, mask)


def _sigmoid64(score: torch.Tensor) -> np.ndarray:
    # sigmoid in float32 as the validation loop caches it, compared in float64 as simulated
    return torch.sigmoid(score.float()).cpu().numpy().astype(np.float64)


def _keep_rows(keep: torch.Tensor, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The rows `keep` of tensors [B, T, ...], without the padding columns none of them needs (the
    long rows may have left); left padding is kept as it is."""
    tensors = {k: v[keep] for k, v in tensors.items()}
    mask = tensors["attention_mask"]
    length = int(mask.sum(dim=1).max())
    if length < mask.shape[1] and not bool(mask[:, length:].any()):
        tensors = {k: v[:, :length] for k, v in tensors.items()}
    return tensors


_EVERY_ROW = slice(None)  # "all rows stay": as an index it would select them all

_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


class _Rows:
    """One batch's answers so far, and the rows still in it: their positions in the batch and
    their history of exits."""

    def __init__(self, size: int):
        self.out = EngineOutput(
            np.full(size, -1, dtype=np.int64), np.full(size, -1, dtype=np.int64), np.zeros(size)
        )
        self.left = np.arange(size)
        self.probs: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []

    def record(self, i: int, predictions, confidence, leave: np.ndarray | None = None) -> None:
        """The rows `leave` (a mask over the rows left; None: all of them) answer at exit i and leave
        the batch."""
        rows = self.left if leave is None else self.left[leave]
        self.out.exit_index[rows] = i
        self.out.predictions[rows] = predictions
        self.out.confidence[rows] = confidence
        if leave is not None:
            stay = ~leave
            self.left = self.left[stay]
            self.probs = [p[stay] for p in self.probs]
            self.scores = [s[stay] for s in self.scores]
