"""Multi-exit networks: one encoder with classifiers after chosen layers, or a cascade of
independent truncated encoders (the paper's Multi-Model).

Both return, for a batch, one logits tensor per exit, so training and evaluation code does
not care which one it holds.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from sweet_lightning.backbone import SegmentedEncoder
from sweet_lightning.evaluation import checks as evaluation_checks
from sweet_lightning.heads import ExitHead, Pooler


def check_exit_layers(exit_layers: Sequence[int], num_layers: int) -> list[int]:
    """model.exit_layers as a list, checked by the one exit-layer check (evaluation.checks)."""
    return evaluation_checks.check_exit_layers(exit_layers, num_layers, key="model.exit_layers").tolist()


class MultiExitModel(nn.Module):
    """Early-Exit network: segments of one encoder, a head after each exit layer.

    With `detach_segments=True` (SWEET) the state entering segment i+1 is detached, so
    classifier i's loss reaches only the layers after exit i-1 up to exit i, and its head
    (classifier 1 also owns the embeddings).
    """

    def __init__(
        self,
        encoder: SegmentedEncoder,
        exit_layers: Sequence[int],
        num_labels: int,
        pooling: str = "cls",
        dropout: float = 0.1,
        detach_segments: bool = False,
        shared_pooler: bool = False,
        learned_exit: bool = False,
    ):
        super().__init__()
        self.encoder = encoder
        self.exit_layers = check_exit_layers(exit_layers, encoder.num_layers)
        self.num_layers = encoder.num_layers
        self.detach_segments = detach_segments
        hidden = encoder.config.hidden_size
        init = encoder.pretrained_pooler()
        activation, pooler_dropout = encoder.pooler_style()

        def new_pooler() -> Pooler:
            return Pooler(hidden, pooling, init, activation=activation, dropout=pooler_dropout)

        shared = new_pooler() if shared_pooler else None
        self.heads = nn.ModuleList(
            ExitHead(hidden, num_labels, shared or new_pooler(), dropout, learned_exit)
            for _ in self.exit_layers
        )
        # the checkpoint's own pooler is replaced by the heads' copies
        if getattr(encoder.model, "pooler", None) is not None:
            encoder.model.pooler = None

    def segments(self) -> list[tuple[int, int]]:
        """0-based [start, end) layer ranges, one per exit."""
        starts = [0] + self.exit_layers[:-1]
        return list(zip(starts, self.exit_layers, strict=True))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """(class logits per exit, learned exit-score logits per exit or Nones)."""
        hidden = self.encoder.embed(input_ids, attention_mask, token_type_ids)
        ctx = self.encoder.context(hidden, attention_mask)
        logits, scores = [], []
        for i, ((start, end), head) in enumerate(zip(self.segments(), self.heads, strict=True)):
            if i > 0 and self.detach_segments:
                hidden, ctx = hidden.detach(), ctx.detached()
            hidden = self.encoder.run_layers(hidden, ctx, start, end)
            lg, sc = head(hidden, attention_mask)
            logits.append(lg)
            scores.append(sc)
        return logits, scores


class CascadeModel(nn.Module):
    """Multi-Model: independent models made of the first L_i pretrained layers plus a head.

    No parameter is shared: member i is a deep copy of the pretrained encoder truncated to
    exit_layers[i] layers. At inference members run small to large.
    """

    def __init__(
        self,
        encoder: SegmentedEncoder,
        exit_layers: Sequence[int],
        num_labels: int,
        pooling: str = "cls",
        dropout: float = 0.1,
        learned_exit: bool = False,
    ):
        super().__init__()
        self.exit_layers = check_exit_layers(exit_layers, encoder.num_layers)
        self.num_layers = encoder.num_layers
        members = []
        for layers in self.exit_layers:
            member_encoder = copy.deepcopy(encoder)
            member_encoder.truncate(layers)
            members.append(
                MultiExitModel(member_encoder, [layers], num_labels, pooling, dropout, learned_exit=learned_exit)
            )
        self.members = nn.ModuleList(members)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        outs = [m(input_ids, attention_mask, token_type_ids) for m in self.members]
        return [o[0][0] for o in outs], [o[1][0] for o in outs]
