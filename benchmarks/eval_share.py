"""How much of a run evaluation takes: one training epoch against one validation pass.

Every validation epoch of a run evaluates the dev split(s) and the calibration split, and
sweet_lightning/train.py validates once more at the end (the selected checkpoint), so an E-epoch
run spends about E x T training and (E + 1) x V validating; this script measures T and V through
launch.py's code path (the composed config, our datamodule and module, the Lightning Trainer with the
AdaptiveEvaluation callback; V is `trainer.validate`, which runs under torch.inference_mode, and
includes the callback's temperature fitting and threshold sweep) and prints the share (E + 1) V /
(E T + (E + 1) V) for each evaluation batch size. Validation passes with the different batch sizes
alternate in a shuffled order over rounds; medians are reported.

Evaluation order is whatever our datamodule does (it is reported, with the padding it leaves next to
that of the same batches in dataset order); pass the datamodule's own overrides to compare settings.

    python benchmarks/eval_share.py                               # QNLI (dev: 5,463 rows), SWEET, MiniLM-L6
    python benchmarks/eval_share.py --task rte --eval-batch-sizes 64,128,256
    OMP_NUM_THREADS=1 python benchmarks/eval_share.py --model tiny_bert --steps 2 --val-batches 2 --rounds 1
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    compose,
    header,
    lightning_trainer,
    our_datamodule,
    our_overrides,
    quiet,
    timed_epoch,
)
from sweet_lightning import cli  # noqa: E402


def padding_of(loaders) -> tuple[int, int]:
    """(padded, real) tokens over every batch of the loaders."""
    padded = real = 0
    for loader in loaders:
        for batch in loader:
            padded += int(batch["input_ids"].numel())
            real += int(batch["attention_mask"].sum())
    return padded, real


def describe_order(datamodule, loaders) -> str:
    """The datamodule's evaluation order, and its padding next to dataset order's at the same batch size."""
    samplers = sorted({type(getattr(loader, "sampler", None)).__name__ for loader in loaders})
    padded, real = padding_of(loaders)
    plain = [
        DataLoader(loader.dataset, batch_size=loader.batch_size, collate_fn=datamodule.collator)
        for loader in loaders
    ]
    plain_padded, _ = padding_of(plain)
    return (
        f"samplers {samplers}; padding {100 * (1 - real / padded):.1f}% of {padded} tokens "
        f"(dataset order: {100 * (1 - real / plain_padded):.1f}% of {plain_padded})"
    )


def validate_seconds(cfg, module, val_batches: int) -> float:
    from sweet_lightning.train import build_evaluation

    datamodule = our_datamodule(cfg)
    trainer = lightning_trainer(cfg, [build_evaluation(cfg)], limit_val_batches=val_batches or 1.0)
    start = time.perf_counter()
    trainer.validate(module, datamodule=datamodule, verbose=False)
    return time.perf_counter() - start


def build_parser() -> cli.Parser:
    p = cli.parser("python benchmarks/eval_share.py", __doc__)
    p.add_argument("--task", default="qnli", help="a GLUE task (sst2, qnli, rte, ...)")
    p.add_argument("--method", default="sweet", help="early_exit, sweet or cascade")
    p.add_argument("--model", default="minilm_l6", help="a conf/model name (tiny_bert for smoke tests)")
    p.add_argument(
        "--train-size", type=cli.count(1), default=6000, help="training rows (launch.py's train_size)"
    )
    p.add_argument(
        "--eval-batch-sizes",
        default="64,128,256",
        help="evaluation batch sizes, comma-separated; the first is the run's (conf: 64)",
    )
    p.add_argument(
        "--epochs", type=cli.count(1), default=2, help="epochs of the run whose eval share is printed"
    )
    p.add_argument("--rounds", type=cli.count(1), default=3, help="validation passes per batch size")
    p.add_argument(
        "--steps",
        type=cli.count(0),
        default=0,
        help="cut the training epoch (timed part extrapolated); 0 = whole epoch",
    )
    p.add_argument(
        "--val-batches",
        type=cli.count(0),
        default=0,
        help="cut each eval split to this many batches; 0 = whole splits",
    )
    cli.add_host(p)
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="extra launch.py overrides, e.g. max_seq_length=128"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    return cli.run_command(build_parser(), run, argv, errors=())


def run(args) -> None:
    cli.configure_host(args)
    quiet()
    print(header())
    sizes = [int(x) for x in args.eval_batch_sizes.split(",")]
    base = [
        f"task=glue/{args.task}",
        f"method={args.method}",
        f"model={args.model}",
        f"train_size={args.train_size}",
        *args.overrides,
    ]
    with tempfile.TemporaryDirectory() as run_dir:
        timer, cfg, datamodule, module = timed_epoch(base, args.steps, run_dir)
        full_batches = -(-len(datamodule.train_dataset) // int(cfg.batch_size))
        train_s = timer.seconds * (full_batches / args.steps if 0 < args.steps < full_batches else 1.0)
        rows = {split: len(ds) for split, ds in datamodule.eval_datasets.items()}
        if datamodule.calibration_dataset is not None:
            rows["calibration"] = len(datamodule.calibration_dataset)
        print(
            f"## {args.task}, {args.method}, {cfg.model.name}: training epoch of {len(datamodule.train_dataset)} rows, "
            f"batch {cfg.batch_size}, max length {cfg.max_seq_length}: {train_s:.1f} s"
            f"{f' (extrapolated from {args.steps} of {full_batches} steps)' if args.steps else ''}; "
            f"validation rows {rows}{f', cut to {args.val_batches} batches per split' if args.val_batches else ''}"
        )
        cfgs = {
            bs: compose(our_overrides([*base, f"eval_batch_size={bs}"], args.steps, run_dir)) for bs in sizes
        }
        times: dict[int, list[float]] = {bs: [] for bs in sizes}
        order, rng = list(sizes), random.Random(0)
        for _ in tqdm(range(args.rounds), desc="validation rounds", disable=None, leave=False):
            rng.shuffle(order)
            for bs in order:
                times[bs].append(validate_seconds(cfgs[bs], module, args.val_batches))
        for bs in sizes:
            dm = our_datamodule(cfgs[bs])
            print(f"# eval order at batch {bs}: {describe_order(dm, dm.val_dataloader())}")
    epochs = args.epochs
    if args.val_batches:
        print("# note: validation cut by --val-batches: the shares below are not those of a real run")
    print(
        f"# medians over {args.rounds} validation pass(es); a {epochs}-epoch run validates {epochs + 1} times"
    )
    print(f"{'eval_batch':<12}{'validate_s':>12}{'vs_first':>10}{f'eval_share_{epochs}ep':>16}")
    first = statistics.median(times[sizes[0]])
    for bs in sizes:
        v = statistics.median(times[bs])
        share = (epochs + 1) * v / (epochs * train_s + (epochs + 1) * v)
        print(f"{bs:<12}{v:>12.2f}{v / first:>10.3f}{100 * share:>15.1f}%")


if __name__ == "__main__":
    sys.exit(main())
