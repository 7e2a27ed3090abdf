"""Training steps with freed memory kept in the C heap (`keep_freed_memory`, the default) and without.

glibc's malloc returns large freed blocks to the operating system and faults them back in page by
page at the next step (sweet_lightning/host.py). Whether it does is fixed per process, so each side
runs `benchmarks/train_step.py` in its own child process: the same contenders (a plain HF step, every
method, the cascade's members), the same batches, the same seeds. Sides alternate over `--repeat`
rounds, so a machine warming up or slowing down does not favour one. Prints each contender's median
ms/step on both sides and the ratio release / keep (> 1: keeping the memory is faster).

    python benchmarks/allocator.py [--repeat 2] [--steps 4] [--threads 2] [--extra '--seq-len 64']
"""

from __future__ import annotations

import shlex
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import header  # noqa: E402
from sweet_lightning import cli  # noqa: E402

SIDES = {"keep": [], "release": ["--no-keep-memory"]}


def step_table(output: str) -> dict[str, float]:
    """{contender: ms/step} from train_step.py's table."""
    rows, inside = {}, False
    for line in output.splitlines():
        if line.startswith("method "):
            inside = True
        elif inside and line and not line.startswith("#"):
            name, ms = line.split()[:2]
            rows[name] = float(ms)
        elif inside:
            break
    return rows


def build_parser() -> cli.Parser:
    p = cli.parser("python benchmarks/allocator.py", __doc__)
    p.add_argument("--repeat", type=cli.count(1), default=2, help="rounds; each runs both sides once")
    p.add_argument("--steps", type=cli.count(1), default=4, help="timed steps per contender and child")
    p.add_argument("--threads", type=cli.count(1), default=2, metavar="N", help="torch threads of each child")
    p.add_argument(
        "--extra", default="", help="more train_step.py options for both sides, e.g. '--seq-len 64'"
    )
    return p


def run(args) -> None:
    print(header())
    script = Path(__file__).resolve().parent / "train_step.py"
    base = [sys.executable, str(script), "--fused", "--rounds", "1", "--steps", str(args.steps)]
    base += ["--threads", str(args.threads), *shlex.split(args.extra)]
    times: dict[str, dict[str, list[float]]] = {side: {} for side in SIDES}
    for r in range(args.repeat):
        for side in list(SIDES) if r % 2 == 0 else list(SIDES)[::-1]:
            proc = subprocess.run(base + SIDES[side], capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"error: train_step.py ({side}) failed:\n{proc.stderr[-2000:]}")
            for name, ms in step_table(proc.stdout).items():
                times[side].setdefault(name, []).append(ms)
            print(f"# round {r}, {side}: {len(step_table(proc.stdout))} contenders", flush=True)
    print(f"# {shlex.join(base[1:])} [--no-keep-memory]; medians over {args.repeat} child run(s) per side")
    print(f"{'contender':<18}{'keep_ms':>10}{'release_ms':>12}{'release/keep':>14}")
    for name, kept in times["keep"].items():
        keep, release = statistics.median(kept), statistics.median(times["release"][name])
        print(f"{name:<18}{keep:>10.1f}{release:>12.1f}{release / keep:>14.3f}")


def main(argv: list[str] | None = None) -> int:
    return cli.run_command(build_parser(), run, argv, errors=())


if __name__ == "__main__":
    sys.exit(main())
