"""Classify a file of texts with a trained adaptive model; one JSON line per input.

    python -m sweet_lightning.predict <run_dir or .ckpt> --input texts.tsv --threshold 0.8 --output preds.jsonl
    python -m sweet_lightning.predict <run_dir> --input texts.jsonl --target-speedup 0.5

Each output line: {"label", "label_id", "exit" (1-based), "exit_layer", "confidence"}.
Usage errors print one line "error: ..." and exit with code 2. The older spelling
`input=texts.tsv threshold=0.8` still works (deprecated; docs/cli.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from sweet_lightning import cli

PROGRESS_MIN_ROWS = 512  # by default, a progress bar from this many inputs on


def build_parser() -> cli.Parser:
    p = cli.parser("python -m sweet_lightning.predict", __doc__, key_values=True)
    p.add_argument("source", metavar="RUN_DIR_OR_CKPT", help="a run dir (with results.json) or a .ckpt file")
    p.add_argument(
        "--input",
        required=True,
        metavar="FILE",
        help="the texts: a .tsv, .csv or .jsonl file with the task's text columns (required)",
    )
    p.add_argument("--output", default="-", metavar="FILE", help="where the JSON lines go; - = stdout")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--threshold", type=float, metavar="T", help="the policy's exit threshold, e.g. 0.8")
    when.add_argument(
        "--target-speedup",
        type=float,
        metavar="S",
        help="the fastest threshold whose speedup on the run's calibration logits is not above S, e.g. 0.5",
    )
    when.add_argument(
        "--target-drop",
        type=float,
        metavar="D",
        help="the fastest threshold losing at most D of the score on the calibration logits, e.g. 0.01",
    )
    p.add_argument("--policy", metavar="NAME", help="exit policy (default: the run's, else confidence)")
    p.add_argument("--batch-size", type=cli.count(1), default=32, metavar="N", help="inputs per forward pass")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument(
        "--max-length",
        type=cli.count(1),
        metavar="N",
        help="truncate inputs to N tokens (default: the run's or checkpoint's, else 512)",
    )
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast (default: the run's precision: on when it trained in bf16)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model (default: off)")
    cli.add_host(p)
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"a progress bar whatever the number of inputs, or none; it shows on a terminal only "
        f"(default: from {PROGRESS_MIN_ROWS} inputs on)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    path = args.source
    if not Path(path).exists():  # before the heavy imports: a typo fails at once
        raise cli.UsageError(
            f"no run dir or checkpoint at {path!r}: give a run dir (with results.json) or a .ckpt file"
        )
    from sweet_lightning.inference import AdaptiveClassifier, resolve_source
    from sweet_lightning.inference.inputs import read_texts

    cli.configure_host(args)
    source = resolve_source(path)
    texts = read_texts(args.input, source.task)  # checked before the model loads
    clf = AdaptiveClassifier.from_checkpoint(
        source,
        policy=args.policy,
        device=args.device,
        bf16=args.bf16,  # None: the run's precision
        compile=args.compile,
        max_length=args.max_length,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = clf.predict(
            texts,
            threshold=args.threshold,
            target_speedup=args.target_speedup,
            target_drop=args.target_drop,
            batch_size=args.batch_size,
            progress=len(texts) >= PROGRESS_MIN_ROWS if args.progress is None else args.progress,
        )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    lines = "".join(json.dumps(r) + "\n" for r in out.records())
    if args.output == "-":
        sys.stdout.write(lines)
    else:
        Path(args.output).write_text(lines)
    print(
        f"{len(out)} predictions, threshold {out.threshold:.4g} ({clf.policy.name}), "
        f"speedup {out.speedup:.3f} (layers run / all {clf.num_layers}), "
        f"{'bf16' if clf.engine.bf16 else 'float32'}",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    # user-facing errors (bad files, checkpoints, options): one line, no traceback
    return cli.run_command(build_parser(), run, argv, errors=(ValueError, RuntimeError, OSError))


if __name__ == "__main__":
    sys.exit(main())
