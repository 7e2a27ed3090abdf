"""One training epoch through launch.py's code path against the Hugging Face `Trainer` on the same rows.

Ours: the composed conf/train.yaml, our GlueDataModule, the Early-Exit / SWEET / cascade module,
EpochSeeding and the Lightning Trainer, built as sweet_lightning/train.py builds them, with
validation, checkpoints, loggers and the progress bar switched off. The bar: `Trainer` fine-tuning
`AutoModelForSequenceClassification` of the same backbone on the same tokenised training rows (our
datamodule's seeded sample, same collator), same batch size, AdamW lr / betas / eps, linear decay
without warmup, no gradient clipping (ours has none), no evaluation, saving, logging or reporting.

Each side runs with random batches and with length-grouped batches (ours: data.group_by_length;
the Trainer: train_sampling_strategy="group_by_length", transformers 5's name for group_by_length).
Every contender runs one whole fit per round, in a shuffled order within the round, and medians
over rounds are reported, so load drifting on a shared machine hits every contender alike. The
goal (issue 11): Early-Exit and SWEET epoch time <= 1.05 x the Trainer's with the same padding
policy.

    python benchmarks/epoch.py                                   # SST-2, 6K rows, MiniLM-L6, batch 16
    python benchmarks/epoch.py --task qnli,rte --methods sweet --sides ours   # grouping speedup per task
    python benchmarks/epoch.py --task sst2,qnli,rte --tokens-only             # padded tokens, no training
    OMP_NUM_THREADS=1 python benchmarks/epoch.py --model tiny_bert --train-size 64 --steps 2 --rounds 1

--adamw config (default): ours uses conf/train.yaml's optimizer as is, the Trainer its own default
(`adamw_torch_fused` under torch >= 2.8): what each user gets. --adamw single|foreach|fused forces
that torch AdamW implementation on both sides.
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from types import SimpleNamespace

import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    compose,
    grouping_available,
    header,
    our_datamodule,
    our_overrides,
    quiet,
    timed_epoch,
)
from sweet_lightning import cli  # noqa: E402

PADDINGS = ("random", "grouped")
ADAMW = {  # --adamw -> (our optimizer overrides, torch AdamW kwargs for the Trainer; None = its default)
    "config": ([], None),
    "single": (["optimizer.foreach=false", "++optimizer.fused=false"], {"foreach": False, "fused": False}),
    "foreach": (["optimizer.foreach=true", "++optimizer.fused=false"], {"foreach": True}),
    "fused": (["optimizer.foreach=false", "++optimizer.fused=true"], {"fused": True}),
}


@dataclass
class Epoch:
    seconds: float
    examples: int
    padded_tokens: int
    real_tokens: int


def base_overrides(args, task: str) -> list[str]:
    return [
        f"task=glue/{task}",
        f"model={args.model}",
        f"train_size={args.train_size}",
        f"batch_size={args.batch_size}",
        f"max_seq_length={args.max_seq_length}",
        f"seed={args.seed}",
        *ADAMW[args.adamw][0],
        *args.overrides,
    ]


def padding_override(padding: str, grouping: bool) -> list[str]:
    return [f"data.group_by_length={str(padding == 'grouped').lower()}"] if grouping else []


def ours_epoch(args, task: str, method: str, padding: str, grouping: bool) -> Epoch:
    with tempfile.TemporaryDirectory() as run_dir:
        overrides = [*base_overrides(args, task), f"method={method}", *padding_override(padding, grouping)]
        timer = timed_epoch(overrides, args.steps, run_dir)[0]
    return Epoch(timer.seconds, timer.examples, timer.padded_tokens, timer.real_tokens)


class CountingCollator:
    """The Trainer's collator, counting the tokens of the first `limit` batches it builds (the
    accelerate loader fetches one batch ahead, which a cut epoch never trains on)."""

    def __init__(self, collate, limit: int):
        self.collate, self.limit = collate, limit
        self.batches = self.padded_tokens = self.real_tokens = 0

    def __call__(self, features):
        batch = self.collate(features)
        if self.batches < self.limit:
            self.batches += 1
            self.padded_tokens += int(batch["input_ids"].numel())
            self.real_tokens += int(batch["attention_mask"].sum())
        return batch


def hf_model(cfg):
    from omegaconf import OmegaConf
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from sweet_lightning.modeling import resolve_pretrained
    from sweet_lightning.tasks import get_task

    path, num_labels = resolve_pretrained(cfg.model.pretrained), get_task(cfg.task.name).num_labels
    if cfg.model.random_init:  # e.g. model=tiny_bert: the same small random architecture
        overrides = OmegaConf.to_container(cfg.model.config_overrides) if cfg.model.config_overrides else {}
        config = AutoConfig.from_pretrained(path, num_labels=num_labels, **overrides)
        return AutoModelForSequenceClassification.from_config(config)
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)


def hf_trainer(args, cfg, datamodule, padding: str, run_dir: str, callbacks=(), collator=None):
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments

    optimizer_kwargs = ADAMW[args.adamw][1]
    betas = tuple(cfg.optimizer.betas)
    targs = TrainingArguments(
        output_dir=run_dir,
        per_device_train_batch_size=int(cfg.batch_size),
        num_train_epochs=1,
        max_steps=args.steps if args.steps > 0 else -1,
        learning_rate=float(cfg.lr),
        weight_decay=float(cfg.optimizer.weight_decay),
        adam_beta1=betas[0],
        adam_beta2=betas[1],
        lr_scheduler_type="linear",
        warmup_steps=0,
        max_grad_norm=0.0,  # 0 = no clipping: launch.py's trainer does not clip either
        train_sampling_strategy="group_by_length" if padding == "grouped" else "random",
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        seed=int(cfg.seed),
        dataloader_num_workers=int(cfg.data.num_workers),
    )
    cls_kwargs = None
    if optimizer_kwargs is not None:
        cls_kwargs = (
            torch.optim.AdamW,
            {"lr": float(cfg.lr), "betas": betas, "eps": 1e-8, **optimizer_kwargs},
        )
    trainer = Trainer(
        model=hf_model(cfg),
        args=targs,
        train_dataset=datamodule.train_dataset,
        data_collator=collator or DataCollatorWithPadding(datamodule.tokenizer),
        processing_class=datamodule.tokenizer,
        callbacks=list(callbacks),
        optimizer_cls_and_kwargs=cls_kwargs,
    )
    trainer.remove_callback(PrinterCallback)  # its end-of-training summary line would break the table
    return trainer


def trainer_epoch(args, task: str, padding: str) -> Epoch:
    from transformers import DataCollatorWithPadding, TrainerCallback

    class Timer(TrainerCallback):
        seconds = 0.0

        def on_epoch_begin(self, *_, **__):
            self.start = time.perf_counter()

        def on_epoch_end(self, *_, **__):
            self.seconds += time.perf_counter() - self.start

    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose(our_overrides(base_overrides(args, task), args.steps, run_dir))
        datamodule = our_datamodule(cfg)
        rows = len(datamodule.train_dataset)
        steps = -(-rows // int(cfg.batch_size)) if args.steps <= 0 else args.steps
        collator = CountingCollator(DataCollatorWithPadding(datamodule.tokenizer), steps)
        timer = Timer()
        trainer = hf_trainer(args, cfg, datamodule, padding, run_dir, [timer], collator)
        # launch.py's trainer turns deterministic algorithms on for the process; the Trainer's default is off
        torch.use_deterministic_algorithms(False)
        trainer.train()
    return Epoch(
        timer.seconds, min(rows, steps * int(cfg.batch_size)), collator.padded_tokens, collator.real_tokens
    )


def tokens_only(args, task: str, grouping: bool) -> None:
    """Padded and real tokens of one training epoch per side and padding policy (no training)."""
    from sweet_lightning.seeding import EpochSeeding

    print(
        f"{'contender':<12}{'padding':<9}{'batches':>9}{'padded_tokens':>15}{'real_tokens':>13}{'padding%':>10}"
    )
    for padding in PADDINGS:
        with tempfile.TemporaryDirectory() as run_dir:
            cfg = compose(
                our_overrides(base_overrides(args, task) + padding_override(padding, grouping), 0, run_dir)
            )
            datamodule = our_datamodule(cfg)
            loaders = {"trainer": hf_trainer(args, cfg, datamodule, padding, run_dir).get_train_dataloader()}
            if grouping or padding == "random":
                loader = datamodule.train_dataloader()
                # the batches of a fit's first epoch: EpochSeeding seeds the sampler at its start
                EpochSeeding(cfg.seed).on_train_epoch_start(
                    SimpleNamespace(train_dataloader=loader, current_epoch=0), None
                )
                loaders["ours"] = loader
            for side, loader in loaders.items():
                batches = [b for b in loader]
                padded = sum(int(b["input_ids"].numel()) for b in batches)
                real = sum(int(b["attention_mask"].sum()) for b in batches)
                print(
                    f"{side:<12}{padding:<9}{len(batches):>9}{padded:>15}{real:>13}{100 * (1 - real / padded):>9.1f}%"
                )


def run_task(args, task: str) -> None:
    probe = compose(base_overrides(args, task))
    grouping = grouping_available(probe)
    print(
        f"## {task}: train_size {probe.train_size} (calibration hold-out: {probe.calibration}, "
        f"{probe.calibration_size}), model {probe.model.name}, batch {probe.batch_size}, max length "
        f"{probe.max_seq_length}, lr {probe.lr} linear decay, 1 epoch{f' cut to {args.steps} steps' if args.steps else ''}"
    )
    if args.tokens_only:
        tokens_only(args, task, grouping)
        return
    contenders = []
    for padding in PADDINGS:
        if "hf" in args.sides:
            contenders.append(("trainer", padding))
        if "ours" in args.sides and (grouping or padding == "random"):
            contenders += [(m, padding) for m in args.methods]
    results: dict[tuple[str, str], list[Epoch]] = {c: [] for c in contenders}
    rng = random.Random(0)
    for r in range(args.rounds):
        order = list(contenders)
        rng.shuffle(order)
        for name, padding in order:
            cli.configure_host(args)  # re-applied: neither side may change it for the next contender
            if name == "trainer":
                results[(name, padding)].append(trainer_epoch(args, task, padding))
            else:
                results[(name, padding)].append(ours_epoch(args, task, name, padding, grouping))
            gc.collect()  # the finished fit's model and optimizer state, before the next contender
            e = results[(name, padding)][-1]
            print(f"#   round {r + 1}: {name:<10} {padding:<8} {e.seconds:8.1f} s", flush=True)
    median = {c: statistics.median(e.seconds for e in runs) for c, runs in results.items()}
    optimizer = (
        f"ours {ADAMW[args.adamw][0] or 'conf optimizer'}, Trainer "
        f"{'its default optim' if args.adamw == 'config' else 'torch AdamW ' + str(ADAMW[args.adamw][1])}"
    )
    print(f"# medians over {args.rounds} round(s); AdamW: {optimizer}")
    print(
        f"{'contender':<12}{'padding':<9}{'epoch_s':>9}{'ex/s':>8}{'padded_tok':>12}{'padding%':>10}"
        f"{'vs_trainer':>12}{'target':>8}"
    )
    for (name, padding), runs in results.items():
        e, t = runs[0], median[(name, padding)]
        ratio, target = "", ""
        if name != "trainer" and ("trainer", padding) in median:
            ratio = f"{t / median[('trainer', padding)]:.3f}"
            target = "<=1.05" if name in ("early_exit", "sweet") else ""
        pad = 100 * (1 - e.real_tokens / e.padded_tokens) if e.padded_tokens else float("nan")
        print(
            f"{name:<12}{padding:<9}{t:>9.2f}{e.examples / t:>8.1f}{e.padded_tokens:>12}{pad:>9.1f}%"
            f"{ratio:>12}{target:>8}"
        )
    speedups = [
        f"{name} {median[(name, 'random')] / median[(name, 'grouped')]:.2f}x"
        for name, padding in contenders
        if padding == "grouped"
    ]
    if speedups:
        print(f"# length grouping's epoch speedup (random / grouped epoch time): {', '.join(speedups)}")


def build_parser() -> cli.Parser:
    p = cli.parser("python benchmarks/epoch.py", __doc__)
    p.add_argument(
        "--task", default="sst2", help="one or more GLUE tasks, comma-separated (sst2, qnli, rte, ...)"
    )
    p.add_argument("--model", default="minilm_l6", help="a conf/model name (tiny_bert for smoke tests)")
    p.add_argument(
        "--train-size", type=cli.count(1), default=6000, help="training rows (launch.py's train_size)"
    )
    p.add_argument("--batch-size", type=cli.count(1), default=16, help="training batch size, both sides")
    p.add_argument("--max-seq-length", type=cli.count(1), default=256, help="truncation length, both sides")
    p.add_argument("--seed", type=int, default=42, help="seed of the row sample and of training")
    p.add_argument(
        "--steps", type=cli.count(0), default=0, help="cut each epoch to this many steps; 0 = whole epoch"
    )
    p.add_argument(
        "--rounds", type=cli.count(1), default=3, help="whole fits per contender (medians reported)"
    )
    p.add_argument(
        "--methods", default="early_exit,sweet", help="ours, comma-separated: early_exit, sweet, cascade"
    )
    p.add_argument("--sides", default="ours,hf", help="ours, hf (the Trainer), or both, comma-separated")
    p.add_argument(
        "--adamw",
        choices=sorted(ADAMW),
        default="config",
        help="AdamW: config = what each side uses by itself (see above); single, foreach or fused: that "
        "torch implementation on both sides",
    )
    cli.add_host(p)
    p.add_argument("--tokens-only", action="store_true", help="count padded tokens per policy; no training")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="extra launch.py overrides for both sides, e.g. lr=3e-5",
    )
    return p


def run(args) -> None:
    args.methods = [m for m in args.methods.split(",") if m]
    args.sides = [s for s in args.sides.split(",") if s]
    cli.configure_host(args)
    quiet()
    print(header())
    for task in args.task.split(","):
        run_task(args, task)


def main(argv: list[str] | None = None) -> int:
    return cli.run_command(build_parser(), run, argv, errors=())


if __name__ == "__main__":
    sys.exit(main())
