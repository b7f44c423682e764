"""Measuring localization: IoU, the paper's localization error, GT-known accuracy, threshold sweeps, baselines.

Boxes are ``xyxy`` pixel boxes with exclusive ends (``[x0, y0, x1, y1]``, area
``(x1 - x0) * (y1 - y0)``), the convention of :func:`camlib.cam.cam_to_box` and of
``torchvision.ops.box_iou``.

* top-1 localization error (Zhou et al. 2016, ILSVRC protocol): an image counts as
  wrong if the predicted class is wrong **or** the box has IoU < 0.5 with the truth;
  top-5: wrong unless one of the 5 (class, box) guesses has the right class and IoU >= 0.5;
* GT-known localization accuracy: the box of the *true* class's map has IoU >= 0.5
  (localization alone, classification factored out);
* threshold sweep (MaxBoxAcc-style, Choe et al. 2020): GT-known accuracy for many box
  thresholds; pick the best on validation, report it on test.

Box rules (each boxes the largest 8-connected region of the kept pixels): ``"range"``
(the default of :func:`boxes_at` and :func:`threshold_sweep`) keeps values at least
``threshold`` of the way from the map's minimum to its maximum; ``"max"`` is the paper's
rule as written, keep values >= ``threshold`` x the maximum. They agree only on maps
whose minimum is 0; raw CAMs dip below 0, so 0.2 of the range is a lower cut than 0.2
of the max.

Baselines: a centred box, the whole image, backpropagation saliency
(Simonyan et al. 2014: ``|d S_c / d x|``) boxed the same way as CAM.
Other box rules: the "top 20 % of pixels" rule (a common misreading of the paper's
"20 % of the max value") and the released code's multi-threshold boxes.

Taught in notebooks/07_results.ipynb.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchvision.ops import box_iou

from camlib import cam as cam_steps
from camlib.benchmark import single_thread


def _check_boxes(boxes: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor of xyxy boxes, got {type(boxes).__name__}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as [x0, y0, x1, y1], got {tuple(boxes.shape)}")
    if ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any():
        raise ValueError(f"{name} has a box with x1 < x0 or y1 < y0 (boxes must be xyxy)")
    return boxes.float()


def paired_iou(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """IoU of each predicted box with its own true box: ``(N,)`` from two ``(N, 4)`` xyxy tensors.

    The diagonal of ``torchvision.ops.box_iou(pred, true)`` (computed in chunks so
    memory stays small).
    """
    pred, true = _check_boxes(pred, "pred"), _check_boxes(true, "true")
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same shape, got {tuple(pred.shape)} and {tuple(true.shape)}")
    out = [box_iou(pred[i : i + 256], true[i : i + 256]).diagonal() for i in range(0, len(pred), 256)]
    return torch.cat(out) if out else torch.zeros(0)


def gt_known_accuracy(pred_boxes: torch.Tensor, true_boxes: torch.Tensor, iou_threshold: float = 0.5) -> float:
    """Fraction of images whose box (of the true class's map) has IoU >= ``iou_threshold``."""
    return (paired_iou(pred_boxes, true_boxes) >= iou_threshold).float().mean().item()


def localization_error(pred_classes: torch.Tensor, pred_boxes: torch.Tensor, labels: torch.Tensor,
                       true_boxes: torch.Tensor, iou_threshold: float = 0.5) -> float:
    """The paper's localization error, as a fraction in [0, 1].

    top-1: ``pred_classes`` ``(N,)``, ``pred_boxes`` ``(N, 4)``. top-k: ``pred_classes``
    ``(N, k)`` and ``pred_boxes`` ``(N, k, 4)``, one box per guessed class; an image is
    right if **some** guess has the true class and IoU >= ``iou_threshold``.
    ``labels`` ``(N,)``, ``true_boxes`` ``(N, 4)``.
    """
    pred_classes, pred_boxes = torch.as_tensor(pred_classes), torch.as_tensor(pred_boxes)
    labels, true_boxes = torch.as_tensor(labels), torch.as_tensor(true_boxes)
    if pred_classes.ndim == 1:
        pred_classes, pred_boxes = pred_classes[:, None], pred_boxes[:, None]
    n, k = pred_classes.shape
    if pred_boxes.shape != (n, k, 4) or labels.shape != (n,) or true_boxes.shape != (n, 4):
        raise ValueError(
            f"shapes do not fit: pred_classes {tuple(pred_classes.shape)}, pred_boxes {tuple(pred_boxes.shape)}, "
            f"labels {tuple(labels.shape)}, true_boxes {tuple(true_boxes.shape)}"
        )
    iou = paired_iou(pred_boxes.reshape(-1, 4), true_boxes.repeat_interleave(k, dim=0)).reshape(n, k)
    hit = (pred_classes == labels[:, None]) & (iou >= iou_threshold)
    return 1.0 - hit.any(1).float().mean().item()


# --------------------------------------------------------------------------- box rules
def _up(maps: torch.Tensor, size) -> torch.Tensor:
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3:
        raise ValueError(f"maps must be a tensor of shape (N, h, w), got {getattr(maps, 'shape', type(maps))}")
    size = (size, size) if isinstance(size, int) else tuple(size)
    return maps if tuple(maps.shape[-2:]) == tuple(size) else cam_steps.upsample(maps.float(), size)


def boxes_at(maps: torch.Tensor, threshold: float, size, relative_to: str = "range") -> torch.Tensor:
    """The box of the largest region above ``threshold`` for each map ``(N, h, w)``: ``(N, 4)``.

    Each map is up-scaled to ``size`` and boxed by :func:`camlib.cam.cam_to_box` with
    ``relative_to``: ``"range"`` (default) keeps values at least ``threshold`` of the way
    from the map's minimum to its maximum (works for any map, also one with no positive
    value); ``"max"`` is the paper's rule as written, ``threshold`` x the map's maximum
    (a map whose maximum is not positive raises ``ValueError``).
    """
    return cam_steps.cam_to_box(_up(maps, size), threshold, relative_to=relative_to)


def top_fraction_boxes(maps: torch.Tensor, fraction: float, size) -> torch.Tensor:
    """Box of the largest region made of the top ``fraction`` of pixels (by value) of each map.

    This is **not** the paper's rule (keep values >= 20 % of the maximum); it keeps a
    fixed share of the image whatever the map looks like. Maps ``(N, h, w)`` are
    up-scaled to ``size`` first; returns ``(N, 4)``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    up = _up(maps, size).float()
    flat = up.reshape(len(up), -1)
    cut = torch.quantile(flat, 1.0 - fraction, dim=1)[:, None, None]
    keep = (up >= cut).float()  # a 0/1 map: cam_to_box at 0.5 boxes its largest region
    return cam_steps.cam_to_box(keep, 0.5)


def multi_threshold_boxes(cam: torch.Tensor, thresholds=(20, 100, 110), overlap: float = 0.5) -> torch.Tensor:
    """Several candidate boxes from one map, in the manner of the authors' released ``dt_box``.

    The raw map ``(H, W)`` (already at image size) is scaled as the released
    ``ILSVRC_generate_heatmap.m`` saves its heat maps: divided by its maximum, negative
    values clipped to 0, written as 0..255 integers. For each threshold ``t`` the pixels
    ``> t`` are split into 8-connected regions and each region gives a box. Boxes are
    sorted by area (largest first) and a box is dropped when it overlaps an already
    kept one by more than ``overlap`` x the larger area. Returns ``(k, 4)`` xyxy boxes,
    largest first; the whole image if no pixel passes any threshold. Left out of the
    released C++ code: the distance transform of each binary image before finding
    contours, the boxes of holes (OpenCV's ``RETR_CCOMP`` also returns inner contours)
    and the 5-pixel margin its boxes are clipped to. A map whose maximum is not
    positive raises ``ValueError``.
    """
    from scipy import ndimage

    if not isinstance(cam, torch.Tensor) or cam.ndim != 2:
        raise ValueError(f"multi_threshold_boxes expects one map (H, W) as a tensor, got {getattr(cam, 'shape', type(cam))}")
    if not all(0 <= t < 255 for t in thresholds):
        raise ValueError(f"thresholds are on a 0-255 scale, got {thresholds}")
    if not torch.isfinite(cam).all():
        raise ValueError("the map contains NaN or infinite values")
    peak = cam.float().max()
    if peak <= 0:
        raise ValueError("the map's maximum is not positive: dividing by it (as the released code does) makes no sense")
    scaled = torch.round((cam.float() / peak).clamp(0, 1) * 255).numpy()
    boxes = []
    for t in thresholds:
        labels, n = ndimage.label(scaled > t, structure=np.ones((3, 3), dtype=bool))
        for rows, cols in ndimage.find_objects(labels):
            boxes.append([cols.start, rows.start, cols.stop, rows.stop])
    if not boxes:
        return torch.tensor([[0, 0, cam.shape[1], cam.shape[0]]], dtype=torch.float32)
    boxes = sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
    kept: list[list[int]] = []
    for b in boxes:
        area_b = (b[2] - b[0]) * (b[3] - b[1])
        ok = True
        for a in kept:
            inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
            if inter > overlap * max(area_b, (a[2] - a[0]) * (a[3] - a[1])):
                ok = False
                break
        if ok:
            kept.append(b)
    return torch.tensor(kept, dtype=torch.float32)


def centre_box(height: int, width: int, fraction: float = 0.5, n: int = 1) -> torch.Tensor:
    """A box centred in an ``height x width`` image whose sides are ``fraction`` of the image's: ``(n, 4)``."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    bw, bh = round(width * fraction), round(height * fraction)
    x0, y0 = (width - bw) // 2, (height - bh) // 2
    return torch.tensor([[x0, y0, x0 + bw, y0 + bh]], dtype=torch.float32).repeat(n, 1)


def whole_image_box(height: int, width: int, n: int = 1) -> torch.Tensor:
    """The box of the whole image, ``(n, 4)``."""
    return centre_box(height, width, 1.0, n)


def saliency_maps(model: nn.Module, images: torch.Tensor, class_idx: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """Backpropagation saliency (Simonyan et al. 2014): ``max_channels |d S_c / d x|``, ``(N, H, W)``.

    ``S_c`` is the logit of ``class_idx`` ``(N,)`` (one class per image). The model runs
    in eval mode; every module's train/eval flag is restored afterwards, and the
    model's parameter gradients are left untouched. Runs on one thread (see
    :func:`camlib.benchmark.single_thread`), which is faster for small models.
    """
    class_idx = torch.as_tensor(class_idx).long()
    if images.ndim != 4 or class_idx.shape != (len(images),):
        raise ValueError(f"images must be (N, C, H, W) and class_idx (N,), got {tuple(images.shape)}, {tuple(class_idx.shape)}")
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    out = []
    try:
        with single_thread():
            for i in range(0, len(images), batch_size):
                x = images[i : i + batch_size].detach().clone().requires_grad_(True)
                scores = model(x).gather(1, class_idx[i : i + batch_size, None]).sum()
                (grad,) = torch.autograd.grad(scores, x)
                out.append(grad.abs().amax(1))
    finally:
        for module, training in modes:
            module.training = training
    return torch.cat(out)


# --------------------------------------------------------------------------- sweep
def threshold_sweep(maps: torch.Tensor, true_boxes: torch.Tensor, thresholds, size=None,
                    rule: str = "range", iou_threshold: float = 0.5) -> torch.Tensor:
    """GT-known accuracy at each threshold: ``(T,)`` for maps ``(N, h, w)`` and ``true_boxes`` ``(N, 4)``.

    ``rule="range"`` (default): keep values >= ``threshold`` of the way from min to max;
    ``rule="max"``: the paper's rule as written, keep values >= ``threshold`` x max
    (both :func:`boxes_at`); ``rule="top"``: keep the top ``threshold`` fraction of pixels
    (:func:`top_fraction_boxes`). ``size``: image size the maps are up-scaled to
    (default: the maps' own).
    """
    if rule not in ("range", "max", "top"):
        raise ValueError(f"rule must be 'range', 'max' or 'top', got {rule!r}")
    size = tuple(maps.shape[-2:]) if size is None else ((size, size) if isinstance(size, int) else tuple(size))
    up = _up(maps, size)
    if rule == "top":
        return torch.tensor([gt_known_accuracy(top_fraction_boxes(up, float(t), size), true_boxes, iou_threshold)
                             for t in thresholds])
    return torch.tensor([gt_known_accuracy(boxes_at(up, float(t), size, relative_to=rule), true_boxes, iou_threshold)
                         for t in thresholds])


def best_threshold(thresholds, accuracies: torch.Tensor) -> float:
    """The threshold with the highest accuracy (the first one on ties)."""
    accuracies = torch.as_tensor(accuracies)
    if len(thresholds) != len(accuracies) or len(accuracies) == 0:
        raise ValueError("thresholds and accuracies must be non-empty and of the same length")
    return float(thresholds[int(torch.argmax(accuracies))])


# --------------------------------------------------------------------------- crops
def _crop_geometry(image_shape, resize: int, crop: int):
    """``(x scale, y scale, left, top)`` of :class:`camlib.models.Preprocess`'s crop."""
    from camlib.models import Preprocess

    rh, rw, top, left = Preprocess(resize, crop).geometry(image_shape)
    return rw / int(image_shape[1]), rh / int(image_shape[0]), left, top


def crop_box_to_image(box: torch.Tensor, image_shape, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """Map ``xyxy`` boxes ``(..., 4)`` from the model's crop back to the original image's pixels.

    The crop is the one of :class:`camlib.models.Preprocess`: shorter side resized to
    ``resize``, then a centred ``crop x crop`` window. ``image_shape`` is ``(H, W, ...)`` of the original.
    """
    sx, sy, left, top = _crop_geometry(image_shape, resize, crop)
    box = torch.as_tensor(box, dtype=torch.float32)
    offset = torch.tensor([left, top, left, top], dtype=torch.float32)
    scale = torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
    return (box + offset) / scale


def image_box_to_crop(box: torch.Tensor, image_shape, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """Inverse of :func:`crop_box_to_image`: an original-image box in the crop's pixels, clipped to the crop."""
    sx, sy, left, top = _crop_geometry(image_shape, resize, crop)
    box = torch.as_tensor(box, dtype=torch.float32)
    offset = torch.tensor([left, top, left, top], dtype=torch.float32)
    scale = torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
    return (box * scale - offset).clamp(0, crop)
