"""Exit pooling (CLS or mean over real tokens) and learned exit scorers."""

import pytest
import torch

from sweet_lightning.methods import CascadeModule, EarlyExitModule, SweetModule
from sweet_lightning.modeling import Pooler, pool
from tests.conftest import tiny_module_args

TINY = tiny_module_args()


def test_mean_pooling_ignores_padding():
    hidden = torch.randn(1, 5, 8)
    padded = torch.cat([hidden, torch.randn(1, 3, 8) * 100], dim=1)  # garbage in padding positions
    mask = torch.tensor([[1] * 5 + [0] * 3])
    torch.testing.assert_close(pool(padded, mask, "mean"), hidden.mean(1))
    torch.testing.assert_close(pool(padded, mask, "cls"), hidden[:, 0])


def test_padded_and_unpadded_copies_give_the_same_pooled_vector_through_the_model():
    module = SweetModule(**{**TINY, "exit_pooling": "mean"}).eval()
    ids = torch.randint(1000, 2000, (1, 6))
    short = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    long_ids = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    long = {
        "input_ids": long_ids,
        "attention_mask": torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], 1).long(),
    }
    with torch.no_grad():
        for a, b in zip(module(short), module(long), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [EarlyExitModule, SweetModule, CascadeModule])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling_choice_reaches_every_head(cls, pooling):
    module = cls(**{**TINY, "exit_pooling": pooling, "learned_exit": True})
    poolers = [m for m in module.modules() if isinstance(m, Pooler)]
    assert len(poolers) == 4 and all(p.pooling == pooling for p in poolers)


def test_unknown_pooling_is_a_clear_error():
    with pytest.raises(ValueError, match="model.exit_pooling=cls or model.exit_pooling=mean"):
        SweetModule(**{**TINY, "exit_pooling": "max"})


def test_learned_exit_scorers_train_and_stay_in_their_segment_under_sweet():
    module = SweetModule(**TINY, learned_exit=True)
    ids = torch.randint(1000, 2000, (4, 7))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1, 0, 1])}
    logits, scores = module.forward_with_scores(batch)
    assert all(s.shape == (4,) for s in scores)
    loss = module.exit_score_losses(logits, scores, batch["labels"])[2]  # exit 3's scorer alone
    loss.backward()
    start, end = module.net.segments()[2]
    for name, p in module.named_parameters():
        touched = p.grad is not None and bool(torch.count_nonzero(p.grad))
        in_segment = any(f"encoder.layer.{i}." in name for i in range(start, end)) or name.startswith(
            "net.heads.2."
        )
        if touched:
            assert in_segment, name
    assert module.net.heads[2].exit_scorer.weight.grad.abs().sum() > 0


def tiny_encoder(family: str, **config):
    """A small randomly initialised BERT or DeBERTa-v2 (offline), wrapped for segment-wise use."""
    from transformers import AutoModel, BertConfig, DebertaV2Config

    from sweet_lightning.modeling import SegmentedEncoder

    small = dict(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, vocab_size=50
    )
    make = {"bert": BertConfig, "deberta-v2": DebertaV2Config}[family]
    return SegmentedEncoder(AutoModel.from_config(make(**small, **config)))


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_deberta_heads_pool_like_debertas_own_classifier(activation):
    """DeBERTa has no pretrained pooler: every exit's pooler is its ContextPooler (dropout on the
    first token, dense, then the config's pooler_hidden_act), as the config says."""
    from transformers.models.deberta_v2.modeling_deberta_v2 import ContextPooler

    from sweet_lightning.modeling import MultiExitModel

    encoder = tiny_encoder("deberta-v2", pooler_hidden_act=activation, pooler_dropout=0.3)
    net = MultiExitModel(encoder, [1, 2], num_labels=2, pooling="cls")
    reference = ContextPooler(encoder.config).eval()
    hidden = torch.randn(3, 5, 16) * 3
    mask = torch.ones(3, 5, dtype=torch.long)
    for head in net.heads:
        assert head.pooler.dropout.p == encoder.config.pooler_dropout
        reference.dense.load_state_dict(head.pooler.dense.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(head.pooler.eval()(hidden, mask), reference(hidden), rtol=0, atol=0)


def test_bert_heads_keep_the_pretrained_pooler_arithmetic():
    from sweet_lightning.modeling import MultiExitModel

    encoder = tiny_encoder("bert")
    pretrained = encoder.model.pooler  # the checkpoint's own, which the heads replace
    net = MultiExitModel(encoder, [1, 2], num_labels=2, pooling="cls").eval()
    hidden = torch.randn(3, 5, 16) * 3
    mask = torch.ones(3, 5, dtype=torch.long)
    with torch.no_grad():
        for head in net.heads:
            assert isinstance(head.pooler.dropout, torch.nn.Identity)  # BERT's pooler has no dropout
            torch.testing.assert_close(head.pooler(hidden, mask), pretrained(hidden), rtol=0, atol=0)
