"""What a run prints: each log line once, none of the libraries' noise, and a closing block that says
where the run is, how it scored and how to use it.
"""

from __future__ import annotations

import logging
import re
import shlex
import warnings
from pathlib import Path

from sweet_lightning.run_record import RunRecord

# Lightning advertises its cloud products on every Trainer: litlogger (loggers) and litmodels (checkpoints)
PROMOTION = re.compile(r"💡 Tip: .*\[(litlogger|litmodels)\]")


def _not_a_promotion(record: logging.LogRecord) -> bool:
    return not PROMOTION.search(record.getMessage())


def quiet_console() -> None:
    """Call once logging is configured (inside a Hydra job). Idempotent."""
    import lightning  # noqa: F401  (its import adds the console handler removed below)

    if logging.getLogger().handlers:
        # `lightning` always adds its own stderr handler and still propagates to the root logger, so
        # under Hydra (which configures root: console + the job's .log file) every line came twice
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
                logger.removeHandler(handler)
            logger.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_not_a_promotion)  # added once, however often it is called
    # Lightning 2.6's own _pytree helper uses a torch class torch has deprecated: not ours to fix
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def end_of_run(record: RunRecord, run_dir: Path) -> str:
    """The block printed when a run ends (the run record's numbers on the primary split)."""
    split = record.primary_split
    if split not in record.evaluation:  # no evaluation split: nothing to score
        return f"run finished\n  run dir      {run_dir}"
    ev = record.evaluation[split]
    exits = "  ".join(f"L{e['layer']} {_score(e['score'])}" for e in ev["exits"])
    at = "  ".join(f"{float(p):g}: {_score(s)}" for p, s in ev["at_speedup"].items())
    lo, hi = ev["auc_interval"]
    path = shlex.quote(str(run_dir))
    lines = [
        f"run dir      {run_dir}",
        f"exits        {split} {ev['metric']} per exit layer: {exits}",
        f"AUC          {_score(ev['auc'])} ({ev['policy']} policy, speedup {lo:g}..{hi:g}, "
        f"covered {ev['auc_coverage']:.0%})",
        f"at speedup   {at}",
        f"re-evaluate  python -m sweet_lightning.evaluate {path} --exit-policy entropy",
        f"predict      python -m sweet_lightning.predict {path} --input texts.tsv --target-speedup 0.5 "
        "--output preds.jsonl"
        if record.checkpoint
        else "predict      no checkpoint kept to serve (keep_checkpoints=false or callbacks=none)",
    ]
    collapsed = [str(c["exit"]) for c in record.collapsed_exits or () if c["split"] == split]
    if collapsed:
        lines.insert(2, f"collapsed    exits {', '.join(collapsed)} did not learn (see the warnings above)")
    return "run finished\n" + "\n".join("  " + line for line in lines)
