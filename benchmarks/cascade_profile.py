"""Where the cascade's training step spends its time, phase by phase, against its members' plain HF steps.

`benchmarks/train_step.py` prints one number per contender; this script splits a step into its
phases, side by side in one process on the same batches, so the gap between the cascade and the
sum of its members can be located:

    zero_grad   optimizer.zero_grad(set_to_none=True)
    forward     the cascade module's own training forward (`training_forward`); an HF member's
                forward without labels
    loss        the rest of the cascade's `training_loss` (per-member cross-entropy, weighted sum);
                an HF member's cross-entropy, computed as its own single-label loss does
    backward    loss.backward()
    clip        gradient-norm clipping, only with --clip > 0: the cascade's own hook (one norm per
                member, `CascadeModule.configure_gradient_clipping`), each HF member its own norm
    optimizer   optimizer.step() (AdamW, the implementation --adamw names; one optimizer over the
                cascade, one per member)

Sides, each timed once per batch, in a shuffled order per batch:

    cascade          one joint loss over all members, one backward (one joint graph): how the
                     cascade trained before it trained member by member, and how it still trains
                     under 16-bit mixed precision or DDP (CascadeModule._by_member)
    cascade_by_member  the members one after another (forward, loss, backward each), then one clip
                     and one optimizer step: what CascadeModule.training_step does in full
                     precision on one process; and each of our members' forward and backward
                     against its HF model's
    hf_members       AutoModelForSequenceClassification per member (`train_step.member_models`: the
                     member's own layers, embeddings, pooler and classifier values), trained one
                     after another on the same batch: what a user training the members alone pays

A side's step is timed as a whole and the medians are over steps, so `total` is the median of
step totals (the sum of the members' medians, which train_step.py's vs_members divides by, is
printed next to it). `faults` counts the process's minor page faults during a step (memory
the allocator had to take from the OS again). --ops N profiles one more step of each side with
torch.profiler and prints the N operators whose self CPU time differs most between the cascade
and the members. All sides use the same CLS pooling and dropout as HF's classifier; nothing is
logged, no Lightning Trainer runs.

    python benchmarks/cascade_profile.py --threads 2 [--steps 4] [--rounds 3] [--ops 15]
    python benchmarks/cascade_profile.py --size tiny --batch-size 4 --seq-len 16 --steps 2 --rounds 1   # smoke
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import header  # noqa: E402
from benchmarks.optimizer import VARIANTS, make_optimizer  # noqa: E402
from benchmarks.train_step import BERT_BASE, make_batches, member_models  # noqa: E402
from sweet_lightning import cli  # noqa: E402
from sweet_lightning.methods import CascadeModule  # noqa: E402

PHASES = ("zero_grad", "forward", "loss", "backward", "clip", "optimizer")
SIZES = {
    "checkpoint": None,
    "bert-base": BERT_BASE,
    # seconds on one thread: for checking the script, not for numbers
    "tiny": {"hidden_size": 32, "num_hidden_layers": 6, "num_attention_heads": 2, "intermediate_size": 64},
}


class Clock:
    """Seconds per phase of one step; `sync` waits for the device so a phase's time is its own."""

    def __init__(self, sync) -> None:
        self.sync = sync
        self.seconds: dict[str, float] = defaultdict(float)

    def time(self, phase: str, fn, *args):
        self.sync()
        start = time.perf_counter()
        out = fn(*args)
        self.sync()
        self.seconds[phase] += time.perf_counter() - start
        return out

    def add(self, other: Clock, prefix: str) -> None:
        """`other`'s phases into this step's, and also under `prefix`:<phase> (one member's share)."""
        for phase, seconds in other.seconds.items():
            self.seconds[phase] += seconds
            self.seconds[f"{prefix}:{phase}"] += seconds


def cascade_step(module: CascadeModule, optimizer, clip: float):
    """The cascade module's own training step: `training_loss` (its forward timed on its own), backward,
    its own per-member clipping hook, the optimizer step."""
    plain_forward = module.training_forward

    def step(batch, clock: Clock) -> None:
        clock.time("zero_grad", optimizer.zero_grad, True)
        module.training_forward = lambda *a: clock.time("forward", plain_forward, *a)
        before = clock.seconds["forward"]
        loss = clock.time("loss", lambda: module.training_loss(batch, 0, 0)[0])
        del module.training_forward  # back to the method
        clock.seconds["loss"] -= clock.seconds["forward"] - before  # the loss phase less the forward in it
        clock.time("backward", loss.backward)
        if clip > 0:
            clock.time("clip", module.configure_gradient_clipping, optimizer, clip, "norm")
        clock.time("optimizer", optimizer.step)

    return step


def cascade_by_member_step(module: CascadeModule, optimizer, clip: float):
    """The same members backpropagated one after another (same gradients as the joint graph,
    benchmarks/cascade_backward.py checks it), then one clip and one optimizer step."""

    def step(batch, clock: Clock) -> None:
        clock.time("zero_grad", optimizer.zero_grad, True)
        for member in module.net.members:
            own = Clock(clock.sync)
            logits, _ = own.time(
                "forward", member, batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
            )
            loss = own.time("loss", lambda lg=logits: module.exit_losses(lg, batch["labels"])[0])
            own.time("backward", loss.backward)
            clock.add(own, member_name(member.exit_layers[-1]))
        if clip > 0:
            clock.time("clip", module.configure_gradient_clipping, optimizer, clip, "norm")
        clock.time("optimizer", optimizer.step)

    return step


def hf_member_step(model, optimizer, clip: float):
    """One plain fine-tuning step of an HF classifier, phase by phase (the Trainer's order)."""
    num_labels = model.config.num_labels

    def step(batch, clock: Clock) -> None:
        clock.time("zero_grad", optimizer.zero_grad, True)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = clock.time("forward", lambda: model(**inputs).logits)
        # BertForSequenceClassification's own single-label loss, outside the forward to time it alone
        loss = clock.time(
            "loss", lambda: F.cross_entropy(logits.view(-1, num_labels), batch["labels"].view(-1))
        )
        clock.time("backward", loss.backward)
        if clip > 0:
            clock.time("clip", torch.nn.utils.clip_grad_norm_, model.parameters(), clip)
        clock.time("optimizer", optimizer.step)

    return step


def member_name(layers: int) -> str:
    return f"L{layers}"


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def build_parser() -> cli.Parser:
    p = cli.parser("python benchmarks/cascade_profile.py", __doc__)
    cli.add_step_shape(p, exits="the members' layer counts, comma-separated")
    p.add_argument(
        "--size",
        choices=tuple(SIZES),
        default="checkpoint",
        help="checkpoint = the model's own weights; bert-base / tiny = random weights of that size",
    )
    p.add_argument("--steps", type=cli.count(1), default=4, help="timed steps per side and round")
    p.add_argument("--rounds", type=cli.count(1), default=3, help="rounds over the batches")
    p.add_argument(
        "--adamw", choices=tuple(VARIANTS), default="fused", help="AdamW implementation (training: fused)"
    )
    p.add_argument(
        "--clip",
        type=float,
        default=0.0,
        help="gradient-norm clipping value for every side; 0 = none, as training without trainer.gradient_clip_val",
    )
    p.add_argument(
        "--by-member",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the cascade_by_member side (--no-by-member saves a third of the time)",
    )
    p.add_argument(
        "--ops", type=cli.count(0), default=0, help="torch.profiler: top N operators by difference"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    cli.add_host(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return cli.run_command(build_parser(), run, argv, errors=())


def build_sides(args):
    """({side: step(batch, clock)}, the HF members' names, the vocabulary size)."""
    exits = [int(x) for x in args.exits.split(",")]
    overrides = SIZES[args.size]
    torch.manual_seed(0)
    module = CascadeModule(
        task="rte",
        pretrained=args.model,
        exit_layers=exits,
        exit_pooling="cls",  # what HF's classifier pools
        random_init=overrides is not None,
        config_overrides=overrides,
    )
    members = member_models(module, num_labels=2)  # copies, made before anything moves
    module.to(args.device).train()
    sides = {
        "cascade": cascade_step(module, make_optimizer(module.parameters(), args.adamw, 2e-5), args.clip)
    }
    if args.by_member:
        # its own optimizer: the cascade's state stays the cascade's (the step's cost does not depend on it)
        sides["cascade_by_member"] = cascade_by_member_step(
            module, make_optimizer(module.parameters(), args.adamw, 2e-5), args.clip
        )
    member_steps = {}
    for layers, model in zip(exits, members, strict=True):
        model.to(args.device).train()
        member_steps[member_name(layers)] = hf_member_step(
            model, make_optimizer(model.parameters(), args.adamw, 2e-5), args.clip
        )

    def hf_members(batch, clock: Clock) -> None:
        for name, step in member_steps.items():
            own = Clock(clock.sync)
            step(batch, own)
            clock.add(own, name)

    sides["hf_members"] = hf_members
    return sides, list(member_steps), members[0].config.vocab_size


def run(args) -> None:
    cli.configure_host(args)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sides, member_names, vocab = build_sides(args)
    batches = [
        {k: v.to(device) for k, v in b.items()}
        for b in make_batches(args.steps, args.batch_size, args.seq_len, vocab)
    ]
    for step in sides.values():  # warm-up: optimizer state, allocator, lazy inits
        step(batches[0], Clock(sync))

    samples: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    order, rng = list(sides), random.Random(0)
    for _ in tqdm(range(args.rounds), desc="rounds", unit="round", disable=None, leave=False):
        for batch in batches:
            rng.shuffle(order)
            for name in order:
                clock = Clock(sync)
                faults = minor_faults()
                start = time.perf_counter()
                sides[name](batch, clock)
                total = time.perf_counter() - start
                samples[name].append({**clock.seconds, "total": total, "faults": minor_faults() - faults})

    print(header())
    print(
        f"# model {args.model} ({args.size}), members {args.exits}, batch {args.batch_size}x{args.seq_len}, "
        f"AdamW {args.adamw}, clip {args.clip or 'none'}, {args.device}; "
        f"{args.rounds * args.steps} timed steps per side, medians in ms"
    )
    print_table(samples, member_names)
    if args.ops:
        print_ops(sides, batches[0], sync, args.ops)


def median(samples: list[dict[str, float]], key: str) -> float:
    return statistics.median(s.get(key, 0.0) for s in samples)


def print_table(samples: dict[str, list[dict[str, float]]], member_names: list[str]) -> None:
    names = list(samples)
    print(f"{'phase':<24}" + "".join(f"{n:>19}" for n in names) + f"{'cascade/hf':>12}")
    for key in (*PHASES, "total"):
        values = [median(samples[n], key) for n in names]
        ratio = f"{values[0] / values[-1]:.3f}" if values[-1] else "-"
        cells = "".join(f"{1000 * v:>19.1f}" for v in values)
        print(f"{key:<24}{cells}{ratio:>12}")
    cells = "".join(f"{median(samples[n], 'faults'):>19.0f}" for n in names)
    print(f"{'page faults/step':<24}{cells}")
    # each member: our member inside the cascade (cascade_by_member) against its HF model
    hf = samples["hf_members"]
    ours = samples.get("cascade_by_member")
    print(f"\n{'member':<8}" + "".join(f"{'hf_' + p:>13}" for p in (*PHASES, "step")), end="")
    print(f"{'ours_forward':>14}{'ours_backward':>15}{'fwd+bwd ours/hf':>17}" if ours else "")
    sum_of_medians = 0.0
    for name in member_names:
        steps = [sum(s.get(f"{name}:{p}", 0.0) for p in PHASES) for s in hf]
        sum_of_medians += statistics.median(steps)
        cells = "".join(f"{1000 * median(hf, f'{name}:{p}'):>13.1f}" for p in PHASES)
        print(f"{name:<8}{cells}{1000 * statistics.median(steps):>13.1f}", end="")
        if ours:
            fwd, bwd = median(ours, f"{name}:forward"), median(ours, f"{name}:backward")
            hf_fb = median(hf, f"{name}:forward") + median(hf, f"{name}:backward")
            print(f"{1000 * fwd:>14.1f}{1000 * bwd:>15.1f}{(fwd + bwd) / hf_fb:>17.3f}", end="")
        print()
    cascade = median(samples["cascade"], "total")
    print(
        f"# cascade / hf_members (median of step totals): {cascade / median(hf, 'total'):.3f}; "
        f"cascade / sum of the members' median steps (train_step.py's former estimator): "
        f"{cascade / sum_of_medians:.3f}"
    )


def op_times(step, batch, sync) -> dict[str, tuple[float, int]]:
    """{operator: (self CPU microseconds, calls)} of one step under torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(batch, Clock(sync))
    return {e.key: (e.self_cpu_time_total, e.count) for e in prof.key_averages()}


def print_ops(sides, batch, sync, top: int) -> None:
    cascade, hf = op_times(sides["cascade"], batch, sync), op_times(sides["hf_members"], batch, sync)
    keys = sorted(
        set(cascade) | set(hf), key=lambda k: -abs(cascade.get(k, (0, 0))[0] - hf.get(k, (0, 0))[0])
    )
    total_c, total_h = sum(v[0] for v in cascade.values()), sum(v[0] for v in hf.values())
    print(
        f"\n# torch.profiler, one step each: self CPU time {total_c / 1000:.1f} ms (cascade) vs "
        f"{total_h / 1000:.1f} ms (hf_members); the {top} operators differing most"
    )
    print(f"{'operator':<44}{'cascade_ms':>12}{'calls':>7}{'hf_ms':>10}{'calls':>7}{'diff_ms':>10}")
    for key in keys[:top]:
        (tc, nc), (th, nh) = cascade.get(key, (0, 0)), hf.get(key, (0, 0))
        print(f"{key[:43]:<44}{tc / 1000:>12.2f}{nc:>7}{th / 1000:>10.2f}{nh:>7}{(tc - th) / 1000:>10.2f}")


if __name__ == "__main__":
    sys.exit(main())
