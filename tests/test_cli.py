"""The command line: override expansion for the Hydra apps, and the one argparse convention of every
other tool (docs/cli.md): --help lists each option with its meaning and default, a bad option is one
line naming the valid ones, the older key=value spelling still parses, the console scripts run, and
every command written in README.md and docs/*.md parses."""

import argparse
import importlib
import os
import re
import shlex
import subprocess
import sys

import pytest

from sweet_lightning.overrides import OverrideError, expand_overrides, group_options
from tests.conftest import REPO

ALL_TASKS = "task=glue/cola,glue/mnli,glue/mrpc,glue/qnli,glue/qqp,glue/rte,glue/sst2"


def test_nested_wildcard_expands_to_all_seven_tasks():
    assert expand_overrides(["-m", "method=sweet", "task=glue/*"]) == ["-m", "method=sweet", ALL_TASKS]


def test_partial_pattern_and_other_groups():
    assert expand_overrides(["task=glue/q*"]) == ["task=glue/qnli,glue/qqp"]
    assert expand_overrides(["model=bert_*"]) == ["model=bert_base,bert_large"]
    methods = "alternating,cascade,early_exit,sweet,sweet_alpha,two_stage,weighted_early_exit"
    assert expand_overrides(["method=*"]) == [f"method={methods}"]


def test_non_group_overrides_pass_through():
    args = ["lr=1e-5,2e-5", "trainer.max_epochs=1", "model.exit_layers=[1,6]", "seed=1", "--cfg", "job"]
    assert expand_overrides(args) == args


def test_wildcard_matching_nothing_is_an_error():
    with pytest.raises(OverrideError, match="task=glue/x\\* matches no task config: choose from glue/cola"):
        expand_overrides(["task=glue/x*"])


@pytest.mark.parametrize(
    ("arg", "valid"),
    [("task=glue/foo", "glue/rte"), ("method=sweat", "sweet"), ("model=bert_huge", "minilm_l6")],
)
def test_unknown_option_lists_valid_ones(arg, valid):
    with pytest.raises(OverrideError, match="choose one of") as err:
        expand_overrides([arg])
    assert valid in str(err.value) and "\n" not in str(err.value)


def test_group_options_are_the_config_files():
    assert "glue/rte" in group_options(__import__("sweet_lightning.overrides").overrides.CONF_DIR, "task")


# ---- the argparse tools ------------------------------------------------------------------------

# how each tool is run -> the module whose build_parser() and main(argv) it runs
TOOLS = {
    "python -m sweet_lightning.evaluate": "sweet_lightning.evaluate",
    "python -m sweet_lightning.predict": "sweet_lightning.predict",
    "python -m sweet_lightning.report": "sweet_lightning.report.__main__",
    "python -m sweet_lightning.reproduce": "sweet_lightning.reproduce",
    "python -m sweet_lightning.analysis.gradients": "sweet_lightning.analysis.gradients",
    "python benchmarks/cascade_backward.py": "benchmarks.cascade_backward",
    "python benchmarks/cascade_profile.py": "benchmarks.cascade_profile",
    "python benchmarks/main_run.py": "benchmarks.main_run",
    "python benchmarks/allocator.py": "benchmarks.allocator",
    "python benchmarks/epoch.py": "benchmarks.epoch",
    "python benchmarks/eval_share.py": "benchmarks.eval_share",
    "python benchmarks/optimizer.py": "benchmarks.optimizer",
    "python benchmarks/train_step.py": "benchmarks.train_step",
    "python benchmarks/inference.py": "benchmarks.inference",
    "python scripts/gpu_check.py": "scripts.gpu_check",
}
# the positional arguments a tool needs before an option can be judged (argparse reports a missing
# one first)
REQUIRED = {
    "sweet_lightning.evaluate": ["run"],
    "sweet_lightning.predict": ["run", "--input", "x.tsv", "--threshold", "0.5"],
    "sweet_lightning.report.__main__": ["sweep"],
    "sweet_lightning.reproduce": ["a", "b"],
    "scripts.gpu_check": ["--out", "x"],
}


def build_parser(module: str) -> argparse.ArgumentParser:
    return importlib.import_module(module).build_parser()


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options a user is shown: not --help, not a hidden one (help=SUPPRESS, a test hook)."""
    return [
        a
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction) and a.help is not argparse.SUPPRESS
    ]


def required(parser: argparse.ArgumentParser, action: argparse.Action) -> bool:
    """Given always (alone, or as one of a required group): it has no default to state."""
    groups = [g for g in parser._mutually_exclusive_groups if g.required]
    return action.required or any(action in g._group_actions for g in groups)


@pytest.mark.parametrize("module", TOOLS.values())
def test_help_lists_every_option_with_its_meaning_and_default(module, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    parser = build_parser(module)
    text = parser.format_help()
    formatter = parser._get_formatter()
    for action in options(parser):
        shown = formatter._expand_help(action)  # the help line as --help prints it
        assert shown.strip(), f"{module}: {action.dest} has no help"
        for flag in action.option_strings:
            assert flag in text
        if not action.option_strings:
            assert (action.metavar or action.dest) in text
        elif action.default is not False and not required(parser, action):  # a switch is off unless given
            # a default is printed as given, or (None) said in words: what happens when it is left out
            assert "default" in shown, f"{module}: {action.option_strings[0]} does not say its default"
            if action.default is not None:
                assert str(action.default) in shown


@pytest.mark.parametrize("module", TOOLS.values())
def test_unknown_option_is_one_line_naming_the_valid_ones(module, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["tool"])
    main = importlib.import_module(module).main
    try:
        code = main([*REQUIRED.get(module, []), "--colour=red"])
    except SystemExit as stop:  # the gradients analysis is a Hydra job and exits
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: unrecognized arguments: --colour=red; valid options: ")
    valid = err.split("valid options: ")[1]
    parser = build_parser(module)
    assert all(flag in valid for a in options(parser) for flag in a.option_strings if flag[:2] == "--")
    hidden = [flag for a in parser._actions if a.help is argparse.SUPPRESS for flag in a.option_strings]
    assert not [flag for flag in hidden if flag in valid.split(", ")]


def test_a_bad_value_is_one_line_naming_the_option(capsys):
    from sweet_lightning.predict import main

    assert main(["run", "--input", "x.tsv", "--threshold", "0.5", "--batch-size", "0"]) == 2
    assert capsys.readouterr().err == "error: argument --batch-size: 0 must be >= 1\n"


def test_first_line_is_the_one_form_every_message_quotes():
    from sweet_lightning.cli import first_line

    assert first_line(OSError("no such file\n  Traceback detail")) == "no such file"
    assert first_line(RuntimeError("\n  padded  \nsecond")) == "padded"
    assert first_line(RuntimeError()) == "RuntimeError"  # no message: the type says what happened
    assert first_line(KeyError("x"), typed=True) == "KeyError: 'x'"
    assert first_line("a plain message\nmore") == "a plain message"


@pytest.mark.parametrize(
    ("module", "old", "new"),
    [
        (
            "sweet_lightning.evaluate",
            ["run", "exit_policy=patience", "thresholds=[1,2]", "policy_kwargs={x: 1}", "num_thresholds=5"],
            [
                "run",
                "--exit-policy",
                "patience",
                "--thresholds",
                "1",
                "2",
                "--policy-kwargs",
                "{x: 1}",
                "--num-thresholds",
                "5",
            ],
        ),
        (
            "sweet_lightning.predict",
            [
                "run",
                "input=a.tsv",
                "target_speedup=0.5",
                "output=o.jsonl",
                "bf16=false",
                "compile=true",
                "batch_size=3",
                "max_length=64",
            ],
            [
                "run",
                "--input",
                "a.tsv",
                "--target-speedup",
                "0.5",
                "--output",
                "o.jsonl",
                "--no-bf16",
                "--compile",
                "--batch-size",
                "3",
                "--max-length",
                "64",
            ],
        ),
        (
            "benchmarks.inference",
            ["--random", "minilm_l6", "batch_sizes=[1,16]", "num_examples=32", "threads=1"],
            ["--random", "minilm_l6", "--batch-sizes", "1", "16", "--num-examples", "32", "--threads", "1"],
        ),
    ],
)
def test_older_key_value_spelling_parses_as_the_flags(module, old, new):
    parser = build_parser(module)
    parsed = vars(parser.parse_args(old))
    assert parsed == vars(parser.parse_args(new))  # and `new` sets every option away from its default


def test_flags_and_positionals_mix_in_any_order():
    from pathlib import Path

    from sweet_lightning.cli import progress_disabled

    parsed = build_parser("sweet_lightning.analysis.gradients").parse_args(
        ["method=sweet", "--steps", "2", "task=glue/rte"]
    )
    assert parsed.overrides == ["method=sweet", "task=glue/rte"] and parsed.steps == "2"
    parsed = build_parser("sweet_lightning.evaluate").parse_args(
        ["a", "--exit-policy", "entropy", "b", "--no-progress"]
    )
    assert parsed.run_dirs == [Path("a"), Path("b")] and parsed.exit_policy == "entropy"
    assert progress_disabled(parsed) is True  # tqdm's disable: no bar
    assert (
        progress_disabled(build_parser("sweet_lightning.evaluate").parse_args(["a"])) is None
    )  # on a terminal


def test_key_value_bool_that_is_not_one_names_both_flags():
    from sweet_lightning.cli import UsageError

    with pytest.raises(UsageError, match=r"^bf16=maybe: use --bf16 or --no-bf16$"):
        build_parser("sweet_lightning.predict").parse_args(["run", "input=a", "threshold=1", "bf16=maybe"])


# ---- console scripts ----------------------------------------------------------------------------

SCRIPT_NAMES = [
    "sweet-evaluate",
    "sweet-gradients",
    "sweet-predict",
    "sweet-report",
    "sweet-reproduce",
    "sweet-train",
]


def scripts() -> dict[str, str]:
    """pyproject.toml's [project.scripts]: name -> "module:function"."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def test_console_scripts_name_every_tool():
    assert sorted(scripts()) == SCRIPT_NAMES
    assert {target.split(":")[0] for name, target in scripts().items() if name != "sweet-train"} <= set(
        TOOLS.values()
    )


@pytest.mark.parametrize("name", [n for n in SCRIPT_NAMES if n != "sweet-train"])
def test_console_script_help(name, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    module, function = scripts()[name].split(":")
    with pytest.raises(SystemExit) as stop:
        getattr(importlib.import_module(module), function)(["--help"])
    out = capsys.readouterr().out
    assert stop.value.code == 0
    assert all(flag in out for a in options(build_parser(module)) for flag in a.option_strings)


def test_sweet_train_help_from_another_directory(tmp_path):
    """The console script's target, run where there is no conf/: the configs are found from the package."""
    module, function = scripts()["sweet-train"].split(":")
    code = f"import sys; sys.argv = ['sweet-train', '--help']; from {module} import {function}; {function}()"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Hydra's help lists the config groups of conf/, found from the package
    methods = ", ".join(sorted(p.stem for p in (REPO / "conf" / "method").glob("*.yaml")))
    assert f"method: {methods}" in proc.stdout


# ---- the commands written in the docs -----------------------------------------------------------

COMMAND = re.compile(r"python (-m sweet_lightning\.[\w.]+|(?:benchmarks|scripts)/\w+\.py)((?: [^`#|\n]*)?)")


def doc_commands() -> list[tuple[str, str, list[str]]]:
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = path.read_text().replace("\\\n", " ")
        for match in COMMAND.finditer(text):
            tool = "python " + match.group(1)
            args = re.sub(r"<[^>]*>", "PLACEHOLDER", match.group(2)).strip()
            if (
                tool not in TOOLS
                or re.search(r"\.\.\.|(^| )\[|\(", args)
                or (not args and TOOLS[tool] in REQUIRED)
            ):
                continue  # a synopsis ([optional] parts, "..."), a mention of the bare tool, or not a tool here
            found.append((path.name, tool, shlex.split(args)))
    return found


def test_docs_show_each_tool():
    assert {tool for _, tool, _ in doc_commands()} == set(TOOLS)


@pytest.mark.parametrize(
    ("doc", "tool", "args"), doc_commands(), ids=lambda x: x if isinstance(x, str) else None
)
def test_commands_in_the_docs_parse(doc, tool, args):
    module = TOOLS[tool]
    parsed = build_parser(module).parse_args(args)
    if module == "sweet_lightning.analysis.gradients":  # and its launch.py overrides are known keys
        expand_overrides(parsed.overrides, config="analysis_gradients")
