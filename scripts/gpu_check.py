"""Check the GPU path end to end: `trainer=gpu` (bf16-mixed) trains each method, and the inference
engine on CUDA takes the exits the run's own evaluation took.

    GLUE_DIR=... python scripts/gpu_check.py --out gpu_check/            # tiny BERT, a minute or two
    GLUE_DIR=... python scripts/gpu_check.py --out gpu_check/ --model minilm_l6 \\
        --overrides experiment=cpu_repro lr=5e-5 seed=1                   # a reproduction run, on a GPU

For each method it
  1. trains with `python launch.py ... trainer=gpu` and checks that the run completed, in bf16-mixed,
     on a CUDA device (results.json's `environment.device`);
  2. loads the run with `AdaptiveClassifier.from_checkpoint(run, device="cuda")`, which follows the
     run's precision (bf16), classifies the whole dev file, and compares each row's exit and label
     with what the run's cached dev logits give at the same threshold (`simulate_exits`): the share
     of rows that agree. Both sides are bf16 forwards of other batches, so rows whose confidence
     sits within bf16 noise of the threshold may go the other way; nothing else may;
  3. runs the same classifier in float32 on CUDA and on the CPU: these must agree on every row
     (float32 noise is ~1e-6; the threshold sits in the widest gap between the middle rows'
     confidences) -- a check of the engine's CUDA code path itself;
  4. times the engine over the dev file (bf16 CUDA, float32 CUDA, float32 CPU) and prints the ratios.

Prints one line per check and a summary table; writes `summary.json` under --out; exits 1 when a
check fails. A completed run already under --out is checked again, not retrained. Needs a CUDA
GPU; what it printed on an H200 is in docs/gpu.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sweet_lightning import cli  # noqa: E402
from sweet_lightning.evaluation import simulate_exits  # noqa: E402
from sweet_lightning.evaluation.temperature import tempered_softmax  # noqa: E402
from sweet_lightning.inference import AdaptiveClassifier  # noqa: E402
from sweet_lightning.inference.inputs import read_texts  # noqa: E402
from sweet_lightning.run_record import RunRecord, load_logits  # noqa: E402
from sweet_lightning.tasks import get_task  # noqa: E402

TRAINER = {"cuda": ["trainer=gpu"], "cpu": ["trainer=cpu", "trainer.precision=bf16-mixed"]}
MIN_BF16_AGREEMENT = 0.98  # engine (bf16, CUDA) vs the run's cached bf16 logits, rows agreeing


def build_parser() -> cli.Parser:
    p = cli.parser("python scripts/gpu_check.py", __doc__)
    p.add_argument("--out", type=Path, required=True, help="folder for the runs and summary.json")
    p.add_argument("--task", default="sst2", help="GLUE task name (conf/task/glue/<task>.yaml)")
    p.add_argument("--model", default="tiny_bert", help="conf/model name")
    p.add_argument(
        "--methods", nargs="+", default=["early_exit", "sweet", "cascade"], help="methods to train and serve"
    )
    p.add_argument(
        "--train-size", type=int, default=1000, help="training examples (ignored with an experiment)"
    )
    p.add_argument("--epochs", type=int, default=1, help="epochs per run (ignored with an experiment)")
    p.add_argument(
        "--overrides", nargs="*", default=[], help="more launch.py overrides, e.g. experiment=cpu_repro"
    )
    p.add_argument("--batch-size", type=int, default=64, help="engine batch size")
    # cpu: the same checks with trainer=cpu in bf16-mixed, to try the script on a machine without a GPU
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help=argparse.SUPPRESS)
    return p


def train(method: str, args: argparse.Namespace) -> tuple[Path, float]:
    run_dir = (args.out / method).resolve()
    if RunRecord.read_completed(run_dir) is not None:
        print(f"{method}: reusing the completed run in {run_dir}", flush=True)
        return run_dir, float("nan")  # its own train_time_s stays in the summary
    experiment = any(o.startswith("experiment=") for o in args.overrides)
    sizes = [] if experiment else [f"train_size={args.train_size}", f"trainer.max_epochs={args.epochs}"]
    cmd = [
        sys.executable, "launch.py", f"method={method}", f"task=glue/{args.task}", f"model={args.model}",
        *args.overrides, *TRAINER[args.device], "logger=csv", "keep_checkpoints=true",
        "trainer.enable_progress_bar=false", *sizes, f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    with open(args.out / f"{method}.log", "w") as log:
        code = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if code != 0:
        tail = (args.out / f"{method}.log").read_text().splitlines()[-25:]
        raise SystemExit(f"training {method} failed (exit {code}):\n" + "\n".join(tail))
    return run_dir, wall


def timed_predict(clf: AdaptiveClassifier, texts, threshold: float, batch_size: int, device: str):
    """The predictions and the median time of 3 passes over `texts`, after one untimed pass (the
    first pass on a GPU also pays for CUDA's one-time set-up: seconds, not the engine's speed)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    for _ in range(4):
        sync()
        start = time.perf_counter()
        out = clf.predict(texts, threshold=threshold, batch_size=batch_size)
        sync()
        times.append(time.perf_counter() - start)
    return out, float(np.median(times[1:]))


def check_run(method: str, run_dir: Path, wall: float, args: argparse.Namespace) -> dict:
    record = RunRecord.load(run_dir)
    precision = record.config["trainer"]["precision"]
    device = (record.environment or {}).get("device", "")
    checks = {
        "completed": record.completed,
        "trained in bf16-mixed": precision == "bf16-mixed",
        f"trained on {args.device}": device.startswith(args.device),
    }
    split = record.primary_split
    cached = load_logits(run_dir, split)
    task = get_task(args.task)
    texts = read_texts(Path(os.environ["GLUE_DIR"]) / task.glue_dir / dict(task.eval_files)[split], task)
    checks["dev rows match the cached logits"] = len(texts) == cached["logits"].shape[1]
    temps = np.asarray(record.temperatures)
    # a threshold that splits the rows between early and late exits: the middle of the widest gap
    # between first-exit confidences in their middle fifth, so that float noise flips no row
    conf = np.sort(tempered_softmax(cached["logits"][0], temps[0]).max(-1))
    middle = conf[int(0.4 * len(conf)) : int(0.6 * len(conf)) + 1]
    gap = int(np.argmax(np.diff(middle)))
    threshold = float((middle[gap] + middle[gap + 1]) / 2)
    expected = simulate_exits(cached["logits"], threshold, record.exit_policy, temps)

    bf16 = AdaptiveClassifier.from_checkpoint(run_dir, device=args.device)
    checks["engine follows the run's bf16"] = bool(bf16.engine.bf16)
    out_bf16, t_bf16 = timed_predict(bf16, texts, threshold, args.batch_size, args.device)
    agree = (out_bf16.exit_index == expected.exit_index) & (out_bf16.label_ids == expected.predictions)
    checks[f"bf16 engine agrees with cached logits on >= {MIN_BF16_AGREEMENT:.0%} of rows"] = (
        agree.mean() >= MIN_BF16_AGREEMENT
    )
    fp32_cuda = AdaptiveClassifier.from_checkpoint(run_dir, device=args.device, bf16=False)
    out_cuda, t_cuda = timed_predict(fp32_cuda, texts, threshold, args.batch_size, args.device)
    fp32_cpu = AdaptiveClassifier.from_checkpoint(run_dir, device="cpu", bf16=False)
    out_cpu, t_cpu = timed_predict(fp32_cpu, texts, threshold, args.batch_size, "cpu")
    same = (out_cuda.exit_index == out_cpu.exit_index) & (out_cuda.label_ids == out_cpu.label_ids)
    checks["float32 engine: CUDA == CPU on every row"] = bool(same.all())
    return {
        "method": method,
        "train_wall_s": round(wall, 1),
        "train_time_s": record.train_time_s,
        "device": device,
        "precision": precision,
        "dev_last_exit": record.metrics.get("val/score"),
        "dev_auc": record.metrics.get("val/auc"),
        "threshold": threshold,
        "rows": len(texts),
        "bf16_agreement": float(agree.mean()),
        "fp32_cuda_cpu_agreement": float(same.mean()),
        "engine_speedup": out_bf16.speedup,
        "exit_fractions_bf16": np.bincount(out_bf16.exit_index, minlength=len(record.exit_layers)).tolist(),
        "engine_s": {
            "bf16_cuda": round(t_bf16, 4),
            "fp32_cuda": round(t_cuda, 4),
            "fp32_cpu": round(t_cpu, 4),
        },
        "rows_per_s_bf16_cuda": round(len(texts) / t_bf16, 1),
        "checks": {k: bool(v) for k, v in checks.items()},
    }


def main(argv=None) -> int:
    # a bad option is one line on stderr and exit status 2, as in every tool of the package
    return cli.run_command(build_parser(), run, argv, errors=())


def run(args: argparse.Namespace) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "no CUDA device: this script checks the GPU path; run it on a machine with one", file=sys.stderr
        )
        return 2
    if not os.environ.get("GLUE_DIR"):
        print("set GLUE_DIR to a folder in the GLUE TSV layout (it reads <task>/dev.tsv)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if args.device == "cuda":
        print(
            f"torch {torch.__version__}, {torch.cuda.get_device_name()}, bf16 {torch.cuda.is_bf16_supported()}"
        )
    rows, failed = [], []
    for method in args.methods:
        run_dir, wall = train(method, args)
        row = check_run(method, run_dir, wall, args)
        rows.append(row)
        for name, ok in row["checks"].items():
            print(f"{'PASS' if ok else 'FAIL'}  {method}: {name}", flush=True)
            if not ok:
                failed.append(f"{method}: {name}")
    (args.out / "summary.json").write_text(json.dumps(rows, indent=2))
    print()
    print(f"{'method':12} {'fit s':>8} {'dev last':>8} {'dev AUC':>8} {'bf16 agree':>10} {'rows/s bf16':>11}"
          f" {'fp32 cuda/cpu time':>18} {'bf16/fp32 cuda time':>19}")  # fmt: skip
    for r in rows:
        s = r["engine_s"]
        print(
            f"{r['method']:12} {r['train_time_s']:8.1f} {r['dev_last_exit']:8.4f} {r['dev_auc']:8.4f}"
            f" {r['bf16_agreement']:10.4f} {r['rows_per_s_bf16_cuda']:11.1f}"
            f" {s['fp32_cuda'] / s['fp32_cpu']:18.3f} {s['bf16_cuda'] / s['fp32_cuda']:19.3f}"
        )
    if failed:
        print(f"\n{len(failed)} check(s) failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
