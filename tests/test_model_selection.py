"""model_selection: the reported weights are chosen on data that is not reported.

The AUCs the selection sees are scripted (a stubbed evaluation during the fit), so that dev and
the calibration hold-out disagree on the best epoch; the numbers written to results.json come from
the real final evaluation of whichever weights were selected.
"""

import numpy as np
import pytest
from sweep_utils import TINY, results, run_in_process

from sweet_lightning.evaluation.callback import AdaptiveEvaluation
from sweet_lightning.inference.loading import resolve_source
from sweet_lightning.model_selection import resolve

# lr large enough that epoch 2 visibly moves the weights
TWO_EPOCHS = [*TINY, "trainer.max_epochs=2", "lr=1e-3", "seed=3"]


@pytest.fixture
def scripted_auc(monkeypatch):
    """AUCs logged during the fit come from `script[(split, epoch)]`; each fit epoch's dev logits are kept."""
    script: dict[tuple[str, int], float] = {}
    dev_logits: dict[int, np.ndarray] = {}
    real = AdaptiveEvaluation.log_epoch

    def log_epoch(self, trainer, module, report):
        if trainer.state.fn == "fit":
            epoch = trainer.current_epoch + 1
            dev_logits[epoch] = self.outputs["dev"]["logits"].copy()
            # what is logged (hence selected on), not what the callback holds for results.json
            report = {split: {**res, "auc": script[(split, epoch)]} for split, res in report.items()}
        real(self, trainer, module, report)

    monkeypatch.setattr(AdaptiveEvaluation, "log_epoch", log_epoch)
    return script, dev_logits


def reported_dev_logits(run_dir):
    with np.load(run_dir / "logits_dev.npz") as data:
        return data["logits"]


# dev is best at epoch 1, the calibration hold-out at epoch 2
DISAGREE = {("dev", 1): 0.9, ("dev", 2): 0.6, ("calibration", 1): 0.55, ("calibration", 2): 0.7}


@pytest.mark.parametrize("callbacks", ["default", "none"])  # best.ckpt on disk, or weights kept in memory
def test_epoch_is_chosen_on_calibration_not_on_dev(glue_path, tmp_path, scripted_auc, callbacks):
    script, dev_logits = scripted_auc
    script.update(DISAGREE)
    run_in_process([*TWO_EPOCHS, f"callbacks={callbacks}"], tmp_path)
    assert not np.array_equal(dev_logits[1], dev_logits[2])
    np.testing.assert_array_equal(reported_dev_logits(tmp_path), dev_logits[2])
    res = results(tmp_path)
    assert res["checkpoint"] == (str(tmp_path / "checkpoints/best.ckpt") if callbacks == "default" else None)
    # per_epoch holds the logged values (float32, as ModelCheckpoint compares them)
    assert res["selection"] == {
        "rule": "calibration",
        "split": "calibration",
        "metric": "val/calibration/auc",
        "epoch": 2,
        "epochs_seen": 2,
        "per_epoch": pytest.approx({"1": 0.55, "2": 0.7}),
    }
    # the reported numbers are the real evaluation of those weights, and the hold-out's is recorded
    assert res["metrics"]["val/auc"] == res["evaluation"]["dev"]["auc"] not in (0.9, 0.6)
    assert 0 <= res["evaluation"]["calibration"]["auc"] == res["metrics"]["val/calibration/auc"] <= 1
    assert res["evaluation"]["calibration"]["num_examples"] == 32


def test_an_earlier_calibration_best_is_restored_without_checkpoints(glue_path, tmp_path, scripted_auc):
    script, dev_logits = scripted_auc
    script.update({("dev", 1): 0.6, ("dev", 2): 0.9, ("calibration", 1): 0.7, ("calibration", 2): 0.55})
    run_in_process([*TWO_EPOCHS, "callbacks=none"], tmp_path)
    assert results(tmp_path)["selection"]["epoch"] == 1
    np.testing.assert_array_equal(reported_dev_logits(tmp_path), dev_logits[1])


def test_best_on_reported_dev_is_the_old_behaviour(glue_path, tmp_path, scripted_auc):
    script, dev_logits = scripted_auc
    script.update(DISAGREE)
    run_in_process([*TWO_EPOCHS, "model_selection=best_on_reported_dev"], tmp_path)
    selection = results(tmp_path)["selection"]
    assert (selection["rule"], selection["split"], selection["metric"], selection["epoch"]) == (
        "best_on_reported_dev",
        "dev",
        "val/auc",
        1,
    )
    np.testing.assert_array_equal(reported_dev_logits(tmp_path), dev_logits[1])


def test_last_weights_without_a_hold_out(glue_path, tmp_path, scripted_auc):
    script, dev_logits = scripted_auc
    script.update({("dev", 1): 0.9, ("dev", 2): 0.6})
    run_in_process([*TWO_EPOCHS, "calibration=dev"], tmp_path)  # auto -> last
    res = results(tmp_path)
    assert res["selection"] == {
        "rule": "last",
        "split": None,
        "metric": None,
        "epoch": 2,
        "epochs_seen": 2,
        "per_epoch": {},
    }
    assert "calibration" not in res["evaluation"] and not (tmp_path / "logits_calibration.npz").exists()
    np.testing.assert_array_equal(reported_dev_logits(tmp_path), dev_logits[2])
    assert (tmp_path / "checkpoints/last.ckpt").exists() and not (tmp_path / "checkpoints/best.ckpt").exists()
    # inference loads the reported weights: the final epoch's last.ckpt
    assert res["checkpoint"] == str(tmp_path / "checkpoints/last.ckpt")
    assert resolve_source(tmp_path).checkpoint == tmp_path / "checkpoints/last.ckpt"


def test_rules_and_one_line_errors():
    assert resolve("auto", "train_holdout").monitor == "val/calibration/auc"
    assert resolve("auto", "dev").name == "last" and resolve("last", "train_holdout").monitor is None
    assert resolve("best_on_reported_dev", "dev").monitor == "val/auc"
    with pytest.raises(
        ValueError, match="model_selection='best'.*auto, calibration, last, best_on_reported_dev"
    ):
        resolve("best", "train_holdout")
    with pytest.raises(ValueError, match="needs the held-out calibration split.*model_selection=last"):
        resolve("calibration", "dev")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model_selection=bogus"], "model_selection='bogus'"),
        (["calibration=dev", "model_selection=calibration"], "model_selection=calibration needs"),
        (["callbacks.model_checkpoint.monitor=val/auc"], "disagrees with model_selection=calibration"),
    ],
)
def test_bad_selection_config_fails_before_training(glue_path, tmp_path, overrides, message):
    with pytest.raises(ValueError) as err:
        run_in_process([*TINY, *overrides], tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "logits_dev.npz").exists()


def test_resumed_run_remembers_the_epochs_before_it(glue_path, tmp_path):
    """The per-epoch record lives in the checkpoints: a run resumed in epoch 2 chooses as a straight one."""
    crash = [
        "+callbacks.crash._target_=tests.helpers.CrashAtStep",
        "+callbacks.crash.step=3",
    ]  # 2 steps/epoch
    run_in_process(TWO_EPOCHS, tmp_path / "straight")
    with pytest.raises(Exception, match="simulated crash"):
        run_in_process([*TWO_EPOCHS, *crash], tmp_path / "resumed")
    run_in_process([*TWO_EPOCHS, "resume=true"], tmp_path / "resumed")
    straight, resumed = results(tmp_path / "straight"), results(tmp_path / "resumed")
    assert resumed["selection"]["epochs_seen"] == 2
    assert resumed["selection"] == straight["selection"]


@pytest.mark.parametrize("best, revalidations", [(2, 0), (1, 1)])
def test_final_evaluation_reruns_only_when_an_earlier_epoch_is_reported(
    glue_path, tmp_path, scripted_auc, monkeypatch, best, revalidations
):
    """The last epoch's evaluation already holds the reported logits when the last epoch is chosen
    (no second pass over dev and the hold-out); an earlier epoch's weights are evaluated again."""
    import lightning

    script, dev_logits = scripted_auc
    script.update({("dev", 1): 0.5, ("dev", 2): 0.5})
    script.update(
        {("calibration", 1): 0.9 if best == 1 else 0.5, ("calibration", 2): 0.9 if best == 2 else 0.5}
    )
    calls = []
    real = lightning.Trainer.validate

    def counted(self, *args, **kwargs):
        calls.append(kwargs.get("ckpt_path"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(lightning.Trainer, "validate", counted)
    run_in_process(TWO_EPOCHS, tmp_path)
    assert len(calls) == revalidations
    np.testing.assert_array_equal(reported_dev_logits(tmp_path), dev_logits[best])
    assert results(tmp_path)["selection"]["epoch"] == best
