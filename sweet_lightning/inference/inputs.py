"""Read texts to classify from a TSV, CSV or JSONL file with the task's text columns.

Column names may be the GLUE TSV names (`TaskSpec.text_keys`, e.g. "#1 String") or the hub
names (`hub_text_keys`, e.g. "sentence1"). Every problem is a one-line `InputError` saying
what was found and what is needed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sweet_lightning.tasks import TaskSpec
from sweet_lightning.textfiles import not_utf8

FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class InputError(ValueError):
    pass


def read_rows(path: str | Path) -> tuple[list[str], list[dict]]:
    """(column names, rows as dicts) of a .tsv, .csv or .jsonl file."""
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"cannot read {path.name!r}: use a .tsv, .csv or .jsonl file")
    if not path.is_file():
        raise InputError(f"input file {str(path)!r} does not exist")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            if kind == "jsonl":
                columns, rows = _read_jsonl(f, path)
            else:
                # GLUE TSVs hold unbalanced quotes: tab-separated text is read literally
                options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if kind == "tsv" else {}
                reader = csv.DictReader(f, **options)
                rows = list(reader)
                columns = list(reader.fieldnames or [])
    except UnicodeDecodeError as err:  # a binary file, or text in another encoding
        raise InputError(f"{not_utf8(path)}: give a UTF-8 text file") from err
    except csv.Error as err:  # e.g. NUL bytes
        raise InputError(f"{path} line {reader.line_num} cannot be read as {kind.upper()} ({err})") from err
    if not rows:
        raise InputError(f"{path.name!r} has no rows: give a header line and at least one row")
    return columns, rows


def _read_jsonl(f, path: Path) -> tuple[list[str], list[dict]]:
    rows, columns = [], {}
    for number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(
                f"{path.name!r} line {number} is not JSON ({err.msg}): one object per line"
            ) from err
        if not isinstance(row, dict):
            raise InputError(f"{path.name!r} line {number} is not a JSON object: one object per line")
        columns.update(dict.fromkeys(row))
        rows.append(row)
    return list(columns), rows


def text_columns(columns: list[str], task: TaskSpec, source: str = "input") -> tuple[str, ...]:
    """The task's text columns as spelled in this file (TSV names first, then hub names)."""
    for keys in (task.text_keys, task.hub_text_keys):
        if all(k in columns for k in keys):
            return keys
    needed = ", ".join(task.text_keys)
    if task.hub_text_keys != task.text_keys:
        needed += f" (or {', '.join(task.hub_text_keys)})"
    found = ", ".join(columns) if columns else "none"
    raise InputError(f"{source} has columns [{found}]; task {task.name} needs {needed}: rename or add them")


def read_texts(path: str | Path, task: TaskSpec) -> list[str | tuple[str, str]]:
    """Texts of a file, one string per row (or a pair for two-sentence tasks)."""
    columns, rows = read_rows(path)
    keys = text_columns(columns, task, repr(Path(path).name))
    texts: list[str | tuple[str, str]] = []
    for number, row in enumerate(rows, start=1):
        missing = [k for k in keys if row.get(k) is None]
        if missing:
            raise InputError(f"{Path(path).name!r} row {number} has no value for {', '.join(missing)}")
        values = tuple(str(row[k]) for k in keys)
        texts.append(values[0] if len(values) == 1 else values)
    return texts
