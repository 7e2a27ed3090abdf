"""Exit heads: pool the token states of one layer, then classify.

A head is what the paper calls a classifier C_i: a pooler (dense + activation, initialised
from the checkpoint's pooler when it has one) and a linear layer. The pooler follows the
backbone's own classification head (`SegmentedEncoder.pooler_style`): dense + tanh as BERT's
pooler; for DeBERTa, which ships no pretrained pooler, dropout + dense + the config's
`pooler_hidden_act` (GELU) as its ContextPooler. The pooled vector is either the first token
([CLS], the paper's setting) or the mean over non-padding tokens (what sentence-embedding
checkpoints such as MiniLM-L6 were trained with).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

POOLINGS = ("cls", "mean")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """[B, T, H] -> [B, H]; mean pooling ignores padding positions."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    raise ValueError(f"Unknown exit pooling {pooling!r}: use model.exit_pooling=cls or model.exit_pooling=mean.")


class Pooler(nn.Module):
    """dropout -> dense -> activation over the pooled vector (defaults: BERT's pooler, dense + tanh)."""

    def __init__(
        self,
        hidden_size: int,
        pooling: str,
        init_from: nn.Module | None = None,
        activation: str = "tanh",
        dropout: float = 0.0,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            pool(torch.zeros(1, 1, 1), torch.ones(1, 1), pooling)  # raises the one-line error
        from transformers.activations import ACT2FN

        self.pooling = pooling
        # Identity, not Dropout(0): a zero-rate dropout could still draw from the RNG in training
        # and so change every later random number of a run
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.act = ACT2FN[activation]
        self.dense = nn.Linear(hidden_size, hidden_size)
        if init_from is not None:
            self.dense = copy.deepcopy(init_from.dense)
        else:
            nn.init.normal_(self.dense.weight, std=0.02)
            nn.init.zeros_(self.dense.bias)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(self.dropout(pool(hidden, attention_mask, self.pooling))))


class ExitHead(nn.Module):
    """Classifier C_i: pooler -> dropout -> linear. The pooler may be shared between heads.

    With `learned_exit`, a second linear layer on the same pooled vector predicts whether
    this classifier's answer is correct (learning to exit, Xin et al. 2021 / paper Sec. 5);
    its logit is returned next to the class logits.
    """

    def __init__(
        self, hidden_size: int, num_labels: int, pooler: Pooler, dropout: float = 0.1, learned_exit: bool = False
    ):
        super().__init__()
        self.pooler = pooler
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)
        self.exit_scorer = nn.Linear(hidden_size, 1) if learned_exit else None

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(class logits [B, C], exit-score logit [B] or None)."""
        pooled = self.dropout(self.pooler(hidden, attention_mask))
        score = self.exit_scorer(pooled).squeeze(-1) if self.exit_scorer is not None else None
        return self.classifier(pooled), score


def inference_heads(
    heads: Sequence[ExitHead], cache: PoolingCache | None = None
) -> list[nn.Module | Callable]:
    """Eval-mode callables computing each head's `forward` bit-identically, with less overhead.

    At batch 1 a head's module calls and mask handling cost about as much as its arithmetic,
    and the engine pays that at every exit. Each callable runs the same operations on the
    same tensors as `ExitHead.forward` (pool, dense, activation, exit scorer, classifier;
    dropout is the identity in eval mode), so the outputs are the same bits, but without the
    module-call machinery, and mean pooling's float mask and token counts are built once per attention
    mask and shared by all heads (as `pool` builds them; the mask is recognised by identity,
    so `cache.clear()` before inputs that may have been changed in place). Only plain heads
    qualify: a subclass, replaced submodules, hooks, a compiled head or training mode keep the
    module.
    """
    cache = cache or PoolingCache()
    return [_plain_head(head, cache) if _is_plain(head) else head for head in heads]


def _is_plain(head: nn.Module) -> bool:
    if type(head) is not ExitHead or type(head.pooler) is not Pooler:
        return False
    linears = [m for m in (head.pooler.dense, head.classifier, head.exit_scorer) if m is not None]
    return all(type(m) is nn.Linear for m in linears) and not any(
        m.training
        or m._forward_hooks
        or m._forward_pre_hooks
        or getattr(m, "_compiled_call_impl", None) is not None
        for m in head.modules()
    )


class PoolingCache:
    """The last attention mask's float mask [B, T, 1] and clamped token counts [B, 1].

    One tuple, replaced whole, so concurrent callers never mix two masks' entries.
    """

    def __init__(self):
        self.entry: tuple | None = None  # (attention_mask kept alive, dtype, weights, counts)

    def clear(self) -> None:
        self.entry = None

    def get(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        entry = self.entry
        if entry is None or entry[0] is not attention_mask or entry[1] != dtype:
            weights = attention_mask.unsqueeze(-1).to(dtype)  # exactly as `pool` computes them
            entry = (attention_mask, dtype, weights, weights.sum(1).clamp(min=1.0))
            self.entry = entry
        return entry[2], entry[3]


def _plain_head(head: ExitHead, cache: PoolingCache) -> Callable:
    dense, classifier, scorer = head.pooler.dense, head.classifier, head.exit_scorer
    act = head.pooler.act.forward  # the module's own function, without the call machinery
    mean = head.pooler.pooling == "mean"

    def forward(
        hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if mean:
            weights, counts = cache.get(attention_mask, hidden.dtype)
            pooled = (hidden * weights).sum(1) / counts
        else:
            pooled = hidden[:, 0]
        pooled = act(F.linear(pooled, dense.weight, dense.bias))
        score = None if scorer is None else F.linear(pooled, scorer.weight, scorer.bias).squeeze(-1)
        return F.linear(pooled, classifier.weight, classifier.bias), score

    return forward
