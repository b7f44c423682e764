"""Explorers for notebooks 01 and 02: a 3 x 3 kernel on a photo, and pooling.

:func:`kernel_explorer` lets you pick a preset mask (blur, Gaussian, Sobel, sharpen
...) or type the nine numbers of your own, and shows the filtered photo.
:func:`pooling_explorer` pools a photo, or an edge feature map of it, with a chosen
mode, pool size and stride.

Each returns an object with ``.widget`` (display it) and its controls as attributes;
after every redraw it keeps the array it drew (``.filtered`` / ``.pooled``) so a test
can set a control's ``.value`` and check the picture is right.

Taught in notebooks/01_convolution.ipynb and notebooks/02_pooling.ipynb.
"""

from __future__ import annotations

import io

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from camlib import conv, pooling

__all__ = ["KernelExplorer", "PoolingExplorer", "edge_map", "kernel_explorer", "pooling_explorer"]

_CUSTOM = "custom"
_YOUR_IMAGE = "your image"


def _png(fig) -> bytes:
    """The figure as PNG bytes (then closed): what the explorers show in their ``picture``."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def _photo_names() -> list[str]:
    from camlib import data

    return list(data.sample_photos())


def _gray(image, max_side: int) -> torch.Tensor:
    """Grayscale ``(H, W)`` in [0, 1], shrunk (antialiased) so its longer side <= max_side."""
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 8:
        raise ValueError(f"max_side must be an int >= 8, got {max_side!r}")
    gray = conv.to_grayscale(image)
    h, w = gray.shape
    scale = max_side / max(h, w)
    if scale < 1:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        gray = F.interpolate(gray[None, None], size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0]
    return gray.clamp(0, 1)


class _PhotoSource:
    """A photo dropdown (sample photos by name, or one image given by the caller), cached."""

    def __init__(self, image, max_side: int):
        from camlib import data

        self.max_side = max_side
        self._cache: dict[str, torch.Tensor] = {}
        if isinstance(image, str):
            names = _photo_names()
            if image not in names:
                raise ValueError(f"unknown sample photo {image!r}; available: {names}")
            self.dropdown = W.Dropdown(options=names, value=image, description="photo")
        else:
            self._cache[_YOUR_IMAGE] = _gray(data.load_image(image), max_side)
            self.dropdown = W.Dropdown(options=[_YOUR_IMAGE], value=_YOUR_IMAGE, description="photo", disabled=True)

    def gray(self) -> torch.Tensor:
        name = self.dropdown.value
        if name not in self._cache:
            from camlib import data

            self._cache[name] = _gray(data.sample_images([name])[name], self.max_side)
        return self._cache[name]


# --------------------------------------------------------------------------- kernel explorer
class KernelExplorer:
    """A 3 x 3 mask applied to a grayscale photo.

    Controls: ``preset`` (Dropdown of :data:`camlib.conv.KERNELS` names, plus
    ``"custom"`` once a cell is edited), ``cells`` (nine FloatText, row by row),
    ``photo`` (Dropdown). State after each redraw: ``image`` ``(H, W)`` the grayscale
    photo, ``kernel`` ``(3, 3)``, ``filtered`` ``(H, W)`` =
    ``F.conv2d(image[None, None], kernel[None, None], padding=1)[0, 0]``, ``draws``
    the number of redraws, ``picture`` (an Image widget holding the PNG drawn).
    Display ``.widget``.
    """

    def __init__(self, image="chelsea", kernel="sobel x", max_side: int = 256):
        if isinstance(kernel, str):
            start = conv.kernel(kernel)
            preset = kernel
        else:
            start = torch.as_tensor(np.asarray(kernel, dtype=np.float32))
            preset = _CUSTOM
        if start.shape != (3, 3):
            raise ValueError(f"kernel must be 3x3 (a name from camlib.conv.KERNELS or a 3x3 array), got shape {tuple(start.shape)}")
        if not torch.isfinite(start).all():
            raise ValueError("kernel must hold finite numbers")
        self._source = _PhotoSource(image, max_side)
        self.photo = self._source.dropdown
        self.preset = W.Dropdown(options=[*conv.KERNELS, _CUSTOM], value=preset, description="kernel")
        self.cells = [W.FloatText(value=float(v), layout=W.Layout(width="70px")) for v in start.flatten()]
        self.picture = W.Image(format="png")
        self.draws = 0
        self.image: torch.Tensor | None = None
        self.kernel: torch.Tensor = start
        self.filtered: torch.Tensor | None = None
        self._busy = False

        self.preset.observe(self._on_preset, names="value")
        for cell in self.cells:
            cell.observe(self._on_cell, names="value")
        self.photo.observe(lambda change: self.redraw(), names="value")

        grid = W.GridBox(self.cells, layout=W.Layout(grid_template_columns="repeat(3, 75px)"))
        self.widget = W.VBox([W.HBox([self.photo, self.preset]), W.HBox([W.Label("mask:"), grid]), self.picture])
        self.redraw()

    def _on_preset(self, change) -> None:
        if self._busy or change["new"] == _CUSTOM:
            return
        self._busy = True
        try:
            for cell, v in zip(self.cells, conv.kernel(change["new"]).flatten()):
                cell.value = float(v)
        finally:
            self._busy = False
        self.redraw()

    def _on_cell(self, change) -> None:
        if self._busy:
            return
        current = self._read_cells()
        if self.preset.value != _CUSTOM and not torch.equal(current, conv.kernel(self.preset.value)):
            self._busy = True
            try:
                self.preset.value = _CUSTOM
            finally:
                self._busy = False
        self.redraw()

    def _read_cells(self) -> torch.Tensor:
        return torch.tensor([c.value for c in self.cells], dtype=torch.float32).reshape(3, 3)

    def redraw(self) -> None:
        """Filter the photo with the kernel in the cells and draw both."""
        self.image = self._source.gray()  # (H, W)
        self.kernel = self._read_cells()  # (3, 3)
        self.filtered = conv.filter_image(self.image, self.kernel)  # (H, W)
        self.draws += 1
        signed = bool((self.kernel < 0).any())
        out = self.filtered.numpy()
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        axes[0].imshow(self.image.numpy(), cmap="gray", vmin=0, vmax=1)
        axes[0].set_title(f"input {tuple(self.image.shape)}")
        if signed:  # edges: negative and positive responses, centred on grey
            limit = float(np.abs(out).max()) or 1.0
            im = axes[1].imshow(out, cmap="gray", vmin=-limit, vmax=limit)
        else:
            im = axes[1].imshow(out, cmap="gray", vmin=0, vmax=max(1.0, float(out.max())))
        fig.colorbar(im, ax=axes[1], fraction=0.046)
        axes[1].set_title(f"{self.preset.value} (sum of mask = {float(self.kernel.sum()):.3g})")
        for ax in axes:
            ax.axis("off")
        self.picture.value = _png(fig)


def kernel_explorer(image="chelsea", kernel="sobel x", max_side: int = 256) -> KernelExplorer:
    """Explore 3 x 3 masks on a photo: pick a preset or type your own nine numbers.

    ``image`` is a sample photo name (see :func:`camlib.data.sample_photos`) or any
    image :func:`camlib.data.load_image` accepts; it is turned to grayscale and shrunk
    so its longer side is at most ``max_side``. ``kernel`` is a name from
    :data:`camlib.conv.KERNELS` or a 3 x 3 array (``ValueError`` otherwise).
    Returns a :class:`KernelExplorer`; display its ``.widget``.

    Taught in notebooks/01_convolution.ipynb.
    """
    return KernelExplorer(image, kernel, max_side)


# --------------------------------------------------------------------------- pooling explorer
def edge_map(gray: torch.Tensor) -> torch.Tensor:
    """A feature map of a grayscale ``(H, W)`` image: Sobel edge strength ``√(gx² + gy²)``, ``(H, W)``."""
    gx = conv.filter_image(gray, "sobel x")
    gy = conv.filter_image(gray, "sobel y")
    return torch.sqrt(gx**2 + gy**2)


class PoolingExplorer:
    """Max or average pooling of a photo or of its edge feature map.

    Controls: ``mode`` ("max" / "avg"), ``size`` and ``stride`` (IntSliders),
    ``source`` ("photo" / "feature map"), ``photo`` (Dropdown). State after each
    redraw: ``input`` ``(H, W)`` what is pooled, ``pooled`` ``(H_out, W_out)`` =
    ``F.max_pool2d`` / ``F.avg_pool2d`` of it, ``draws`` the number of redraws,
    ``picture`` (an Image widget holding the PNG drawn). Display ``.widget``.
    """

    def __init__(self, image="chelsea", mode: str = "max", size: int = 4, stride: int | None = None,
                 source: str = "photo", max_side: int = 256, max_size: int = 32):
        if mode not in ("max", "avg"):
            raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")
        if source not in ("photo", "feature map"):
            raise ValueError(f"source must be 'photo' or 'feature map', got {source!r}")
        stride = size if stride is None else stride
        for name, value in (("size", size), ("stride", stride)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self._source = _PhotoSource(image, max_side)
        shape = tuple(self._source.gray().shape)
        max_size = min(max_size, *shape)  # the sliders stop where the pool would not fit
        if size > max_size:
            raise ValueError(f"pool size {size} is larger than allowed here (at most {max_size}; the image is {shape})")
        if stride > max_size:
            raise ValueError(f"stride {stride} is larger than allowed here (at most {max_size})")
        self.photo = self._source.dropdown
        self.mode = W.ToggleButtons(options=["max", "avg"], value=mode, description="mode")
        self.source = W.ToggleButtons(options=["photo", "feature map"], value=source, description="pool")
        self.size = W.IntSlider(value=size, min=1, max=max_size, description="pool size")
        self.stride = W.IntSlider(value=stride, min=1, max=max_size, description="stride")
        self.picture = W.Image(format="png")
        self.draws = 0
        self.input: torch.Tensor | None = None
        self.pooled: torch.Tensor | None = None
        for control in (self.photo, self.mode, self.source, self.size, self.stride):
            control.observe(lambda change: self.redraw(), names="value")
        self.widget = W.VBox([W.HBox([self.photo, self.source]), self.mode, W.HBox([self.size, self.stride]), self.picture])
        self.redraw()

    def redraw(self) -> None:
        """Pool the chosen input with the chosen mode, size and stride, and draw both."""
        gray = self._source.gray()
        self.input = gray if self.source.value == "photo" else edge_map(gray)  # (H, W)
        k, s = self.size.value, self.stride.value
        self.pooled = pooling.pool2d(self.input[None, None], k, s, mode=self.mode.value)[0, 0]  # (H_out, W_out)
        self.draws += 1
        vmax = float(self.input.max()) or 1.0
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        axes[0].imshow(self.input.numpy(), cmap="gray", vmin=0, vmax=vmax)
        axes[0].set_title(f"{self.source.value} {tuple(self.input.shape)}")
        axes[1].imshow(self.pooled.numpy(), cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
        axes[1].set_title(f"{self.mode.value} pool {k}x{k}, stride {s} -> {tuple(self.pooled.shape)}")
        for ax in axes:
            ax.axis("off")
        self.picture.value = _png(fig)


def pooling_explorer(image="chelsea", mode: str = "max", size: int = 4, stride: int | None = None,
                     source: str = "photo", max_side: int = 256) -> PoolingExplorer:
    """Explore pooling on a photo and on its edge feature map.

    ``image`` is a sample photo name or any image :func:`camlib.data.load_image`
    accepts (grayscale, longer side shrunk to at most ``max_side``); ``mode`` is
    ``"max"`` or ``"avg"``; ``size`` and ``stride`` (default: ``size``) are ints from 1
    to 32 and at most the image's shorter side (``ValueError`` otherwise); ``source`` is ``"photo"`` or ``"feature map"``
    (Sobel edge strength, see :func:`edge_map`). Returns a :class:`PoolingExplorer`;
    display its ``.widget``.

    Taught in notebooks/02_pooling.ipynb.
    """
    return PoolingExplorer(image, mode, size, stride, source, max_side)
