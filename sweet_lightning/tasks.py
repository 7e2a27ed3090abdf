"""The GLUE task table: the single source of truth for every task the project knows.

Each entry says where the task's text lives (in the classic GLUE TSV files and on the
Hugging Face hub), how many labels it has, which metric selects models, and which
evaluation splits exist. Data loading, metrics, configs and reports all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    name: str  # config name, e.g. "sst2" (task=glue/sst2)
    glue_dir: str  # folder name in the classic GLUE layout, e.g. "SST-2"
    hub_config: str  # config name of the "nyu-mll/glue" hub dataset
    text_keys: tuple[str, ...]  # column names in the TSV header (CoLA: names from tsv_columns)
    hub_text_keys: tuple[str, ...]  # column names on the hub
    label_key: str  # label column in the TSV header
    labels: tuple[str, ...]  # label strings as they appear in the TSVs; index = class id
    metric: str  # the task's main metric: "accuracy" or "mcc"
    extra_metrics: tuple[str, ...] = ()
    # evaluation split name -> TSV file name (hub split names: see hub_eval_splits)
    eval_files: tuple[tuple[str, str], ...] = (("dev", "dev.tsv"),)
    has_header: bool = True
    # column names for files without a header line (CoLA); files with a header are read by name
    tsv_columns: tuple[str, ...] = ()

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return tuple(split for split, _ in self.eval_files)

    @property
    def hub_eval_splits(self) -> dict[str, str]:
        """Our split name -> hub split name."""
        return {
            "dev": "validation",
            "dev_matched": "validation_matched",
            "dev_mismatched": "validation_mismatched",
        }


# one task per row group: the table reads as a table, so the formatter leaves it
# fmt: off
TASKS: dict[str, TaskSpec] = {
    "cola": TaskSpec(
        name="cola", glue_dir="CoLA", hub_config="cola",
        # CoLA's TSVs have no header: source, label, original mark, sentence
        text_keys=("sentence",), hub_text_keys=("sentence",), label_key="label",
        labels=("0", "1"), metric="mcc", extra_metrics=("accuracy",), has_header=False,
        tsv_columns=("source", "label", "original_label", "sentence"),
    ),
    "sst2": TaskSpec(
        name="sst2", glue_dir="SST-2", hub_config="sst2",
        text_keys=("sentence",), hub_text_keys=("sentence",), label_key="label",
        labels=("0", "1"), metric="accuracy",
    ),
    "mrpc": TaskSpec(
        name="mrpc", glue_dir="MRPC", hub_config="mrpc",
        text_keys=("#1 String", "#2 String"), hub_text_keys=("sentence1", "sentence2"),
        label_key="Quality", labels=("0", "1"), metric="accuracy", extra_metrics=("f1",),
    ),
    "rte": TaskSpec(
        name="rte", glue_dir="RTE", hub_config="rte",
        text_keys=("sentence1", "sentence2"), hub_text_keys=("sentence1", "sentence2"),
        label_key="label", labels=("entailment", "not_entailment"), metric="accuracy",
    ),
    "mnli": TaskSpec(
        name="mnli", glue_dir="MNLI", hub_config="mnli",
        text_keys=("sentence1", "sentence2"), hub_text_keys=("premise", "hypothesis"),
        label_key="gold_label", labels=("entailment", "neutral", "contradiction"),
        metric="accuracy",
        eval_files=(("dev_matched", "dev_matched.tsv"), ("dev_mismatched", "dev_mismatched.tsv")),
    ),
    "qnli": TaskSpec(
        name="qnli", glue_dir="QNLI", hub_config="qnli",
        text_keys=("question", "sentence"), hub_text_keys=("question", "sentence"),
        label_key="label", labels=("entailment", "not_entailment"), metric="accuracy",
    ),
    "qqp": TaskSpec(
        name="qqp", glue_dir="QQP", hub_config="qqp",
        text_keys=("question1", "question2"), hub_text_keys=("question1", "question2"),
        label_key="is_duplicate", labels=("0", "1"), metric="accuracy", extra_metrics=("f1",),
    ),
}
# fmt: on


def get_task(name: str) -> TaskSpec:
    """Look a task up by config name (accepts "glue/rte" as well as "rte")."""
    key = name.split("/")[-1].lower()
    if key not in TASKS:
        raise ValueError(
            f"Unknown task {name!r}: choose one of {', '.join(sorted(TASKS))} (e.g. task=glue/rte)."
        )
    return TASKS[key]
