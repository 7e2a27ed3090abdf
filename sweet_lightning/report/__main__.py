"""python -m sweet_lightning.report SWEEP_DIR [SWEEP_DIR ...] --out report/ [--select-lr-on calibration|dev]
                                  [--methods NAME [NAME ...]]

Exit status: 0 report written; 1 no completed run (runs.csv and report.md still list what was
found); 2 bad input: a path that is not a directory, no run directory found, a --methods name
with no run, a --split no run has (or the calibration hold-out), mixed configurations without
--allow-mixed, or runs without the AUC that --select-lr-on asks for.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from sweet_lightning import cli
from sweet_lightning.run_record import CALIBRATION_SPLIT, find_run_dirs

from .aggregate import SELECT_ON, unselectable
from .collect import load_run, mixed_config_problems, split_methods
from .write import DEFAULT_TITLE, methods_line, summary_line, write_report


def build_parser() -> cli.Parser:
    p = cli.parser("python -m sweet_lightning.report", __doc__)
    cli.add_run_dirs(p, "sweeps", nargs="+", help="sweep (Hydra multirun) or run directories")
    p.add_argument("--out", type=Path, default=Path("report"), metavar="DIR", help="output directory")
    p.add_argument("--title", default=DEFAULT_TITLE, help="report.md's heading")
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="NAME",
        help="report only the runs of these methods (names as in results.json, e.g. early_exit sweet "
        "cascade); the others are left out of every table, figure and runs.csv, and report.md says how "
        "many. A run whose method cannot be read (no readable results.json or .hydra/config.yaml) is "
        "kept (default: every method found)",
    )
    p.add_argument(
        "--split",
        default=None,
        metavar="NAME",
        help="report this evaluation split of every run, e.g. dev_mismatched on MNLI; a run that did not "
        "evaluate it is recomputed from its logits_<split>.npz, or listed as incomplete (default: each "
        "run's primary split, dev or MNLI's dev_matched)",
    )
    p.add_argument(
        "--allow-mixed",
        action="store_true",
        help="average runs even if their configurations differ (listed as a warning)",
    )
    p.add_argument(
        "--select-lr-on",
        choices=SELECT_ON,
        default="calibration",
        help="split whose mean AUC over seeds chooses each lr: calibration (the hold-out, never "
        "reported) or dev (paper App. A: the reported split itself)",
    )
    p.add_argument(
        "--speedups",
        type=float,
        nargs="+",
        default=None,
        metavar="S",
        help="fixed speedups to read curves at (default: 1/L_M, 1/4, 1/2, 3/4, 1 [, 11/8, 7/4])",
    )
    p.add_argument(
        "--wandb",
        nargs="?",
        const="offline",
        choices=["offline", "online"],
        default=None,
        help="also log the tables and figures as a W&B run (job type report); offline unless "
        "'--wandb online' (default: no W&B run; docs/wandb.md)",
    )
    cli.add_progress(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_command(build_parser(), report, argv, errors=())


def say(message: str) -> None:
    print(f"report: {message}", file=sys.stderr)


def report(args: argparse.Namespace) -> int:
    absent = [str(p) for p in args.sweeps if not p.is_dir()]
    if absent:
        say(f"not a directory: {', '.join(absent)}")
        return 2
    run_dirs = find_run_dirs(args.sweeps)
    if not run_dirs:
        say(f"no run directory (results.json or .hydra/) under {', '.join(map(str, args.sweeps))}")
        return 2
    if args.split == CALIBRATION_SPLIT:
        say(
            f"--split {args.split}: the hold-out that chooses each run's epoch and lr is not reported; name a dev split"
        )
        return 2
    bar = tqdm(run_dirs, desc="runs", unit="run", disable=cli.progress_disabled(args))
    runs = [load_run(path, args.split) for path in bar]
    if args.split and not any(run.status == "completed" for run in runs):
        first = runs[0]
        say(f"--split {args.split}: no run evaluated it or kept its logits, e.g. {first.path}: {first.note}")
        return 2
    methods = list(dict.fromkeys(args.methods)) if args.methods else None  # order kept, repeats dropped
    found = sorted({run.method for run in runs if run.method is not None})
    unmatched = [name for name in methods or () if name not in found]
    if unmatched:
        which = "that method" if len(unmatched) == 1 else "these methods"
        say(
            f"--methods {' '.join(unmatched)}: no run of {which}; methods found: {', '.join(found) or 'none'}"
        )
        return 2
    # mixed-config checks and lr selection below see the kept runs only
    runs, left_out = split_methods(runs, methods)
    say(summary_line(runs))
    kept_line = methods_line(methods, left_out) if methods else ""
    if kept_line:
        say(f"--methods {kept_line}")
    problems = mixed_config_problems(runs)
    if problems and not args.allow_mixed:
        say(
            f"refusing to average mixed configurations: {'; '.join(problems)} "
            "(rerun with --allow-mixed to average anyway)"
        )
        return 2
    lacking = unselectable(runs, args.select_lr_on)
    if lacking:
        say(
            f"{len(lacking)} completed run(s) have no AUC on the calibration hold-out to select lrs on "
            f"(trained with calibration=dev, or before it was recorded), e.g. {lacking[0].path}; "
            "rerun with --select-lr-on dev to select on dev (paper App. A)"
        )
        return 2
    written = write_report(
        runs,
        args.out,
        args.sweeps,
        args.speedups,
        mixed=problems,
        select_on=args.select_lr_on,
        methods=kept_line,
        title=args.title,
        split=args.split,
    )
    say(f"wrote {len(written)} files to {args.out}/ (see {written[0]})")
    if args.wandb:
        from sweet_lightning.wandb_logging import log_report

        run_dir = log_report(written, args.sweeps, args.out, mode=args.wandb)
        say(f"W&B run ({args.wandb}) in {run_dir}")
    if not any(run.status == "completed" for run in runs):
        say("no completed run to report; report.md and runs.csv list the others")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
