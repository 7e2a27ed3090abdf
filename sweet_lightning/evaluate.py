"""Re-evaluate a finished run from its saved logits — no model is run.

    python -m sweet_lightning.evaluate <run_dir> [--exit-policy patience] [--calibration dev]
        [--thresholds 0.5 0.9] [--num-thresholds 11] [--speedup-points 0.25 0.5]
    python -m sweet_lightning.evaluate <sweep_dir> [<dir> ...] --exit-policy patience

Writes `<run_dir>/evaluation_<policy>.json` (same format as results.json's "evaluation") and
prints the curve; given a sweep (or several folders), every run dir below them is re-evaluated,
with a progress bar on a terminal, and one line per run is printed. Temperatures are refitted on the calibration split's saved logits
(`logits_calibration.npz`) or, with --calibration dev, on the primary dev split.
The older spelling `exit_policy=patience` still works (deprecated; docs/cli.md).
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from pathlib import Path

import yaml

from sweet_lightning import cli
from sweet_lightning.evaluation.callback import AdaptiveEvaluation
from sweet_lightning.evaluation.policies import POLICIES
from sweet_lightning.run_record import CALIBRATION_SPLIT, RunRecord, logits_file

KEYS = ("exit_policy", "calibration", "thresholds", "num_thresholds", "speedup_points", "policy_kwargs")


def _mapping(text: str) -> dict:
    value = yaml.safe_load(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a YAML mapping, e.g. '{{patience: 2}}'")
    return value


def build_parser() -> cli.Parser:
    # the settings' defaults are the callback's own, so --help and training cannot disagree
    default = {k: v.default for k, v in inspect.signature(AdaptiveEvaluation).parameters.items()}
    p = cli.parser("python -m sweet_lightning.evaluate", __doc__, key_values=True)
    cli.add_run_dirs(
        p, "run_dirs", nargs="+", help="run directories, or sweep folders: every run dir below them"
    )
    p.add_argument(
        "--exit-policy",
        metavar="NAME",
        help=f"exit policy: {', '.join(POLICIES)} (default: {default['policy']})",
    )
    p.add_argument(
        "--calibration",
        metavar="SPLIT",
        help="where temperatures are fitted: train_holdout or dev (default: what the run used; dev "
        "when it saved no hold-out logits)",
    )
    p.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        metavar="T",
        help="the curve's thresholds (default: --num-thresholds spread over the policy's range)",
    )
    p.add_argument(
        "--num-thresholds",
        type=int,
        metavar="N",
        help=f"thresholds of the default curve (default: {default['num_thresholds']})",
    )
    p.add_argument(
        "--speedup-points",
        type=float,
        nargs="+",
        metavar="S",
        help="speedups the curve is read at (default: 1/L, 1/4, 1/2, 3/4, 1; L = layers)",
    )
    p.add_argument(
        "--policy-kwargs",
        type=_mapping,
        metavar="YAML",
        help="the policy's own settings as a YAML mapping, e.g. '{patience: 2}' (default: none)",
    )
    cli.add_progress(p)
    return p


def build_evaluation(opts: dict, calibration: str) -> AdaptiveEvaluation:
    """The callback's evaluation with the command line's settings (it checks them; unset ones keep
    its defaults). Its errors name training config keys (`evaluation.num_thresholds=0 ...`); here
    they name the flag the user typed (`--num-thresholds 0 ...`)."""
    settings = {("policy" if k == "exit_policy" else k): v for k, v in opts.items() if k != "calibration"}
    try:
        return AdaptiveEvaluation(calibration=calibration, **settings)
    except ValueError as err:
        keys = "|".join(KEYS)
        as_flag = re.sub(rf"\b(?:evaluation\.)?({keys})=", lambda m: f"--{m[1].replace('_', '-')} ", str(err))
        raise ValueError(as_flag) from err


def evaluate_run(run_dir: Path, **opts) -> dict[str, dict]:
    record = RunRecord.load(run_dir)  # FileNotFoundError, or a RecordError (a ValueError) naming the file
    spec = record.eval_spec()
    if not record.splits:
        raise ValueError(f"{run_dir} has no saved logits (status: {record.status}); re-run training.")
    outputs = record.saved_logits(run_dir)
    calibration = opts.get("calibration", (record.calibration or {}).get("source", "train_holdout"))
    if calibration == "train_holdout" and CALIBRATION_SPLIT not in outputs:
        print(
            f"warning: {run_dir} has no {logits_file(CALIBRATION_SPLIT)}: temperatures are fitted on dev "
            "(calibration=dev)",
            file=sys.stderr,
        )
        calibration = "dev"
    evaluation = build_evaluation(opts, calibration)
    report = evaluation.evaluate(spec, outputs)
    (run_dir / f"evaluation_{evaluation.policy}.json").write_text(json.dumps(report, indent=2))
    return report


def evaluate_many(roots: list[Path], opts: dict, disable: bool | None = None) -> int:
    """Re-evaluate every run dir under `roots`; a run that cannot be evaluated is listed, not fatal."""
    from tqdm import tqdm

    from sweet_lightning.run_record import find_run_dirs

    # bad settings fail before the loop
    policy = build_evaluation(opts, opts.get("calibration", "train_holdout")).policy
    run_dirs = [d for d in find_run_dirs(roots) if (d / "results.json").exists()]
    if not run_dirs:
        where = ", ".join(map(str, roots))
        raise FileNotFoundError(
            f"{where}: results.json not found, nor any run directory below: "
            "give run or sweep directories written by launch.py."
        )
    lines, failed = [], 0
    # disable=None: no bar when stderr is not a terminal
    for run_dir in tqdm(run_dirs, desc="evaluate", unit="run", disable=disable):
        try:
            report = evaluate_run(run_dir, **opts)
        except (ValueError, FileNotFoundError) as err:
            failed += 1
            lines.append(f"{run_dir}: skipped: {err}")
            continue
        aucs = ", ".join(f"{split} AUC={res['auc']:.4f}" for split, res in report.items())
        lines.append(f"{run_dir}: {aucs}")
    print("\n".join(lines))
    print(f"evaluated {len(run_dirs) - failed} of {len(run_dirs)} runs (evaluation_{policy}.json in each)")
    return 0 if failed < len(run_dirs) else 1


def run(args: argparse.Namespace) -> int:
    opts = {key: getattr(args, key) for key in KEYS if getattr(args, key) is not None}
    paths = args.run_dirs
    if len(paths) > 1 or not (paths[0] / "results.json").exists():
        return evaluate_many(paths, opts, cli.progress_disabled(args))
    run_dir = paths[0]
    report = evaluate_run(run_dir, **opts)
    for split, res in report.items():
        print(f"{split}: policy={res['policy']} AUC={res['auc']:.4f} over {res['auc_interval']}")
        print(f"  {'threshold':>10} {'speedup':>8} {'score':>7}")
        for p in res["curve"]:
            print(f"  {p['threshold']:>10.4f} {p['speedup']:>8.4f} {p['score']:>7.4f}")
    print(f"written: {run_dir / ('evaluation_' + next(iter(report.values()))['policy'] + '.json')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run_command(build_parser(), run, argv, errors=(ValueError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
