"""Command-line overrides checked and expanded before Hydra sees them.

Hydra's glob (`task=glob(*)`) does not look into nested config groups, so the literal
`task=glue/*` would fail. `expand_overrides` turns `group=dir/*` (any fnmatch pattern) into
the comma-separated list of matching options, and rejects unknown options of a config
group with a one-line error listing the valid ones.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class OverrideError(ValueError):
    pass


def group_options(conf_dir: Path, group: str) -> list[str]:
    """Options of a config group, nested ones as "dir/name" (e.g. task -> glue/rte, ...)."""
    root = conf_dir / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def expand_overrides(args: list[str], conf_dir: Path = CONF_DIR) -> list[str]:
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+~")
        # only `group=option` overrides of a config group; `a.b=...` and flags pass through
        if not sep or arg.startswith("-") or "." in group or not (conf_dir / group).is_dir():
            out.append(arg)
            continue
        if value in ("null", "") or value.startswith(("glob(", "choice(", "range(")):
            out.append(arg)
            continue
        options = group_options(conf_dir, group)
        chosen = []
        for item in value.split(","):
            if any(ch in item for ch in "*?["):
                matches = [o for o in options if fnmatch.fnmatchcase(o, item)]
                if not matches:
                    raise OverrideError(
                        f"{group}={item} matches no {group} config: choose from {', '.join(options)}."
                    )
                chosen.extend(matches)
            elif item not in options:
                raise OverrideError(f"Unknown {group} {item!r}: choose one of {', '.join(options)}.")
            else:
                chosen.append(item)
        out.append(f"{key}={','.join(chosen)}")
    return out
