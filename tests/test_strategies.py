"""The training strategies beyond the paper's three (issue 16): weighted Early-Exit (PABEE),
two-stage (DeeBERT), alternating (BERxiT) and gradient-scaled SWEET. Their gradient routing is
pinned here: which parameters each step's loss reaches, and with which factor."""

import copy
import warnings
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from transformers import AutoModel, BertConfig, DebertaV2Config, MPNetConfig

from sweet_lightning.methods import (
    METHODS,
    AlternatingModule,
    EarlyExitModule,
    GradientScaledSweetModule,
    SweetModule,
    TwoStageModule,
    stage1_epoch_count,
)
from sweet_lightning.methods.base import check_unused_parameters_allowed
from sweet_lightning.modeling import MultiExitModel, SegmentedEncoder, scale_gradient
from tests.conftest import TINY_BERT, tiny_module_args

EXITS = [1, 3, 4, 6]
NO_DROPOUT = dict(TINY_BERT, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
TINY = tiny_module_args(config_overrides=NO_DROPOUT, exit_layers=EXITS)


def batch(seed: int = 0, vocab: tuple[int, int] = (1000, 2000)) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(*vocab, (4, 9), generator=gen)
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1, 0])}


def twin(cls, source, **kwargs):
    """A module of class `cls` holding exactly `source`'s weights (the same network, any method)."""
    module = cls(**{**TINY, **kwargs})
    module.load_state_dict(source.state_dict())
    return module


def grads(module) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.clone() for n, p in module.named_parameters()}


def total_loss_grads(module, b) -> dict[str, torch.Tensor | None]:
    module.zero_grad(set_to_none=True)
    module.training_loss(b, step=0, epoch=0)[0].backward()
    return grads(module)


def same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Equal bits, None counting as an all-zero gradient."""
    if a is None or b is None:
        other = b if a is None else a
        return other is None or torch.count_nonzero(other) == 0
    return torch.equal(a, b)


def nonzero(g: torch.Tensor | None) -> bool:
    return g is not None and bool(torch.count_nonzero(g) > 0)


# ---- weighted Early-Exit (PABEE) -----------------------------------------------------------


def test_depth_weights_are_layer_numbers_over_their_sum():
    module = EarlyExitModule(**TINY, exit_weights="depth")
    assert module.exit_weights == [1 / 14, 3 / 14, 4 / 14, 6 / 14]  # exits after layers 1, 3, 4, 6
    module.eval()
    b = batch()
    with torch.no_grad():
        loss, losses, _ = module.training_loss(b, step=0, epoch=0)
    expected = (1 * losses[0] + 3 * losses[1] + 4 * losses[2] + 6 * losses[3]) / 14
    torch.testing.assert_close(loss, expected)


def test_weighted_early_exit_config_is_early_exit_with_depth_weights():
    from tests.conftest import CONF_DIR

    cfg = OmegaConf.load(CONF_DIR / "method" / "weighted_early_exit.yaml")
    assert cfg.name == "weighted_early_exit" and cfg.exit_weights == "depth"
    assert cfg._target_.rsplit(".", 1)[1] == EarlyExitModule.__name__


def test_unknown_weight_preset_is_one_line_error():
    with pytest.raises(ValueError, match="method.exit_weights='deep' is no preset: use depth"):
        EarlyExitModule(**TINY, exit_weights="deep")


# ---- gradient-scaled SWEET -----------------------------------------------------------------


def test_scale_gradient_is_identity_forward_and_scales_backward():
    x = torch.randn(3, 4, requires_grad=True)
    y = scale_gradient(x, 0.25)
    assert torch.equal(y, x)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, torch.full_like(x, 0.25))


def _owner(name: str, exit_layers: list[int]) -> tuple[str, int]:
    """("head", k) for exit head k, else ("segment", i): the 0-based segment that owns an encoder
    parameter under SWEET (a layer's segment; embeddings and the parameters every layer uses,
    such as DeBERTa's relative embeddings, belong to the first segment)."""
    parts = name.split(".")
    if parts[0] == "heads":
        return "head", int(parts[1])
    if "layer" in parts and parts[parts.index("layer") - 1] == "encoder":
        layer = int(parts[parts.index("layer") + 1])
        return "segment", next(i for i, e in enumerate(exit_layers) if layer < e)
    return "segment", 0


SMALL = dict(
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=2,
    intermediate_size=48,
    vocab_size=120,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
# DeBERTa with relative attention, so that its layers use the relative embeddings of the context
FAMILIES = {
    "bert": BertConfig,
    "deberta-v2": lambda **kw: DebertaV2Config(
        relative_attention=True,
        pos_att_type=["p2c", "c2p"],
        position_buckets=8,
        norm_rel_ebd="layer_norm",
        **kw,
    ),
    "mpnet": MPNetConfig,
}


@pytest.mark.parametrize("alpha", [0.5, 0.25])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_exit_j_reaches_segment_i_scaled_by_alpha_to_the_boundaries_crossed(family, alpha):
    """Per exit, per parameter: gradient-scaled SWEET's gradient = Early-Exit's x alpha^(j-i).

    alpha is a power of two, so the scaled gradients are exact: parameters reached along one
    path must match bit for bit; those every layer uses (DeBERTa's relative embeddings, MPNet's
    position bias) sum paths in another order, so to float rounding."""
    torch.manual_seed(0)
    exits = [1, 2, 4]
    encoder = SegmentedEncoder(AutoModel.from_config(FAMILIES[family](**SMALL)))
    early_exit = MultiExitModel(encoder, exits, num_labels=2, dropout=0.0)  # no dropout: same forward twice
    scaled = copy.deepcopy(early_exit)
    scaled.boundary_grad = alpha
    b = batch(vocab=(5, 120))
    shared = ("rel_embeddings", "encoder.LayerNorm", "relative_attention_bias")
    for j in range(len(exits)):
        per_exit = []
        for net in (early_exit, scaled):
            net.zero_grad(set_to_none=True)
            logits, _ = net(b["input_ids"], b["attention_mask"])
            F.cross_entropy(logits[j], b["labels"]).backward()
            per_exit.append(dict(net.named_parameters()))
        reached = 0
        for name, p_ee in per_exit[0].items():
            g_ee, g_scaled = p_ee.grad, per_exit[1][name].grad
            kind, index = _owner(name, exits)
            if kind == "head":  # exit j's own head as in Early-Exit; no other head is reached
                assert same(g_ee, g_scaled) and (g_ee is None) == (index != j), name
                continue
            if index > j or g_ee is None:  # layers above exit j (and unused parameters): nothing
                assert g_ee is None and g_scaled is None, name
                continue
            expected = g_ee * alpha ** (j - index)
            if any(s in name for s in shared):
                torch.testing.assert_close(g_scaled, expected, rtol=1e-5, atol=1e-12, msg=name)
            else:
                assert torch.equal(g_scaled, expected), (
                    f"exit {j + 1}, {name}: not alpha^{j - index} x Early-Exit"
                )
            reached += nonzero(g_ee)
        assert reached > 0


@pytest.mark.parametrize(("alpha", "reference"), [(0, SweetModule), (0.0, SweetModule), (1, EarlyExitModule)])
def test_alpha_0_is_sweet_and_alpha_1_is_early_exit_bit_for_bit(alpha, reference):
    scaled = GradientScaledSweetModule(**TINY, alpha=alpha)
    ref = twin(reference, scaled)
    b = batch()
    g_scaled, g_ref = total_loss_grads(scaled, b), total_loss_grads(ref, b)
    assert g_scaled.keys() == g_ref.keys()
    for name in g_ref:
        a, r = g_scaled[name], g_ref[name]
        assert (a is None) == (r is None) and (a is None or torch.equal(a, r)), name
    if alpha == 0:  # SWEET's routing: exit 4's loss alone never reaches layer 1
        scaled.zero_grad(set_to_none=True)
        logits = scaled(b)
        F.cross_entropy(logits[3], b["labels"]).backward()
        assert scaled.net.encoder.layers[0].output.dense.weight.grad is None


def test_alpha_between_sweet_and_early_exit_differs_from_both():
    scaled = GradientScaledSweetModule(**TINY, alpha=0.5)
    b = batch()
    g = total_loss_grads(scaled, b)
    name = "net.encoder.model.encoder.layer.0.output.dense.weight"
    for reference in (SweetModule, EarlyExitModule):
        assert not torch.equal(g[name], total_loss_grads(twin(reference, scaled), b)[name])


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_alpha_outside_0_1_is_refused(alpha):
    with pytest.raises(
        ValueError, match=r"method.alpha=.* must be in \[0, 1\] \(0 = SWEET, 1 = Early-Exit\)"
    ):
        GradientScaledSweetModule(**TINY, alpha=alpha)


def test_sweet_alpha_run_name_carries_alpha():
    from conftest import compose

    cfg = compose(["method=sweet_alpha", "method.alpha=0.25"])
    assert cfg.method.name == "sweet_alpha0.25"
    assert compose(["method=sweet_alpha"]).method.name == "sweet_alpha0.5"


# ---- steps under Lightning: what each step's gradient reaches and what it changes ---------------


class StepRecorder(L.Callback):
    """Per optimizer step: epoch, lr, every gradient, and the parameters before and after."""

    def __init__(self):
        self.steps: list[dict] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.steps.append(
            {
                "epoch": trainer.current_epoch,
                "lr": optimizer.param_groups[0]["lr"],
                "grads": grads(pl_module),
                "before": {n: p.detach().clone() for n, p in pl_module.named_parameters()},
            }
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps[-1]["after"] = {n: p.detach().clone() for n, p in pl_module.named_parameters()}


def fit(module, batches: list[dict], max_epochs: int, callbacks=(), ckpt_path=None, root=None) -> L.Trainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's hints about workers and logging
        trainer = L.Trainer(
            accelerator="cpu",
            max_epochs=max_epochs,
            logger=False,
            enable_checkpointing=root is not None,
            default_root_dir=root,
            callbacks=list(callbacks),
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
        )
        trainer.fit(module, torch.utils.data.DataLoader(batches, batch_size=None), ckpt_path=ckpt_path)
    return trainer


def part(name: str, num_exits: int) -> str:
    """ "backbone", "early head" or "last head"."""
    if name.startswith("net.heads."):
        return "last head" if int(name.split(".")[2]) == num_exits - 1 else "early head"
    return "backbone"


def parts_with_gradient(step: dict) -> dict[str, bool]:
    """Per part: does any of its parameters have a gradient (None counts as none)."""
    seen = {"backbone": False, "early head": False, "last head": False}
    for name, g in step["grads"].items():
        seen[part(name, len(EXITS))] |= g is not None
    return seen


def parts_changed(step: dict) -> dict[str, bool]:
    changed = {"backbone": False, "early head": False, "last head": False}
    for name, before in step["before"].items():
        changed[part(name, len(EXITS))] |= not torch.equal(before, step["after"][name])
    return changed


def test_two_stage_trains_backbone_and_last_head_then_only_earlier_heads():
    module = TwoStageModule(**TINY)
    recorder = StepRecorder()
    fit(module, [batch(1), batch(2)], max_epochs=2, callbacks=[recorder])
    steps = recorder.steps
    assert [s["epoch"] for s in steps] == [0, 0, 1, 1]
    stage1 = {"backbone": True, "early head": False, "last head": True}
    stage2 = {"backbone": False, "early head": True, "last head": False}
    for step, expected in zip(steps, [stage1, stage1, stage2, stage2], strict=True):
        assert parts_with_gradient(step) == expected
        assert parts_changed(step) == expected
    # stage 2 leaves every backbone parameter bit for bit as stage 1 left it
    assert all(
        torch.equal(steps[2]["before"][n], p)
        for n, p in module.named_parameters()
        if part(n, 4) == "backbone"
    )
    # the schedule restarts at the stage boundary: linear decay over each stage's 2 steps
    assert [s["lr"] for s in steps] == pytest.approx([2e-5, 1e-5, 2e-5, 1e-5])


def test_two_stage_resumed_at_the_stage_boundary_ends_where_an_uninterrupted_run_does(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from tests.helpers import CrashAtStep, SimulatedCrash

    batches = [batch(1), batch(2)]
    reference = TwoStageModule(**TINY)
    start = copy.deepcopy(reference.state_dict())
    fit(reference, batches, max_epochs=2)

    def checkpoints():
        return ModelCheckpoint(dirpath=tmp_path, save_last=True)

    crashed = TwoStageModule(**TINY)
    crashed.load_state_dict(start)
    with pytest.raises(SimulatedCrash):  # at the first step of stage 2, after last.ckpt of epoch 0
        fit(crashed, batches, max_epochs=2, callbacks=[checkpoints(), CrashAtStep(2)], root=tmp_path)
    resumed = TwoStageModule(**TINY)
    fit(
        resumed,
        batches,
        max_epochs=2,
        callbacks=[checkpoints()],
        ckpt_path=tmp_path / "last.ckpt",
        root=tmp_path,
    )
    for (name, p_ref), p_res in zip(reference.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p_ref, p_res), name


@pytest.mark.parametrize(
    ("stage1", "stage2", "max_epochs", "message"),
    [
        (None, None, 1, "method=two_stage needs trainer.max_epochs >= 2"),
        (3, None, 3, "method.stage1_epochs=3 must leave stage 2 at least one of trainer.max_epochs=3"),
        (
            1,
            2,
            2,
            r"method.stage1_epochs \+ method.stage2_epochs = 1 \+ 2 but trainer.max_epochs=2: set "
            r"trainer.max_epochs=3 or method.stage2_epochs=null",
        ),
    ],
)
def test_two_stage_epochs_must_add_up_to_max_epochs(stage1, stage2, max_epochs, message):
    with pytest.raises(ValueError, match=message):
        stage1_epoch_count(stage1, stage2, max_epochs)


def test_two_stage_epoch_split():
    assert stage1_epoch_count(None, None, 2) == 1
    assert stage1_epoch_count(None, None, 3) == 2  # half, rounded up
    assert stage1_epoch_count(1, 2, 3) == 1


def test_two_stage_refuses_bad_counts_and_a_shared_pooler():
    with pytest.raises(ValueError, match="method.stage1_epochs=0 must be an integer >= 1 or null"):
        TwoStageModule(**TINY, stage1_epochs=0)
    with pytest.raises(ValueError, match="method.shared_pooler=true does not apply to method=two_stage"):
        TwoStageModule(**TINY, shared_pooler=True)
    with pytest.raises(
        ValueError, match=r"method=two_stage needs at least two exits \(model.exit_layers=\[6\]\)"
    ):
        TwoStageModule(**{**TINY, "exit_layers": [6]})


def test_two_stage_keeps_its_stage_keys_in_the_checkpoint_hyperparameters():
    module = TwoStageModule(**TINY, stage1_epochs=2, stage2_epochs=1)
    assert (module.hparams["stage1_epochs"], module.hparams["stage2_epochs"]) == (2, 1)


def test_alternating_steps_train_all_exits_then_the_last_alone():
    module = AlternatingModule(**TINY)
    recorder = StepRecorder()
    fit(module, [batch(1), batch(2)], max_epochs=2, callbacks=[recorder])
    every = {"backbone": True, "early head": True, "last head": True}
    last = {"backbone": True, "early head": False, "last head": True}
    assert len(recorder.steps) == 4
    for step, expected in zip(recorder.steps, [every, last, every, last], strict=True):
        assert parts_with_gradient(step) == expected
        assert parts_changed(step) == expected
    # on the all-exits steps, every earlier classifier sends gradient
    for k in range(len(EXITS) - 1):
        assert nonzero(recorder.steps[0]["grads"][f"net.heads.{k}.classifier.weight"])


def test_gradient_analysis_fine_tunes_with_the_alternating_schedule():
    from sweet_lightning.analysis.gradients_run import fine_tune

    start = AlternatingModule(**TINY)
    after = {}
    for steps in (1, 2):
        module = copy.deepcopy(start)
        fine_tune(module, iter([batch(1), batch(2)]), steps=steps, progress=False)
        after[steps] = dict(module.named_parameters())
    # step 1 (the second) trains the last exit alone: the earlier heads stay as step 0 left them
    for name, p in after[2].items():
        moved = not torch.equal(p, after[1][name])
        assert moved == (part(name, len(EXITS)) != "early head"), name


@pytest.mark.parametrize("method", ["two_stage", "alternating"])
def test_ddp_without_unused_parameters_is_refused(method):
    from lightning.pytorch.strategies import DDPStrategy

    with pytest.raises(ValueError, match=r"add \+\+trainer.strategy.find_unused_parameters=true"):
        check_unused_parameters_allowed(SimpleNamespace(strategy=DDPStrategy()), method)
    check_unused_parameters_allowed(
        SimpleNamespace(strategy=DDPStrategy(find_unused_parameters=True)), method
    )


# ---- one network for inference -------------------------------------------------------------


def test_every_early_exit_style_method_trains_the_same_network():
    """Same parameters under the same names: inference loads any of them as the same network."""
    reference = EarlyExitModule(**TINY).state_dict()
    for cls in (SweetModule, TwoStageModule, AlternatingModule, GradientScaledSweetModule):
        module = cls(**TINY)
        assert isinstance(module.net, MultiExitModel) and module.cost_model == "early_exit"
        assert {k: v.shape for k, v in module.state_dict().items()} == {
            k: v.shape for k, v in reference.items()
        }
    assert all(cls.method == name for name, cls in METHODS.items())


def test_checkpoint_record_names_the_class_whatever_the_run_is_called():
    from sweet_lightning.inference.loading import _method_of

    ckpt = {"sweet_lightning": {"method": "sweet_alpha"}, "state_dict": {}, "hyper_parameters": {}}
    assert _method_of(ckpt, "sweet_alpha0.25") == "sweet_alpha"
    ckpt["sweet_lightning"]["method"] = "early_exit"
    assert _method_of(ckpt, "weighted_early_exit") == "early_exit"


@pytest.mark.parametrize("method", ["weighted_early_exit", "two_stage", "alternating", "sweet_alpha"])
def test_method_configs_name_their_class(method):
    from conftest import compose

    cfg = compose([f"method={method}"])
    target = cfg.method._target_.rsplit(".", 1)[1]
    expected = {
        "weighted_early_exit": "EarlyExitModule",
        "two_stage": "TwoStageModule",
        "alternating": "AlternatingModule",
        "sweet_alpha": "GradientScaledSweetModule",
    }
    assert target == expected[method]


def test_report_gives_every_strategy_rows_of_its_own(tmp_path):
    """The report keys on the run's method name: new strategies (and each alpha) get their own rows."""
    import json
    import shutil

    import pandas as pd

    from sweet_lightning.report.__main__ import main
    from tests.fixtures.synthetic_sweep import make_sweep

    sweep = make_sweep(tmp_path / "sweep", methods=("sweet",), extras=False)
    for name in ("two_stage", "sweet_alpha0.25"):
        for run in sorted(sweep.glob("*_sweet-*")):
            copy_dir = sweep / run.name.replace("_sweet-", f"_{name}-")
            shutil.copytree(run, copy_dir)
            results = json.loads((copy_dir / "results.json").read_text())
            results["method"] = results["config"]["method"]["name"] = name
            (copy_dir / "results.json").write_text(json.dumps(results))
    out = tmp_path / "report"
    assert main([str(sweep), "--out", str(out)]) == 0
    table1 = pd.read_csv(out / "table1_exits.csv")
    assert set(table1.method) == {"sweet", "two_stage", "sweet_alpha0.25"}
    md = (out / "report.md").read_text()
    for label in ("SWEET", "two_stage", "sweet_alpha0.25"):
        assert f"| {label} | 2 |" in md, label


@pytest.mark.parametrize(
    ("cls", "step", "epoch", "trained"),
    [
        (AlternatingModule, 0, 0, [0, 1, 2, 3]),
        (AlternatingModule, 1, 0, [3]),
        (TwoStageModule, 0, 0, [3]),  # stage 1
        (TwoStageModule, 0, 1, [0, 1, 2]),  # stage 2 (stage 1 is 1 epoch without a Trainer)
    ],
)
def test_learned_exit_scorers_train_with_their_classifiers(cls, step, epoch, trained):
    module = cls(**TINY, learned_exit=True)
    module.training_loss(batch(), step=step, epoch=epoch)[0].backward()
    for k, head in enumerate(module.net.heads):
        assert nonzero(head.exit_scorer.weight.grad) == (k in trained), f"scorer {k + 1}"
        assert nonzero(head.classifier.weight.grad) == (k in trained), f"classifier {k + 1}"
