"""GLUE data: exact TSV parsing, seeded train/calibration sampling, and a Lightning DataModule.

The DataModule reads the classic GLUE TSV layout (``GLUE_DIR``) or, failing that, the hub copy,
tokenises every split once and keeps the result on disk, so repeated runs (other seeds, methods or
models with the same tokenizer) skip straight to training.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, SequentialSampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from sweet_lightning.batching import MEGA_BATCHES, LengthGroupedBatchSampler, LengthOrdered, token_lengths
from sweet_lightning.cli import first_line
from sweet_lightning.modeling import load_tokenizer
from sweet_lightning.run_record import CALIBRATION_SPLIT
from sweet_lightning.tasks import TaskSpec, get_task

log = logging.getLogger(__name__)

# Bump when the cached layout or the tokenisation recipe changes, so stale entries are never reused.
CACHE_VERSION = 1
_SET_GLUE_DIR = "set GLUE_DIR=/path/to/glue or data.glue_dir=..."

Rows = tuple[list[tuple[str, ...]], list[int], int]


def read_glue_tsv(task: TaskSpec | str, path: str | os.PathLike) -> Rows:
    """Parse one GLUE TSV into (texts in ``task.text_keys`` order, class ids, number of skipped rows).

    Quotes are plain characters in GLUE (QUOTE_NONE): a quote-aware parser would glue rows together.
    """
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GLUE {spec.name} file not found: {path}; {_SET_GLUE_DIR}")
    label_ids = {label: i for i, label in enumerate(spec.labels)}
    texts: list[tuple[str, ...]] = []
    labels: list[int] = []
    skipped_lines: list[int] = []
    # utf-8-sig drops the BOM that MRPC carries in front of its first header name
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            header = next(reader, []) if spec.has_header else list(spec.tsv_columns)
            missing = [k for k in (*spec.text_keys, spec.label_key) if k not in header]
            if missing:
                raise ValueError(
                    f"{path}: no column(s) {missing} for task {spec.name}; the columns are {header}"
                )
            text_cols = [header.index(k) for k in spec.text_keys]
            label_col = header.index(spec.label_key)
            for row in reader:
                # A short or long row is a broken line (QQP joins one label to its question); reading it
                # by position would shift fields, so it is dropped rather than guessed at.
                if len(row) != len(header):
                    skipped_lines.append(reader.line_num)
                    continue
                label = row[label_col]
                if label not in label_ids:
                    raise ValueError(
                        f"{path} line {reader.line_num}: label {label!r} is not one of {list(spec.labels)}"
                    )
                texts.append(tuple(row[c] for c in text_cols))
                labels.append(label_ids[label])
        except csv.Error as err:
            raise ValueError(f"{path} line {reader.line_num}: {err}") from err
        except UnicodeDecodeError as err:
            from sweet_lightning.textfiles import not_utf8

            raise ValueError(f"{not_utf8(path)}: re-save it as UTF-8") from err
    if not texts:
        # checked here, before anything is cached: an empty split would only fail later, deep in datasets
        broken = f" ({len(skipped_lines)} malformed row(s) skipped)" if skipped_lines else ""
        raise ValueError(f"{path} has no data rows{broken}: it needs at least one example row")
    if skipped_lines:
        shown = ", ".join(map(str, skipped_lines[:5])) + (", ..." if len(skipped_lines) > 5 else "")
        warnings.warn(
            f"{path}: skipped {len(skipped_lines)} malformed row(s) without exactly {len(header)} "
            f"tab-separated fields (line {shown})",
            stacklevel=2,
        )
    return texts, labels, len(skipped_lines)


def sample_indices(
    pool_size: int, train_size: int, seed: int, calibration_size: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split a seeded permutation of the pool into (train indices, calibration indices).

    Calibration rows come first so that a given seed holds out the same rows whatever train_size is,
    and the draw depends on nothing but these arguments (not on the method or model being run).
    """
    if train_size <= 0:
        raise ValueError(f"train_size must be > 0 (got {train_size}), e.g. train_size=6000")
    if calibration_size < 0 or calibration_size >= pool_size:
        raise ValueError(
            f"calibration_size must be in [0, {pool_size}) for a pool of {pool_size} rows "
            f"(got {calibration_size}): lower calibration_size or use calibration=dev"
        )
    order = np.random.default_rng(seed).permutation(pool_size)
    calibration = order[:calibration_size]
    train = order[calibration_size : calibration_size + min(train_size, pool_size - calibration_size)]
    return train, calibration


def glue_files(spec: TaskSpec, glue_dir: str | os.PathLike) -> dict[str, Path]:
    """Paths of the training pool and every evaluation split, checked to exist."""
    folder = Path(glue_dir).expanduser() / spec.glue_dir
    train = folder / "train.tsv"
    if not train.is_file():
        raise FileNotFoundError(f"GLUE {spec.name} training file not found: {train}; {_SET_GLUE_DIR}")
    files = {"train": train}
    for split, name in spec.eval_files:
        files[split] = folder / name
        if not files[split].is_file():
            raise FileNotFoundError(
                f"GLUE {spec.name} evaluation split {split!r} expects {files[split]}, which is missing "
                f"(present: {sorted(p.name for p in folder.glob('*.tsv'))}); {_SET_GLUE_DIR}"
            )
    return files


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of what decides the token ids, so a changed vocabulary or normaliser misses the cache."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        for per_call in ("truncation", "padding"):  # settings the backend remembers: not part of the key
            state.pop(per_call, None)
        digest.update(json.dumps(state, sort_keys=True).encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _tokenize(
    tokenizer: PreTrainedTokenizerBase, texts: list[tuple[str, ...]], labels: list[int], max_length: int
) -> datasets.Dataset:
    columns: dict[str, list] = {}
    chunk = 4096  # bounds the memory of the fast tokenizer's Encoding objects on large pools
    for start in range(0, len(texts), chunk):
        fields = [list(col) for col in zip(*texts[start : start + chunk], strict=True)]
        # two-text tasks go through the pair API so segment ids and truncation treat both texts
        encoded = tokenizer(*fields, truncation=True, max_length=max_length)
        for key, values in encoded.items():
            if key != "attention_mask":  # all ones before padding; the collator rebuilds it per batch
                columns.setdefault(key, []).extend(values)
    columns["labels"] = list(labels)
    return datasets.Dataset.from_dict(columns)


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    was_disabled = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _hub_rows(spec: TaskSpec, split: datasets.Dataset) -> Rows:
    texts = list(zip(*(split[key] for key in spec.hub_text_keys), strict=True))
    labels = [int(v) for v in split["label"]]
    bad = [v for v in labels if not 0 <= v < spec.num_labels]
    if bad:
        raise ValueError(f"hub split of {spec.name} has label {bad[0]} outside 0..{spec.num_labels - 1}")
    return texts, labels, 0


class GlueDataModule(L.LightningDataModule):
    """One GLUE task: a seeded training sample (plus an optional calibration hold-out) and its dev splits.

    `group_by_length` draws training batches of similar lengths (sweet_lightning.batching): other
    batches than the plain shuffle at the same seed, the same rows per epoch. `sort_eval_by_length`
    runs evaluation rows longest first; the module puts their outputs back in dataset order.
    """

    def __init__(
        self,
        task: str,
        tokenizer: str,
        glue_dir: str | None = None,
        train_size: int = 6000,
        max_seq_length: int = 256,
        batch_size: int = 16,
        eval_batch_size: int = 64,
        seed: int = 42,
        calibration_size: int = 0,
        num_workers: int = 0,
        cache_dir: str | None = None,
        group_by_length: bool = False,
        sort_eval_by_length: bool = True,
        mega_batches: int = MEGA_BATCHES,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # self.hparams holds every argument
        self.task = get_task(task)
        if train_size <= 0:  # sample_indices refuses it too, but only after minutes of tokenising
            raise ValueError(f"train_size must be > 0 (got {train_size}), e.g. train_size=6000")
        xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else Path(xdg) / "sweet_lightning"
        self.eval_split_names: list[str] = list(self.task.eval_splits)
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.collator: DataCollatorWithPadding | None = None
        self.train_indices: np.ndarray | None = None
        self.calibration_indices: np.ndarray | None = None
        self.train_dataset: datasets.Dataset | None = None
        self.calibration_dataset: datasets.Dataset | None = None
        self.eval_datasets: dict[str, datasets.Dataset] = {}

    # -- loading -----------------------------------------------------------------------------------

    def _sources(self) -> dict[str, tuple[str, Callable[[], Rows]]]:
        """Split -> (fingerprint of its raw data, loader of its rows); checks every split exists first."""
        glue_dir = self.hparams.glue_dir or os.environ.get("GLUE_DIR") or None
        spec = self.task
        if glue_dir is not None:
            return {
                split: (_file_sha256(path), lambda path=path: read_glue_tsv(spec, path))
                for split, path in glue_files(spec, glue_dir).items()
            }
        try:
            hub = datasets.load_dataset("nyu-mll/glue", spec.hub_config)
        except Exception as err:
            raise RuntimeError(
                f"no GLUE_DIR given and the hub copy of nyu-mll/glue ({spec.hub_config}) could not be loaded "
                f"({first_line(err, typed=True)[:200]}); {_SET_GLUE_DIR}"
            ) from err
        names = {"train": "train", **{s: spec.hub_eval_splits[s] for s in spec.eval_splits}}
        return {
            split: (hub[name]._fingerprint, lambda name=name: _hub_rows(spec, hub[name]))
            for split, name in names.items()
        }

    def _tokenized(
        self, split: str, fingerprint: str, load_rows: Callable[[], Rows], tok_key: str
    ) -> datasets.Dataset:
        """The split tokenised, from the disk cache when the data, tokenizer and length all match."""
        spec = self.task
        key = [CACHE_VERSION, spec.name, spec.text_keys, spec.labels, split, fingerprint, tok_key]
        key = json.dumps([*key, self.hparams.max_seq_length])
        entry = self.cache_dir / f"{spec.name}-{split}-{hashlib.sha256(key.encode()).hexdigest()[:20]}"
        meta = json.loads((entry / "meta.json").read_text()) if (entry / "meta.json").is_file() else None
        # a 0-row entry (written before empty files were refused) cannot be loaded: read the file again
        if meta and meta["rows"] > 0:
            rows, skipped = meta["rows"], meta["skipped"]
            log.info(
                "%s/%s: %d tokenised rows from cache %s (%d skipped)", spec.name, split, rows, entry, skipped
            )
            return datasets.load_from_disk(str(entry))
        texts, labels, skipped = load_rows()
        dataset = _tokenize(self.tokenizer, texts, labels, self.hparams.max_seq_length)
        # Write beside the entry and rename it in place, so a crash or a concurrent rank never leaves a
        # half-written entry that a later run would trust (meta.json is written last, as the marker).
        tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with _quiet_datasets():
            dataset.save_to_disk(str(tmp))
        (tmp / "meta.json").write_text(json.dumps({"rows": len(dataset), "skipped": skipped, "key": key}))
        if (entry / "meta.json").is_file():  # another process finished the same entry meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(entry, ignore_errors=True)  # an entry without meta.json is a crash leftover
            try:
                os.replace(tmp, entry)
            except OSError:  # lost a race to a concurrent writer; its entry holds the same rows
                shutil.rmtree(tmp, ignore_errors=True)
        return datasets.load_from_disk(str(entry))

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:  # Lightning calls setup once per stage; the data do not change
            return
        sources = self._sources()  # fail on missing files before spending time on the tokenizer
        self.tokenizer = load_tokenizer(self.hparams.tokenizer)  # a hub name, a path or package:<module>
        self.collator = DataCollatorWithPadding(self.tokenizer)
        tok_key = tokenizer_fingerprint(self.tokenizer)
        # The whole pool is tokenised and cached, so other seeds and sizes reuse the same entry.
        pool = self._tokenized("train", *sources["train"], tok_key)
        hp = self.hparams
        self.train_indices, self.calibration_indices = sample_indices(
            len(pool), hp.train_size, hp.seed, hp.calibration_size
        )
        self.train_dataset = pool.select(self.train_indices)
        self.calibration_dataset = pool.select(self.calibration_indices) if hp.calibration_size else None
        self.eval_datasets = {
            split: self._tokenized(split, *sources[split], tok_key) for split in self.eval_split_names
        }

    # -- loaders -----------------------------------------------------------------------------------

    def _loader(self, dataset: datasets.Dataset | LengthOrdered | None, seeded: bool, **kwargs) -> DataLoader:
        if dataset is None or self.collator is None:
            raise RuntimeError("GlueDataModule.setup() must run before asking for a dataloader")
        hp = self.hparams
        return DataLoader(
            dataset,
            # A loader draws its workers' base seed at every new iterator, from the global torch stream
            # when it has no generator: in training that draw would shift the dropout stream
            # EpochSeeding sets, and by a different amount in a resumed run (whose first iterator comes
            # before the reseed). A fresh generator per call: the batch order depends only on the seed.
            generator=torch.Generator().manual_seed(hp.seed) if seeded else None,
            collate_fn=self.collator,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        hp, dataset = self.hparams, self.train_dataset
        if not hp.group_by_length or dataset is None:  # None: _loader says that setup() must run first
            return self._loader(dataset, True, batch_size=hp.batch_size, shuffle=True)
        sampler = LengthGroupedBatchSampler(
            # under DDP Lightning swaps this for its DistributedSampler, which picks this rank's shard
            sampler=SequentialSampler(dataset),
            lengths=token_lengths(dataset),
            batch_size=hp.batch_size,
            seed=hp.seed,
            mega_batches=hp.mega_batches,
        )
        return self._loader(dataset, True, batch_sampler=sampler)

    @property
    def val_split_names(self) -> list[str]:
        """Names of `val_dataloader()`'s loaders: the eval splits, then "calibration" if held out (it is
        evaluated with the others so that temperatures can be fitted on it every validation epoch)."""
        return self.eval_split_names + ([CALIBRATION_SPLIT] if self.calibration_dataset is not None else [])

    def val_dataloader(self) -> list[DataLoader]:
        loaders = [self.eval_dataloader(split) for split in self.eval_split_names]
        if self.calibration_dataset is not None:
            loaders.append(self.calibration_dataloader())
        return loaders

    def eval_dataloader(self, split: str) -> DataLoader:
        if split not in self.eval_split_names:
            raise ValueError(
                f"{self.task.name} has no evaluation split {split!r}; choose from {self.eval_split_names}"
            )
        return self._eval_loader(self.eval_datasets.get(split))

    def calibration_dataloader(self) -> DataLoader:
        if self.hparams.calibration_size == 0:
            raise ValueError("no calibration set: set calibration_size > 0")
        return self._eval_loader(self.calibration_dataset)

    def _eval_loader(self, dataset: datasets.Dataset | None) -> DataLoader:
        # longest rows first: batches pad to similar lengths; the rows' outputs go back to dataset
        # order in AdaptiveModule.take_eval_outputs, which reads the view's `order`
        if dataset is not None and self.hparams.sort_eval_by_length:
            dataset = LengthOrdered(dataset)
        return self._loader(dataset, False, batch_size=self.hparams.eval_batch_size)
