"""Pooling: down-sampling a feature map by a maximum or a mean over windows, from scratch.

Slide 2 of the lecture: pooling is down-sampling, and max pooling is the usual choice.
This module holds the tested versions of what notebook 02 builds step by step:

- :func:`output_size` is the output-size formula;
- :func:`max_pool2d` and :func:`avg_pool2d` equal ``F.max_pool2d`` / ``F.avg_pool2d``
  (window size, stride, padding; overlapping windows when stride < size);
- :func:`max_pool2d_backward` routes a gradient back to each window's maximum, as
  autograd does;
- :func:`global_average_pool` is the limit: one window over the whole map (notebook 05);
- :func:`shift_sensitivity` measures how much a (pooled) feature map changes when the
  input moves by a few pixels.

Taught in notebooks/02_pooling.ipynb.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from camlib.conv import _as_tensor, _int, _pair

__all__ = [
    "avg_pool2d",
    "global_average_pool",
    "max_pool2d",
    "max_pool2d_backward",
    "output_size",
    "pool2d",
    "shift_sensitivity",
]


def output_size(size: int, kernel_size: int, stride: int | None = None, padding: int = 0) -> int:
    """Output length of a pooling along one axis: ``⌊(size + 2·padding − kernel_size) / stride⌋ + 1``.

    ``stride`` defaults to ``kernel_size`` (non-overlapping windows). Raises
    ``ValueError`` when the window is larger than the padded input, the stride is
    below 1, or the padding is more than half the window (PyTorch's rule).

    Taught in notebooks/02_pooling.ipynb.
    """
    stride = kernel_size if stride is None else stride
    _int(size, "size", 1)
    _int(kernel_size, "kernel_size", 1)
    _int(stride, "stride", 1)
    _int(padding, "padding", 0)
    if padding > kernel_size // 2:
        raise ValueError(f"padding ({padding}) must be at most half the pool size ({kernel_size} // 2 = {kernel_size // 2})")
    if kernel_size > size + 2 * padding:
        raise ValueError(
            f"pool size {kernel_size} is larger than the input ({size}"
            + (f" + 2*{padding} padding" if padding else "")
            + ")"
        )
    return (size + 2 * padding - kernel_size) // stride + 1


def _windows_setup(input, kernel_size, stride, padding):
    x = _as_tensor(input, "input")
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"input must be (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    kh, kw = _pair(kernel_size, "kernel_size", 1)
    sh, sw = (kh, kw) if stride is None else _pair(stride, "stride", 1)
    ph, pw = _pair(padding, "padding", 0)
    h_out = output_size(x.shape[-2], kh, sh, ph)
    w_out = output_size(x.shape[-1], kw, sw, pw)
    return x, unbatched, (kh, kw), (sh, sw), (ph, pw), (h_out, w_out)


def _tap(padded, i, j, stride, out_size):
    (sh, sw), (h_out, w_out) = stride, out_size
    return padded[..., i : i + sh * (h_out - 1) + 1 : sh, j : j + sw * (w_out - 1) + 1 : sw]


def max_pool2d(input, kernel_size, stride=None, padding: int = 0, return_indices: bool = False):
    """``F.max_pool2d`` from scratch: the largest value in each window.

    ``input`` ``(N, C, H, W)`` or ``(C, H, W)``; ``kernel_size``, ``stride`` (default:
    ``kernel_size``) and ``padding`` are ints or pairs; padding counts as ``−∞``.
    Returns ``(N, C, H_out, W_out)`` with sizes from :func:`output_size`; with
    ``return_indices=True`` also the position of each maximum as a flat index
    ``y · W + x`` into its input plane (first maximum on ties, like PyTorch), the
    format ``F.max_pool2d(..., return_indices=True)`` gives.

    Written as a loop over the window's taps, keeping a running maximum.

    Taught in notebooks/02_pooling.ipynb.
    """
    x, unbatched, (kh, kw), stride, (ph, pw), out_size = _windows_setup(input, kernel_size, stride, padding)
    h, w = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (pw, pw, ph, ph), value=float("-inf"))
    rows = torch.arange(h + 2 * ph) - ph
    cols = torch.arange(w + 2 * pw) - pw
    flat = (rows[:, None] * w + cols[None, :]).expand(*x.shape[:2], -1, -1)  # (N, C, Hp, Wp) input index
    best = best_idx = None
    for i in range(kh):
        for j in range(kw):
            value = _tap(padded, i, j, stride, out_size)  # (N, C, h_out, w_out)
            index = _tap(flat, i, j, stride, out_size)
            if best is None:
                best, best_idx = value.clone(), index.clone()
            else:
                better = (value > best) | value.isnan()
                best = torch.where(better, value, best)
                best_idx = torch.where(better, index, best_idx)
    if unbatched:
        best, best_idx = best[0], best_idx[0]
    return (best, best_idx) if return_indices else best


def avg_pool2d(input, kernel_size, stride=None, padding: int = 0) -> torch.Tensor:
    """``F.avg_pool2d`` from scratch: the mean of each window.

    Same arguments and shapes as :func:`max_pool2d`; padding counts as zeros and is
    included in the mean (PyTorch's default ``count_include_pad=True``).

    Taught in notebooks/02_pooling.ipynb.
    """
    x, unbatched, (kh, kw), stride, (ph, pw), out_size = _windows_setup(input, kernel_size, stride, padding)
    padded = torch.nn.functional.pad(x, (pw, pw, ph, ph))
    total = x.new_zeros(*x.shape[:2], *out_size)
    for i in range(kh):
        for j in range(kw):
            total += _tap(padded, i, j, stride, out_size)
    out = total / (kh * kw)
    return out[0] if unbatched else out


def pool2d(input, kernel_size, stride=None, padding: int = 0, mode: str = "max") -> torch.Tensor:
    """:func:`max_pool2d` (``mode="max"``) or :func:`avg_pool2d` (``mode="avg"``).

    Taught in notebooks/02_pooling.ipynb.
    """
    if mode == "max":
        return max_pool2d(input, kernel_size, stride, padding)
    if mode == "avg":
        return avg_pool2d(input, kernel_size, stride, padding)
    raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")


def max_pool2d_backward(grad_output: torch.Tensor, indices: torch.Tensor, input_shape) -> torch.Tensor:
    """The gradient of max pooling: each window's gradient goes to its maximum only.

    ``grad_output`` and ``indices`` are ``(N, C, H_out, W_out)`` (``indices`` from
    :func:`max_pool2d` with ``return_indices=True``); ``input_shape`` is
    ``(N, C, H, W)``. Returns ``(N, C, H, W)``: zero everywhere except at the
    maxima, where the gradients of all windows that picked that input are added.

    Taught in notebooks/02_pooling.ipynb.
    """
    grad_output = _as_tensor(grad_output, "grad_output")
    if grad_output.shape != indices.shape:
        raise ValueError(f"grad_output {tuple(grad_output.shape)} and indices {tuple(indices.shape)} must match")
    *lead, h, w = input_shape
    if tuple(lead) != tuple(grad_output.shape[:-2]):
        raise ValueError(f"input_shape {tuple(input_shape)} does not match grad_output {tuple(grad_output.shape)}")
    grad = grad_output.new_zeros(*lead, h * w)
    grad.scatter_add_(-1, indices.flatten(-2), grad_output.flatten(-2))
    return grad.reshape(*lead, h, w)


def global_average_pool(features: torch.Tensor) -> torch.Tensor:
    """One average over each whole map: ``(N, K, h, w)`` -> ``(N, K)``.

    The limit of :func:`avg_pool2d` when the window is the whole map
    (``avg_pool2d(features, (h, w))[..., 0, 0]``). It is the layer CAM builds on.

    Taught in notebooks/02_pooling.ipynb and notebooks/05_global_average_pooling.ipynb.
    """
    features = _as_tensor(features, "features")
    if features.ndim != 4:
        raise ValueError(f"features must be (N, K, h, w), got shape {tuple(features.shape)}")
    return features.mean(dim=(-2, -1))


def shift_sensitivity(
    features: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    shifts: Sequence[int],
    kernel_size: int | None = None,
    mode: str = "max",
) -> torch.Tensor:
    """How much a feature map changes when the input moves right by ``s`` pixels.

    ``image`` is ``(N, C, H, W)``; ``features`` maps it to ``(N, K, h, w)`` at the same
    resolution (e.g. a stride-1 convolution and a ReLU). For each ``s`` in ``shifts``
    two equal-size crops are taken, the second one ``s`` pixels to the left, so its
    content sits ``s`` pixels further right; both go through ``features`` and then
    (unless ``kernel_size`` is ``None``) through ``pool2d(·, kernel_size, mode=mode)``.
    Returns ``(len(shifts),)``: the relative change ``‖P(f(x_s)) − P(f(x))‖ / ‖P(f(x))‖``
    (0 = unchanged).

    Taught in notebooks/02_pooling.ipynb.
    """
    image = _as_tensor(image, "image")
    if image.ndim != 4:
        raise ValueError(f"image must be (N, C, H, W), got shape {tuple(image.shape)}")
    shifts = [int(s) for s in shifts]
    if not shifts or min(shifts) < 0:
        raise ValueError(f"shifts must be a non-empty list of ints >= 0, got {shifts}")
    margin = max(shifts)
    width = image.shape[-1] - margin
    if width < 1:
        raise ValueError(f"the image (width {image.shape[-1]}) is too narrow for a shift of {margin}")

    def pooled(x):
        fx = features(x)
        return fx if kernel_size is None else pool2d(fx, kernel_size, mode=mode)

    reference = pooled(image[..., margin : margin + width])
    if reference.norm() == 0:
        raise ValueError("the (pooled) features of the image are all zero: a relative change is undefined")
    changes = []
    for s in shifts:
        moved = pooled(image[..., margin - s : margin - s + width])
        changes.append((moved - reference).norm() / reference.norm())
    return torch.stack(changes)
