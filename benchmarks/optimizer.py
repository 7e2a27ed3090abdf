"""AdamW's three torch implementations on the parameters of our modules, side by side.

single (the for-loop over tensors; torch's choice on CPU), foreach (multi-tensor kernels; torch's
choice on CUDA) and fused (one kernel per group; CPU since torch 2.4), each on its own copy of the
same parameters, stepping on the same gradients (random, seeded, one fresh set per step). Only
`optimizer.step()` is timed; the variants alternate step by step in a shuffled order and medians
are reported. After the steps, each variant's parameters are compared with the single-tensor ones:
the max abs difference should be float noise, far below the max abs update.

    python benchmarks/optimizer.py                              # MiniLM-L6: early_exit, cascade
    python benchmarks/optimizer.py --modules early_exit --steps 5 --device cuda
    OMP_NUM_THREADS=1 python benchmarks/optimizer.py --model tiny_bert --steps 3

The config keys: optimizer.foreach and optimizer.fused (conf/train.yaml; null = torch's choice).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import compose, header  # noqa: E402
from sweet_lightning import cli  # noqa: E402

VARIANTS = {
    "single": {"foreach": False, "fused": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}


def module_parameters(model: str, method: str) -> list[torch.Tensor]:
    """The trainable parameters of `method`'s module for conf/model/<model>.yaml, as launch.py builds it."""
    from sweet_lightning.train import build_module

    torch.manual_seed(0)
    cfg = compose([f"model={model}", f"method={method}"])
    return [p.detach() for p in build_module(cfg).parameters() if p.requires_grad]


def make_optimizer(params: list[torch.Tensor], variant: str, lr: float) -> torch.optim.AdamW:
    # the paper's AdamW (App. A) as conf/train.yaml configures it; only the implementation differs
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=0.0, **VARIANTS[variant])


def run_variants(
    params: list[torch.Tensor], steps: int, lr: float = 2e-5, variants=tuple(VARIANTS), device: str = "cpu"
) -> tuple[dict[str, list[float]], dict[str, list[torch.Tensor]]]:
    """(seconds per timed step, final parameters) of each variant after `steps` + 1 steps (the first,
    which creates the optimizer state, is not timed)."""
    copies = {v: [p.detach().to(device, copy=True).requires_grad_() for p in params] for v in variants}
    optimizers = {v: make_optimizer(copies[v], v, lr) for v in variants}
    times: dict[str, list[float]] = {v: [] for v in variants}
    order, rng = list(variants), random.Random(0)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for step in tqdm(range(steps + 1), desc="steps", unit="step", disable=None, leave=False):
        g = torch.Generator().manual_seed(step)
        grads = [(torch.randn(p.shape, generator=g) * 1e-3).to(device) for p in params]
        rng.shuffle(order)
        for v in order:
            for p, grad in zip(copies[v], grads, strict=True):
                p.grad = grad  # AdamW reads gradients without writing them: the variants can share them
            sync()
            start = time.perf_counter()
            optimizers[v].step()
            sync()
            if step:
                times[v].append(time.perf_counter() - start)
    return times, {v: [p.detach() for p in ps] for v, ps in copies.items()}


def max_abs_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def build_parser() -> cli.Parser:
    p = cli.parser("python benchmarks/optimizer.py", __doc__)
    p.add_argument("--model", default="minilm_l6", help="a conf/model name")
    p.add_argument(
        "--modules",
        default="early_exit,cascade",
        help="methods whose parameters are stepped, comma-separated",
    )
    p.add_argument("--steps", type=cli.count(1), default=20, help="timed optimizer steps per variant")
    p.add_argument("--lr", type=float, default=2e-5, help="AdamW learning rate")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    cli.add_host(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return cli.run_command(build_parser(), run, argv, errors=())


def run(args) -> None:
    cli.configure_host(args)
    print(header())
    for method in args.modules.split(","):
        params = module_parameters(args.model, method)
        times, finals = run_variants(params, args.steps, args.lr, device=args.device)
        median = {v: statistics.median(t) for v, t in times.items()}
        update = max_abs_diff(finals["single"], [p.to(args.device) for p in params])
        print(
            f"## {method} ({args.model}): {sum(p.numel() for p in params) / 1e6:.1f}M parameters in "
            f"{len(params)} tensors, {args.device}, {args.steps} timed steps, lr {args.lr}; max abs update "
            f"{update:.3g}"
        )
        print(f"{'variant':<10}{'ms/step':>10}{'vs_single':>11}{'max_abs_diff_vs_single':>24}")
        for v in VARIANTS:
            diff = max_abs_diff(finals[v], finals["single"])
            print(f"{v:<10}{median[v] * 1000:>10.1f}{median[v] / median['single']:>11.3f}{diff:>24.3g}")
        fastest = min(median, key=median.get)
        print(f"# fastest: {fastest} (optimizer.foreach / optimizer.fused in conf/train.yaml)")


if __name__ == "__main__":
    sys.exit(main())
