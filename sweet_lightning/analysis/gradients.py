"""Conflicting gradients between exit classifiers (paper Sec. 3.1, Fig. 3 and App. B).

For each layer that precedes a classifier (except the last, which only one classifier
reaches), take every classifier's loss gradient with respect to that layer's last
feed-forward matrix, and compare each pair of classifiers by the cosine similarity of the
two gradient matrices row by row, averaged over rows. Near 0 = orthogonal updates
(conflict), near 1 = aligned.

    python -m sweet_lightning.analysis.gradients method=early_exit task=glue/mnli model=bert_base --steps 400
    python -m sweet_lightning.analysis.gradients method=sweet task=glue/rte model=minilm_l6 \\
        --steps 100 --batches 2

Positional `key=value` arguments are launch.py overrides (any key of a training run); the options
below are the analysis's own keys (conf/analysis_gradients.yaml), also accepted as `steps=400`.

The functions here are pure measurements on a module and a batch; fine-tuning, files and
logging live in `gradients_run.py`, the heatmap and table in `heatmap.py`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from itertools import combinations

import torch
from torch import nn

from sweet_lightning.overrides import CONF_DIR

NO_GRADIENT = "no gradient"
Cell = float | str  # a mean row-cosine, or NO_GRADIENT


class AnalysisError(ValueError):
    """A request that cannot be measured (layers, exits, steps, batches); the CLI prints it as one line."""


def ffn_output_weight(layer: nn.Module) -> nn.Parameter:
    """The last feed-forward matrix of a Transformer layer (the FFN's output projection).

    BERT, RoBERTa, ELECTRA, DeBERTa and MPNet all call it `output.dense` (the attention's own
    `attention.output.dense` is a different path). Other layouts fall back to the last linear
    module registered in the layer, which is where Transformer blocks put the FFN output.
    """
    with contextlib.suppress(AttributeError):
        dense = layer.get_submodule("output.dense")
        if isinstance(dense, nn.Linear):
            return dense.weight
    linears = [m for m in layer.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise AnalysisError(f"{type(layer).__name__} has no linear layer whose gradient could be measured.")
    return linears[-1].weight


def measured_layers(exit_layers: Sequence[int]) -> list[int]:
    """The layers the paper inspects: each one preceding a classifier, except the last."""
    exits = [int(x) for x in exit_layers]
    if len(exits) < 2:
        raise AnalysisError(
            f"model.exit_layers={exits} has a single classifier: nothing to compare; give at least two exits."
        )
    return exits[:-1]


def _is_cascade(module: nn.Module) -> bool:
    return hasattr(module.net, "members")


def gradient_targets(
    module: nn.Module, layers: Sequence[int] | None = None
) -> dict[int, dict[int, tuple[str, nn.Parameter]]]:
    """layer (1-based) -> classifier (1-based) -> (name, weight) that classifier's loss can reach.

    Early-Exit / SWEET: every classifier at or after the layer shares the same weight (under
    SWEET the later ones get exactly zero gradient; that is what is measured, not assumed).
    Multi-Model (cascade): each member has its own copy, so the layer preceding classifier i
    is reached by classifier i alone.
    """
    exits = list(module.exit_layers)
    layers = measured_layers(exits) if layers is None else [int(x) for x in layers]
    if not layers:
        raise AnalysisError("No layer to measure: give at least one layer preceding a classifier.")
    names = {id(p): n for n, p in module.named_parameters()}
    targets: dict[int, dict[int, tuple[str, nn.Parameter]]] = {}
    for layer in layers:
        if not 1 <= layer <= exits[-1]:
            raise AnalysisError(
                f"Layer {layer} precedes no classifier (exit layers {exits}): "
                f"choose layers in 1..{exits[-1]}."
            )
        reaching = [i for i, e in enumerate(exits, start=1) if e >= layer]
        if _is_cascade(module):  # only the first reaching member has this copy of the layer
            encoders = {reaching[0]: module.net.members[reaching[0] - 1].encoder}
        else:
            encoders = {i: module.net.encoder for i in reaching}
        targets[layer] = {}
        for i, encoder in encoders.items():
            weight = ffn_output_weight(encoder.layers[layer - 1])
            name = names[id(weight)]
            if not weight.requires_grad:
                raise AnalysisError(f"{name} is frozen (requires_grad=False): no gradient to measure.")
            targets[layer][i] = (name, weight)
    return targets


@contextlib.contextmanager
def measurement_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) for the measurement, then every submodule's own mode restored.

    All classifiers share one forward pass anyway, but without dropout the comparison is
    deterministic and measures the model itself rather than one random dropout mask.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def per_classifier_gradients(
    module: nn.Module, batch: dict[str, torch.Tensor], layers: Sequence[int] | None = None
) -> dict[int, dict[int, torch.Tensor]]:
    """layer -> classifier -> gradient of that classifier's own (unweighted) loss w.r.t. the
    layer's last feed-forward matrix, measured in eval mode. Parameters, `.grad` and train/eval
    modes of `module` are left as they were.

    `layers` are 1-based layer numbers; default: every exit layer but the last.
    """
    targets = gradient_targets(module, layers)
    if "labels" not in batch:
        raise AnalysisError("The batch has no 'labels': classifier losses need them.")
    batch = to_device(batch, next(module.parameters()).device)
    out: dict[int, dict[int, torch.Tensor]] = {layer: {} for layer in targets}
    with measurement_mode(module):
        losses = module.exit_losses(module(batch), batch["labels"])
        for i, loss in enumerate(losses, start=1):
            wanted = [(layer, per_exit[i][1]) for layer, per_exit in targets.items() if i in per_exit]
            if not wanted:
                continue
            # autograd.grad returns the gradients instead of accumulating them in .grad, so the
            # classifiers never mix and the module's own .grad is left untouched
            grads = torch.autograd.grad(loss, [w for _, w in wanted], retain_graph=True, allow_unused=True)
            for (layer, weight), g in zip(wanted, grads, strict=True):
                # unused = the loss's graph never reaches the weight (SWEET's detached segments)
                g = torch.zeros_like(weight) if g is None else g
                out[layer][i] = g.detach().float().cpu().clone()
    return out


def mean_row_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of the i-th rows of `a` and `b`, averaged over rows.

    Rows are output units (PyTorch stores a Linear weight as [out, in]). A row that is zero in
    either matrix has no direction and is left out of the mean; if no row is left the cosine is
    undefined and this raises (callers report such a pair as "no gradient").
    """
    if a.shape != b.shape:
        raise ValueError(f"Gradient shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}.")
    if a.dim() != 2:
        raise ValueError(f"Expected gradient matrices (2-D), got {a.dim()}-D tensors.")
    a, b = a.double(), b.double()
    norm_a, norm_b = a.norm(dim=1), b.norm(dim=1)
    rows = (norm_a > 0) & (norm_b > 0)
    if not bool(rows.any()):
        raise ValueError("No row is non-zero in both gradients: their cosine is undefined (0/0).")
    cos = (a[rows] * b[rows]).sum(dim=1) / (norm_a[rows] * norm_b[rows])
    return float(cos.clamp(-1.0, 1.0).mean())


def conflict_matrix(grads: dict[int, dict[int, torch.Tensor]]) -> dict[int, dict[tuple[int, int], Cell]]:
    """layer -> (classifier i, classifier j), i < j -> mean row-cosine of their gradients, or
    NO_GRADIENT when either gradient is exactly zero (a 0/0 cosine is never computed)."""
    out: dict[int, dict[tuple[int, int], Cell]] = {}
    for layer, per_exit in grads.items():
        zero = {i for i, g in per_exit.items() if not bool(torch.any(g != 0))}
        out[layer] = {
            (i, j): NO_GRADIENT if i in zero or j in zero else mean_row_cosine(per_exit[i], per_exit[j])
            for i, j in combinations(sorted(per_exit), 2)
        }
    return out


def batch_report(
    module: nn.Module, batch: dict[str, torch.Tensor], layers: Sequence[int] | None = None
) -> dict[str, dict]:
    """JSON-ready result for one batch: layer -> parameter, classifiers, pairs (and a note
    when a layer has no pair to compare)."""
    targets = gradient_targets(module, layers)  # for the parameters' names
    grads = per_classifier_gradients(module, batch, layers)
    conflicts = conflict_matrix(grads)
    report: dict[str, dict] = {}
    for layer, per_exit in targets.items():
        exits = sorted(per_exit)
        entry: dict = {
            "parameter": per_exit[exits[0]][0],
            "classifiers": [f"C{i}" for i in exits],
            "no_gradient": [f"C{i}" for i in exits if not bool(torch.any(grads[layer][i] != 0))],
            "pairs": {f"C{i}-C{j}": value for (i, j), value in conflicts[layer].items()},
        }
        if _is_cascade(module):
            entry["note"] = (
                f"Multi-Model: C{exits[0]} is a separate model with its own copy of layer "
                f"{layer}; no other classifier reaches it, so there is no pair to compare."
            )
        elif len(exits) == 1:
            entry["note"] = f"Only C{exits[0]} reaches layer {layer}: no pair to compare."
        report[str(layer)] = entry
    return report


def alignment_summary(report: dict) -> dict[str, dict[str, float]]:
    """The paper's reading of Fig. 3 from a gradients.json: at each measured layer, the layer's own
    classifier against later ones ("current_vs_future") and later classifiers among themselves
    ("future_vs_future"), each as the mean, min, max and count of the cells over every batch. Cells
    with "no gradient" (SWEET) are left out."""
    own = {layer: i + 1 for i, layer in enumerate(report["exit_layers"])}
    groups: dict[str, list[float]] = {"current_vs_future": [], "future_vs_future": []}
    for batch in report["batches"]:
        for layer, cells in batch["layers"].items():
            for pair, value in cells["pairs"].items():
                if isinstance(value, (int, float)):
                    current = int(pair.split("-")[0][1:]) == own[int(layer)]
                    groups["current_vs_future" if current else "future_vs_future"].append(value)
    return {
        name: {"mean": sum(v) / len(v), "min": min(v), "max": max(v), "cells": len(v)}
        for name, v in groups.items()
        if v
    }


OWN_KEYS = ("steps", "batches", "train_size", "output_dir")  # conf/analysis_gradients.yaml's own


def build_parser():
    from sweet_lightning import cli

    p = cli.parser("python -m sweet_lightning.analysis.gradients", __doc__)
    # the help of each own key is its comment in the config (`key: value  # meaning`): it cannot drift
    for line in (CONF_DIR / "analysis_gradients.yaml").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in OWN_KEYS:
            default, _, meaning = rest.partition("#")
            help_text = f"{meaning.strip()} (default: {default.strip()})"
            p.add_argument(f"--{key.replace('_', '-')}", metavar=key.upper(), help=help_text)
    p.add_argument(
        "-m",
        "--multirun",
        action="store_true",
        help="one job per combination of comma-separated override values, as launch.py -m",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="launch.py overrides: method=, task=, model=, lr=, seed=, trainer=cpu, logger=csv, ...",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    """CLI entry: expand `task=glue/*`-style overrides, then run the Hydra job."""
    from sweet_lightning import cli, overrides

    try:
        parsed = build_parser().parse_args(argv)
        flags = [f"{k}={getattr(parsed, k)}" for k in OWN_KEYS if getattr(parsed, k, None) is not None]
        multirun = ["-m"] if parsed.multirun else []
        args = overrides.expand_overrides([*multirun, *parsed.overrides, *flags], config="analysis_gradients")
    except (cli.UsageError, overrides.OverrideError) as err:
        sys.exit(cli.fail(err))
    # output_dir=X also becomes Hydra's run dir, so the composed config is saved next to the results
    given = dict(a.lstrip("+").split("=", 1) for a in args if "=" in a and not a.startswith("-"))
    if given.get("output_dir") not in (None, "", "null") and "hydra.run.dir" not in given:
        args.append(f"hydra.run.dir={given['output_dir']}")
    sys.argv[1:] = args
    import hydra

    errors: list[str] = []

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="analysis_gradients")
    def job(cfg) -> None:
        from sweet_lightning.analysis.gradients_run import run

        try:
            run(cfg)
        except AnalysisError as err:  # exiting inside the job would make Hydra print a traceback
            errors.append(str(err))

    job()
    if errors:
        sys.exit(cli.fail(errors[0]))


if __name__ == "__main__":
    # `python -m` runs this file as __main__, a second copy of the module: go through the real
    # one, so AnalysisError raised in gradients_run is the class the job catches
    from sweet_lightning.analysis.gradients import main as _main

    _main()
