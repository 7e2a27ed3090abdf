"""Gradient flow of the three methods, train mode, exit-layer validation."""

import pytest
import torch

from sweet_lightning.methods import CascadeModule, EarlyExitModule, SweetModule
from sweet_lightning.modeling import check_exit_layers
from tests.conftest import tiny_module_args

TINY = tiny_module_args()


def batch():
    ids = torch.randint(1000, 2000, (4, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1, 0])}


def grads_of_exit(module, exit_index):
    module.zero_grad(set_to_none=True)
    b = batch()
    logits = module(b)
    torch.nn.functional.cross_entropy(logits[exit_index], b["labels"]).backward()
    return {n: p.grad for n, p in module.named_parameters()}


def layer_of(name: str) -> int | None:
    """0-based encoder layer index of a parameter name, None if not in a layer."""
    parts = name.split(".")
    if "layer" in parts:
        i = parts.index("layer")
        if parts[i - 1] == "encoder":
            return int(parts[i + 1])
    return None


def nonzero(g):
    return g is not None and bool(g.abs().sum() > 0)


@pytest.mark.parametrize("exit_index", [0, 1, 2, 3])
def test_sweet_exit_loss_reaches_only_its_segment_and_head(exit_index):
    module = SweetModule(**TINY)
    segment = module.net.segments()[exit_index]
    grads = grads_of_exit(module, exit_index)
    for name, g in grads.items():
        layer = layer_of(name)
        if name.startswith(f"net.heads.{exit_index}."):
            owned = True
        elif layer is not None:
            owned = segment[0] <= layer < segment[1]
        elif ".embeddings." in name:
            owned = exit_index == 0  # classifier 1 owns the embeddings
        else:
            owned = False
        if owned:
            assert nonzero(g), f"{name} should be updated by exit {exit_index + 1}"
        else:
            assert g is None or torch.count_nonzero(g) == 0, (
                f"{name} leaked gradient from exit {exit_index + 1}"
            )


def test_early_exit_loss_reaches_every_layer_below_its_classifier():
    module = EarlyExitModule(**TINY)
    grads = grads_of_exit(module, 2)  # exit after layer 4
    for name, g in grads.items():
        layer = layer_of(name)
        if layer is not None and layer < 4 and "weight" in name:
            assert nonzero(g), name
        if layer is not None and layer >= 4:
            assert not nonzero(g), name
    assert nonzero(grads["net.encoder.model.embeddings.word_embeddings.weight"])


@pytest.mark.parametrize("cls", [SweetModule, EarlyExitModule])
def test_shared_pooler_is_one_object_receiving_every_exit(cls):
    module = cls(**TINY, shared_pooler=True)
    assert all(head.pooler is module.net.heads[0].pooler for head in module.net.heads)
    grads = grads_of_exit(module, 3)
    assert nonzero(grads["net.heads.0.pooler.dense.weight"])
    separate = cls(**TINY, shared_pooler=False)
    assert len({id(head.pooler) for head in separate.net.heads}) == len(separate.net.heads)


@pytest.mark.parametrize("method", ["early_exit", "sweet"])
def test_method_configs_offer_shared_pooler_off_by_default(method):
    from omegaconf import OmegaConf

    from tests.conftest import CONF_DIR

    assert OmegaConf.load(CONF_DIR / "method" / f"{method}.yaml").shared_pooler is False


def test_cascade_models_share_no_parameter_and_losses_stay_in_their_model():
    module = CascadeModule(**TINY)
    members = module.net.members
    assert [m.encoder.num_layers for m in members] == [1, 3, 4, 6]
    ptrs = [{p.data_ptr() for p in m.parameters()} for m in members]
    for i in range(len(ptrs)):
        for j in range(i + 1, len(ptrs)):
            assert not ptrs[i] & ptrs[j], f"models {i + 1} and {j + 1} share a tensor"
    grads = grads_of_exit(module, 1)
    for name, g in grads.items():
        if not name.startswith("net.members.1.") and g is not None:
            assert torch.count_nonzero(g) == 0, name
    assert nonzero(grads["net.members.1.encoder.model.encoder.layer.2.output.dense.weight"])


def test_pretrained_modules_are_in_train_mode_during_training():
    module = EarlyExitModule(
        **{**TINY, "random_init": False, "config_overrides": None, "exit_layers": [1, 6]}
    )
    module.on_train_epoch_start()
    assert all(m.training for m in module.net.modules())


def test_loss_is_weighted_sum_of_exit_losses():
    module = EarlyExitModule(**TINY, exit_weights=[1.0, 0.0, 2.0, 0.5])
    module.eval()  # no dropout: deterministic forward
    b = batch()
    module.log = lambda *a, **k: None
    with torch.no_grad():
        losses = module.exit_losses(module(b), b["labels"])
        total = module.training_step(b, 0)
    expected = losses[0] + 2.0 * losses[2] + 0.5 * losses[3]
    torch.testing.assert_close(total, expected)


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([], "empty"),
        ([2, 2], "strictly increasing"),
        ([3, 1], "strictly increasing"),
        ([0, 6], "out of range"),
        ([1, 7], "out of range"),
    ],
)
def test_bad_exit_layers(layers, message):
    with pytest.raises(ValueError, match=message):
        check_exit_layers(layers, 6)


def test_exit_weights_must_match_exits():
    with pytest.raises(ValueError, match="exit_weights has 2 values for 4 exits"):
        EarlyExitModule(**TINY, exit_weights=[1.0, 1.0])


def one_clipped_step(module, b, clip: float) -> None:
    """One Lightning optimisation step on batch `b` with norm clipping at `clip` (plain SGD, so the
    update is proportional to the clipped gradient and any coupling shows)."""
    import warnings

    import lightning as L

    module.optimizer_factory = lambda params: torch.optim.SGD(params, lr=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's hints about workers and logging
        trainer = L.Trainer(
            accelerator="cpu",
            max_steps=1,
            gradient_clip_val=clip,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
        )
        trainer.fit(module, torch.utils.data.DataLoader([b], batch_size=None))


def test_cascade_members_are_clipped_independently():
    """A joint step with clipping equals each member's step taken alone with the same clipping."""
    b = batch()
    layers = [1, 3]
    # no dropout anywhere: the joint and the separate steps must see the same forward
    no_dropout = {**TINY["config_overrides"], "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    config = {**TINY, "config_overrides": no_dropout}
    joint = CascadeModule(**{**config, "exit_layers": layers})
    alone = []
    for i, depth in enumerate(layers):
        member = CascadeModule(**{**config, "exit_layers": [depth]})
        member.net.members[0].load_state_dict(joint.net.members[i].state_dict())
        alone.append(member)
    before = [p.detach().clone() for p in joint.parameters()]
    one_clipped_step(joint, b, clip=1e-3)  # far below the members' gradient norms: clipping acts
    assert any(not torch.equal(p0, p) for p0, p in zip(before, joint.parameters(), strict=True))
    for i, member in enumerate(alone):
        one_clipped_step(member, b, clip=1e-3)
        for (name, p_joint), p_alone in zip(
            joint.net.members[i].named_parameters(), member.net.members[0].parameters(), strict=True
        ):
            torch.testing.assert_close(p_joint, p_alone, rtol=1e-6, atol=1e-7, msg=f"member {i + 1}: {name}")


def test_cascade_refuses_a_shared_pooler():
    with pytest.raises(ValueError, match="method.shared_pooler=true does not apply to method=cascade"):
        CascadeModule(**TINY, shared_pooler=True)


def test_the_optimizer_comes_from_the_config_alone():
    """The learning rate reaches the module once, inside conf/train.yaml's optimizer: a module built
    without one has no AdamW of its own to fall back on, and says where the optimizer comes from."""
    module = EarlyExitModule(**{**TINY, "optimizer": None})
    with pytest.raises(ValueError, match=r"built without an optimizer: pass optimizer= \(conf/train.yaml's"):
        module.make_optimizer()
    assert "lr" not in module.hparams and "optimizer" not in module.hparams
    adamw = EarlyExitModule(**TINY).make_optimizer()
    assert adamw.defaults["lr"] == 2e-5 and adamw.defaults["weight_decay"] == 0.0  # conf/train.yaml's
    # a module lr the optimizer does not carry would be silently ignored: refused
    with pytest.raises(ValueError, match=r"^lr=5e-05 is not the optimizer's learning rate \(2e-05\)"):
        EarlyExitModule(**TINY, lr=5e-5)
    assert EarlyExitModule(**TINY, lr=2e-5).lr == 2e-5  # as a checkpoint of older code records it


@pytest.mark.parametrize("learned_exit", [False, True])
def test_cascade_trains_member_by_member_with_the_joint_gradients(learned_exit):
    """The cascade's training_step runs each member's forward and backward in turn: every gradient
    equals the joint loss's bit for bit (dropout on, weighted exits, learned exit scores), and
    the returned loss is the joint loss's value."""
    from sweet_lightning.methods.base import AdaptiveModule

    args = tiny_module_args(dropout=0.1, learned_exit=learned_exit, exit_weights=[0.5, 1.0, 2.0, 0.25])
    torch.manual_seed(0)
    module = CascadeModule(**args)
    b = batch()
    grads, losses = {}, {}
    for path in ("joint", "by_member"):
        module.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same dropout masks: members draw them in the same order either way
        if path == "joint":
            loss = AdaptiveModule.training_step(module, b, 0)
        else:
            loss = module.training_step(b, 0)
            assert loss.grad_fn is None  # its gradients are in place already
        loss.backward()
        grads[path] = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
        losses[path] = loss.detach()
    assert grads["joint"].keys() == grads["by_member"].keys() == {n for n, _ in module.named_parameters()}
    for name, g in grads["joint"].items():
        assert torch.equal(g, grads["by_member"][name]), name
    assert torch.equal(losses["joint"], losses["by_member"])


def test_cascade_member_by_member_in_a_trainer_accumulates_like_lightning(tmp_path, monkeypatch):
    """Under a Trainer with accumulated steps (training_step zeroes the gradients itself and
    Lightning's zero_grad is skipped), the weights after training equal the joint loss's run."""
    import lightning as L
    from torch.utils.data import DataLoader

    rows = [{k: v[i] for k, v in batch().items()} for i in range(4)] * 3
    weights = {}
    for path in ("joint", "by_member"):
        if path == "joint":
            monkeypatch.setattr(CascadeModule, "_by_member", lambda self: False)
        else:
            monkeypatch.undo()
        torch.manual_seed(0)
        module = CascadeModule(**tiny_module_args(dropout=0.1))
        trainer = L.Trainer(
            max_epochs=1, accumulate_grad_batches=2, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
            default_root_dir=tmp_path, gradient_clip_val=0.5,
        )  # fmt: skip
        torch.manual_seed(1)
        trainer.fit(module, DataLoader(rows, batch_size=2))
        weights[path] = {n: p.detach().clone() for n, p in module.named_parameters()}
        assert trainer.global_step == 3
    for name, w in weights["joint"].items():
        assert torch.equal(w, weights["by_member"][name]), name


def test_an_endless_run_is_refused_before_the_schedule(monkeypatch):
    # max_epochs=-1 without max_steps: Lightning estimates infinitely many steps, and the linear decay
    # would fail on int(inf) with no word about the config
    import lightning as L

    monkeypatch.setattr(L.Trainer, "estimated_stepping_batches", property(lambda self: float("inf")))
    module = EarlyExitModule(**tiny_module_args())
    module.trainer = L.Trainer(
        max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    with pytest.raises(ValueError, match="set trainer.max_epochs or trainer.max_steps"):
        module.configure_optimizers()
