"""Conflicting-gradient analysis (paper Sec. 3.1): per-classifier gradients, row cosines, reports."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModel, BertConfig, DebertaV2Config, ElectraConfig, MPNetConfig, RobertaConfig

from sweet_lightning.analysis.gradients import (
    NO_GRADIENT,
    AnalysisError,
    batch_report,
    conflict_matrix,
    mean_row_cosine,
    measured_layers,
    per_classifier_gradients,
)
from sweet_lightning.analysis.gradients_run import check_request, fine_tune
from sweet_lightning.analysis.heatmap import format_table, plot_heatmap
from sweet_lightning.methods import CascadeModule, EarlyExitModule, SweetModule
from sweet_lightning.modeling import MultiExitModel, SegmentedEncoder
from tests.conftest import tiny_module_args

REPO = Path(__file__).resolve().parent.parent
EXITS = [1, 3, 4, 6]
# head dropout on, to check the measurement switches it off and restores train mode
TINY = tiny_module_args(exit_layers=EXITS, dropout=0.1)


def batch(vocab_low: int = 1000, vocab_high: int = 2000):
    ids = torch.randint(vocab_low, vocab_high, (4, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1, 0])}


def is_zero(g: torch.Tensor) -> bool:
    return torch.count_nonzero(g) == 0


# ---- mean_row_cosine -------------------------------------------------------------------


def test_mean_row_cosine_hand_example():
    a = torch.tensor([[1.0, 2.0, 2.0], [3.0, 0.0, 4.0]])
    b = torch.tensor([[2.0, 1.0, 2.0], [0.0, 5.0, 0.0]])
    # row 1: (2 + 2 + 4) / (3 * 3) = 8/9; row 2: 0 / (5 * 5) = 0; mean = 4/9.
    # (cosine of the flattened matrices would be 8 / 34: rows are compared, not whole matrices)
    assert mean_row_cosine(a, b) == pytest.approx(4 / 9, abs=1e-12)
    assert mean_row_cosine(a, -b) == pytest.approx(-4 / 9, abs=1e-12)


def test_mean_row_cosine_skips_zero_rows_and_refuses_0_over_0():
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # row 2 of `a` has no direction: only row 1 counts, cos = 1 / sqrt(2)
    assert mean_row_cosine(a, b) == pytest.approx(2**-0.5)
    with pytest.raises(ValueError, match="undefined"):
        mean_row_cosine(torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="shapes differ"):
        mean_row_cosine(torch.ones(2, 3), torch.ones(3, 2))


def test_cosine_of_a_gradient_with_itself_is_one():
    grads = per_classifier_gradients(EarlyExitModule(**TINY), batch(), layers=[1])
    g = grads[1][2]
    assert not is_zero(g)
    assert mean_row_cosine(g, g) == pytest.approx(1.0, abs=1e-12)
    assert mean_row_cosine(g, 3.0 * g) == pytest.approx(1.0, abs=1e-12)
    assert conflict_matrix({1: {1: g, 2: g.clone()}}) == {1: {(1, 2): pytest.approx(1.0, abs=1e-12)}}


# ---- per-method behaviour ---------------------------------------------------------------


def test_early_exit_every_later_classifier_reaches_every_measured_layer():
    module = EarlyExitModule(**TINY)
    grads = per_classifier_gradients(module, batch())
    assert sorted(grads) == [1, 3, 4]  # every exit layer but the last
    for layer, per_exit in grads.items():
        assert sorted(per_exit) == [i for i, e in enumerate(EXITS, 1) if e >= layer]
        for i, g in per_exit.items():
            assert g.shape == (32, 64)  # [hidden, intermediate]: the FFN output matrix
            assert not is_zero(g), f"C{i} gave no gradient on layer {layer}"
    conflicts = conflict_matrix(grads)
    assert sorted(conflicts[1]) == [(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)]
    assert sorted(conflicts[4]) == [(3, 4)]
    values = [v for per_layer in conflicts.values() for v in per_layer.values()]
    assert all(isinstance(v, float) and -1.0 <= v <= 1.0 for v in values)


def test_sweet_future_classifiers_give_exactly_zero_and_are_reported_as_no_gradient():
    module = SweetModule(**TINY)
    b = batch()
    grads = per_classifier_gradients(module, b, layers=[1, 2, 3, 4])
    owner = {1: 1, 2: 2, 3: 2, 4: 3}  # layer -> classifier whose segment holds it (exits 1,3,4,6)
    for layer, per_exit in grads.items():
        for i, g in per_exit.items():
            if i == owner[layer]:
                assert not is_zero(g), f"C{i} should update its own layer {layer}"
            else:
                assert is_zero(g), f"future C{i} leaked gradient into layer {layer}"
    report = batch_report(module, b)
    assert report["1"]["no_gradient"] == ["C2", "C3", "C4"]
    assert report["4"]["no_gradient"] == ["C4"]
    cells = [v for entry in report.values() for v in entry["pairs"].values()]
    assert cells and all(v == NO_GRADIENT for v in cells)  # every pair involves a future classifier
    json.dumps(report)  # JSON-ready: no tensors, no NaN


def test_cascade_layers_have_no_pairs_and_say_why(tmp_path):
    module = CascadeModule(**TINY)
    report = batch_report(module, batch())
    assert sorted(report) == ["1", "3", "4"]
    for entry in report.values():
        assert entry["pairs"] == {} and "Multi-Model" in entry["note"]
        assert entry["parameter"].startswith("net.members.")
    assert report["3"]["classifiers"] == ["C2"]
    assert "nothing to compare" in format_table(report)
    assert plot_heatmap(report, tmp_path / "cascade.png").stat().st_size > 0


FAMILIES = {
    "bert": lambda kw: BertConfig(**kw),
    "roberta": lambda kw: RobertaConfig(**kw, pad_token_id=1),
    "electra": lambda kw: ElectraConfig(**kw, embedding_size=16),
    "deberta-v2": lambda kw: DebertaV2Config(
        **kw,
        relative_attention=True,
        pos_att_type=["c2p", "p2c"],
        position_buckets=8,
        norm_rel_ebd="layer_norm",
    ),
    "mpnet": lambda kw: MPNetConfig(**kw),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("sweet", [False, True])
def test_every_backbone_family(family, sweet):
    small = dict(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=48,
        vocab_size=120,
        max_position_embeddings=64,
    )
    module = (SweetModule if sweet else EarlyExitModule)(**TINY)
    # same module, other architecture: swap the network for one on a tiny model of that family
    encoder = SegmentedEncoder(AutoModel.from_config(FAMILIES[family](small)))
    module.net = MultiExitModel(encoder, [1, 2, 4], num_labels=2, boundary_grad=0.0 if sweet else 1.0)
    module.exit_layers = [1, 2, 4]
    report = batch_report(module, batch(5, 120))
    assert report["1"]["parameter"].endswith("encoder.layer.0.output.dense.weight")  # not attention.output
    assert report["2"]["parameter"].endswith("encoder.layer.1.output.dense.weight")
    expected_zero = ["C2", "C3"] if sweet else []
    assert report["1"]["no_gradient"] == expected_zero


# ---- the module is left as it was ----------------------------------------------------------


def test_measurement_leaves_parameters_grads_and_modes_untouched():
    module = EarlyExitModule(**TINY)
    b = batch()
    module.train()
    module.net.heads[0].eval()  # a mixed mode pattern must come back as it was
    torch.nn.functional.cross_entropy(module(b)[1], b["labels"]).backward()
    module.net.heads[3].classifier.weight.grad = None  # some .grad set, some None
    params = {n: p.detach().clone() for n, p in module.named_parameters()}
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in module.named_parameters()}
    modes = {n: m.training for n, m in module.named_modules()}

    batch_report(module, b)

    for n, p in module.named_parameters():
        assert torch.equal(p, params[n]), n
        if grads[n] is None:
            assert p.grad is None, n
        else:
            assert torch.equal(p.grad, grads[n]), n
    assert {n: m.training for n, m in module.named_modules()} == modes


def test_fine_tune_updates_weights_and_leaves_no_gradient():
    module = EarlyExitModule(**TINY)
    before = module.net.encoder.layers[0].output.dense.weight.detach().clone()
    losses = fine_tune(module, iter([batch(), batch()]), steps=2, progress=False)
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    assert not torch.equal(module.net.encoder.layers[0].output.dense.weight, before)
    assert all(p.grad is None for p in module.parameters())


# ---- errors -------------------------------------------------------------------------------


def test_bad_requests_raise_one_line_errors():
    with pytest.raises(AnalysisError, match="single classifier"):
        measured_layers([6])
    module = EarlyExitModule(**TINY)
    with pytest.raises(AnalysisError, match="No layer"):
        per_classifier_gradients(module, batch(), layers=[])
    for layer in (0, 7):
        with pytest.raises(AnalysisError, match="precedes no classifier"):
            per_classifier_gradients(module, batch(), layers=[layer])
    no_labels = {k: v for k, v in batch().items() if k != "labels"}
    with pytest.raises(AnalysisError, match="labels"):
        per_classifier_gradients(module, no_labels)
    single = SweetModule(**{**TINY, "exit_layers": [6]})
    with pytest.raises(AnalysisError, match="nothing to compare"):
        per_classifier_gradients(single, batch())

    def request(**kw):
        return OmegaConf.create({"steps": 1, "batches": 1, "model": {"exit_layers": EXITS}, **kw})

    assert check_request(request(steps=0)) == (0, 1)
    for bad, match in [
        (dict(steps=-1), "steps=-1"),
        (dict(batches=0), "batches=0"),
        (dict(steps="x"), "steps=x"),
        (dict(model={"exit_layers": [4]}), "single classifier"),
    ]:
        with pytest.raises(AnalysisError, match=match) as err:
            check_request(request(**bad))
        assert "\n" not in str(err.value)


def test_heatmap_and_table_from_a_report(tmp_path):
    report = batch_report(EarlyExitModule(**TINY), batch())
    report["1"]["pairs"]["C1-C4"] = NO_GRADIENT  # as SWEET would give
    table = format_table(report, "title")
    assert table.splitlines()[0] == "title" and NO_GRADIENT in table and "Layer 4" in table
    png = plot_heatmap(report, tmp_path / "heat.png", "EE")
    assert png.read_bytes()[:4] == b"\x89PNG"


# ---- end to end on real data ---------------------------------------------------------------


def test_cli_end_to_end_writes_json_and_heatmaps(tmp_path, glue_path):
    if importlib.util.find_spec("sweet_lightning.data") is None:
        pytest.skip("sweet_lightning.data (GLUE datamodule) is not on this branch yet")
    out = tmp_path / "run"
    args = [
        "model=tiny_bert",
        "task=glue/rte",
        "steps=2",
        "batches=2",
        "train_size=32",
        "batch_size=4",
        "logger=csv",
        "trainer=cpu",
        f"output_dir={out}",  # the tokenised-data cache is the shared default one, as in test_launch
    ]
    env = {**os.environ, "GLUE_DIR": str(glue_path), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "sweet_lightning.analysis.gradients", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "gradients.json").read_text())
    assert result["method"] == "sweet" and result["steps"] == 2 and result["measured_layers"] == [1, 2, 3]
    assert [entry["batch"] for entry in result["batches"]] == [1, 2]
    for entry in result["batches"]:
        assert (out / entry["heatmap"]).read_bytes()[:4] == b"\x89PNG"
        assert entry["layers"]["1"]["pairs"]["C1-C2"] == NO_GRADIENT  # default method: SWEET


def test_cli_reports_bad_requests_in_one_line(monkeypatch, tmp_path, capsys):
    from sweet_lightning.analysis.gradients import main

    for args, message in [
        (["steps=-1"], "error: steps=-1 must be an integer >= 0"),
        (["--steps", "-1"], "error: steps=-1 must be an integer >= 0"),  # the flag is the same key
        (["batches=0"], "error: batches=0 must be an integer >= 1"),
        (
            ["model=tiny_bert", "model.exit_layers=[4]"],
            "error: model.exit_layers=[4] has a single classifier",
        ),
        (["task=glue/nope"], "error: Unknown task 'glue/nope'"),
        (["--colour=red"], "error: unrecognized arguments: --colour=red; valid options: --steps, --batches"),
    ]:
        monkeypatch.setattr(sys, "argv", ["gradients"])
        with pytest.raises(SystemExit) as exit_info:
            main([*args, f"output_dir={tmp_path}"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith(message), err


def test_alignment_summary_groups_cells_by_the_layers_own_classifier():
    """Layer 1's own classifier is C1, layer 3's is C2 (exits [1, 3, 6]): C1-* and C2-* at their own
    layer are current-vs-future, the rest future-vs-future; "no gradient" cells are left out."""
    from sweet_lightning.analysis.gradients import alignment_summary

    report = {
        "exit_layers": [1, 3, 6],
        "batches": [
            {
                "layers": {
                    "1": {"pairs": {"C1-C2": 0.1, "C1-C3": 0.3, "C2-C3": 0.8}},
                    "3": {"pairs": {"C2-C3": 0.2}},
                }
            },
            {
                "layers": {
                    "1": {"pairs": {"C1-C2": "no gradient", "C1-C3": -0.2, "C2-C3": 0.6}},
                    "3": {"pairs": {}},
                }
            },
        ],
    }
    summary = alignment_summary(report)
    assert summary["current_vs_future"] == {"mean": pytest.approx(0.1), "min": -0.2, "max": 0.3, "cells": 4}
    assert summary["future_vs_future"] == {"mean": pytest.approx(0.7), "min": 0.6, "max": 0.8, "cells": 2}
