"""Tests for sweet_lightning.report on a synthetic sweep whose numbers are computed by hand.

Fixture (tests/fixtures/synthetic_sweep.py): Early-Exit and SWEET on rte and sst2, lr 1e-5 and
2e-5, seeds 1 and 2, plus one failed and one missing run. Seed 2 scores 2 points (rte) or
4 points (sst2) above seed 1, so with n = 2 the std is 2/sqrt(2) (rte), and the CI half-width
is t(0.975, df=1) * std / sqrt(2) = 12.706 * 1 for rte.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweet_lightning.evaluation import individual_exit_scores
from sweet_lightning.report import find_run_dirs, load_run, mixed_config_problems, summarize, t_critical
from sweet_lightning.report.__main__ import main
from sweet_lightning.report.aggregate import chosen_lrs, lr_search
from tests.fixtures.synthetic_sweep import CALIBRATION_GAP, EXIT_LAYERS, make_sweep

T1 = 12.706  # t(0.975, df=1), the quantile for n = 2 seeds
ABS = 1e-3  # T1 is rounded to 3 decimals


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    return make_sweep(tmp_path / "multirun" / "2025-01-01_00-00-00")


def run_report(tmp_path: Path, *args: str) -> tuple[int, Path]:
    out = tmp_path / "report"
    return main([*args, "--out", str(out)]), out


def load_all(sweep: Path) -> list:
    return [load_run(p) for p in find_run_dirs([sweep])]


def test_t_critical_and_summary_by_hand():
    assert t_critical(1) == pytest.approx(T1, abs=ABS)
    assert t_critical(2) == pytest.approx(4.303, abs=ABS)
    s = summarize([0.55, 0.57])
    assert (s.n, s.mean, s.std) == (2, pytest.approx(0.56), pytest.approx(0.02 / math.sqrt(2)))
    assert s.half_width == pytest.approx(T1 * 0.01, abs=1e-5)
    one = summarize([0.5])
    assert one.mean == 0.5 and math.isnan(one.std) and math.isnan(one.half_width)
    assert math.isnan(summarize([0.5, math.nan]).mean)


def test_t_critical_matches_scipy_beyond_the_table():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 5, 30, 31, 45, 100, 1000):
        assert t_critical(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-5)


def test_collect_classifies_every_run_dir(sweep: Path):
    runs = load_all(sweep)
    by_status = {
        s: [r for r in runs if r.status == s] for s in ("completed", "failed", "missing", "incomplete")
    }
    assert [len(v) for v in by_status.values()] == [16, 1, 1, 0]
    (failed,), (missing,) = by_status["failed"], by_status["missing"]
    assert failed.error.endswith("RuntimeError: CUDA out of memory") and failed.seed == 3
    # the missing run's identity comes from its .hydra/config.yaml
    assert (missing.method, missing.task, missing.lr, missing.seed) == ("sweet", "sst2", 2e-5, 3)


def test_unreadable_or_unfinished_results_are_incomplete(sweep: Path):
    broken, running = sorted(find_run_dirs([sweep]))[:2]
    (broken / "results.json").write_text("{not json")
    data = json.loads((running / "results.json").read_text())
    (running / "results.json").write_text(json.dumps({**data, "status": "running"}))
    assert load_run(broken).status == "incomplete" and "unreadable" in load_run(broken).note
    assert load_run(running).status == "incomplete" and "running" in load_run(running).note


def test_evaluation_is_recomputed_from_logits_when_absent(tmp_path: Path):
    from tests.fixtures.synthetic_sweep import results

    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(4, 40, 2)), rng.integers(0, 2, size=40)
    np.savez(tmp_path / "logits_dev.npz", logits=logits, labels=labels)
    data = results("sweet", "rte", 1e-5, 1)
    del data["evaluation"]
    (tmp_path / "results.json").write_text(json.dumps(data))
    run = load_run(tmp_path)
    assert run.status == "completed" and "recomputed from logits_dev.npz" in run.note
    assert list(run.individual_scores.values()) == pytest.approx(
        individual_exit_scores(logits, labels).tolist()
    )
    assert run.curve.speedups.min() == pytest.approx(1 / 6) and run.curve.speedups.max() == pytest.approx(1.0)


@pytest.mark.parametrize(("on", "below_dev"), [("dev", 0.0), ("calibration", CALIBRATION_GAP)])
def test_lr_with_best_mean_auc_is_chosen(sweep: Path, on: str, below_dev: float):
    search = lr_search(load_all(sweep), on)
    chosen = chosen_lrs(search)
    for task in ("rte", "sst2"):
        assert chosen[("minilm_l6", "early_exit", task)] == 2e-5
        assert chosen[("minilm_l6", "sweet", task)] == 1e-5
    row = search[(search.method == "early_exit") & (search.task == "rte") & (search.lr == 2e-5)].iloc[0]
    # rte EE seed 1 curve (1/6, .55) (1/2, .63) (1, .70): trapezoids over [1/6, 1] / (5/6)
    auc_seed1 = ((1 / 3) * (0.55 + 0.63) / 2 + 0.5 * (0.63 + 0.70) / 2) / (5 / 6)
    assert row.auc_mean == pytest.approx(100 * (auc_seed1 + 0.01 - below_dev))
    assert row.n == 2 and row.seeds == "1 2"


def _set_calibration_auc(run_dir: Path, value: float | None) -> None:
    data = json.loads((run_dir / "results.json").read_text())
    if value is None:
        del data["evaluation"]["calibration"]
    else:
        data["evaluation"]["calibration"]["auc"] = value
    (run_dir / "results.json").write_text(json.dumps(data))


def test_lr_selection_on_calibration_or_dev(sweep: Path, tmp_path: Path):
    """SWEET on rte: dev prefers lr 1e-5, the calibration hold-out (as edited here) 2e-5."""
    for run_dir in sweep.glob("*_sweet-rte-*-lr2e-05-s*"):
        _set_calibration_auc(run_dir, 0.99)
    picked = {}
    for on in ("calibration", "dev"):
        rc, out = run_report(tmp_path / on, str(sweep), "--select-lr-on", on)
        assert rc == 0
        lrs = pd.read_csv(out / "chosen_lr.csv", keep_default_na=False).set_index(["model", "task"])
        picked[on] = lrs.loc[("minilm_l6", "rte"), "ee_mm_sweet_1e-5"]
        for name in (
            "runs.csv",
            "chosen_lr.csv",
            "lr_search.csv",
            "table1_exits.csv",
            "curve_points.csv",
            "auc.csv",
        ):
            assert set(pd.read_csv(out / name)["lr_selected_on"]) == {on}, name
        md = (out / "report.md").read_text()
        assert f"EE\\MM\\SWEET; selected on {on})" in md and f"lr selected on {on})" in md
        table1 = pd.read_csv(out / "table1_exits.csv").query("task == 'rte' and method == 'sweet'")
        assert set(table1.lr) == {2e-5 if on == "calibration" else 1e-5}
    assert picked == {"calibration": "2\\–\\2", "dev": "2\\–\\1"}
    assert (
        "on the calibration hold-out (not a reported split)"
        in (tmp_path / "calibration/report/report.md").read_text()
    )
    assert (
        "on dev, the reported split itself (paper App. A)" in (tmp_path / "dev/report/report.md").read_text()
    )


def test_runs_without_calibration_auc_need_dev_selection(sweep: Path, tmp_path: Path, capsys):
    old = next(sweep.glob("*_early_exit-rte-*-lr1e-05-s1"))
    _set_calibration_auc(old, None)
    rc, out = run_report(tmp_path, str(sweep))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and not (out / "report.md").exists()
    assert "1 completed run(s) have no AUC on the calibration hold-out" in err and str(old) in err
    assert "--select-lr-on dev" in err
    rc, out = run_report(tmp_path, str(sweep), "--select-lr-on", "dev")
    assert rc == 0


def test_report_tables_by_hand(sweep: Path, tmp_path: Path):
    rc, out = run_report(tmp_path, str(sweep))
    assert rc == 0
    exits = pd.read_csv(out / "table1_exits.csv")
    ee_rte_l1 = exits.query("task == 'rte' and method == 'early_exit' and layer == 1").iloc[0]
    assert (ee_rte_l1.n, ee_rte_l1.lr) == (2, 2e-5)
    assert ee_rte_l1["mean"] == pytest.approx(56.0) and ee_rte_l1["std"] == pytest.approx(2 / math.sqrt(2))
    # average over tasks, per seed: seed 1 (55 + 70)/2 = 62.5, seed 2 (57 + 74)/2 = 65.5
    avg_l1 = exits.query("task == 'average' and method == 'early_exit' and layer == 1").iloc[0]
    assert avg_l1["mean"] == pytest.approx(64.0) and avg_l1["std"] == pytest.approx(3 / math.sqrt(2))
    # with every seed present in every task, the per-seed average has the mean of the per-task means
    per_task = exits.query("task != 'average'").groupby(["method", "layer"])["mean"].mean()
    per_seed = exits.query("task == 'average'").set_index(["method", "layer"])["mean"]
    assert per_seed.sort_index().to_numpy() == pytest.approx(per_task.sort_index().to_numpy())
    # collapsed flags: SWEET rte L1 (evaluation exits) and EE sst2 L2 (collapsed_exits list)
    assert exits.query("task == 'rte' and method == 'sweet' and layer == 1").iloc[0].collapsed == 1
    assert exits.query("task == 'sst2' and method == 'early_exit' and layer == 2").iloc[0].collapsed == 1

    points = pd.read_csv(out / "curve_points.csv")
    assert sorted(points.speedup.unique()) == pytest.approx([1 / 6, 0.25, 0.5, 0.75, 1.0])
    # rte EE at 1/4: seed 1 = 55 + (63 - 55) / 4 = 57, seed 2 = 59
    p = points.query("task == 'rte' and method == 'early_exit' and speedup == 0.25").iloc[0]
    assert p["mean"] == pytest.approx(58.0) and p.ci_half_width == pytest.approx(T1 * 1.0, abs=ABS)
    assert p.ci_low == pytest.approx(58.0 - T1, abs=ABS) and p.ci_high == pytest.approx(58.0 + T1, abs=ABS)
    # sst2 EE at 1/4: 70 + (82 - 70) / 4 = 73 and 77; average: seed 1 (57 + 73)/2 = 65, seed 2 68
    a = points.query("task == 'average' and method == 'early_exit' and speedup == 0.25").iloc[0]
    std = 3 / math.sqrt(2)
    assert a["mean"] == pytest.approx(66.5) and a.ci_half_width == pytest.approx(
        T1 * std / math.sqrt(2), abs=ABS
    )
    # SWEET rte (lr 1e-5) at 3/4: (65 + 68) / 2 = 66.5 and 68.5
    s = points.query("task == 'rte' and method == 'sweet' and speedup == 0.75").iloc[0]
    assert s["mean"] == pytest.approx(67.5) and s.lr == 1e-5

    lrs = pd.read_csv(out / "chosen_lr.csv", keep_default_na=False)
    assert set(lrs["ee_mm_sweet_1e-5"]) == {"2\\–\\1"}


def test_report_files_and_markdown(sweep: Path, tmp_path: Path):
    rc, out = run_report(tmp_path, str(sweep))
    assert rc == 0
    for name in (
        "report.md",
        "runs.csv",
        "chosen_lr.csv",
        "lr_search.csv",
        "table1_exits.csv",
        "curve_points.csv",
        "curve_grid.csv",
        "auc.csv",
    ):
        assert (out / name).stat().st_size > 0, name
    png = out / "curves_minilm_l6.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    runs = pd.read_csv(out / "runs.csv", keep_default_na=False)
    assert len(runs) == 18 and runs.status.value_counts().to_dict() == {
        "completed": 16,
        "failed": 1,
        "missing": 1,
    }
    assert set(runs[runs.collapsed != ""].collapsed) == {"dev:L1", "dev:L2"}
    assert runs.chosen.astype(str).eq("True").sum() == 8

    md = (out / "report.md").read_text()
    assert "18 runs: 16 completed, 1 failed, 1 missing, 0 incomplete" in md
    assert "| 16_early_exit-rte-minilm_l6-lr2e-05-s3 | failed |" in md and "CUDA out of memory" in md
    assert "| 17_sweet-sst2-minilm_l6-lr2e-05-s3 | missing |" in md
    assert "| method | seeds | L1 | L2 | L3 | L6 |" in md
    assert "| EE | 2 | 56.0 ± 1.4 | 61.0 ± 1.4 | 64.0 ± 1.4 | 71.0 ± 1.4 |" in md
    assert "| SWEET | 2 | 61.0 ± 1.4 † |" in md
    assert "| method | seeds | ×1/6 | ×1/4 | ×1/2 | ×3/4 | ×1 | AUC |" in md
    assert "| EE | 2 | 56.0 ± 12.7 | 58.0 ± 12.7 |" in md
    assert "| minilm_l6 | rte | 2\\–\\1 |" in md
    assert "![minilm_l6 speed-accuracy curves](curves_minilm_l6.png)" in md
    assert (
        "![minilm_l6 lr search](lr_search_minilm_l6.png)" in md and (out / "lr_search_minilm_l6.png").exists()
    )


def test_lr_search_figure_draws_every_lr_and_rings_the_chosen_one(sweep: Path, tmp_path: Path):
    from sweet_lightning.report.figures import draw_lr_search, searched

    rc, out = run_report(tmp_path, str(sweep))
    search = pd.read_csv(out / "lr_search.csv")
    fig = draw_lr_search(search, "minilm_l6")
    assert sorted(ax.get_title() for ax in fig.axes) == ["rte", "sst2"]
    names = {"Early-Exit": "early_exit", "SWEET": "sweet"}
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_ylabel() == "AUC (x100)"
        lines = {names[c.get_label()]: c.lines[0].get_data() for c in ax.containers}
        rings = [line.get_data() for line in ax.lines if line.get_markersize() == 10]
        assert set(lines) == {"early_exit", "sweet"} and len(rings) == 2
        for method, (x, y) in lines.items():
            rows = search[(search.task == ax.get_title()) & (search.method == method)].sort_values("lr")
            assert list(x) == list(rows.lr) and list(y) == pytest.approx(list(rows.auc_mean))
            chosen = rows[rows.chosen]
            assert ([chosen.lr.item()], [chosen.auc_mean.item()]) in [(list(a), list(b)) for a, b in rings]
    # one lr per (method, task): no search to draw, so the report writes no such figure
    assert searched(search, "minilm_l6") and not searched(search[search.lr == search.lr.min()], "minilm_l6")


def _set_max_epochs(run_dir: Path, value: int) -> None:
    data = json.loads((run_dir / "results.json").read_text())
    data["max_epochs"] = value
    data["config"]["trainer"]["max_epochs"] = value
    (run_dir / "results.json").write_text(json.dumps(data))


def test_mixed_configurations_are_refused(sweep: Path, tmp_path: Path, capsys):
    _set_max_epochs(next(sweep.glob("*_sweet-rte-*-lr1e-05-s1")), 1)
    rc, out = run_report(tmp_path, str(sweep))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and not (out / "report.md").exists()
    assert (
        "refusing to average mixed configurations: sweet/minilm_l6/rte differs in max_epochs (1 vs 2)" in err
    )
    assert "--allow-mixed" in err

    rc, out = run_report(tmp_path, str(sweep), "--allow-mixed")
    assert rc == 0 and "mixed configurations averaged" in (out / "report.md").read_text()


def test_model_level_and_duplicate_mixing(sweep: Path, tmp_path: Path):
    for results in sweep.glob("*_sweet-*/results.json"):  # all SWEET runs trained longer than Early-Exit
        _set_max_epochs(results.parent, 3)
    problems = mixed_config_problems(load_all(sweep))
    assert problems == ["model minilm_l6 differs across methods/tasks in max_epochs (2 vs 3)"]

    other = tmp_path / "rerun"
    shutil.copytree(next(sweep.glob("*_early_exit-rte-*-lr2e-05-s1")), other / "0_rerun")
    runs = load_all(sweep) + load_all(other)
    assert any(
        "early_exit/minilm_l6/rte lr=2e-05 seed=1 completed 2 times" in p for p in mixed_config_problems(runs)
    )


def test_single_seed_has_no_spread(tmp_path: Path):
    sweep = make_sweep(tmp_path / "one_seed", seeds=(1,), extras=False)
    rc, out = run_report(tmp_path, str(sweep))
    assert rc == 0
    points = pd.read_csv(out / "curve_points.csv")
    assert (points.n == 1).all() and points.ci_half_width.isna().all() and points["mean"].notna().all()
    assert "| EE | 1 | 55.0 ± – |" in (out / "report.md").read_text()
    rc, out = run_report(tmp_path, str(sweep), "--speedups", "0.5", "0.3")
    assert rc == 0 and sorted(pd.read_csv(out / "curve_points.csv").speedup.unique()) == [0.3, 0.5]


def test_seed_missing_for_one_task_is_left_out_of_the_average(sweep: Path, tmp_path: Path):
    (next(sweep.glob("*_early_exit-sst2-*-lr2e-05-s2")) / "results.json").unlink()
    rc, out = run_report(tmp_path, str(sweep))
    assert rc == 0
    exits = pd.read_csv(out / "table1_exits.csv")
    avg = exits.query("task == 'average' and method == 'early_exit' and layer == 1").iloc[0]
    assert avg.n == 1 and avg["mean"] == pytest.approx((55 + 70) / 2)
    md = (out / "report.md").read_text()
    assert "early_exit/minilm_l6: average over tasks uses seeds [1]; left out rte seeds 2" in md
    assert "2 missing" in md


def test_cascade_is_read_beyond_speedup_one(tmp_path: Path):
    sweep = make_sweep(tmp_path / "mm", methods=("early_exit", "cascade"), tasks=("rte",), extras=False)
    rc, out = run_report(tmp_path, str(sweep))
    assert rc == 0
    points = pd.read_csv(out / "curve_points.csv")
    assert sorted(points.speedup.unique()) == pytest.approx([1 / 6, 0.25, 0.5, 0.75, 1.0, 1.375, 1.75])
    # cascade rte seed 1 between (1, .65) and (2, .71): .65 + .375 * .06 = .6725; seed 2 is 2 points up
    mm = points.query("method == 'cascade' and speedup == 1.375").iloc[0]
    assert mm["mean"] == pytest.approx(68.25)
    assert points.query("method == 'early_exit' and speedup == 1.375")["mean"].isna().all()
    assert "\\2\\" in pd.read_csv(out / "chosen_lr.csv").iloc[0]["ee_mm_sweet_1e-5"]


def test_nothing_to_report(tmp_path: Path, capsys):
    (tmp_path / "empty").mkdir()
    assert run_report(tmp_path, str(tmp_path / "empty"))[0] == 2
    assert run_report(tmp_path, str(tmp_path / "nowhere"))[0] == 2
    assert "not a directory" in capsys.readouterr().err
    # only a failed and a missing run: still listed, exit status 1
    rc, out = run_report(tmp_path, str(make_sweep(tmp_path / "broken", seeds=())))
    assert rc == 1 and "2 runs: 0 completed, 1 failed, 1 missing" in (out / "report.md").read_text()
    assert len(pd.read_csv(out / "runs.csv")) == 2


def test_notebook_draws_a_saved_report(sweep: Path, tmp_path: Path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    rc, out = run_report(tmp_path, str(sweep))
    assert rc == 0
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("SWEET_REPORT_DIR", str(out))
    monkeypatch.setenv("PYTHONPATH", str(repo))  # the kernel is a fresh process
    nb = nbformat.read(repo / "notebooks" / "report.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # the sweep has two lrs and one model: the lr search figure and the curves figure
    figures = [cell for cell in nb.cells if cell.cell_type == "code" and "plt.show()" in cell.source]
    drawn = [any("image/png" in o.get("data", {}) for o in cell.outputs) for cell in figures]
    assert len(drawn) == 2 and all(drawn)


def test_chosen_lr_with_fewer_seeds_is_noted():
    import pandas as pd

    from sweet_lightning.report.aggregate import uneven_seed_notes

    search = pd.DataFrame(
        [
            {"model": "m", "method": "sweet", "task": "rte", "lr": 1e-5, "n": 3, "chosen": False},
            {"model": "m", "method": "sweet", "task": "rte", "lr": 2e-5, "n": 1, "chosen": True},
            {"model": "m", "method": "early_exit", "task": "rte", "lr": 1e-5, "n": 3, "chosen": True},
        ]
    )
    assert uneven_seed_notes(search) == [
        "sweet/m/rte: chosen lr 2e-05 has 1 completed seed(s), another lr has 3"
    ]


def test_runs_of_another_model_selection_are_not_averaged(sweep: Path):
    data_file = next(sweep.glob("*_sweet-rte-*-lr1e-05-s1")) / "results.json"
    data = json.loads(data_file.read_text())
    del data["selection"]  # a run from before model_selection: its epoch was the best on dev
    data_file.write_text(json.dumps(data))
    problems = mixed_config_problems(load_all(sweep))
    assert problems == ['sweet/minilm_l6/rte differs in model_selection ("calibration" vs null)']


@pytest.mark.parametrize(
    ("kept", "line"),
    [
        (["cascade"], "cascade; 18 runs of 2 other methods left out (early_exit 9, sweet 9)"),
        (["cascade", "early_exit"], "cascade, early_exit; 9 runs of 1 other method left out (sweet 9)"),
    ],
)
def test_methods_filter_keeps_only_the_listed_methods(tmp_path: Path, capsys, kept: list[str], line: str):
    # early_exit's failed run and sweet's missing run go with their method (both name it)
    sweep = make_sweep(tmp_path / "sweep", methods=("early_exit", "sweet", "cascade"))
    (sweep / "99_unknown" / ".hydra").mkdir(parents=True)  # no config: its method cannot be read, so it stays
    rc, out = run_report(tmp_path, str(sweep), "--methods", *kept)
    assert rc == 0
    runs = pd.read_csv(out / "runs.csv", keep_default_na=False)
    assert set(runs.method) == {*kept, ""} and "99_unknown" in set(runs.run)
    assert len(runs) == 8 * len(kept) + ("early_exit" in kept) + 1
    for name in ("table1_exits.csv", "curve_points.csv", "auc.csv", "lr_search.csv"):
        assert set(pd.read_csv(out / name).method) == set(kept), name
    assert f"report: --methods {line}" in capsys.readouterr().err
    md = (out / "report.md").read_text()
    assert f"Methods (`--methods`): {line}." in md
    assert "| SWEET |" not in md


def test_methods_filter_comes_before_the_mixed_config_check(sweep: Path, tmp_path: Path):
    for results in sweep.glob("*_sweet-*/results.json"):  # SWEET trained longer than Early-Exit
        _set_max_epochs(results.parent, 3)
    assert run_report(tmp_path, str(sweep))[0] == 2
    rc, out = run_report(tmp_path, str(sweep), "--methods", "early_exit")
    assert rc == 0 and set(pd.read_csv(out / "lr_search.csv").method) == {"early_exit"}
    md = (out / "report.md").read_text()
    assert "Methods (`--methods`): early_exit; 9 runs of 1 other method left out (sweet 9)." in md


def test_methods_filter_names_what_was_found(sweep: Path, tmp_path: Path, capsys):
    rc, out = run_report(tmp_path, str(sweep), "--methods", "sweet", "cascade", "two_stage")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not (out / "report.md").exists()
    found = "methods found: early_exit, sweet"
    assert err[-1] == f"report: --methods cascade two_stage: no run of these methods; {found}"


def test_every_method_of_a_figure_has_its_own_colour():
    from sweet_lightning.report.figures import COLORS, draw_model_exits

    methods = ["early_exit", "sweet", "cascade", "alternating", "two_stage", "weighted_early_exit"]
    table1 = pd.DataFrame(
        [
            {"model": "m", "task": task, "method": method, "layer": layer, "mean": 50.0 + i, "std": 1.0}
            for i, method in enumerate(methods)
            for task in ("sst2", "average")
            for layer in (1, 2)
        ]
    )
    fig = draw_model_exits(table1, "m")
    for ax in fig.axes:
        colours = {
            line.get_label(): line.get_color() for line in ax.lines if not line.get_label().startswith("_")
        }
        # errorbar draws its data line unlabelled: read the colours from the containers instead
        colours = colours or {c.get_label(): c.lines[0].get_color() for c in ax.containers}
        assert len(colours) == len(methods) and len(set(colours.values())) == len(methods)
        assert colours["Early-Exit"] == COLORS["early_exit"] and colours["SWEET"] == COLORS["sweet"]
    # more methods than the paper's three: one figure legend beside the panels, none inside them
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)


def test_title_heads_report_md(sweep: Path, tmp_path: Path):
    rc, out = run_report(tmp_path, str(sweep), "--title", "Early-exit training strategies")
    assert rc == 0 and (out / "report.md").read_text().splitlines()[0] == "# Early-exit training strategies"


def test_split_option_reports_that_split_of_every_run(sweep: Path, tmp_path: Path, capsys):
    # every completed run but one gets a second dev split (logits only: the report recomputes it);
    # Table 1 must hold those logits' own exit scores at the lr the calibration hold-out chose
    rng = np.random.default_rng(1)
    completed = [r for r in load_all(sweep) if r.status == "completed"]
    without, scores = completed[0], {}
    for run in completed[1:]:
        logits, labels = rng.normal(size=(4, 30, 2)), rng.integers(0, 2, size=30)
        np.savez(run.path / "logits_dev_mismatched.npz", logits=logits, labels=labels)
        scores[(run.method, run.task, run.lr, run.seed)] = individual_exit_scores(logits, labels)
    code, out = run_report(tmp_path, str(sweep), "--split", "dev_mismatched")
    assert code == 0
    assert (
        "Split (`--split`): every table and figure reads `dev_mismatched`" in (out / "report.md").read_text()
    )
    runs = pd.read_csv(out / "runs.csv").set_index("path")
    assert runs.loc[str(without.path), "status"] == "incomplete"
    assert "logits_dev_mismatched.npz" in runs.loc[str(without.path), "note"]
    table = pd.read_csv(out / "table1_exits.csv")
    table = table[table.task != "average"]
    assert len(table) > 0
    for row in table.itertuples():
        seeds = [v for (m, t, lr, _), v in scores.items() if (m, t, lr) == (row.method, row.task, row.lr)]
        exit_index = EXIT_LAYERS.index(row.layer)
        assert row.n == len(seeds)
        assert row.mean == pytest.approx(100 * np.mean([s[exit_index] for s in seeds]))


@pytest.mark.parametrize(
    ("split", "message"),
    [("calibration", "is not reported"), ("test_matched", "no run evaluated it")],
)
def test_split_option_refuses_a_split_it_cannot_report(sweep: Path, tmp_path: Path, capsys, split, message):
    code, out = run_report(tmp_path, str(sweep), "--split", split)
    assert code == 2 and message in capsys.readouterr().err
    assert not out.exists()  # nothing half-written


def test_lr_selection_refuses_a_split_it_does_not_know(sweep: Path):
    # a Python caller's typo must not quietly select on the reported split
    with pytest.raises(ValueError, match="select the lr on one of calibration, dev, not 'calib'"):
        lr_search(load_all(sweep), "calib")
