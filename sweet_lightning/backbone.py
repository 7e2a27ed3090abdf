"""Run a Hugging Face encoder segment by segment.

Adaptive inference needs the hidden state after chosen layers (the exit layers) and the
freedom to stop, or to cut the gradient, between segments. `SegmentedEncoder` wraps the
base model of any supported family and exposes three steps that, chained over all layers,
reproduce the model's own forward exactly:

    hidden = enc.embed(input_ids, token_type_ids, attention_mask)
    ctx = enc.context(hidden, attention_mask)          # masks / relative positions
    hidden = enc.run_layers(hidden, ctx, start, end)   # layers [start, end), 0-based

Families differ only in how the context is built and how a layer is called.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

BERT_LIKE = {"bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie", "data2vec-text"}
DEBERTA_LIKE = {"deberta", "deberta-v2"}
SUPPORTED = sorted(BERT_LIKE | DEBERTA_LIKE | {"mpnet"})


@dataclass
class LayerContext:
    """Per-batch tensors every layer needs besides the hidden state."""

    attention_mask: torch.Tensor  # [B, T] 1 = token, 0 = padding
    layer_mask: torch.Tensor | None  # the mask in the form the family's layers expect
    extras: dict = field(default_factory=dict)  # family-specific (position bias, rel. embeddings, ...)

    def detached(self) -> LayerContext:
        """Same context with every parameter-derived tensor cut from the graph.

        SWEET uses this so that a later segment cannot send gradient into parameters that
        are shared across layers but owned by the first segment (e.g. DeBERTa's relative
        position embeddings).
        """
        return self.map_tensors(torch.Tensor.detach)

    def map_tensors(self, fn) -> LayerContext:
        """Same context with `fn` applied to every parameter-derived tensor (the extras: the
        masks come from the input alone). What crosses a segment boundary, SWEET's detach or
        gradient-scaled SWEET's scaling, must treat these tensors as it treats the hidden state."""
        extras = {k: fn(v) if torch.is_tensor(v) else v for k, v in self.extras.items()}
        return replace(self, extras=extras)


class SegmentedEncoder(nn.Module):
    """A base encoder (BertModel, RobertaModel, DebertaV2Model, ...) run layer range by layer range."""

    def __init__(self, model: nn.Module):
        super().__init__()
        model_type = getattr(model.config, "model_type", "")
        if model_type in BERT_LIKE:
            self.family = "bert"
        elif model_type in DEBERTA_LIKE:
            self.family = "deberta"
        elif model_type == "mpnet":
            self.family = "mpnet"
        else:
            raise ValueError(
                f"Unsupported encoder type {model_type!r}: supported are {', '.join(SUPPORTED)}."
            )
        self.model = model
        self.config = model.config

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.encoder.layer

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def max_length(self) -> int | None:
        """Longest input (in tokens) the absolute position embeddings cover; None when positions are only
        relative (DeBERTa), which has no such limit."""
        positions = getattr(self.model.embeddings, "position_embeddings", None)
        if not isinstance(positions, nn.Embedding):
            return None
        # RoBERTa and MPNet number positions from padding_idx + 1: the rows up to padding_idx are never used
        unused = positions.padding_idx + 1 if positions.padding_idx is not None else 0
        return positions.num_embeddings - unused

    @staticmethod
    def max_length_of(module: nn.Module) -> int | None:
        """The longest input every encoder inside `module` accepts (a cascade holds several); None: no limit."""
        limits = [m.max_length for m in module.modules() if isinstance(m, SegmentedEncoder) and m.max_length]
        return min(limits, default=None)

    def truncate(self, num_layers: int) -> None:
        """Keep only the first `num_layers` layers (Multi-Model members are truncated models)."""
        self.model.encoder.layer = nn.ModuleList(list(self.layers)[:num_layers])
        self.config.num_hidden_layers = num_layers

    def embed(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        m = self.model
        if self.family == "deberta":
            return m.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, mask=attention_mask)
        if self.family == "mpnet":
            return m.embeddings(input_ids=input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        hidden = m.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        if hasattr(m, "embeddings_project"):  # ELECTRA's embedding size can differ from hidden size
            hidden = m.embeddings_project(hidden)
        return hidden

    def context(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> LayerContext:
        enc = self.model.encoder
        if self.family == "deberta":
            extras = {
                "relative_pos": enc.get_rel_pos(hidden),
                "rel_embeddings": enc.get_rel_embedding(),
                "embedding_output": hidden,  # DeBERTa-v2's conv layer mixes it into layer 0's output
            }
            return LayerContext(attention_mask, enc.get_attention_mask(attention_mask), extras)
        from transformers.masking_utils import create_bidirectional_mask

        layer_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden, attention_mask=attention_mask
        )
        extras = {"position_bias": enc.compute_position_bias(hidden)} if self.family == "mpnet" else {}
        return LayerContext(attention_mask, layer_mask, extras)

    def run_layers(self, hidden: torch.Tensor, ctx: LayerContext, start: int, end: int) -> torch.Tensor:
        """Apply layers start..end-1 (0-based) to `hidden`."""
        for i in range(start, end):
            layer = self.layers[i]
            if self.family == "bert":
                out = layer(hidden, ctx.layer_mask)
                hidden = out[0] if isinstance(out, tuple) else out
            elif self.family == "mpnet":
                hidden = layer(hidden, ctx.layer_mask, ctx.extras["position_bias"])[0]
            else:
                out, _ = layer(
                    hidden,
                    ctx.layer_mask,
                    relative_pos=ctx.extras["relative_pos"],
                    rel_embeddings=ctx.extras["rel_embeddings"],
                )
                conv = getattr(self.model.encoder, "conv", None)
                if i == 0 and conv is not None:
                    out = conv(ctx.extras["embedding_output"], out, ctx.attention_mask)
                hidden = out
        return hidden

    def pooler_style(self) -> tuple[str, float]:
        """(activation, input dropout) of the exit heads' pooler, as in the family's own
        classification head: BERT-like and MPNet poolers are dense + tanh; DeBERTa ships no
        pooler and its classifier's ContextPooler is dropout(`pooler_dropout`) + dense +
        `pooler_hidden_act` (GELU in the released configs)."""
        if self.family == "deberta":
            return str(self.config.pooler_hidden_act), float(self.config.pooler_dropout)
        return "tanh", 0.0

    def pretrained_pooler(self) -> nn.Module | None:
        """The checkpoint's pooler (dense + tanh), if the model has one, to initialise exit heads."""
        pooler = getattr(self.model, "pooler", None)
        return pooler if pooler is not None and hasattr(pooler, "dense") else None
