"""Same command, same seed, same numbers: two launches of one command into two run dirs give
bit-identical logits and the same results.json (times and paths aside), even where the
environment asks for another thread count (OMP_NUM_THREADS), since the command fixes it."""

import json

import numpy as np
import pytest
from sweep_utils import TINY, launch, run_in_process

from sweet_lightning.reproduce import differences, main

# two epochs and the default callbacks, so epoch selection and the reload of best.ckpt are exercised
COMMAND = [*TINY, "method=sweet", "seed=5", "trainer.max_epochs=2", "lr=5e-4", "torch_threads=1"]


def test_same_command_twice_gives_bit_identical_numbers(glue_path, tmp_path, capsys):
    runs = [tmp_path / "a", tmp_path / "b"]
    # without torch_threads these two differ in the last bits of every logit
    for run, threads in zip(runs, ("1", "2"), strict=True):
        env = {"GLUE_DIR": str(glue_path), "OMP_NUM_THREADS": threads}
        proc = launch([*COMMAND, f"run_dir={run}"], tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in runs[0].glob("logits_*.npz")) == [
        "logits_calibration.npz",
        "logits_dev.npz",
    ]
    res = json.loads((runs[0] / "results.json").read_text())
    assert res["selection"]["epochs_seen"] == 2 and res["environment"]["threads"] == 1
    assert differences(*runs) == []
    assert main([str(r) for r in runs]) == 0 and capsys.readouterr().out.startswith("identical")

    # the comparison sees one flipped bit of one logit, and one changed number in results.json
    with np.load(runs[1] / "logits_dev.npz") as data:
        arrays = {k: data[k].copy() for k in data.files}
    arrays["logits"].view(np.uint32)[0, 0, 0] ^= 1
    np.savez_compressed(runs[1] / "logits_dev.npz", **arrays)
    other = json.loads((runs[1] / "results.json").read_text())
    other["evaluation"]["dev"]["auc"] += 1e-12
    (runs[1] / "results.json").write_text(json.dumps(other))
    found = differences(*runs)
    assert found[0].startswith("logits_dev.npz: logits differs") and len(found) == 2
    assert found[1].startswith("results.json evaluation.dev.auc")
    assert main([str(r) for r in runs]) == 1


def test_bad_input(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "results.json not found" in capsys.readouterr().err


def test_bad_torch_threads_is_one_line(glue_path, tmp_path):
    with pytest.raises(ValueError, match=r"^torch_threads=0 must be >= 1 \(or null for torch's default\)\.$"):
        run_in_process([*TINY, "torch_threads=0"], tmp_path)


def test_run_of_older_code_compares_with_a_new_one(tmp_path):
    """An older record (`kind`, no schema_version, no constructor nodes in its config) and the same run
    written by today's code are the same numbers: only a real difference is listed."""
    import shutil
    from pathlib import Path

    old = Path(__file__).parent / "fixtures" / "old_run"
    new = tmp_path / "new"
    shutil.copytree(old, new)
    data = json.loads((new / "results.json").read_text())
    data = {("cost_model" if k == "kind" else k): v for k, v in data.items()}
    for split in data["evaluation"].values():
        split["cost_model"] = split.pop("kind")
    data["schema_version"] = 3
    data["config"]["module"] = {"task": data["config"]["task"]["name"]}  # a node the old code lacked
    (new / "results.json").write_text(json.dumps(data))
    assert differences(old, new) == []
    data["evaluation"]["dev"]["auc"] += 1e-9
    (new / "results.json").write_text(json.dumps(data))
    assert [d.split(":")[0] for d in differences(old, new)] == ["results.json evaluation.dev.auc"]


def test_keeping_freed_memory_changes_no_number(glue_path, tmp_path):
    """keep_freed_memory only decides where freed memory waits between steps: the same logits, bit
    for bit, and the same results.json but for the key itself."""
    runs = {keep: tmp_path / keep for keep in ("true", "false")}
    for keep, run in runs.items():
        env = {"GLUE_DIR": str(glue_path)}
        proc = launch([*COMMAND, f"keep_freed_memory={keep}", f"run_dir={run}"], tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert differences(*runs.values()) == ["results.json config.keep_freed_memory: True vs False"]
