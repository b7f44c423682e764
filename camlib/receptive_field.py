"""Receptive fields: how many input pixels one unit of a layer can see.

For a chain of convolutions and poolings with kernel sizes ``k_l``, strides ``s_l`` and
dilations ``d_l``, the receptive field ``r`` and the jump ``j`` (input pixels between two
neighbouring units) grow as::

    r_l = r_{l-1} + (k_l - 1) * d_l * j_{l-1}        j_l = j_{l-1} * s_l       (r_0 = j_0 = 1)

:func:`receptive_field_sizes` is that recursion; :func:`trace_spatial_layers` reads
``k, s, d`` of every convolution and pooling of a model in the order they run;
:func:`empirical_receptive_field` measures the same size from the gradient of one output
unit with respect to the input. Residual branches add no pixels beyond the longest
chain, so the chain formula holds for networks such as EfficientNet too.

Taught in notebooks/04_feature_depth.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from camlib.hooks import Capture

_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


def _pair(value) -> int:
    """The single size of a square kernel/stride/dilation; non-square ones are rejected."""
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise ValueError(f"only square kernels, strides and dilations are supported, got {value}")
        value = value[0]
    return int(value)


@dataclass(frozen=True)
class SpatialLayer:
    """One convolution or pooling: its module name, kernel size, stride and dilation."""

    name: str
    kernel_size: int
    stride: int
    dilation: int = 1


def receptive_field_sizes(kernel_sizes, strides, dilations=None) -> tuple[list[int], list[int]]:
    """Receptive field size and jump after each layer of a chain.

    ``kernel_sizes``, ``strides`` (and optional ``dilations``, default 1) are sequences of
    equal length, one entry per convolution/pooling in the order they run.
    Returns ``(sizes, jumps)``: two lists of that length, ``sizes[l]`` the side in input
    pixels of the square a unit after layer ``l`` sees, ``jumps[l]`` the input distance
    between two neighbouring units there.

    Taught in notebooks/04_feature_depth.ipynb.
    """
    kernel_sizes, strides = list(kernel_sizes), list(strides)
    dilations = [1] * len(kernel_sizes) if dilations is None else list(dilations)
    if not len(kernel_sizes) == len(strides) == len(dilations):
        raise ValueError(f"got {len(kernel_sizes)} kernel sizes, {len(strides)} strides, {len(dilations)} dilations")
    for name, values in (("kernel size", kernel_sizes), ("stride", strides), ("dilation", dilations)):
        if any(int(v) < 1 for v in values):
            raise ValueError(f"every {name} must be a positive integer, got {values}")
    size, jump = 1, 1
    sizes, jumps = [], []
    for k, s, d in zip(kernel_sizes, strides, dilations):
        size += (int(k) - 1) * int(d) * jump
        jump *= int(s)
        sizes.append(size)
        jumps.append(jump)
    return sizes, jumps


def trace_spatial_layers(model: nn.Module, inputs: torch.Tensor,
                         marks: dict[str, nn.Module] | None = None):
    """The convolutions and poolings of ``model`` in the order they run on ``inputs``.

    Runs one forward pass (no gradients) with forward hooks on every ``nn.Conv2d``,
    ``nn.MaxPool2d`` and ``nn.AvgPool2d``; hooks are removed afterwards. ``1 x 1``
    convolutions are kept (they add nothing to the receptive field).

    If ``marks`` (``{label: module}``) is given, also returns, for each label, how many
    spatial layers had run when that module finished, i.e. the layers that feed it.
    Returns ``layers`` (a list of :class:`SpatialLayer`), or ``(layers, counts)``
    with ``marks``.

    Taught in notebooks/04_feature_depth.ipynb.
    """
    names = {module: name for name, module in model.named_modules()}
    layers: list[SpatialLayer] = []
    counts: dict[str, int] = {}
    handles = []

    def on_spatial(module, _inputs, _output):
        layers.append(SpatialLayer(names.get(module, type(module).__name__), _pair(module.kernel_size),
                                   _pair(module.stride), _pair(getattr(module, "dilation", 1))))

    def on_mark(label):
        def hook(_module, _inputs, _output):
            counts.setdefault(label, len(layers))
        return hook

    try:
        for module in model.modules():
            if isinstance(module, _SPATIAL):
                handles.append(module.register_forward_hook(on_spatial))
        for label, module in (marks or {}).items():
            handles.append(module.register_forward_hook(on_mark(label)))
        with torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    if marks is None:
        return layers
    missing = [label for label in marks if label not in counts]
    if missing:
        raise ValueError(f"modules {missing} did not run in the forward pass")
    return layers, counts


def receptive_fields(model: nn.Module, modules: dict[str, nn.Module], inputs: torch.Tensor) -> dict[str, dict[str, int]]:
    """Analytic receptive field of the output of each module in ``modules``.

    Returns ``{label: {"size": r, "jump": j}}``: a unit of that output sees an
    ``r x r`` square of the input, and neighbouring units are ``j`` input pixels apart.
    ``inputs`` (e.g. ``(1, 3, 224, 224)``) is used once to trace the layer order.

    Taught in notebooks/04_feature_depth.ipynb.
    """
    layers, counts = trace_spatial_layers(model, inputs, marks=modules)
    sizes, jumps = receptive_field_sizes([l.kernel_size for l in layers], [l.stride for l in layers],
                                         [l.dilation for l in layers])
    result = {}
    for label, n in counts.items():
        result[label] = {"size": sizes[n - 1], "jump": jumps[n - 1]} if n else {"size": 1, "jump": 1}
    return result


def input_gradient(model: nn.Module, module: nn.Module, inputs: torch.Tensor,
                   position: tuple[int, int] | None = None) -> torch.Tensor:
    """Gradient ``(H, W)`` of one output unit of ``module`` with respect to the input pixels.

    The unit is the sum over channels of ``module``'s output at ``position`` (default:
    the centre of its map) for the first image of ``inputs`` ``(N, C, H, W)``; the
    returned map is ``|d unit / d input|`` summed over input channels. Non-zero pixels
    are the ones that unit can see. Hooks are removed and ``model.training`` is left as it was.

    Taught in notebooks/04_feature_depth.ipynb.
    """
    x = inputs[:1].detach().clone().requires_grad_(True)
    with torch.enable_grad(), Capture(module, detach=False) as captured:
        model(x)
    if captured.calls == 0:
        raise ValueError("the module did not run in the forward pass")
    out = captured.value
    h, w = out.shape[-2:]
    i, j = (h // 2, w // 2) if position is None else position
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f"position {(i, j)} is outside the {h} x {w} output map")
    grad, = torch.autograd.grad(out[0, :, i, j].sum(), x)
    return grad[0].abs().sum(0)


def empirical_receptive_field(gradient: torch.Tensor) -> tuple[int, int]:
    """Height and width of the bounding box of the non-zero pixels of ``gradient`` ``(H, W)``.

    With :func:`input_gradient` this measures a receptive field without any formula
    (it equals the analytic size when the box does not touch the image border).

    Taught in notebooks/04_feature_depth.ipynb.
    """
    if gradient.ndim != 2:
        raise ValueError(f"expected a 2-D gradient map (H, W), got shape {tuple(gradient.shape)}")
    rows = torch.nonzero(gradient.abs().sum(1) > 0).flatten()
    cols = torch.nonzero(gradient.abs().sum(0) > 0).flatten()
    if len(rows) == 0:
        return 0, 0
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def effective_receptive_field(gradient: torch.Tensor, mass: float = 0.9) -> int:
    """Side of the smallest square, centred on the gradient's non-zero box, that holds ``mass`` of it.

    The theoretical receptive field counts every pixel a unit *can* see; most of the
    gradient sits in a much smaller central square (Luo et al., NeurIPS 2016). Returns the
    side in pixels (odd; the square may reach past the image border, so at most
    ``2 * max(H, W) - 1``).

    Taught in notebooks/04_feature_depth.ipynb.
    """
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    if gradient.ndim != 2:
        raise ValueError(f"expected a 2-D gradient map (H, W), got shape {tuple(gradient.shape)}")
    g = gradient.abs().double()
    total = g.sum()
    if total == 0:
        raise ValueError("the gradient is zero everywhere")
    h, w = g.shape
    rows = torch.nonzero(g.sum(1) > 0).flatten()
    cols = torch.nonzero(g.sum(0) > 0).flatten()
    ci, cj = int(rows[0] + rows[-1]) // 2, int(cols[0] + cols[-1]) // 2
    for half in range(max(h, w)):
        box = g[max(ci - half, 0) : ci + half + 1, max(cj - half, 0) : cj + half + 1]
        if box.sum() >= mass * total - 1e-12 * total:
            return 2 * half + 1
    return 2 * max(h, w) - 1
