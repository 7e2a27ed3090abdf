"""Hydra overrides of `launch.py` (and of the tools that take them), checked and expanded before
Hydra sees them.

Hydra's glob (`task=glob(*)`) does not look into nested config groups, so the literal `task=glue/*`
would fail. `expand_overrides` turns `group=dir/*` (any fnmatch pattern) into the comma-separated
list of matching options, and rejects unknown options of a config group with a one-line error
listing the valid ones. It also rejects unknown top-level keys (Hydra itself suggests
`+trainsize=16` for a typo, which would then be silently ignored) and `-m launcher=slurm` on a
machine without Slurm, each with one line instead of a traceback.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.util
import shutil
from pathlib import Path

import yaml

# the configs live in the checkout beside the package (an editable install, as scripts/setup.sh does)
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class OverrideError(ValueError):
    pass


def group_options(conf_dir: Path, group: str) -> list[str]:
    """Options of a config group, nested ones as "dir/name" (e.g. task -> glue/rte, ...)."""
    root = conf_dir / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def _keys(path: Path) -> set[str]:
    return set(yaml.safe_load(path.read_text()) or {}) - {"defaults"}


def top_level_keys(conf_dir: Path, config: str) -> set[str]:
    """Keys a composed `config` can hold at its top level: its own and those of the configs it
    extends, the config groups, and what `@package _global_` options add (launcher=slurm sets resume)."""
    keys = {"hydra"} | {p.name for p in conf_dir.iterdir() if p.is_dir()}
    todo = [config]
    while todo:
        path = conf_dir / f"{todo.pop()}.yaml"
        keys |= _keys(path)
        for entry in (yaml.safe_load(path.read_text()) or {}).get("defaults", []):
            if isinstance(entry, str) and (conf_dir / f"{entry}.yaml").is_file():
                todo.append(entry)
    for path in conf_dir.glob("*/**/*.yaml"):
        if "@package _global_" in path.read_text().split("\n", 1)[0]:
            keys |= _keys(path)
    return keys


def check_launcher(args: list[str], conf_dir: Path) -> None:
    """A multirun through a launcher that cannot start here fails now, not in a submitit traceback."""
    chosen = [a.partition("=")[2] for a in args if a.partition("=")[0].lstrip("+~") == "launcher"]
    if not chosen or not ({"-m", "--multirun"} & set(args)):
        return
    path = conf_dir / "launcher" / f"{chosen[-1]}.yaml"
    target = path.read_text() if path.is_file() else ""  # an unknown option is reported with the others
    if "submitit" in target and importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
        raise OverrideError(f"launcher={chosen[-1]} needs the slurm extra: pip install -e '.[slurm]'.")
    # submitit submits with sbatch and refuses to start without srun
    missing = [cmd for cmd in ("sbatch", "srun") if shutil.which(cmd) is None]
    if "submitit_slurm" in target and missing:
        verb = "is" if len(missing) == 1 else "are"
        raise OverrideError(
            f"launcher={chosen[-1]} needs Slurm, but {' and '.join(missing)} {verb} not on PATH: "
            "run from a Slurm login node, or use launcher=local or launcher=local_parallel."
        )


def expand_overrides(args: list[str], conf_dir: Path = CONF_DIR, config: str = "train") -> list[str]:
    """`args` with group wildcards expanded; unknown options, unknown top-level keys and a launcher
    that cannot run here are one-line OverrideErrors. `config` is the primary config's name."""
    check_launcher(args, conf_dir)
    known = top_level_keys(conf_dir, config)
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+~")
        # `name=...` and `+name=...` must name a known key; `a.b=...` (nested) and `hydra/x=...` are Hydra's
        if sep and not arg.startswith("-") and not any(ch in group for ch in "./@") and group not in known:
            close = difflib.get_close_matches(group, sorted(known), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            valid = ", ".join(sorted(known))
            raise OverrideError(f"{arg}: unknown config key {group!r}; {hint}valid top-level keys: {valid}.")
        # only `group=option` overrides of a config group; `a.b=...`, flags, null and Hydra's sweeps pass
        passed = not sep or arg.startswith("-") or "." in group or not (conf_dir / group).is_dir()
        if passed or value in ("null", "") or value.startswith(("glob(", "choice(", "range(")):
            out.append(arg)
            continue
        options = group_options(conf_dir, group)
        chosen = []
        for item in value.split(","):
            matches = [o for o in options if fnmatch.fnmatchcase(o, item)]  # an item without *?[ is itself
            if not matches and any(ch in item for ch in "*?["):
                raise OverrideError(
                    f"{group}={item} matches no {group} config: choose from {', '.join(options)}."
                )
            if not matches:
                raise OverrideError(f"Unknown {group} {item!r}: choose one of {', '.join(options)}.")
            chosen += matches
        out.append(f"{key}={','.join(chosen)}")
    return out
