"""End-to-end runs of launch.py (subprocess, as a user runs it) and their one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, compose

TINY = [
    "model=tiny_bert",
    "task=glue/rte",
    "train_size=48",
    "calibration_size=32",
    "trainer.max_epochs=1",
    "logger=csv",
    "batch_size=16",
]


def launch(args, glue_path, tmp_path=None, check=True):
    env = {
        **os.environ,
        "GLUE_DIR": str(glue_path),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "WANDB_MODE": "offline",
    }
    extra = [f"hydra.run.dir={tmp_path}"] if tmp_path is not None else []
    proc = subprocess.run(
        [sys.executable, "launch.py", *args, *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_tiny_run_writes_results_json(glue_path, tmp_path):
    launch([*TINY, "method=early_exit"], glue_path, tmp_path)
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["status"] == "completed" and res["method"] == "early_exit" and res["task"] == "rte"
    assert res["exit_layers"] == [1, 2, 3, 4] and res["train_examples"] == 48
    assert [e["layer"] for e in res["evaluation"]["dev"]["exits"]] == [1, 2, 3, 4]
    assert res["splits"]["dev"]["num_examples"] == 277
    assert 0.0 <= res["metrics"]["val/auc"] <= 1.0
    assert len(res["temperatures"]) == 4 and res["calibration"] == {"source": "train_holdout", "size": 32}
    import numpy as np

    with np.load(tmp_path / "logits_dev.npz") as d:
        assert d["logits"].shape == (4, 277, 2) and d["labels"].shape == (277,)
    assert (tmp_path / "logits_calibration.npz").exists()


def compose_run(overrides, glue_path, out_dir):
    """A composed config as launch.py would get it (Hydra runtime set), for in-process runs."""
    return compose([*overrides, f"data.glue_dir={glue_path}"], output_dir=out_dir)


def test_same_seed_same_scores(glue_path, tmp_path):
    from sweet_lightning.train import train

    scores = []
    for run in ("a", "b"):
        cfg = compose_run(
            [*TINY, "method=sweet", "seed=7", "callbacks=none", "trainer.enable_progress_bar=false"],
            glue_path,
            tmp_path / run,
        )
        train(cfg)
        res = json.loads((tmp_path / run / "results.json").read_text())
        scores.append(
            ([e["score"] for e in res["evaluation"]["dev"]["exits"]], res["evaluation"]["dev"]["curve"])
        )
    assert scores[0] == scores[1]


@pytest.mark.parametrize(("task", "expected_train"), [("sst2", 6000), ("mrpc", 3668 - 300)])
def test_methods_and_models_with_same_seed_train_on_the_same_sample(glue_path, task, expected_train):
    """SST-2's pool (67K) gives a 6K draw; MRPC's (3.7K) is smaller, so the rest of it trains. With
    data.group_by_length the batches too are the same (the models share a tokenizer)."""
    from sweet_lightning.train import build_datamodule

    indices, batches = [], []
    for overrides in (["method=sweet", "model=tiny_bert"], ["method=cascade", "model=minilm_l6"]):
        cfg = compose(
            [
                *overrides,
                f"task=glue/{task}",
                "seed=3",
                f"data.glue_dir={glue_path}",
                "data.group_by_length=true",
            ]
        )
        dm = build_datamodule(cfg)
        dm.setup("fit")
        indices.append((dm.train_indices.tolist(), dm.calibration_indices.tolist()))
        batches.append(list(dm.train_dataloader().batch_sampler))
    assert indices[0] == indices[1]
    assert batches[0] == batches[1] and sorted(sum(batches[0], [])) == list(range(expected_train))
    assert len(indices[0][0]) == expected_train and len(indices[0][1]) == 300


def test_offline_hub_model_is_a_one_line_error(glue_path, tmp_path):
    proc = launch(["model=bert_base", "logger=csv"], glue_path, tmp_path, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and last.startswith("error: Cannot load 'bert-base-uncased'")
    assert "use model=minilm_l6" in last


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train_size=0"], "train_size=0 must be > 0"),
        (["model.exit_layers=[2,1]"], "strictly increasing"),
        (["model.exit_layers=[]"], "empty"),
        (["calibration_size=0"], "calibration_size > 0"),
        (["exit_policy=bogus"], "bogus"),
        (["calibration_size=5000"], "calibration"),
    ],
)
def test_bad_config_raises_one_line(glue_path, tmp_path, overrides, message):
    from sweet_lightning.train import train

    cfg = compose_run(["model=tiny_bert", "logger=csv", "callbacks=none", *overrides], glue_path, tmp_path)
    with pytest.raises((ValueError, RuntimeError)) as err:
        train(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_glue_dir_names_the_expected_path(tmp_path):
    proc = launch(["model=tiny_bert", "logger=csv"], tmp_path / "noglue", tmp_path / "run", check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert str(tmp_path / "noglue" / "RTE" / "train.tsv") in last and "GLUE_DIR" in last


def test_real_minilm_few_steps_on_rte(glue_path, tmp_path):
    """The real pretrained backbone, a few optimizer steps, the whole RTE dev set."""
    launch(
        [
            "method=sweet",
            "model=minilm_l6",
            "task=glue/rte",
            "train_size=32",
            "calibration_size=32",
            "trainer.max_steps=2",
            "max_seq_length=128",
            "logger=csv",
            "callbacks=none",
        ],
        glue_path,
        tmp_path,
    )
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["model"] == "minilm_l6" and res["num_layers"] == 6 and res["exit_layers"] == [1, 2, 3, 6]
    assert res["exit_pooling"] == "mean"
    assert len(res["evaluation"]["dev"]["exits"]) == 4
    assert res["evaluation"]["dev"]["auc_interval"] == [1 / 6, 1.0]


@pytest.mark.slow
def test_multirun_all_methods_all_tasks(glue_path, tmp_path):
    """The literal `task=glue/*` sweep over the three methods, with a tiny model."""
    launch(
        [
            "-m",
            "method=early_exit,sweet,cascade",
            "task=glue/*",
            "model=tiny_bert",
            "train_size=32",
            "calibration_size=16",
            "trainer.max_epochs=1",
            "logger=csv",
            "callbacks=none",
            "max_seq_length=64",
            f"hydra.sweep.dir={tmp_path}",
        ],
        glue_path,
    )
    results = [json.loads(p.read_text()) for p in tmp_path.glob("*/results.json")]
    assert len(results) == 21
    assert {r["task"] for r in results} == {"sst2", "mrpc", "cola", "rte", "mnli", "qnli", "qqp"}
    mnli = next(r for r in results if r["task"] == "mnli")
    assert set(mnli["splits"]) == {"dev_matched", "dev_mismatched"}


@pytest.mark.parametrize(("method", "policy"), [("cascade", "entropy"), ("early_exit", "learned")])
def test_exit_policies_end_to_end(glue_path, tmp_path, method, policy):
    import numpy as np

    from sweet_lightning.train import train

    cfg = compose_run(
        [
            *TINY,
            f"method={method}",
            f"exit_policy={policy}",
            "callbacks=none",
            "trainer.enable_progress_bar=false",
        ],
        glue_path,
        tmp_path,
    )
    train(cfg)
    res = json.loads((tmp_path / "results.json").read_text())
    ev = res["evaluation"]["dev"]
    assert res["exit_policy"] == policy and ev["policy"] == policy and res["cost_model"] == ev["cost_model"]
    assert ev["curve"][0]["exit_fractions"][0] == 1.0 and ev["curve"][-1]["exit_fractions"][-1] == 1.0
    assert all(e["temperature_at_bound"] in (None, "lower", "upper") for e in ev["exits"])
    with np.load(tmp_path / "logits_dev.npz") as d:
        assert ("exit_scores" in d.files) == (policy == "learned")
    if method == "cascade":  # all samples through every model costs 1+2+3+4 layers of 4
        assert ev["curve"][-1]["speedup"] == 10 / 4


def test_end_of_run_block_is_printed_after_wandb_closes(glue_path, tmp_path, monkeypatch):
    """W&B prints its history, summary and sync hint when its run closes: closing it first keeps
    them above the end-of-run block, so the block is what a run's console ends with."""
    import wandb

    from sweet_lightning import train as train_module

    open_at_block = []
    block = train_module.end_of_run

    def spy(record, out):
        open_at_block.append(wandb.run is not None)
        return block(record, out)

    monkeypatch.setattr(train_module, "end_of_run", spy)
    cfg = compose_run([*TINY, "logger=default", "callbacks=none"], glue_path, tmp_path)
    train_module.train(cfg)
    assert open_at_block == [False]
    assert list((tmp_path / "wandb").glob("offline-run-*"))  # the run was logged, then closed


def test_wandb_run_is_closed_when_training_fails(glue_path, tmp_path, monkeypatch):
    import lightning
    import wandb

    from sweet_lightning.train import train

    def failing_fit(self, *args, **kwargs):
        _ = self.loggers[0].experiment  # starts the (offline) W&B run
        assert wandb.run is not None
        raise RuntimeError("boom")

    monkeypatch.setattr(lightning.Trainer, "fit", failing_fit)
    cfg = compose_run([*TINY, "logger=wandb", "callbacks=none"], glue_path, tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        train(cfg)
    assert wandb.run is None
    assert list((tmp_path / "wandb").glob("offline-run-*"))
