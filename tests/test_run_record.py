"""The run record (results.json) and the one evaluation path that fills it.

tests/fixtures/old_run holds what a tiny run wrote before the record existed (schema version 1:
per-exit scores stored twice, no schema_version); every reader must still use it.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from sweet_lightning.run_record import SCHEMA_VERSION, RecordError, RunRecord, flatten

OLD_RUN = Path(__file__).parent / "fixtures" / "old_run"


@pytest.fixture
def old_run(tmp_path) -> Path:
    run = tmp_path / "old_run"
    shutil.copytree(OLD_RUN, run)
    return run


def test_an_old_run_dir_loads_in_every_reader(old_run):
    from sweet_lightning import runs
    from sweet_lightning.console import end_of_run
    from sweet_lightning.evaluate import evaluate_run
    from sweet_lightning.inference.loading import SourceError, resolve_source
    from sweet_lightning.report.collect import load_run
    from sweet_lightning.wandb_logging import summary_values

    raw = json.loads((old_run / "results.json").read_text())
    assert "schema_version" not in raw and "exits" in raw["splits"]["dev"]  # really the old format
    record = RunRecord.load(old_run)
    assert record.schema_version == 1 and record.completed and record.primary_split == "dev"
    assert RunRecord.read_completed(old_run) == record  # what a re-launch keeps
    stored = record.evaluation["dev"]
    # the cost model was stored as `kind` then: it loads as cost_model, top level and per split
    assert record.cost_model == raw["kind"] == stored["cost_model"] == "early_exit" and "kind" not in stored

    # re-evaluated from its logits with its own settings: the numbers it stored. A temperature fitted
    # at the search bound sits on a flat NLL, where NumPy's exp/log kernels (chosen by the CPU's vector
    # extensions) can move it in the last bits; every score stays the same
    again, stored_all = evaluate_run(old_run), json.loads(json.dumps(record.evaluation))
    assert again.keys() == stored_all.keys()
    for name in stored_all:
        temps = again[name].pop("temperatures"), stored_all[name].pop("temperatures")
        assert temps[0] == pytest.approx(temps[1], rel=1e-6)
    assert again == stored_all
    run = load_run(old_run)
    assert run.status == "completed" and run.auc == stored["auc"]
    assert run.individual_scores == {e["layer"]: e["score"] for e in stored["exits"]}
    assert f"AUC          {stored['auc']:.4f}" in end_of_run(record, old_run)
    assert summary_values(record)["auc"] == stored["auc"]
    # a re-launch of the same config is skipped, with the stored metric
    cfg = OmegaConf.create(record.config)
    assert runs.completed_value(cfg, old_run) == record.metrics[cfg.optimized_metric]
    # the checkpoint is not kept in the fixture: the loader gets as far as looking for it
    with pytest.raises(SourceError, match="checkpoint not found"):
        resolve_source(old_run)


def test_save_and_load_keep_every_field_and_unknown_keys(tmp_path):
    record = RunRecord.from_dict(
        {"method": "sweet", "exit_layers": [1, 2], "schema_version": 2, "later": {"a": 1}}
    )
    record.save(tmp_path)
    again = RunRecord.load(tmp_path)
    assert again == record and again.extra == {"later": {"a": 1}}
    assert json.loads((tmp_path / "results.json").read_text())["later"] == {"a": 1}


@pytest.mark.parametrize("version", [None, 2])
def test_kind_of_older_records_is_read_as_cost_model(tmp_path, version):
    old = {
        "task": "rte",
        "exit_layers": [1, 2],
        "num_layers": 2,
        "kind": "cascade",
        "evaluation": {"dev": {"kind": "cascade", "auc": 0.5}},
    }
    if version is not None:
        old["schema_version"] = version
    (tmp_path / "results.json").write_text(json.dumps(old))
    record = RunRecord.load(tmp_path)
    assert record.cost_model == record.evaluation["dev"]["cost_model"] == "cascade"
    assert "kind" not in record.extra and record.eval_spec().cost_model == "cascade"
    record.schema_version = SCHEMA_VERSION  # saved again: the current names only
    record.save(tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert "kind" not in data and "kind" not in data["evaluation"]["dev"] and data["cost_model"] == "cascade"


def test_a_failed_record_holds_what_happened_and_the_config(tmp_path):
    from sweet_lightning import runs

    runs.record_failure(OmegaConf.create({"seed": 1}), tmp_path, ValueError("boom"))
    data = json.loads((tmp_path / "results.json").read_text())
    assert set(data) == {"schema_version", "status", "error", "traceback", "config"}
    assert (data["status"], data["error"], data["schema_version"]) == (
        "failed",
        "ValueError: boom",
        SCHEMA_VERSION,
    )
    assert not RunRecord.load(tmp_path).completed and RunRecord.read_completed(tmp_path) is None


@pytest.mark.parametrize(
    ("content", "problem"), [(b"[1]", "is not a results.json"), (b"{", "is not valid JSON")]
)
def test_an_unusable_record_is_one_line_naming_the_file(tmp_path, content, problem):
    (tmp_path / "results.json").write_bytes(content)
    with pytest.raises(RecordError) as err:
        RunRecord.load(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'results.json'} {problem}") and "\n" not in str(err.value)
    assert RunRecord.read_completed(tmp_path) is None and RunRecord.read_completed(tmp_path / "none") is None


def test_a_run_is_evaluated_once_per_validation_and_stores_each_score_once(glue_path, tmp_path, monkeypatch):
    import csv

    from sweep_utils import TINY, run_in_process

    from sweet_lightning.evaluation import callback

    calls = []
    real = callback.evaluate_logits
    monkeypatch.setattr(callback, "evaluate_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    run_in_process(TINY, tmp_path)
    # the one fit epoch, on dev and the calibration hold-out; its outputs are the reported ones, so
    # neither a final validation nor write_results evaluates them again
    assert len(calls) == 2
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["schema_version"] == SCHEMA_VERSION and set(data["splits"]["dev"]) == {
        "num_examples",
        "logits",
    }
    exits = data["evaluation"]["dev"]["exits"]
    assert data["metrics"]["val/score"] == exits[-1]["score"]  # the same float, not a float32 copy
    assert [data["metrics"][f"val/exit{i}/score"] for i in range(1, 5)] == [e["score"] for e in exits]
    with open(tmp_path / "csv" / "metrics.csv", newline="") as file:
        last = [row for row in csv.DictReader(file) if row.get("val/auc")][-1]
    for name in ("val/score", "val/auc", "val/calibration/auc", "val/dev/exit1/accuracy", "val/exit4/score"):
        assert np.isclose(float(last[name]), data["metrics"].get(name, exits[0]["score"]), rtol=1e-6), name


def test_flatten_drops_an_empty_group_unless_asked():
    # the report and reproduce compare values (an empty group holds none); the skip check must tell a
    # group set to {} from a missing one, so it keeps the empty group as a value
    tree = {"a": {"b": 1, "c": {}}, "d": [1, {"e": 2}]}
    assert flatten(tree) == {"a.b": 1, "d": [1, {"e": 2}]}
    assert flatten(tree, empty_groups=True) == {"a.b": 1, "a.c": {}, "d": [1, {"e": 2}]}
