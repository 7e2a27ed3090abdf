"""Exit heads: pool the token states of one layer, then classify.

A head is what the paper calls a classifier C_i: a BERT-style pooler (dense + tanh,
initialised from the checkpoint's pooler when it has one) and a linear layer. The pooled
vector is either the first token ([CLS], the paper's setting) or the mean over non-padding
tokens (what sentence-embedding checkpoints such as MiniLM-L6 were trained with).
"""

from __future__ import annotations

import copy

import torch
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
    """dense + tanh over the pooled vector, as BERT's pooler."""

    def __init__(self, hidden_size: int, pooling: str, init_from: nn.Module | None = None):
        super().__init__()
        if pooling not in POOLINGS:
            pool(torch.zeros(1, 1, 1), torch.ones(1, 1), pooling)  # raises the one-line error
        self.pooling = pooling
        self.dense = nn.Linear(hidden_size, hidden_size)
        if init_from is not None:
            self.dense = copy.deepcopy(init_from.dense)
        else:
            nn.init.normal_(self.dense.weight, std=0.02)
            nn.init.zeros_(self.dense.bias)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(pool(hidden, attention_mask, self.pooling)))


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
