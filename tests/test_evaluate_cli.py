"""Re-evaluation from saved logits (python -m sweet_lightning.evaluate) and its bad-input errors."""

import json
import warnings

import numpy as np
import pytest

from sweet_lightning.evaluate import evaluate_run, main
from sweet_lightning.evaluation import evaluate_logits
from sweet_lightning.evaluation.callback import AdaptiveEvaluation
from sweet_lightning.run_record import EvalSpec


def fake_run(tmp_path, with_calibration=True):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    logits = rng.normal(size=(4, 50, 2))
    logits[3, np.arange(50), labels] += 3.0  # last exit is good
    np.savez(tmp_path / "logits_dev.npz", logits=logits, labels=labels)
    if with_calibration:
        np.savez(tmp_path / "logits_calibration.npz", logits=logits[:, :20], labels=labels[:20])
    results = {
        "task": "rte",
        "exit_layers": [1, 2, 3, 6],
        "num_layers": 6,
        "cost_model": "early_exit",
        "splits": {"dev": {"logits": "logits_dev.npz"}},
        "calibration": {"source": "train_holdout"},
        "status": "completed",
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    return logits, labels


def test_reevaluation_matches_direct_evaluation(tmp_path):
    logits, labels = fake_run(tmp_path)
    report = evaluate_run(tmp_path, exit_policy="patience")
    assert (tmp_path / "evaluation_patience.json").exists()
    direct = AdaptiveEvaluation(policy="patience").evaluate(
        EvalSpec("rte", (1, 2, 3, 6), 6, "early_exit"),
        {
            "dev": {"logits": logits, "labels": labels},
            "calibration": {"logits": logits[:, :20], "labels": labels[:20]},
        },
    )
    assert report == json.loads(json.dumps(direct))
    assert report["dev"]["policy"] == "patience"


def test_callback_fits_temperatures_once_for_every_split_and_warns_once():
    """Each split's evaluation is evaluate_logits' own with the calibration split's fit (source
    "fitted"); the fit runs once, so an exit at a search bound is warned about once, not per split."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 60)
    sign = 2 * np.eye(2)[labels] - 1
    logits = np.stack([3.0 * sign, rng.normal(size=(60, 2)) + sign, rng.normal(size=(60, 2))])
    outputs = {
        "dev": {"logits": logits[:, :30], "labels": labels[:30]},
        "test": {"logits": logits[:, 30:50], "labels": labels[30:50]},
        "calibration": {"logits": logits[:, 50:], "labels": labels[50:]},
    }
    calib = outputs["calibration"]
    with pytest.warns(UserWarning) as caught:
        report = AdaptiveEvaluation().evaluate(EvalSpec("rte", (2, 4, 6), 6, "early_exit"), outputs)
    assert list(report) == ["dev", "test", "calibration"]
    for split, out in outputs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            alone = evaluate_logits(
                out["logits"],
                out["labels"],
                (2, 4, 6),
                6,
                calibration_logits=calib["logits"],
                calibration_labels=calib["labels"],
            )
        assert json.dumps(report[split]) == json.dumps(alone)  # values and key order, as results.json
    bound = [str(w.message) for w in caught if "search bound" in str(w.message)]
    flagged = [e for e in report["dev"]["exits"] if e["temperature_at_bound"]]
    assert flagged and flagged[0]["exit"] == 1  # exit 1 separates the labels: T_MIN
    assert [m.split(":")[0] for m in bound] == [f"exit {e['exit']} (layer {e['layer']})" for e in flagged]


def test_calibration_dev_fits_on_dev(tmp_path):
    logits, labels = fake_run(tmp_path, with_calibration=False)
    report = evaluate_run(tmp_path, calibration="dev")
    from sweet_lightning.evaluation import fit_temperatures

    np.testing.assert_allclose(report["dev"]["temperatures"], fit_temperatures(logits, labels))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["exit_policy=bogus"], "bogus"),
        (["exit_policy=confidence", "thresholds=[1.5]"], "threshold"),
        (
            ["exit_policy=patience", "thresholds=[0]"],
            "--thresholds [0.0]: patience must be an integer",
        ),
        (["calibration=test"], "--calibration train_holdout or --calibration dev"),
        (["colour=red"], "unknown option 'colour'"),
        # the callback's errors name training config keys; evaluate's name the flags typed
        (["--num-thresholds", "0"], "error: --num-thresholds 0 must be >= 1"),
        (["--exit-policy", "patience", "--policy-kwargs", "{x: 1}"], "do not fit --exit-policy patience"),
        (["--speedup-points", "0"], "error: --speedup-points [0.0] must all be > 0"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, args, message):
    fake_run(tmp_path)
    assert main([str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_run_dir_without_logits(tmp_path, capsys):
    fake_run(tmp_path)
    (tmp_path / "logits_dev.npz").unlink()
    assert main([str(tmp_path)]) == 2
    assert "logits_dev.npz is missing" in capsys.readouterr().err


def test_not_a_run_dir(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert (
        "results.json not found, nor any run directory below: give run or sweep directories"
        in capsys.readouterr().err
    )


def test_evaluation_settings_fail_before_training():
    with pytest.raises(ValueError, match="patience"):
        AdaptiveEvaluation(policy="patience", thresholds=[0])
    with pytest.raises(ValueError, match="num_thresholds"):
        AdaptiveEvaluation(num_thresholds=0)
    with pytest.raises(ValueError, match="policy_kwargs"):
        AdaptiveEvaluation(policy="entropy", policy_kwargs={"colour": 1})
    with pytest.raises(ValueError, match="speedup_points"):
        AdaptiveEvaluation(speedup_points=[-0.5])


def test_collapse_warning_names_exit_method_seed_and_remedy(caplog):
    import logging

    from sweet_lightning.evaluation.callback import warn_collapsed

    module = type("M", (), {"method": "sweet", "lr": 3e-5, "hparams": {"exit_pooling": "cls"}})()
    evaluation = {
        "dev": {
            "exits": [{"exit": 1, "layer": 1, "collapsed": True}, {"exit": 2, "layer": 6, "collapsed": False}]
        }
    }
    with caplog.at_level(logging.WARNING):
        flagged = warn_collapsed(module, evaluation, seed=3)
    assert flagged == [{"split": "dev", "exit": 1, "layer": 1}]
    (record,) = caplog.records
    msg = record.getMessage()
    assert "exit 1 (layer 1) of sweet" in msg and "seed 3" in msg and "exit_pooling=mean" in msg
    module.hparams = {"exit_pooling": "mean"}
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        warn_collapsed(module, evaluation, seed=3)
    assert "exit_pooling=mean" not in caplog.records[0].getMessage()


def test_a_sweep_dir_reevaluates_every_run_below_it(tmp_path, capsys):
    """Given a sweep, each run dir gets its evaluation file and a line; a run without logits is listed as
    skipped without stopping the others."""
    runs = [tmp_path / "sweep" / name for name in ("0_a", "1_b", "2_broken")]
    for run in runs:
        run.mkdir(parents=True)
        fake_run(run)
    (runs[2] / "logits_dev.npz").unlink()
    assert main([str(tmp_path / "sweep"), "exit_policy=entropy"]) == 0
    out = capsys.readouterr().out
    for run in runs[:2]:
        written = json.loads((run / "evaluation_entropy.json").read_text())
        assert f"{run.resolve()}: dev AUC={written['dev']['auc']:.4f}" in out
    assert f"{runs[2].resolve()}: skipped:" in out and "logits_dev.npz is missing" in out
    assert "evaluated 2 of 3 runs" in out


def test_bad_settings_fail_before_a_sweep_is_evaluated(tmp_path, capsys):
    (tmp_path / "sweep" / "0_a").mkdir(parents=True)
    fake_run(tmp_path / "sweep" / "0_a")
    assert main([str(tmp_path / "sweep"), "exit_policy=bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert not list(tmp_path.glob("sweep/*/evaluation_*.json"))
