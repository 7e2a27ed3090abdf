"""What reaches W&B, read back from the offline run files the real wandb package writes (no mock), and
what a run prints on the console."""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import compose
from sweep_utils import TINY, job_dirs, launch, results
from wandb_records import offline_runs, read_run

from sweet_lightning.evaluation import evaluate_logits
from sweet_lightning.run_record import RunRecord

CONFIG = {
    "method": {"name": "sweet"},
    "task": {"name": "rte"},
    "model": {"name": "tiny_bert", "exit_layers": [1, 2, 3, 4], "exit_pooling": "cls"},
    "lr": 2e-5,
    "seed": 3,
    "exit_policy": "confidence",
}


def fake_results(run_dir: Path) -> dict:
    """A results.json (and logits) as write_results makes it, around a real evaluation of random logits."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 64)
    logits = rng.normal(size=(4, 64, 2))
    logits[:, np.arange(64), labels] += np.array([0.2, 0.6, 1.0, 2.0])[:, None]  # later exits better
    ev = evaluate_logits(
        logits, labels, [1, 2, 3, 4], 4, calibration_logits=logits, calibration_labels=labels
    )
    np.savez(run_dir / "logits_dev.npz", logits=logits, labels=labels)
    res = {
        "method": "sweet",
        "task": "rte",
        "model": "tiny_bert",
        "seed": 3,
        "lr": 2e-5,
        "exit_layers": [1, 2, 3, 4],
        "exit_policy": "confidence",
        "primary_split": "dev",
        "evaluation": {"dev": ev},
        "collapsed_exits": [],
        "train_time_s": 1.5,
        "status": "completed",
    }
    (run_dir / "results.json").write_text(json.dumps(res))
    return res


def table_rows(run_dir: Path, summary: dict, key: str) -> list[list]:
    """The rows of the table behind a logged chart (`<key>_table`), from the file wandb wrote."""
    return json.loads((run_dir / "files" / summary[f"{key}_table.path"]).read_text())["data"]


def check_charts(offline: Path, run, res: dict, prefix: str = "final") -> None:
    ev = res["evaluation"][res["primary_split"]]
    line = run.config[f"_wandb.visualize.{prefix}/speed_accuracy"]["panel_config"]
    assert line["panelDefId"] == "wandb/line/v0"
    assert (line["fieldSettings"]["x"], line["fieldSettings"]["y"]) == ("speedup", "score")
    assert table_rows(offline, run.summary, f"{prefix}/speed_accuracy") == [
        [p["threshold"], p["speedup"], p["score"]] for p in ev["curve"]
    ]
    bars = run.config[f"_wandb.visualize.{prefix}/individual_scores"]["panel_config"]
    assert bars["panelDefId"] == "wandb/bar/v0"
    assert [row[1:] for row in table_rows(offline, run.summary, f"{prefix}/individual_scores")] == [
        [e["layer"], e["score"]] for e in ev["exits"]
    ]
    assert run.summary["auc"] == ev["auc"]
    for point, score in ev["at_speedup"].items():
        assert run.summary[f"score@{float(point):g}"] == score
    for e in ev["exits"]:
        assert run.summary[f"exit{e['exit']}/score"] == e["score"]


def test_final_evaluation_reads_back_as_charts_summary_config_and_artifact(tmp_path, monkeypatch):
    import wandb

    from sweet_lightning.wandb_logging import WandbLogger, attach_run_config, log_final

    monkeypatch.setenv("WANDB_MODE", "offline")  # the logger rewrites it; restored after the test
    res = fake_results(tmp_path)
    logger = WandbLogger(project="sweet_lightning", offline=True, save_dir=str(tmp_path), log_artifacts=True)
    attach_run_config([logger], CONFIG)
    logger.log_hyperparams({"task": "rte", "lr": 2e-5})  # what Lightning sends: the module's arguments
    log_final([logger], RunRecord.from_dict(res), tmp_path)
    wandb.finish()

    (offline,) = offline_runs(tmp_path)
    run = read_run(offline)
    check_charts(offline, run, res)
    # the resolved config stays nested (filter/group on method.name, model.exit_layers...); the module's
    # flat arguments do not overwrite its sections
    assert run.config["method"] == {"name": "sweet"}
    assert run.config["model"]["exit_layers"] == [1, 2, 3, 4]
    assert (run.config["lr"], run.config["seed"], run.config["exit_policy"]) == (2e-5, 3, "confidence")
    assert run.config["hparams"] == {"task": "rte", "lr": 2e-5}
    (artifact,) = [a for a in run.artifacts if a["type"] == "run-results"]
    assert sorted(Path(e["path"]).name for e in artifact["manifest"]["contents"]) == [
        "logits_dev.npz",
        "results.json",
    ]


def test_report_is_one_run_of_its_own(tmp_path):
    from sweet_lightning.report.__main__ import main
    from tests.fixtures.synthetic_sweep import make_sweep

    sweep = tmp_path / "my_sweep"
    make_sweep(sweep)
    assert main([str(sweep), "--out", str(tmp_path / "report"), "--wandb"]) == 0
    (offline,) = offline_runs(tmp_path / "report")
    run = read_run(offline)
    assert (run.run["job_type"], run.run["run_group"]) == ("report", "my_sweep")
    logged = {key.split(".")[0] for key in run.summary}
    assert {"tables/table1_exits", "tables/auc", "tables/curve_points", "figures/curves_minilm_l6"} <= logged
    rows = json.loads((offline / "files" / run.summary["tables/auc.path"]).read_text())["data"]
    assert len(rows) == len((tmp_path / "report" / "auc.csv").read_text().splitlines()) - 1


def test_runs_of_a_multirun_share_the_sweep_group():
    from hydra.core.hydra_config import HydraConfig

    cfg = compose(["hydra.mode=MULTIRUN", "hydra.sweep.dir=/somewhere/rte_grid", "model=tiny_bert"])
    HydraConfig.instance().set_config(cfg)
    assert cfg.logger.wandb.group == "rte_grid"
    cfg = compose(["model=tiny_bert", "method=cascade"])
    HydraConfig.instance().set_config(cfg)
    assert cfg.logger.wandb.group == "cascade-rte-tiny_bert"


def test_console_gets_each_lightning_line_once_and_no_third_party_noise():
    """Under Hydra the root logger has handlers; Lightning's own handler printed every line a second time."""
    import lightning  # noqa: F401
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    from sweet_lightning.console import quiet_console

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    root = logging.getLogger()
    collect = Collect()
    root.addHandler(collect)
    try:
        quiet_console()
        rank_zero_info("Seed set to 7")
        rank_zero_info(
            "💡 Tip: For seamless cloud logging, try installing [litlogger](https://x) to enable LitLogger"
        )
    finally:
        root.removeHandler(collect)
    assert collect.messages == ["Seed set to 7"]
    # no handler left on the way up but the root's: the line reaches the console once
    chain, logger = [], logging.getLogger("lightning.pytorch.utilities.rank_zero")
    while logger is not None:
        chain += [h for h in logger.handlers if logger is not root]
        logger = logger.parent if logger.propagate else None
    assert chain == []

    leafspec = "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)` instead."
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn_explicit(
            leafspec, FutureWarning, "_pytree.py", 21, module="lightning.pytorch.utilities._pytree"
        )
        warnings.warn_explicit(leafspec, FutureWarning, "ours.py", 1, module="sweet_lightning.modeling")
        warnings.warn_explicit(
            "other", FutureWarning, "_pytree.py", 30, module="lightning.pytorch.utilities._pytree"
        )
    assert [(str(w.message)[:20], w.filename) for w in caught] == [
        (leafspec[:20], "ours.py"),
        ("other", "_pytree.py"),
    ]


def test_end_of_run_block_names_the_run_its_scores_and_commands(tmp_path):
    from sweet_lightning.console import end_of_run

    res = fake_results(tmp_path)
    ev = res["evaluation"]["dev"]
    block = end_of_run(RunRecord.from_dict(res), tmp_path)
    assert f"run dir      {tmp_path}" in block
    assert "  ".join(f"L{e['layer']} {e['score']:.4f}" for e in ev["exits"]) in block
    assert f"AUC          {ev['auc']:.4f}" in block
    assert f"python -m sweet_lightning.evaluate {tmp_path} --exit-policy " in block
    # no checkpoint kept (fake_results has none): no predict command that could not run
    assert "predict      no checkpoint kept to serve (keep_checkpoints=false" in block
    assert "sweet_lightning.predict" not in block
    res["checkpoint"] = str(tmp_path / "checkpoints" / "best.ckpt")
    block = end_of_run(RunRecord.from_dict(res), tmp_path)
    assert f"python -m sweet_lightning.predict {tmp_path} --input texts.tsv --target-speedup 0.5" in block


@pytest.mark.slow
def test_sweep_of_two_tiny_runs_is_readable_in_wandb_and_prints_each_line_once(glue_path, tmp_path):
    """The issue's end-to-end check: `launch.py -m` with the default logger (W&B offline + CSV)."""
    sweep = tmp_path / "tiny_sweep"
    tiny = [a for a in TINY if not a.startswith(("logger=", "trainer.enable_progress_bar"))]
    args = [
        "-m",
        *tiny,
        "method=early_exit,sweet",
        "++trainer.max_steps=2",
        "++trainer.limit_val_batches=2",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = launch(args, tmp_path, env={"WANDB_SILENT": "false", "GLUE_DIR": str(glue_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    assert len(re.findall(r"Seed set to \d+", console)) == 2, console[-3000:]  # one per job, not two
    for noise in ("Tip:", "litlogger", "LeafSpec", "anonymous setting"):
        assert noise not in console
    assert console.count("run finished") == 2, console[-4000:]

    jobs = job_dirs(sweep)
    for job in jobs:
        res = results(job)
        (offline,) = offline_runs(job)
        run = read_run(offline)
        assert (run.run["run_group"], run.run["job_type"]) == ("tiny_sweep", "train")
        assert run.config["method"]["name"] == res["method"]
        assert run.config["task"]["name"] == "rte" and run.config["model"]["name"] == "tiny_bert"
        assert run.config["model"]["exit_layers"] == res["exit_layers"]
        assert run.config["lr"] == res["lr"] and run.config["seed"] == res["seed"]
        check_charts(offline, run, res)
        assert "_wandb.visualize.val/speed_accuracy" in run.config  # the per-epoch chart
        assert f"python -m sweet_lightning.evaluate {job}" in console
    assert {results(j)["method"] for j in jobs} == {"early_exit", "sweet"}

    from sweet_lightning.report.__main__ import main

    assert main([str(sweep), "--out", str(tmp_path / "report"), "--wandb"]) == 0
    (report,) = offline_runs(tmp_path / "report")
    report_run = read_run(report).run
    assert (report_run["job_type"], report_run["run_group"]) == ("report", "tiny_sweep")
