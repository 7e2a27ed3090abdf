"""Segment-by-segment execution equals each architecture's own Hugging Face forward."""

import pytest
import torch
from transformers import (
    AutoModel,
    BertConfig,
    DebertaConfig,
    DebertaV2Config,
    ElectraConfig,
    MPNetConfig,
    RobertaConfig,
)

from sweet_lightning.modeling import SegmentedEncoder

SMALL = dict(
    hidden_size=32,
    num_hidden_layers=6,
    num_attention_heads=4,
    intermediate_size=64,
    vocab_size=120,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)

CONFIGS = {
    "bert": lambda: BertConfig(**SMALL),
    "roberta": lambda: RobertaConfig(**SMALL, pad_token_id=1),
    "electra": lambda: ElectraConfig(**SMALL, embedding_size=16),
    "deberta": lambda: DebertaConfig(**SMALL, relative_attention=True, pos_att_type=["c2p", "p2c"]),
    "deberta-v2": lambda: DebertaV2Config(
        **SMALL,
        relative_attention=True,
        pos_att_type=["c2p", "p2c"],
        position_buckets=8,
        norm_rel_ebd="layer_norm",
        conv_kernel_size=3,
        share_att_key=True,
    ),
    "mpnet": lambda: MPNetConfig(**SMALL),
}


def padded_batch(vocab: int = 120):
    ids = torch.randint(5, vocab, (3, 11))
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 1  # pad id
    return ids, mask


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_segments_match_hf_forward_at_every_exit(arch):
    model = AutoModel.from_config(CONFIGS[arch]()).eval()
    ids, mask = padded_batch()
    exit_layers = [1, 3, 4, 6]
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        enc = SegmentedEncoder(model)
        hidden = enc.embed(ids, mask)
        ctx = enc.context(hidden, mask)
        start = 0
        for layer in exit_layers:
            hidden = enc.run_layers(hidden, ctx, start, layer)
            start = layer
            real = mask.bool()  # compare real tokens; padded positions are never read by heads
            torch.testing.assert_close(hidden[real], ref[layer][real], rtol=1e-5, atol=1e-5)


def test_unsupported_architecture_is_a_clear_error():
    from transformers import GPT2Config

    model = AutoModel.from_config(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(ValueError, match="Unsupported encoder type 'gpt2'"):
        SegmentedEncoder(model)


def _runs(model, length: int) -> bool:
    ids = torch.randint(5, 120, (1, length))
    try:
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    except (IndexError, RuntimeError):
        return False
    return True


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_max_length_is_the_longest_input_the_model_accepts(arch):
    """RoBERTa and MPNet lose two positions to their padding offset; the others use all of them."""
    model = AutoModel.from_config(CONFIGS[arch]()).eval()
    longest = SegmentedEncoder(model).max_length
    assert longest is not None and _runs(model, longest) and not _runs(model, longest + 1)


def test_relative_positions_only_have_no_max_length():
    config = DebertaConfig(
        **SMALL, relative_attention=True, pos_att_type=["c2p", "p2c"], position_biased_input=False
    )
    model = AutoModel.from_config(config).eval()
    assert SegmentedEncoder(model).max_length is None
    assert _runs(model, 3 * SMALL["max_position_embeddings"])
