"""Hand-made filters (what a person can think of) and how closely learned filters match them.

A bank of classic 3-channel kernels -- Sobel and diagonal edges, Laplacian, Gaussian
blur, Gabor stripes, colour-opponent and centre-surround colour blobs -- and
:func:`match_filters`, which gives every learned filter its best-matching hand-made one
and the cosine similarity (uncentred correlation) between them.

Taught in notebooks/04_feature_depth.ipynb.
"""

from __future__ import annotations

import math

import torch

from camlib.conv import gaussian_kernel, kernel

# Colour directions (R, G, B); each is a unit vector so grey and colour filters compare fairly.
_GREY = torch.tensor([1.0, 1.0, 1.0]) / math.sqrt(3)
_RED_GREEN = torch.tensor([1.0, -1.0, 0.0]) / math.sqrt(2)
_BLUE_YELLOW = torch.tensor([-0.5, -0.5, 1.0]) / math.sqrt(1.5)


def gabor_kernel(size: int, theta: float, wavelength: float, sigma: float, phase: float = 0.0) -> torch.Tensor:
    """A ``(size, size)`` Gabor kernel: a cosine stripe pattern under a Gaussian window.

    ``g(x, y) = exp(-(x^2 + y^2) / (2 sigma^2)) * cos(2 pi x' / wavelength + phase)`` with
    ``x' = x cos(theta) + y sin(theta)`` (``x`` to the right, ``y`` down, centred on the
    middle pixel). ``phase=0`` gives a bar detector, ``phase=pi/2`` an edge detector.

    Taught in notebooks/04_feature_depth.ipynb.
    """
    if size < 1 or sigma <= 0 or wavelength <= 0:
        raise ValueError(f"size, sigma and wavelength must be positive, got {size}, {sigma}, {wavelength}")
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    x_rot = x * math.cos(theta) + y * math.sin(theta)
    return torch.exp(-(x**2 + y**2) / (2 * sigma**2)) * torch.cos(2 * math.pi * x_rot / wavelength + phase)


def hand_made_filters(size: int = 3) -> dict[str, torch.Tensor]:
    """The hand-made filter bank: ``{name: (3, size, size) tensor}`` in RGB order.

    Grey filters apply the same spatial kernel to R, G and B. ``size`` is 3 (the
    EfficientNet stem) or another odd number; Sobel/Laplacian are defined for 3 only
    and are resized by bilinear interpolation for larger sizes.

    Taught in notebooks/04_feature_depth.ipynb.
    """
    if size < 3 or size % 2 == 0:
        raise ValueError(f"size must be an odd number >= 3, got {size}")
    diagonal = torch.tensor([[0.0, 1.0, 2.0], [-1.0, 0.0, 1.0], [-2.0, -1.0, 0.0]])
    spatial = {
        "sobel x (vertical edge)": kernel("sobel x"),  # the masks of notebooks/01_convolution
        "sobel y (horizontal edge)": kernel("sobel y"),
        "diagonal edge /": diagonal,
        "diagonal edge \\": diagonal.flip(1),
        "laplacian": kernel("laplacian"),
    }
    if size != 3:
        spatial = {name: torch.nn.functional.interpolate(k[None, None], size=(size, size), mode="bilinear",
                                                        align_corners=True)[0, 0]
                   for name, k in spatial.items()}
    sigma = size / 3
    spatial["gaussian blur"] = gaussian_kernel(size, sigma)
    for degrees in (0, 45, 90, 135):
        spatial[f"gabor bar {degrees}°"] = gabor_kernel(size, math.radians(degrees), wavelength=size, sigma=sigma)

    bank = {name: _GREY[:, None, None] * kernel for name, kernel in spatial.items()}
    flat = torch.ones(size, size) / size
    centre = gaussian_kernel(size, size / 6)
    centre_surround = centre - centre.mean()
    bank["red - green"] = _RED_GREEN[:, None, None] * flat
    bank["blue - yellow"] = _BLUE_YELLOW[:, None, None] * flat
    bank["red/green centre-surround"] = _RED_GREEN[:, None, None] * centre_surround
    bank["blue/yellow centre-surround"] = _BLUE_YELLOW[:, None, None] * centre_surround
    return bank


def cosine_similarity_matrix(learned: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every learned filter with every bank filter.

    ``learned`` ``(N, C, k, k)``, ``bank`` ``(M, C, k, k)``; returns ``(N, M)`` values in
    [-1, 1]: ``<w, h> / (|w| |h|)`` over all ``C*k*k`` weights (an uncentred correlation,
    so a filter that averages brightness can match a blur).

    Taught in notebooks/04_feature_depth.ipynb.
    """
    if learned.ndim != 4 or bank.ndim != 4 or learned.shape[1:] != bank.shape[1:]:
        raise ValueError(f"expected (N, C, k, k) and (M, C, k, k) with the same C, k; "
                         f"got {tuple(learned.shape)} and {tuple(bank.shape)}")
    a = learned.flatten(1).double()
    b = bank.flatten(1).double()
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (a @ b.T).float()


def match_filters(learned: torch.Tensor, bank: dict[str, torch.Tensor], dead_fraction: float = 1e-3) -> list[dict]:
    """For each learned filter, the hand-made filter it resembles most.

    ``learned`` is ``(N, 3, k, k)`` (e.g. ``model._conv_stem.weight``), ``bank`` a dict
    from :func:`hand_made_filters`. A filter and its negative detect the same pattern
    with opposite sign, so the match maximises ``|cosine similarity|``. Training can
    leave filters with (almost) all-zero weights; those whose norm is below
    ``dead_fraction`` times the largest norm are marked dead and get no match.

    Returns a list of N dicts ``{"index", "norm", "dead", "match", "similarity"}`` where
    ``similarity`` is the signed cosine similarity with the best match (``match`` is
    ``None`` and ``similarity`` NaN for dead filters).

    Taught in notebooks/04_feature_depth.ipynb.
    """
    learned = learned.detach()
    names = list(bank)
    sims = cosine_similarity_matrix(learned, torch.stack([bank[n] for n in names]))
    norms = learned.flatten(1).norm(dim=1)
    dead = norms < dead_fraction * norms.max()
    best = sims.abs().argmax(1)
    return [{"index": i, "norm": float(norms[i]), "dead": bool(dead[i]),
             "match": None if dead[i] else names[int(b)],
             "similarity": float("nan") if dead[i] else float(sims[i, b])}
            for i, b in enumerate(best)]


def random_filter_baseline(shape: tuple[int, ...], bank: dict[str, torch.Tensor], seed: int = 0) -> torch.Tensor:
    """``|best cosine similarity|`` with the bank for random Gaussian filters of ``shape``.

    The chance level for :func:`match_filters`: a bank of many filters matches noise
    somewhat too. Returns a ``(shape[0],)`` tensor, seeded by ``seed``.

    Taught in notebooks/04_feature_depth.ipynb.
    """
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return torch.tensor([abs(m["similarity"]) for m in match_filters(noise, bank)])
