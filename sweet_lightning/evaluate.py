"""Re-evaluate a finished run from its saved logits — no model is run.

    python -m sweet_lightning.evaluate <run_dir> [exit_policy=patience] [calibration=dev]
        [thresholds=[0.5,0.9]] [num_thresholds=11] [speedup_points=[0.25,0.5]]
    python -m sweet_lightning.evaluate <sweep_dir> [<dir> ...] exit_policy=patience

Writes `<run_dir>/evaluation_<policy>.json` (same format as results.json's "evaluation") and
prints the curve; given a sweep (or several folders), every run dir below them is re-evaluated,
with a progress bar on a terminal, and one line per run is printed. Temperatures are refitted on the calibration split's saved logits
(`logits_calibration.npz`) or, with calibration=dev, on the primary dev split.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from sweet_lightning.evaluation.callback import AdaptiveEvaluation
from sweet_lightning.run_record import CALIBRATION_SPLIT, RunRecord, logits_file

KEYS = {"exit_policy", "calibration", "thresholds", "num_thresholds", "speedup_points", "policy_kwargs"}


def parse_args(argv: list[str]) -> tuple[list[Path], dict]:
    if not argv or "=" in argv[0]:
        raise ValueError("usage: python -m sweet_lightning.evaluate <run_dir> [exit_policy=...] [calibration=...]")
    paths = [Path(arg) for arg in argv if "=" not in arg]
    opts = {}
    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        if not sep:
            continue
        if key not in KEYS:
            raise ValueError(f"unknown argument {arg!r}: use key=value with key in {', '.join(sorted(KEYS))}.")
        opts[key] = yaml.safe_load(value)
    return paths, opts


def build_evaluation(opts: dict, calibration: str) -> AdaptiveEvaluation:
    """The callback's evaluation with the command line's settings (it checks them)."""
    return AdaptiveEvaluation(
        policy=opts.get("exit_policy", "confidence"),
        calibration=calibration,
        thresholds=opts.get("thresholds"),
        num_thresholds=opts.get("num_thresholds", 11),
        speedup_points=opts.get("speedup_points"),
        policy_kwargs=opts.get("policy_kwargs"),
    )


def evaluate_run(run_dir: Path, **opts) -> dict[str, dict]:
    record = RunRecord.load(run_dir)  # FileNotFoundError, or a RecordError (a ValueError) naming the file
    spec = record.eval_spec()
    if not record.splits:
        raise ValueError(f"{run_dir} has no saved logits (status: {record.status}); re-run training.")
    outputs = record.saved_logits(run_dir)
    calibration = opts.get("calibration", (record.calibration or {}).get("source", "train_holdout"))
    if calibration == "train_holdout" and CALIBRATION_SPLIT not in outputs:
        print(f"warning: {run_dir} has no {logits_file(CALIBRATION_SPLIT)}: temperatures are fitted on dev "
              "(calibration=dev)", file=sys.stderr)
        calibration = "dev"
    evaluation = build_evaluation(opts, calibration)
    report = evaluation.evaluate(spec, outputs)
    out = run_dir / f"evaluation_{evaluation.policy}.json"
    out.write_text(json.dumps(report, indent=2))
    return report


def evaluate_many(roots: list[Path], opts: dict) -> int:
    """Re-evaluate every run dir under `roots`; a run that cannot be evaluated is listed, not fatal."""
    from tqdm import tqdm

    from sweet_lightning.report.collect import find_run_dirs

    build_evaluation(opts, opts.get("calibration", "train_holdout"))  # bad settings fail before the loop
    run_dirs = [d for d in find_run_dirs(roots) if (d / "results.json").exists()]
    if not run_dirs:
        where = ", ".join(map(str, roots))
        raise FileNotFoundError(f"{where}: results.json not found, nor any run directory below: "
                                "give run or sweep directories written by launch.py.")
    lines, failed = [], 0
    # disable=None: no bar when stderr is not a terminal
    for run_dir in tqdm(run_dirs, desc="evaluate", unit="run", disable=None):
        try:
            report = evaluate_run(run_dir, **opts)
        except (ValueError, FileNotFoundError) as err:
            failed += 1
            lines.append(f"{run_dir}: skipped: {err}")
            continue
        aucs = ", ".join(f"{split} AUC={res['auc']:.4f}" for split, res in report.items())
        lines.append(f"{run_dir}: {aucs}")
    print("\n".join(lines))
    print(f"evaluated {len(run_dirs) - failed} of {len(run_dirs)} runs "
          f"(evaluation_{opts.get('exit_policy', 'confidence')}.json in each)")
    return 0 if failed < len(run_dirs) else 1


def main(argv: list[str] | None = None) -> int:
    try:
        paths, opts = parse_args(sys.argv[1:] if argv is None else argv)
        if len(paths) > 1 or not (paths[0] / "results.json").exists():
            return evaluate_many(paths, opts)
        run_dir = paths[0]
        report = evaluate_run(run_dir, **opts)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for split, res in report.items():
        print(f"{split}: policy={res['policy']} AUC={res['auc']:.4f} over {res['auc_interval']}")
        print(f"  {'threshold':>10} {'speedup':>8} {'score':>7}")
        for p in res["curve"]:
            print(f"  {p['threshold']:>10.4f} {p['speedup']:>8.4f} {p['score']:>7.4f}")
    print(f"written: {run_dir / ('evaluation_' + next(iter(report.values()))['policy'] + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
