"""Every experiment, launcher and search config composes, with the values the paper's protocol needs."""

import pytest
from conftest import compose
from omegaconf import OmegaConf

from sweet_lightning.overrides import group_options


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ${sl.mkdir:...} creates folders relative to the cwd


@pytest.mark.parametrize(
    "group", ["experiment", "launcher", "hparams_search", "trainer", "callbacks", "logger", "method", "model"]
)
def test_every_option_composes_and_resolves(group):
    from conftest import CONF_DIR
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    for option in group_options(CONF_DIR, group):
        cfg = compose([f"{group}={option}"])
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = "out"
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        # the job's config, and what the launcher and sweeper are built from
        for node in (cfg, cfg.hydra.launcher, cfg.hydra.sweeper, cfg.hydra.sweep, cfg.hydra.run):
            OmegaConf.to_container(node, resolve=True)


def test_paper_grid():
    cfg = compose(["experiment=paper_grid"])
    assert cfg.model.name == "bert_base" and list(cfg.model.exit_layers) == [1, 4, 6, 12]
    assert (cfg.train_size, cfg.batch_size, cfg.max_seq_length, cfg.trainer.max_epochs) == (6000, 16, 256, 2)
    assert cfg.calibration == "dev"
    params = cfg.hydra.sweeper.params
    assert params.lr.split(",") == ["1e-5", "2e-5", "3e-5", "4e-5", "5e-5"] and params.seed == "1,2,3"


@pytest.mark.parametrize(
    ("experiment", "model", "exits", "batch"),
    [
        ("paper_grid_large", "bert_large", [1, 6, 12, 24], 16),
        ("paper_grid_deberta_large", "deberta_large", [1, 6, 12, 24], 8),
    ],
)
def test_large_variants(experiment, model, exits, batch):
    cfg = compose([f"experiment={experiment}"])
    assert (cfg.model.name, list(cfg.model.exit_layers), cfg.batch_size) == (model, exits, batch)
    assert cfg.train_size == 6000 and cfg.calibration == "dev" and "lr" in cfg.hydra.sweeper.params


def test_cpu_demo_and_data_size():
    demo = compose(["experiment=cpu_demo"])
    assert (demo.model.name, demo.train_size, demo.max_seq_length, demo.trainer.max_epochs) == (
        "minilm_l6",
        1000,
        128,
        1,
    )
    assert demo.hydra.sweeper.params.lr == "2e-5,5e-5" and str(demo.hydra.sweeper.params.seed) == "1"
    sizes = compose(["experiment=data_size"])
    assert sizes.task.name == "mnli" and sizes.model.name == "bert_base"
    assert sizes.hydra.sweeper.params.train_size.split(",") == ["1000", "6000", "60000", "1000000000"]
    assert "n${train_size}" in OmegaConf.to_container(sizes.hydra.sweep)["subdir"]


def test_command_line_overrides_experiment_values():
    cfg = compose(["experiment=paper_grid", "model=minilm_l6", "train_size=100"])
    assert cfg.model.name == "minilm_l6" and cfg.train_size == 100


def test_sweep_dirs_are_unique_per_launch():
    first = compose([]).hydra.sweep.dir
    second = compose([]).hydra.sweep.dir
    assert first != second and first.startswith("multirun/")


def test_run_dir_is_stable_when_given():
    assert compose(["run_dir=outputs/mine"]).hydra.run.dir == "outputs/mine"


def test_slurm_launcher(monkeypatch):
    monkeypatch.setenv("SLURM_PARTITION", "gpu")
    monkeypatch.setenv("SLURM_TIMEOUT_MIN", "30")
    monkeypatch.delenv("SLURM_GPUS_PER_NODE", raising=False)
    cfg = compose(["launcher=slurm"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["partition"], launcher["timeout_min"], launcher["gpus_per_node"]) == ("gpu", 30, None)
    assert launcher["submitit_folder"].startswith(cfg.hydra.sweep.dir)
    assert cfg.resume is True  # a requeued job continues from last.ckpt
    plugin = cfg.trainer.plugins[0]
    assert plugin._target_.endswith("SLURMEnvironment") and plugin.auto_requeue is False


def test_local_launchers():
    assert compose(["launcher=local"]).hydra.launcher._target_.endswith("BasicLauncher")
    assert compose(["launcher=local_parallel"]).hydra.launcher._target_.endswith("LocalLauncher")


def test_optuna_search(tmp_path):
    cfg = compose(["hparams_search=lr_optuna", "method=cascade", "task=glue/mrpc"])
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    assert sweeper["_target_"].endswith("OptunaSweeper") and sweeper["direction"] == "maximize"
    assert sweeper["study_name"] == "lr-cascade-mrpc-minilm_l6"
    # the study sits in the sweep dir's parent, which exists before the sweep starts
    study_dir = "multirun/optuna/lr-cascade-mrpc-minilm_l6"
    assert sweeper["storage"] == f"sqlite:///{study_dir}/study.db" and (tmp_path / study_dir).is_dir()
    assert cfg.hydra.sweep.dir.startswith(study_dir + "/")
    assert "interval(1e-5, 5e-5)" in sweeper["params"]["lr"]


def test_ddp_trainer():
    cfg = compose(["trainer=ddp"])
    assert (cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.strategy.process_group_backend) == (
        "cpu",
        2,
        "gloo",
    )
