"""Does the cascade lose time by backpropagating its members through one joint graph?

The cascade's training step sums the members' losses and calls backward once, so every member's
activations are alive together. The alternative is member by member: forward, loss, backward, then
the next member (what training them one after another does). Both give the same gradients, checked
here bit for bit; their forward+backward times are measured side by side, interleaved in a shuffled
order, medians printed (no optimizer step: it is the same in both).

    python benchmarks/cascade_backward.py --threads 2
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import header  # noqa: E402
from sweet_lightning import cli  # noqa: E402
from sweet_lightning.methods import CascadeModule  # noqa: E402


def build_parser() -> cli.Parser:
    p = cli.parser("python benchmarks/cascade_backward.py", __doc__)
    cli.add_step_shape(
        p, model_flag="--pretrained", exits="the members' layer counts, comma-separated", pooling=True
    )
    p.add_argument("--rounds", type=cli.count(1), default=6, help="timed rounds, contenders shuffled")
    cli.add_host(p, default=2)
    return p


def main(argv: list[str] | None = None) -> int:
    return cli.run_command(build_parser(), run, argv, errors=())


def run(args) -> None:
    cli.configure_host(args)
    print(header())
    module = CascadeModule(
        task="sst2",
        pretrained=args.pretrained,
        exit_layers=[int(x) for x in args.exits.split(",")],
        exit_pooling=args.pooling,
    )
    module.train()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (args.batch_size, args.seq_len), generator=gen)
    mask, labels = torch.ones_like(ids), torch.randint(0, 2, (args.batch_size,), generator=gen)

    def joint() -> None:
        logits, _ = module.net(ids, mask, None)
        sum(F.cross_entropy(lg, labels) for lg in logits).backward()

    def member_by_member() -> None:
        for member in module.net.members:
            logits, _ = member(ids, mask, None)
            F.cross_entropy(logits[0], labels).backward()

    contenders = {"joint": joint, "member_by_member": member_by_member}
    grads = {}
    for name, step in contenders.items():
        torch.manual_seed(1)  # the same dropout masks
        step()
        grads[name] = [p.grad.clone() for p in module.parameters()]
        module.zero_grad(set_to_none=True)
    diff = max((a - b).abs().max().item() for a, b in zip(*grads.values(), strict=True))
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in tqdm(range(args.rounds), desc="rounds", unit="round", disable=None, leave=False):
        for name in random.sample(list(contenders), len(contenders)):
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
            module.zero_grad(set_to_none=True)
    print(f"# max abs gradient difference: {diff:g}; forward+backward, medians over {args.rounds} rounds")
    base = statistics.median(times["joint"])
    for name, values in times.items():
        print(
            f"{name:18s} {1000 * statistics.median(values):9.1f} ms  {statistics.median(values) / base:6.3f}"
        )


if __name__ == "__main__":
    sys.exit(main())
