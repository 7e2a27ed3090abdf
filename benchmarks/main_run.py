"""The README's main run with the settings before issue 11's throughput work and with today's defaults.

Runs the README's main command (`python launch.py method=sweet task=glue/rte model=minilm_l6`)
as child processes, back to back in one invocation, and prints each run's wall time (process
start to exit: data, training, validation, results), its `trainer.fit` time (`train_time_s` in
results.json) and its peak resident memory (the child's own `ru_maxrss`), then the medians and
the ratios old / new.

    old   the same command with the defaults issue 11 changed put back (OLD_SETTINGS below):
          random training batches, AdamW's single-tensor loop (torch's CPU choice), evaluation in
          dataset order, torch's deterministic mode on every device, freed memory returned to the OS
    new   the command as it is, today's defaults

"Old settings on today's code" is not the old code: the other changes since commit 1af9dc9 (e.g. the
final re-evaluation skipped when the reported epoch is the last one, the calibration hold-out scored
every epoch, the model-selection rule) are in both runs. `--old-code DIR` runs the old side from
another checkout instead (e.g. `git worktree add /tmp/sl-1af9dc9 1af9dc9`), with that checkout's own
defaults and no OLD_SETTINGS; it shares the tokenised-data cache (~/.cache/sweet_lightning).

Runs go to a temporary folder that is deleted afterwards (--keep keeps it), never to results/.
--order alternate (the default) swaps which side goes first from one repeat to the next, so a
machine warming up or slowing down does not favour one side. --extra adds overrides to both sides,
replacing the main command's value of the same key (a smoke check: --extra 'model=tiny_bert
train_size=64 trainer.max_epochs=1').

    python benchmarks/main_run.py [--repeat 1] [--order alternate|old-first|new-first] [--extra '...']
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO, default_glue_dir, header  # noqa: E402
from sweet_lightning import cli  # noqa: E402

MAIN_COMMAND = ["method=sweet", "task=glue/rte", "model=minilm_l6"]  # README.md, first code block
# the defaults issue 11 changed (git log 1af9dc9..main -- conf/), as they were before
OLD_SETTINGS = [
    "data.group_by_length=false",
    "data.sort_eval_by_length=false",
    "optimizer.fused=null",
    "trainer.deterministic=warn",
    "keep_freed_memory=false",
]
ORDERS = ("alternate", "old-first", "new-first")


def merge_overrides(*groups: list[str]) -> list[str]:
    """Hydra overrides with a later group's value replacing an earlier one of the same key."""
    merged: dict[str, str] = {}
    for group in groups:
        for override in group:
            key = override.split("=", 1)[0].lstrip("+~")
            merged.pop(key, None)  # the later value also takes the later position
            merged[key] = override
    return list(merged.values())


def side_command(side: str, extra: list[str], run_dir: Path, old_code: Path | None) -> tuple[list[str], Path]:
    """(argv, working directory) of one run of `side` ("old" or "new")."""
    settings = OLD_SETTINGS if side == "old" and old_code is None else []
    checkout = old_code if side == "old" and old_code is not None else REPO
    overrides = merge_overrides(MAIN_COMMAND, settings, extra, [f"run_dir={run_dir}"])
    return [sys.executable, "launch.py", *overrides], checkout


def run_child(argv: list[str], cwd: Path, log: Path) -> dict:
    """Run one child to its end: {"wall_s", "peak_rss_gb", "status"} (its own rusage, via wait4)."""
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    # Linux reports ru_maxrss in kilobytes
    return {"wall_s": wall, "peak_rss_gb": usage.ru_maxrss / 1e6, "status": proc.returncode}


def fit_seconds(run_dir: Path) -> float | None:
    from sweet_lightning.run_record import RunRecord

    try:
        record = RunRecord.read_completed(run_dir)
    except ValueError:  # a results.json this checkout cannot read (--old-code)
        return None
    return record.train_time_s if record is not None else None


def side_order(order: str, repeat: int) -> list[str]:
    first_old = order == "old-first" or (order == "alternate" and repeat % 2 == 0)
    return ["old", "new"] if first_old else ["new", "old"]


def build_parser() -> cli.Parser:
    p = cli.parser("python benchmarks/main_run.py", __doc__)
    p.add_argument("--repeat", type=cli.count(1), default=1, help="runs of each side")
    p.add_argument("--order", choices=ORDERS, default="alternate", help="which side runs first in a repeat")
    p.add_argument(
        "--extra",
        default="",
        help="overrides added to both sides, replacing the main command's same keys (quote them as one argument)",
    )
    p.add_argument(
        "--old-code",
        type=Path,
        default=None,
        metavar="DIR",
        help="run the old side from this checkout (its own defaults) instead of today's code with the old settings",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary run folder (its path is printed)")
    return p


def main(argv: list[str] | None = None) -> int:
    return cli.run_command(build_parser(), run, argv)


def run(args) -> int:
    if args.old_code is not None and not (args.old_code / "launch.py").is_file():
        raise ValueError(
            f"--old-code {args.old_code}: no launch.py there; give a checkout of the old commit."
        )
    extra = shlex.split(args.extra)
    default_glue_dir()  # the children inherit $GLUE_DIR
    tmp = Path(tempfile.mkdtemp(prefix="sl-main-run-"))
    print(header())
    for side in ("old", "new"):
        argv, cwd = side_command(side, extra, tmp / f"{side}-N", args.old_code)
        print(f"# {side}: (cd {cwd} && {shlex.join(['python', *argv[1:]])})")
    print(f"# runs in {tmp}{' (kept)' if args.keep else ' (deleted at the end)'}")
    print(f"{'repeat':<8}{'side':<6}{'wall_s':>9}{'fit_s':>9}{'peak_rss_gb':>13}{'status':>8}", flush=True)
    results: dict[str, list[dict]] = {"old": [], "new": []}
    failed = False
    try:
        for repeat in range(args.repeat):
            for side in side_order(args.order, repeat):
                run_dir = tmp / f"{side}-{repeat}"
                argv, cwd = side_command(side, extra, run_dir, args.old_code)
                result = run_child(argv, cwd, tmp / f"{side}-{repeat}.log")
                result["fit_s"] = fit_seconds(run_dir)
                results[side].append(result)
                fit = f"{result['fit_s']:.1f}" if result["fit_s"] is not None else "-"
                print(
                    f"{repeat:<8}{side:<6}{result['wall_s']:>9.1f}{fit:>9}{result['peak_rss_gb']:>13.2f}"
                    f"{result['status']:>8}",
                    flush=True,
                )
                if result["status"] != 0:
                    failed = True
                    tail = (tmp / f"{side}-{repeat}.log").read_text(errors="replace").splitlines()[-15:]
                    print("\n".join(f"#   {line}" for line in tail))
        summarise(results)
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return 1 if failed else 0


def summarise(results: dict[str, list[dict]]) -> None:
    medians = {}
    for side, runs in results.items():
        done = [r for r in runs if r["status"] == 0]
        if not done:
            print(f"# {side}: no completed run, no ratio")
            return
        fits = [r["fit_s"] for r in done if r["fit_s"] is not None]
        medians[side] = {
            "wall_s": statistics.median(r["wall_s"] for r in done),
            "fit_s": statistics.median(fits) if fits else None,
            "peak_rss_gb": max(r["peak_rss_gb"] for r in done),
        }
    old, new = medians["old"], medians["new"]
    fit = (
        f"; trainer.fit {old['fit_s']:.1f} s vs {new['fit_s']:.1f} s: {old['fit_s'] / new['fit_s']:.2f}x"
        if old["fit_s"] and new["fit_s"]
        else ""
    )
    print(
        f"# median wall time old {old['wall_s']:.1f} s, new {new['wall_s']:.1f} s: speedup old / new "
        f"{old['wall_s'] / new['wall_s']:.2f}x{fit}"
    )
    print(
        f"# peak RSS (max over runs) old {old['peak_rss_gb']:.2f} GB, new {new['peak_rss_gb']:.2f} GB "
        f"(new / old {new['peak_rss_gb'] / old['peak_rss_gb']:.2f})"
    )


if __name__ == "__main__":
    sys.exit(main())
