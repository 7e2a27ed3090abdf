"""`method.exit_weights`: the weight of each exit's loss in the training loss.

- null: every weight 1, a plain sum (the paper's code, Early-Exit and SWEET).
- a list: one weight per exit, used as given.
- "depth": Weighted Early-Exit (PABEE, Zhou et al. 2020, eq. 7), the weighted average
  sum_j j * L_j / sum_j j. PABEE has a classifier after every layer, so its j is both the exit
  index and the layer number; here j is the layer number of the exit (`model.exit_layers`), so the
  weight stays proportional to the depth the classifier sees whichever exits are chosen: exits
  [1, 3, 4, 6] weigh 1/14, 3/14, 4/14, 6/14. The weights sum to 1 (PABEE's average), where the
  plain sum's sum to the number of exits; AdamW's steps hardly depend on that scale, gradient
  clipping by norm does.
"""

from __future__ import annotations

from collections.abc import Sequence

PRESETS = ("depth",)


def resolve_exit_weights(value: Sequence[float] | str | None, exit_layers: Sequence[int]) -> list[float]:
    if value is None:
        return [1.0] * len(exit_layers)
    if isinstance(value, str):
        if value != "depth":
            raise ValueError(
                f"method.exit_weights={value!r} is no preset: use depth, null or one number per exit."
            )
        total = float(sum(exit_layers))
        return [layer / total for layer in exit_layers]
    if len(value) != len(exit_layers):
        raise ValueError(
            f"method.exit_weights has {len(value)} values for {len(exit_layers)} exits: give one per exit."
        )
    return [float(w) for w in value]
