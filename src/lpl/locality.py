"""Layer-locality: each layer learns only from its own loss on its own, detached input."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import Tensor


def layerwise_outputs(
    layers: Iterable[Callable[[Tensor], Tensor]], x: Tensor, local: bool = True
) -> list[Tensor]:
    """Run ``x`` through ``layers`` and return every layer's output.

    With ``local=True`` each layer's input is detached, so a loss on layer k's output produces
    gradients for layer k alone: no gradient ever reaches a lower layer. ``local=False`` is the
    end-to-end ablation.
    """
    outputs = []
    for layer in layers:
        x = layer(x.detach() if local else x)
        outputs.append(x)
    return outputs
