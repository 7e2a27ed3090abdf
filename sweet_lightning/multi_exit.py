"""Multi-exit networks: one encoder with classifiers after chosen layers, or a cascade of
independent truncated encoders (the paper's Multi-Model).

Both return, for a batch, one logits tensor per exit, so training and evaluation code does
not care which one it holds.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn

from sweet_lightning.backbone import LayerContext, SegmentedEncoder
from sweet_lightning.evaluation import checks as evaluation_checks
from sweet_lightning.heads import ExitHead, Pooler


def check_exit_layers(exit_layers: Sequence[int], num_layers: int) -> list[int]:
    """model.exit_layers as a list, checked by the one exit-layer check (evaluation.checks)."""
    return evaluation_checks.check_exit_layers(exit_layers, num_layers, key="model.exit_layers").tolist()


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the gradient flowing back through it is multiplied by `alpha`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.alpha = alpha
        return x.view_as(x)  # a new tensor object, so autograd records this node

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.alpha, None


def scale_gradient(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return _ScaleGradient.apply(x, alpha)


def check_boundary_grad(alpha: float, key: str = "method.alpha") -> float:
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:  # also refuses NaN
        raise ValueError(f"{key}={alpha} must be in [0, 1] (0 = SWEET, 1 = Early-Exit).")
    return alpha


class MultiExitModel(nn.Module):
    """Early-Exit network: segments of one encoder, a head after each exit layer.

    Every early-exit-style training method (Early-Exit, SWEET, weighted Early-Exit, two-stage,
    alternating, gradient-scaled SWEET) trains this one network; they differ only in the loss
    and in `boundary_grad`, which acts in training alone. Inference (`inference.engine`) runs
    the same network whichever method trained it.

    `boundary_grad` is the factor by which the gradient crossing a segment boundary backwards
    is multiplied: 1 (Early-Exit) lets every exit's loss reach every layer below it; 0 (SWEET)
    detaches the state entering segment i+1, so classifier i's loss reaches only the layers
    after exit i-1 up to exit i, and its head (classifier 1 also owns the embeddings); in
    between (gradient-scaled SWEET), exit j's loss reaches segment i < j scaled by
    boundary_grad ** (j - i), the number of boundaries it crosses.
    """

    def __init__(
        self,
        encoder: SegmentedEncoder,
        exit_layers: Sequence[int],
        num_labels: int,
        pooling: str = "cls",
        dropout: float = 0.1,
        boundary_grad: float = 1.0,
        shared_pooler: bool = False,
        learned_exit: bool = False,
    ):
        super().__init__()
        self.encoder = encoder
        self.exit_layers = check_exit_layers(exit_layers, encoder.num_layers)
        self.num_layers = encoder.num_layers
        self.boundary_grad = check_boundary_grad(boundary_grad, "boundary_grad")
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

    def cross_boundary(self, hidden: torch.Tensor, ctx: LayerContext) -> tuple[torch.Tensor, LayerContext]:
        """The state entering the next segment, with its backward path scaled by `boundary_grad`.

        0 detaches (SWEET itself: no graph, and not a graph of zeros that would cost a backward
        pass); 1 is the identity (Early-Exit itself). The context's parameter-derived tensors
        (e.g. DeBERTa's relative embeddings, owned by the first segment) get the same factor, so a
        segment's use of them counts as crossing the same boundaries as its hidden state.
        """
        alpha = self.boundary_grad
        if alpha == 0.0:
            return hidden.detach(), ctx.detached()
        if alpha == 1.0:
            return hidden, ctx
        return scale_gradient(hidden, alpha), ctx.map_tensors(
            lambda t: scale_gradient(t, alpha) if t.requires_grad else t  # index tensors have no gradient
        )

    def exit_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """The hidden state [B, T, H] at each exit layer, computed lazily (segment by segment)."""
        hidden = self.encoder.embed(input_ids, attention_mask, token_type_ids)
        ctx = self.encoder.context(hidden, attention_mask)
        for i, (start, end) in enumerate(self.segments()):
            if i > 0:
                hidden, ctx = self.cross_boundary(hidden, ctx)
            hidden = self.encoder.run_layers(hidden, ctx, start, end)
            yield hidden

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """(class logits per exit, learned exit-score logits per exit or Nones)."""
        states = self.exit_states(input_ids, attention_mask, token_type_ids)
        return self.apply_heads(states, attention_mask)

    def apply_heads(
        self, states: Iterable[torch.Tensor], attention_mask: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """Each head on its exit's state; a lazy `states` interleaves segments and heads, so the
        random draws (dropout) come in the same order as they always have."""
        logits, scores = [], []
        for hidden, head in zip(states, self.heads, strict=True):
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
