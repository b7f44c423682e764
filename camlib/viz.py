"""Figures for class activation maps: overlays, boxes, top-k grids.

Plotting functions never change the map they are given except as documented:
the map is up-scaled (bilinear) to the image and min-max normalized, nothing else.

Taught in notebooks/06_class_activation_mapping.ipynb.
"""

from __future__ import annotations

import numpy as np
import torch

from camlib import cam as cam_steps
from camlib import data


def heatmap(cam: torch.Tensor, size, cmap: str = "jet") -> np.ndarray:
    """Colour one map ``(h, w)``: up-scaled to ``size`` ``(H, W)``, normalized, coloured.

    Returns ``(H, W, 3)`` float RGB in [0, 1].
    """
    import matplotlib

    if not isinstance(cam, torch.Tensor) or cam.ndim != 2:
        raise ValueError(f"heatmap expects one map of shape (h, w) as a tensor, got {getattr(cam, 'shape', type(cam))}")
    values = cam_steps.normalize(cam_steps.upsample(cam.float(), size)).cpu().numpy()
    return matplotlib.colormaps[cmap](values)[..., :3]


def overlay(image, cam: torch.Tensor, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend the coloured map over ``image``: ``(1 - alpha) * image + alpha * heat``.

    ``image``: anything :func:`camlib.data.load_image` accepts; ``cam``: ``(h, w)``
    at any resolution (up-scaled bilinearly to the image). Returns ``(H, W, 3)`` uint8.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    rgb = data.load_image(image)
    heat = heatmap(cam, rgb.shape[:2], cmap=cmap)
    blended = (1.0 - alpha) * rgb.astype(np.float64) / 255.0 + alpha * heat
    return np.round(blended * 255.0).astype(np.uint8)


def draw_box(ax, box, color: str = "lime", label: str | None = None, linewidth: float = 2.0):
    """Draw an ``xyxy`` pixel box (exclusive ends, as :func:`camlib.cam.cam_to_box`) on ``ax``."""
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = (float(v) for v in torch.as_tensor(box).reshape(-1)[:4])
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box must be [x0, y0, x1, y1] with x1 >= x0 and y1 >= y0, got {[x0, y0, x1, y1]}")
    # pixel (i, j) covers [j - 0.5, j + 0.5] in imshow coordinates
    rect = Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=linewidth)
    ax.add_patch(rect)
    if label:
        ax.text(x0 - 0.5, y0 - 1.5, label, color="black", fontsize=8, va="bottom",
                bbox={"facecolor": color, "alpha": 0.8, "pad": 1, "edgecolor": "none"})
    return rect


def show_cam(ax, image, cam: torch.Tensor, title: str | None = None, alpha: float = 0.5, box=None,
             cmap: str = "jet", box_color: str = "lime"):
    """Draw the overlay of ``cam`` on ``image`` into ``ax`` (optionally with a box and title)."""
    ax.imshow(overlay(image, cam, alpha=alpha, cmap=cmap))
    if box is not None:
        draw_box(ax, box, color=box_color)
    if title:
        ax.set_title(title, fontsize=9)
    ax.axis("off")
    return ax


def plot_topk(image, result, categories, k: int = 5, index: int = 0, threshold: float | None = 0.2,
              alpha: float = 0.5, size: float = 2.6):
    """A row: the image, then the maps of its ``k`` most probable classes.

    ``result`` is a :class:`camlib.cam.CAMResult` (any classes; the top-k maps are
    computed from its stored features), ``image`` the crop the model saw (e.g.
    ``preprocess.display(photo)``). With ``threshold``, each map's box is drawn.
    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    rgb = data.load_image(image)
    num_classes = result.logits.shape[1]
    if not 1 <= k <= num_classes:
        raise ValueError(f"k must be between 1 and {num_classes}, got {k}")
    probs = result.logits[index].softmax(-1)
    top_p, top_i = probs.topk(k)
    maps = result.maps_for(top_i[None].expand(result.logits.shape[0], -1))[index]  # (k, h, w)
    fig, axes = plt.subplots(1, k + 1, figsize=(size * (k + 1), size))
    axes[0].imshow(rgb)
    axes[0].set_title("input", fontsize=9)
    axes[0].axis("off")
    for ax, m, p, c in zip(axes[1:], maps, top_p, top_i):
        box = cam_steps.cam_to_box(cam_steps.upsample(m, rgb.shape[:2]), threshold) if threshold is not None else None
        show_cam(ax, rgb, m, title=f"{categories[int(c)]}\np = {float(p):.2f}", alpha=alpha, box=box)
    fig.tight_layout()
    return fig
