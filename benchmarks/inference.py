"""Adaptive inference: layer-count speedup (paper eq. 1) next to measured time, and engine
throughput next to a plain Hugging Face forward. Measured side by side in one process on the
same pre-tokenised batches; contenders alternate batch by batch (order rotated) and each
batch's time is its best over rounds, so machine noise hits all of them alike.

    python benchmarks/inference.py <run_dir or .ckpt> --batch-sizes 1 16 64
    python benchmarks/inference.py --random minilm_l6 --batch-sizes 1 16 --num-examples 48

--random NAME builds untrained modules (the backbone of conf/model/NAME.yaml, pretrained unless
it says random_init; random exit heads) for Early-Exit (= SWEET at inference) and the cascade,
so it runs anywhere.
The older spelling `batch_sizes=[1,16] threads=1` still works (deprecated; docs/cli.md).

Texts: the task's dev split from $GLUE_DIR (or a shared/glue above the checkout) if present, else synthetic.
A trained run is timed in its own precision (bf16 autocast for a bf16 run; the plain HF forward too).
Time fraction = time with exits / time of the same model running all layers (a cascade: its
largest member alone), on the same inputs, batch by batch in length-sorted order.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import header  # noqa: E402
from sweet_lightning import cli  # noqa: E402
from sweet_lightning.evaluation import PerExitPolicy, simulate_exits, softmax, speedup  # noqa: E402
from sweet_lightning.inference import AdaptiveClassifier, length_sorted_batches  # noqa: E402
from sweet_lightning.inference.classifier import THRESHOLD_GRID  # noqa: E402
from sweet_lightning.inference.inputs import read_texts  # noqa: E402
from sweet_lightning.methods import METHODS  # noqa: E402
from sweet_lightning.modeling import load_tokenizer  # noqa: E402


def build_parser() -> cli.Parser:
    p = cli.parser("python benchmarks/inference.py", __doc__, key_values=True)
    p.add_argument(
        "source", nargs="?", metavar="RUN_DIR_OR_CKPT", help="a trained run dir or .ckpt (or --random)"
    )
    p.add_argument(
        "--random",
        nargs="?",
        const="minilm_l6",
        metavar="NAME",
        help="untrained exit heads on the backbone of conf/model/NAME.yaml instead of a trained run "
        "(default NAME: minilm_l6)",
    )
    p.add_argument(
        "--batch-sizes",
        type=cli.count(1),
        nargs="+",
        default=[1, 16, 64],
        metavar="N",
        help="batch sizes timed",
    )
    p.add_argument("--num-examples", type=cli.count(1), default=64, metavar="N", help="texts timed")
    p.add_argument("--rounds", type=cli.count(1), default=3, help="rounds; each batch counts its best")
    p.add_argument("--policy", metavar="NAME", help="exit policy (default: the run's, else confidence)")
    p.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        metavar="T",
        help="thresholds timed (default: a trained run: the policy's curve; --random: those whose "
        "simulated speedup on these inputs comes closest below --targets)",
    )
    p.add_argument(
        "--targets",
        type=float,
        nargs="+",
        default=[0.3, 0.5, 0.7, 0.9],
        metavar="S",
        help="--random only: the speedups the thresholds aim at",
    )
    p.add_argument("--task", default="sst2", help="--random only: the GLUE task of the heads and texts")
    p.add_argument(
        "--methods",
        nargs="+",
        default=["early_exit", "cascade"],
        metavar="METHOD",
        help="--random only: the methods built",
    )
    cli.add_host(p)
    return p


def random_classifiers(
    model_name: str, task: str, methods: list[str], policy: str
) -> dict[str, AdaptiveClassifier]:
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "conf" / "model" / f"{model_name}.yaml")
    tokenizer = load_tokenizer(cfg.pretrained)
    out = {}
    for method in methods:
        torch.manual_seed(0)
        module = METHODS[method](
            task=task,
            pretrained=cfg.pretrained,
            exit_layers=list(cfg.exit_layers),
            exit_pooling=cfg.exit_pooling,
            dropout=0.0,
            random_init=bool(cfg.random_init),
            config_overrides=OmegaConf.to_container(cfg.config_overrides) if cfg.config_overrides else None,
        )
        out[method] = AdaptiveClassifier(module, tokenizer, policy=policy or "confidence")
    return out


def bench_texts(task, n: int) -> tuple[list, str]:
    # $GLUE_DIR, else a shared/glue beside the checkout (or beside a worktree folder above it)
    roots = [Path(os.environ["GLUE_DIR"])] if os.environ.get("GLUE_DIR") else []
    roots += [parent / "shared" / "glue" for parent in REPO.parents]
    split_file = dict(task.eval_files)[task.eval_splits[0]]
    dev = next(
        (r / task.glue_dir / split_file for r in roots if (r / task.glue_dir / split_file).exists()), None
    )
    if dev is not None and task.has_header:
        texts = read_texts(dev, task)
        rng = np.random.default_rng(0)
        return [
            texts[i] for i in rng.choice(len(texts), min(n, len(texts)), replace=False)
        ], f"{task.name} dev"
    rng = np.random.default_rng(0)
    words = "the film was a quiet and often funny look at life in small towns but never quite works".split()

    def sentence() -> str:
        return " ".join(rng.choice(words, int(rng.integers(3, 40))))

    pairs = len(task.text_keys) == 2
    return [(sentence(), sentence()) if pairs else sentence() for _ in range(n)], "synthetic"


def batched(clf: AdaptiveClassifier, encodings: list[dict], batch_size: int) -> list[dict]:
    """The encodings padded into batches of similar length, as `predict` batches them."""
    lengths = [len(e["input_ids"]) for e in encodings]
    return [clf.collate([encodings[i] for i in rows]) for rows in length_sorted_batches(lengths, batch_size)]


def full_logits(clf: AdaptiveClassifier, batches) -> tuple[np.ndarray, np.ndarray | None]:
    """Every exit's logits [E, N, C] (and sigmoid exit scores) for the batches, in batch order."""
    logits, scores = [], []
    with torch.inference_mode(), clf.engine.autocast():  # the precision the engine runs in
        for b in batches:
            lg, sc = clf.module.forward_with_scores(b)
            logits.append(torch.stack(lg).float().numpy())
            if sc[0] is not None:
                scores.append(torch.sigmoid(torch.stack(sc).float()).numpy())
    return np.concatenate(logits, axis=1), (np.concatenate(scores, axis=1) if scores else None)


def exit_statistic(clf: AdaptiveClassifier, logits: np.ndarray, scores) -> np.ndarray | None:
    """What the policy compares with its threshold at each exit, [E, N] (the policy's own
    definition); None for a policy that reads earlier exits too (patience)."""
    if not isinstance(clf.policy, PerExitPolicy):
        return None
    return clf.policy.statistic(softmax(logits / clf.temperatures[:, None, None]), scores)


def candidate_thresholds(clf: AdaptiveClassifier, logits: np.ndarray, scores) -> np.ndarray:
    """The policy's own grid plus points between the observed values of its statistic on these
    inputs (untrained heads have confidences packed near 1/C, which a uniform grid steps over)."""
    num_exits, _, num_classes = logits.shape
    grid = clf.policy.default_thresholds(num_exits, num_classes, THRESHOLD_GRID)
    stat = exit_statistic(clf, logits, scores)
    if stat is None:
        return grid
    # midway between observed values: a threshold equal to a row's value would let float
    # rounding (which differs between batch sizes) decide that row
    values = np.unique(stat[:-1])
    mids = (values[1:] + values[:-1]) / 2
    mids = mids[np.linspace(0, len(mids) - 1, min(len(mids), 400)).astype(int)] if len(mids) else mids
    return np.unique(np.concatenate([grid, mids]))


def pick_thresholds(clf, logits, scores, targets: list[float]) -> list[float]:
    simulated = []
    for t in candidate_thresholds(clf, logits, scores):
        exits = simulate_exits(logits, t, clf.policy, clf.temperatures, scores).exit_index
        simulated.append((speedup(exits, clf.exit_layers, clf.num_layers, clf.cost_model), float(t)))
    picked = []
    for target in targets:
        below = [s for s in simulated if s[0] <= target]
        if below:
            picked.append(max(below)[1])
    return sorted(set(picked), key=lambda t: [s for s, x in simulated if x == t][0])


def interleaved(contenders: dict[str, Callable], batches: list, rounds: int) -> dict[str, float]:
    """Seconds per contender for all batches: batch by batch, every contender runs the same
    batch back to back (order rotated), so they see the same machine state; each batch's time
    is its best over rounds (on a shared machine noise only ever adds time)."""
    names = list(contenders)
    for name in names:  # warm-up (allocator, first-call paths)
        contenders[name](batches[0])
    best = {name: [float("inf")] * len(batches) for name in names}
    for r in tqdm(range(rounds), desc="rounds", unit="round", disable=None, leave=False):
        for j, batch in enumerate(batches):
            k = (r + j) % len(names)
            for name in names[k:] + names[:k]:
                start = time.perf_counter()
                contenders[name](batch)
                best[name][j] = min(best[name][j], time.perf_counter() - start)
    return {name: sum(v) for name, v in best.items()}


def run_exits(clf: AdaptiveClassifier, threshold: float, batch) -> None:
    clf.engine.run(batch, threshold)


def run_all_layers(clf: AdaptiveClassifier, batch) -> None:
    clf.engine.run_full(batch).argmax(-1).tolist()  # the same host sync as the engine's decisions


def hf_forward(hf, autocast, batch) -> None:
    with torch.inference_mode(), autocast():
        hf(**batch).logits.argmax(-1).tolist()


def speed_table(name: str, clf: AdaptiveClassifier, texts, batch_sizes, thresholds, targets, rounds) -> None:
    encodings = clf.tokenize(texts)
    print(
        f"\n== {name} ({clf.cost_model}): exits {clf.exit_layers} of {clf.num_layers}, policy {clf.policy.name} =="
    )
    print(
        f"{'threshold':>10} {'batch':>5} {'layer_speedup':>13} {'time_fraction':>13} "
        f"{'ms_exits':>9} {'ms_all_layers':>13}"
    )
    if not thresholds:  # exits do not depend on batching: choose once
        logits, scores = full_logits(clf, batched(clf, encodings, 32))
        thresholds = pick_thresholds(clf, logits, scores, targets)
    for bs in batch_sizes:
        batches = batched(clf, encodings, bs)
        for t in thresholds:
            exits = np.concatenate([clf.engine.run(b, t).exit_index for b in batches])
            layer_speedup = speedup(exits, clf.exit_layers, clf.num_layers, clf.cost_model)
            timed = interleaved(
                {"exits": partial(run_exits, clf, t), "all": partial(run_all_layers, clf)}, batches, rounds
            )
            print(
                f"{t:>10.4f} {bs:>5} {layer_speedup:>13.3f} {timed['exits'] / timed['all']:>13.3f} "
                f"{1e3 * timed['exits']:>9.1f} {1e3 * timed['all']:>13.1f}"
            )


def never_exit(clf: AdaptiveClassifier) -> float:
    """The end of the policy's range where no exit before the last may answer (its own
    `only_last_exit_answers`): the engine then skips those exits' heads (a cascade: its smaller
    members) altogether."""
    num_exits = len(clf.exit_layers)
    grid = clf.policy.default_thresholds(num_exits, clf.task.num_labels)
    return next(float(t) for t in grid if clf.policy.only_last_exit_answers(float(t), num_exits))


def evaluated_no_exit(clf: AdaptiveClassifier, batches) -> float | None:
    """A threshold at which every exit is evaluated (head + decision) but no row leaves before
    the last: halfway past every row's statistic at the earlier exits, towards the never-exit end
    of the range (1, or 0 for a statistic that must fall to the threshold). None if there is none
    (patience, or a statistic already at the end of the range)."""
    stat = exit_statistic(clf, *full_logits(clf, batches))
    if stat is None:
        return None
    if not clf.policy.leaves_above:
        low = float(stat[:-1].min())
        return low / 2 if low > 0 else None
    high = float(stat[:-1].max())
    return (high + 1) / 2 if high < 1 else None


def throughput_table(clf: AdaptiveClassifier, texts, batch_sizes, rounds) -> None:
    from transformers import AutoModelForSequenceClassification

    # the same architecture as the engine's full model (config overrides included); weights
    # do not matter for timing
    net = clf.module.net.members[-1] if clf.cost_model == "cascade" else clf.module.net
    config = copy.deepcopy(net.encoder.config)
    config.num_labels = clf.task.num_labels
    hf = AutoModelForSequenceClassification.from_config(config).eval()
    encodings = clf.tokenize(texts)
    print(
        f"\n== throughput, all layers (examples/s): plain HF forward vs this engine, best of {2 * rounds} =="
    )
    print(
        f"{'batch':>5} {'hf_plain':>9} {'engine_no_exit':>14} {'ratio':>6} {'engine_t_never':>14} {'ratio':>6} "
        f"{'engine_run_full':>15} {'ratio':>6}"
    )
    for bs in batch_sizes:
        batches = batched(clf, encodings, bs)
        t_none = evaluated_no_exit(clf, batches)
        contenders = {
            "hf": partial(hf_forward, hf, clf.engine.autocast),  # same precision as the engine
            "never": partial(run_exits, clf, never_exit(clf)),
            "full": partial(run_all_layers, clf),
        }
        if t_none is not None:
            contenders["engine"] = partial(run_exits, clf, t_none)
        # the ratio to the 0.95 goal is the number most read: more rounds
        timed = interleaved(contenders, batches, 2 * rounds)
        n, hf_s = len(texts), timed["hf"]
        engine = (
            f"{n / timed['engine']:>14.1f} {hf_s / timed['engine']:>6.3f}"
            if t_none is not None
            else f"{'-':>14} {'-':>6}"
        )
        print(
            f"{bs:>5} {n / hf_s:>9.1f} {engine} {n / timed['never']:>14.1f} {hf_s / timed['never']:>6.3f} "
            f"{n / timed['full']:>15.1f} {hf_s / timed['full']:>6.3f}"
        )
    print(
        "engine_no_exit: every exit evaluated (head + decision), none taken; engine_t_never: the policy's "
        "never-exit end, where only the last head runs"
    )


def main(argv: list[str] | None = None) -> int:
    return cli.run_command(build_parser(), run, argv, errors=())


def run(args) -> None:
    if (args.source is None) == (args.random is None):
        raise cli.UsageError("give a run dir / .ckpt, or --random minilm_l6 (see --help)")
    import transformers

    transformers.logging.set_verbosity_error()  # keep the table readable (load reports, bars)
    transformers.utils.logging.disable_progress_bar()
    batch_sizes, thresholds, targets, rounds = (
        args.batch_sizes,
        args.thresholds or [],
        args.targets,
        args.rounds,
    )
    cli.configure_host(args)
    if args.random:
        classifiers = random_classifiers(args.random, args.task, args.methods, args.policy)
        backbone = "random" if next(iter(classifiers.values())).module.hparams.random_init else "pretrained"
        label = f"--random {args.random} ({backbone} backbone, untrained exit heads)"
    else:
        clf = AdaptiveClassifier.from_checkpoint(args.source, policy=args.policy or None)
        classifiers = {clf.module.method: clf}
        label = str(args.source)
        if not thresholds:  # the run's curve: the policy's default thresholds
            logits_shape = (len(clf.exit_layers), clf.task.num_labels)
            thresholds = clf.policy.default_thresholds(logits_shape[0], logits_shape[1]).tolist()
    first = next(iter(classifiers.values()))
    texts, text_source = bench_texts(first.task, args.num_examples)
    mean_tokens = np.mean([len(e["input_ids"]) for e in first.tokenize(texts)])
    print(header())
    print(
        f"model: {label}; inputs: {len(texts)} {text_source} texts, mean {mean_tokens:.1f} tokens; "
        f"best of {rounds} rounds"
    )
    for name, clf in classifiers.items():
        speed_table(name, clf, texts, batch_sizes, thresholds, targets, rounds)
    throughput_table(first, texts, batch_sizes, rounds)


if __name__ == "__main__":
    sys.exit(main())
