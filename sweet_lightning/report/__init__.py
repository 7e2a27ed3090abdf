"""Report over sweeps of training runs: tables in the layout of the paper's Table 1 and 2,
speed-accuracy curves at fixed speedups (Figs. 4-6) and the runs that failed or are missing.

Entry point: `python -m sweet_lightning.report <sweep dir> ... --out report/` (see docs/report.md).
The steps, a module each: `collect` (find and load runs, refuse mixed configurations), `aggregate`
(choose each lr, summarise over seeds), `tables` (the CSV tables), `write` (report.md and the
report directory, with `figures`); `__main__` is the command.
"""

from sweet_lightning.run_record import find_run_dirs

from .aggregate import Summary, summarize, t_critical
from .collect import Run, load_run, mixed_config_problems
from .write import write_report

__all__ = [
    "Run",
    "Summary",
    "find_run_dirs",
    "load_run",
    "mixed_config_problems",
    "summarize",
    "t_critical",
    "write_report",
]
