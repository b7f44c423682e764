"""Convolution: the integral, the discrete sum, and the 2-D mask operation, from scratch.

Slide 1 of the lecture says convolution is a mask operation from signal processing,
used to detect features of a signal, with the formula

    (f * g)(t) = ∫ f(τ) g(t − τ) dτ.

This module holds the tested versions of what notebook 01 builds step by step:

- :func:`riemann_convolution` approximates the integral with a Riemann sum;
- :func:`convolve1d` is the discrete sum ``y[n] = Σ_k x[k] h[n − k]`` (= ``numpy.convolve``);
- :func:`cross_correlate1d` and :func:`matched_filter` slide a pattern over a signal
  to find where it hides;
- :func:`conv2d` is ``torch.nn.functional.conv2d`` written as a loop over the kernel's
  taps (padding, stride, dilation, groups, several channels); like PyTorch it computes a
  *cross-correlation*; :func:`convolve2d` flips the kernel to get the textbook convolution;
- :func:`output_size` is the output-size formula;
- :data:`KERNELS`, :func:`kernel`, :func:`gaussian_kernel`, :func:`to_grayscale` and
  :func:`filter_image` apply hand-made 3 x 3 masks (blur, Sobel, sharpen ...) to photos.

Taught in notebooks/01_convolution.ipynb.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np
import torch

__all__ = [
    "KERNELS",
    "conv2d",
    "convolve1d",
    "convolve2d",
    "cross_correlate1d",
    "filter_image",
    "gaussian_kernel",
    "kernel",
    "matched_filter",
    "output_size",
    "riemann_convolution",
    "to_grayscale",
]


# --------------------------------------------------------------------------- helpers
def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints -> a pair, checked against ``minimum``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return pair


def _int(value, name: str, minimum: int) -> int:
    """One int (not a pair: the size formulas work along one axis), checked against ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int (one axis), got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if not (x.is_floating_point()):
        x = x.to(torch.get_default_dtype())
    return x


# --------------------------------------------------------------------------- 1-D
def riemann_convolution(f: Callable, g: Callable, t: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """The convolution integral ``(f * g)(t) = ∫ f(τ) g(t − τ) dτ`` as a Riemann sum.

    ``f`` and ``g`` are functions of a tensor; ``tau`` is a uniform grid ``(M,)``
    covering where ``f`` is non-zero; ``t`` ``(T,)`` are the points to evaluate at.
    Returns ``(T,)``: ``Σ_i f(τ_i) g(t − τ_i) Δτ``, which converges to the integral
    as ``Δτ → 0``.

    Taught in notebooks/01_convolution.ipynb.
    """
    t = _as_tensor(t, "t")
    tau = _as_tensor(tau, "tau")
    if tau.ndim != 1 or tau.numel() < 2:
        raise ValueError(f"tau must be a 1-D grid with at least 2 points, got shape {tuple(tau.shape)}")
    steps = tau.diff()
    d_tau = steps[0]
    if not torch.allclose(steps, d_tau.expand_as(steps), rtol=1e-4, atol=1e-9 * float(abs(d_tau))):
        raise ValueError("tau must be uniformly spaced")
    if t.ndim != 1:
        raise ValueError(f"t must be 1-D, got shape {tuple(t.shape)}")
    return (f(tau)[None, :] * g(t[:, None] - tau[None, :])).sum(dim=1) * d_tau  # (T,)


def convolve1d(signal, kernel) -> torch.Tensor:
    """The discrete convolution ``y[n] = Σ_k x[k] h[n − k]`` in "full" mode.

    ``signal`` ``(L,)`` and ``kernel`` ``(K,)`` give ``(L + K − 1,)``, the same numbers
    as ``numpy.convolve(signal, kernel)``. Written as a loop over the kernel's taps:
    each tap adds a shifted, scaled copy of the signal.

    Taught in notebooks/01_convolution.ipynb.
    """
    x = _as_tensor(signal, "signal")
    h = _as_tensor(kernel, "kernel").to(x.dtype)
    if x.ndim != 1 or h.ndim != 1:
        raise ValueError(f"signal and kernel must be 1-D, got shapes {tuple(x.shape)} and {tuple(h.shape)}")
    if x.numel() == 0 or h.numel() == 0:
        raise ValueError("signal and kernel must not be empty")
    out = x.new_zeros(x.numel() + h.numel() - 1)
    for k in range(h.numel()):  # y[n] gets h[k] * x[n - k]
        out[k : k + x.numel()] += h[k] * x
    return out


def cross_correlate1d(signal, pattern) -> torch.Tensor:
    """Slide ``pattern`` over ``signal`` without flipping it ("valid" mode).

    ``y[n] = Σ_k x[n + k] p[k]`` for every ``n`` where the pattern fits: ``(L − K + 1,)``.
    This is what ``F.conv1d`` computes (it does not flip the kernel).

    Taught in notebooks/01_convolution.ipynb.
    """
    x = _as_tensor(signal, "signal")
    p = _as_tensor(pattern, "pattern").to(x.dtype)
    if x.ndim != 1 or p.ndim != 1:
        raise ValueError(f"signal and pattern must be 1-D, got shapes {tuple(x.shape)} and {tuple(p.shape)}")
    if p.numel() == 0:
        raise ValueError("pattern must not be empty")
    if p.numel() > x.numel():
        raise ValueError(f"pattern (length {p.numel()}) is longer than the signal (length {x.numel()})")
    n_out = x.numel() - p.numel() + 1
    out = x.new_zeros(n_out)
    for k in range(p.numel()):
        out += p[k] * x[k : k + n_out]
    return out


def matched_filter(signal, pattern) -> tuple[torch.Tensor, int]:
    """Find where ``pattern`` hides in a noisy ``signal``.

    The pattern is made zero-mean and unit-norm, then cross-correlated with the signal
    (a convolution with the flipped pattern: the *matched filter*). Returns
    ``(scores, position)``: ``scores`` ``(L − K + 1,)`` and the start index of the best
    match (``scores.argmax()``).

    Taught in notebooks/01_convolution.ipynb.
    """
    p = _as_tensor(pattern, "pattern")
    p = p - p.mean()
    norm = p.norm()
    if norm == 0:
        raise ValueError("pattern is constant; a matched filter needs a pattern with some shape")
    scores = cross_correlate1d(signal, p / norm)
    return scores, int(scores.argmax())


# --------------------------------------------------------------------------- 2-D
def output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution along one axis.

    ``⌊(size + 2·padding − dilation·(kernel_size − 1) − 1) / stride⌋ + 1``, as in the
    ``torch.nn.Conv2d`` documentation. Raises ``ValueError`` when the (dilated) kernel
    does not fit in the padded input.

    Taught in notebooks/01_convolution.ipynb.
    """
    for name, value, minimum in (("size", size, 1), ("kernel_size", kernel_size, 1), ("stride", stride, 1),
                                 ("padding", padding, 0), ("dilation", dilation, 1)):
        _int(value, name, minimum)
    span = dilation * (kernel_size - 1) + 1
    if span > size + 2 * padding:
        raise ValueError(
            f"kernel (size {kernel_size}, dilation {dilation}, spanning {span}) is larger than the "
            f"padded input ({size} + 2*{padding} = {size + 2 * padding})"
        )
    return (size + 2 * padding - span) // stride + 1


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> torch.Tensor:
    """``torch.nn.functional.conv2d``, from scratch: a loop over the kernel's taps.

    ``input`` ``(N, C, H, W)`` (or unbatched ``(C, H, W)``), ``weight``
    ``(O, C // groups, kh, kw)``, ``bias`` ``(O,)`` or ``None``. Returns
    ``(N, O, H_out, W_out)`` (``(O, H_out, W_out)`` if unbatched) with sizes from
    :func:`output_size`. Like PyTorch, this is a cross-correlation (the kernel is not
    flipped): ``out[n, o, y, x] = b[o] + Σ_{c,i,j} w[o, c, i, j] · in[n, c, y·s + i·d, x·s + j·d]``
    on the zero-padded input.

    Each tap ``(i, j)`` of the kernel sees a strided slice of the padded input; the
    output is the sum over taps of those slices weighted by ``w[:, :, i, j]``.

    Taught in notebooks/01_convolution.ipynb.
    """
    x = _as_tensor(input, "input")
    w = _as_tensor(weight, "weight").to(x.dtype)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"input must be (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    if w.ndim != 4:
        raise ValueError(f"weight must be (out_channels, in_channels/groups, kh, kw), got shape {tuple(w.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    sh, sw = _pair(stride, "stride", 1)
    ph, pw = _pair(padding, "padding", 0)
    dh, dw = _pair(dilation, "dilation", 1)
    n, c, h, wd = x.shape
    o, c_per_group, kh, kw = w.shape
    if c % groups or o % groups:
        raise ValueError(f"groups={groups} must divide input channels ({c}) and output channels ({o})")
    if c_per_group * groups != c:
        raise ValueError(
            f"weight expects {c_per_group * groups} input channels ({c_per_group} per group x {groups} groups), "
            f"input has {c}"
        )
    if kh < 1 or kw < 1:
        raise ValueError(f"kernel must be at least 1x1, got {kh}x{kw}")
    if bias is not None:
        bias = _as_tensor(bias, "bias").to(x.dtype)
        if bias.shape != (o,):
            raise ValueError(f"bias must have shape ({o},), got {tuple(bias.shape)}")
    h_out = output_size(h, kh, sh, ph, dh)
    w_out = output_size(wd, kw, sw, pw, dw)

    padded = torch.nn.functional.pad(x, (pw, pw, ph, ph))  # (N, C, H + 2ph, W + 2pw)
    xg = padded.reshape(n, groups, c // groups, *padded.shape[-2:])  # (N, G, C/G, Hp, Wp)
    wg = w.reshape(groups, o // groups, c_per_group, kh, kw)  # (G, O/G, C/G, kh, kw)
    out = x.new_zeros(n, groups, o // groups, h_out, w_out)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            patch = xg[..., top : top + sh * (h_out - 1) + 1 : sh, left : left + sw * (w_out - 1) + 1 : sw]
            out += torch.einsum("ngchw,goc->ngohw", patch, wg[..., i, j])  # (N, G, O/G, h_out, w_out)
    out = out.reshape(n, o, h_out, w_out)
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out[0] if unbatched else out


def convolve2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> torch.Tensor:
    """The textbook 2-D convolution: :func:`conv2d` with the kernel flipped in both axes.

    ``out[y, x] = Σ_{i,j} w[i, j] · in[y − i, x − j]`` (the signal-processing definition);
    same shapes and arguments as :func:`conv2d`. For a symmetric kernel (box, Gaussian)
    it equals :func:`conv2d`; for Sobel it flips the sign.

    Taught in notebooks/01_convolution.ipynb.
    """
    w = _as_tensor(weight, "weight")
    if w.ndim != 4:
        raise ValueError(f"weight must be (out_channels, in_channels/groups, kh, kw), got shape {tuple(w.shape)}")
    return conv2d(input, w.flip(-2, -1), bias, stride, padding, dilation, groups)


# --------------------------------------------------------------------------- hand-made masks
KERNELS: dict[str, list[list[float]]] = {
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "box blur": [[1 / 9] * 3] * 3,
    "gaussian": [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]],
    "sobel x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
}
"""Hand-made 3 x 3 masks by name (as nested lists; :func:`kernel` gives a tensor)."""


def kernel(name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One of the :data:`KERNELS` as a fresh ``(3, 3)`` tensor.

    Raises ``KeyError`` listing the available names for an unknown one.

    Taught in notebooks/01_convolution.ipynb.
    """
    if name not in KERNELS:
        raise KeyError(f"unknown kernel {name!r}; available: {sorted(KERNELS)}")
    return torch.tensor(KERNELS[name], dtype=dtype)


def gaussian_kernel(size: int = 3, sigma: float = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A ``(size, size)`` Gaussian mask ``∝ exp(−(x² + y²) / 2σ²)`` that sums to 1.

    ``size`` must be a positive odd int and ``sigma > 0``.

    Taught in notebooks/01_convolution.ipynb.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd int, got {size!r}")
    if isinstance(sigma, bool) or not (isinstance(sigma, numbers.Real) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    r = torch.arange(size, dtype=dtype) - size // 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g2 = g[:, None] * g[None, :]
    return g2 / g2.sum()


def to_grayscale(image) -> torch.Tensor:
    """A photo as a grayscale ``(H, W)`` float32 tensor in [0, 1].

    Accepts anything :func:`camlib.data.load_image` does (RGB uint8 array, path, PIL
    image ...); uses the ITU-R 601 luma weights ``0.299 R + 0.587 G + 0.114 B``.

    Taught in notebooks/01_convolution.ipynb.
    """
    from camlib import data

    rgb = torch.from_numpy(data.load_image(image).copy()).to(torch.float32) / 255.0  # (H, W, 3)
    return rgb @ torch.tensor([0.299, 0.587, 0.114])


def filter_image(image: torch.Tensor, mask) -> torch.Tensor:
    """Apply a 2-D mask to every channel of an image, keeping its size.

    ``image`` is ``(H, W)`` or ``(C, H, W)`` (a float tensor, e.g. from
    :func:`to_grayscale`); ``mask`` is ``(k, k)`` with ``k`` odd, or a name from
    :data:`KERNELS`. Each channel is filtered on its own (zero padding ``k // 2``,
    stride 1), like ``F.conv2d(image[:, None], mask[None, None], padding=k // 2)``:
    a cross-correlation, as in PyTorch. Returns the same shape as ``image``.

    Taught in notebooks/01_convolution.ipynb.
    """
    x = _as_tensor(image, "image")
    m = kernel(mask, x.dtype) if isinstance(mask, str) else _as_tensor(mask, "mask").to(x.dtype)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] % 2 == 0:
        raise ValueError(f"mask must be a square (k, k) tensor with k odd, got shape {tuple(m.shape)}")
    if x.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (C, H, W), got shape {tuple(x.shape)}")
    planes = x[None, None] if x.ndim == 2 else x[:, None]  # (C, 1, H, W)
    out = conv2d(planes, m[None, None], padding=m.shape[0] // 2)  # (C, 1, H, W)
    return out[0, 0] if x.ndim == 2 else out[:, 0]
