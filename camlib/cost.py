"""What a layer costs: parameters and multiply-adds, by formula and as torch counts them.

A fully connected layer joins every input to every output; a convolution joins each
output only to a ``k x k`` neighbourhood (locality) and reuses the same weights at every
position (weight sharing). The formulas below make that difference a number;
:func:`count_flops` asks PyTorch's own ``FlopCounterMode`` so the formulas can be checked.

Taught in notebooks/03_cnn.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn


def linear_cost(in_features: int, out_features: int, bias: bool = True) -> dict[str, int]:
    """Cost of ``nn.Linear(in_features, out_features)`` on one input vector.

    Returns ``{"params": in*out (+ out with bias), "macs": in*out}``
    (one multiply-add per weight; bias additions are not counted as multiply-adds).

    Taught in notebooks/03_cnn.ipynb.
    """
    if in_features < 1 or out_features < 1:
        raise ValueError(f"features must be positive, got {in_features} -> {out_features}")
    return {"params": in_features * out_features + (out_features if bias else 0),
            "macs": in_features * out_features}


def conv2d_cost(in_channels: int, out_channels: int, kernel_size: int, output_size: tuple[int, int],
                groups: int = 1, bias: bool = True) -> dict[str, int]:
    """Cost of ``nn.Conv2d(in_channels, out_channels, kernel_size, groups=groups)`` on one image.

    ``output_size`` is the ``(h, w)`` of the output map. The weights are shared across
    positions, so ``params = out * (in/groups) * k*k (+ out)`` does not depend on the image
    size, while ``macs = params_without_bias * h * w`` does.

    Returns ``{"params": ..., "macs": ...}``.

    Taught in notebooks/03_cnn.ipynb.
    """
    h, w = output_size
    if min(in_channels, out_channels, kernel_size, groups, h, w) < 1:
        raise ValueError(f"channels, kernel_size, groups and output_size must be positive, got "
                         f"{in_channels} -> {out_channels}, k={kernel_size}, groups={groups}, output {output_size}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"channels {in_channels} -> {out_channels} are not divisible by groups={groups}")
    weights = out_channels * (in_channels // groups) * kernel_size * kernel_size
    return {"params": weights + (out_channels if bias else 0), "macs": weights * h * w}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model`` (sum of ``p.numel()`` over its parameters).

    Taught in notebooks/03_cnn.ipynb.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def count_flops(model: nn.Module, inputs: torch.Tensor) -> int:
    """Floating-point operations of one forward pass, as PyTorch counts them.

    Uses ``torch.utils.flop_counter.FlopCounterMode``, which counts matrix products and
    convolutions at 2 FLOPs per multiply-add (so ``flops == 2 * macs``) and ignores
    cheap element-wise work (bias, ReLU, pooling, batch norm). ``inputs`` is the whole
    batch, e.g. ``(1, C, H, W)`` for the cost of one image.

    Taught in notebooks/03_cnn.ipynb.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
