"""Override expansion: nested-group wildcards and one-line errors for unknown options."""

import pytest

from sweet_lightning.cli import OverrideError, expand_overrides, group_options

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


@pytest.mark.parametrize(("arg", "valid"), [("task=glue/foo", "glue/rte"), ("method=sweat", "sweet"),
                                            ("model=bert_huge", "minilm_l6")])
def test_unknown_option_lists_valid_ones(arg, valid):
    with pytest.raises(OverrideError, match="choose one of") as err:
        expand_overrides([arg])
    assert valid in str(err.value) and "\n" not in str(err.value)


def test_group_options_are_the_config_files():
    assert "glue/rte" in group_options(__import__("sweet_lightning.cli").cli.CONF_DIR, "task")
