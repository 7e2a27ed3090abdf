"""Report over sweeps of training runs: tables in the layout of the paper's Table 1 and 2,
speed-accuracy curves at fixed speedups (Figs. 4-6) and the runs that failed or are missing.

Entry point: `python -m sweet_lightning.report <sweep dir> ... --out report/` (see docs/report.md).
"""

from .build import write_report
from .collect import Run, find_run_dirs, load_run
from .mixing import mixed_config_problems
from .stats import Summary, summarize, t_critical

__all__ = ["Run", "Summary", "find_run_dirs", "load_run", "mixed_config_problems", "summarize", "t_critical",
           "write_report"]
