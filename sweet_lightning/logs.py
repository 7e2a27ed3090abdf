"""A CSV logger whose `metrics.csv` survives `resume=true`.

Lightning's CSVLogger deletes the `metrics.csv` it finds when a new fit starts, so a resumed run
would keep only the rows from the resume on. With `append=True` (conf/logger/csv.yaml sets it to
`${resume}`) the earlier rows stay and the new ones are added below them, so the file holds the
whole history: the steps between the last checkpoint and the interruption appear twice, once
from each attempt, in the order they were trained.
"""

from __future__ import annotations

import csv

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # instead of deleting metrics.csv: continue it, with its columns (new ones widen the header)
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = next(csv.reader(file), [])


class ResumableCSVLogger(CSVLogger):
    def __init__(self, *args, append: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.append = append

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and self.append:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return super().experiment
