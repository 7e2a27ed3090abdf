"""Classify a file of texts with a trained adaptive model; one JSON line per input.

    python -m sweet_lightning.predict <run_dir or .ckpt> input=texts.tsv threshold=0.8 output=preds.jsonl
    python -m sweet_lightning.predict <run_dir> input=texts.jsonl target_speedup=0.5

Options (key=value): input (required; .tsv/.csv/.jsonl with the task's text columns),
output (default: stdout), threshold, target_speedup or target_drop (one of them), policy (default: the
run's, else confidence), batch_size (32), device (cpu), max_length (the run's or checkpoint's, else 512),
bf16 (default: the run's precision, true when it trained in bf16), compile (false).

Each output line: {"label", "label_id", "exit" (1-based), "exit_layer", "confidence"}.
Usage errors print one line "error: ..." and exit with code 2.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

OPTIONS = {
    "input": str,
    "output": str,
    "threshold": float,
    "target_speedup": float,
    "target_drop": float,
    "policy": str,
    "batch_size": int,
    "device": str,
    "max_length": int,
    "bf16": "bool",
    "compile": "bool",
}
PROGRESS_MIN_ROWS = 512  # show a progress bar from this many inputs on


class UsageError(ValueError):
    pass


def _bool(key: str, value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{key}={value}: use {key}=true or {key}=false")


def parse_args(argv: list[str]) -> tuple[str, dict]:
    """(model path, options) from `<path> key=value ...`."""
    paths = [a for a in argv if "=" not in a]
    if len(paths) != 1:
        raise UsageError(
            "give exactly one run dir or .ckpt, then key=value options, e.g. input=texts.tsv threshold=0.8"
        )
    options: dict = {}
    for arg in argv:
        if "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("-+")
        if key not in OPTIONS:
            raise UsageError(f"unknown option {key!r}: valid are {', '.join(OPTIONS)}")
        kind = OPTIONS[key]
        try:
            options[key] = _bool(key, value) if kind == "bool" else kind(value)
        except ValueError as err:
            if isinstance(err, UsageError):
                raise
            raise UsageError(f"{key}={value} is not a valid {kind.__name__}") from err
    for key in ("batch_size", "max_length"):
        if options.get(key, 1) < 1:  # max_length=0 would otherwise fall back to the run's length
            raise UsageError(f"{key}={options[key]} must be >= 1")
    if "input" not in options:
        raise UsageError("missing input=<file>: a .tsv, .csv or .jsonl file with the task's text columns")
    if sum(k in options for k in ("threshold", "target_speedup", "target_drop")) != 1:
        raise UsageError(
            "give exactly one of threshold=<t> (e.g. 0.8), target_speedup=<s> (e.g. 0.5) or target_drop=<d> (e.g. 0.01)"
        )
    return paths[0], options


def run(argv: list[str]) -> int:
    path, opts = parse_args(argv)
    if not Path(path).exists():  # before the heavy imports: a typo fails at once
        raise UsageError(
            f"no run dir or checkpoint at {path!r}: give a run dir (with results.json) or a .ckpt file"
        )
    from sweet_lightning.inference import AdaptiveClassifier, resolve_source
    from sweet_lightning.inference.inputs import read_texts

    source = resolve_source(path)
    texts = read_texts(opts["input"], source.task)  # checked before the model loads
    clf = AdaptiveClassifier.from_checkpoint(
        source,
        policy=opts.get("policy"),
        device=opts.get("device", "cpu"),
        bf16=opts.get("bf16"),  # None: the run's precision
        compile=opts.get("compile", False),
        max_length=opts.get("max_length"),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = clf.predict(
            texts,
            threshold=opts.get("threshold"),
            target_speedup=opts.get("target_speedup"),
            target_drop=opts.get("target_drop"),
            batch_size=opts.get("batch_size", 32),
            progress=len(texts) >= PROGRESS_MIN_ROWS,
        )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    lines = "".join(json.dumps(r) + "\n" for r in out.records())
    if opts.get("output", "-") == "-":
        sys.stdout.write(lines)
    else:
        Path(opts["output"]).write_text(lines)
    print(
        f"{len(out)} predictions, threshold {out.threshold:.4g} ({clf.policy.name}), "
        f"speedup {out.speedup:.3f} (layers run / all {clf.num_layers}), "
        f"{'bf16' if clf.engine.bf16 else 'float32'}",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except (ValueError, RuntimeError, OSError) as err:  # user-facing: one line, no traceback
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
