"""Activations at increasing depth (via forward hooks) and the image patches that excite a channel.

:func:`capture_activations` runs a model once and returns the outputs of the modules you
name, with hooks that are removed on exit and the caller's model untouched (no copies,
no ``eval()`` behind your back). :func:`depth_layers` names the stem, the 16 blocks and
the head of EfficientNet-Lite0. :func:`top_activating_patches` finds, over a batch of
images, the positions where one channel responds most and cuts out the input patch
each of those units sees.

Taught in notebooks/04_feature_depth.ipynb.
"""

from __future__ import annotations

from contextlib import ExitStack

import torch
from torch import nn

from camlib.hooks import Capture


def depth_layers(model: nn.Module) -> dict[str, nn.Module]:
    """``{label: module}`` for EfficientNet-Lite0 from shallow to deep.

    ``"stem"`` is ``model._bn0`` (the stem convolution after batch norm, before its ReLU6:
    ``model._swish`` is shared by the stem and the head, so a hook on it would fire twice),
    ``"block 0"`` .. ``"block 15"`` are ``model._blocks[i]``, ``"head"`` is ``model._bn1``
    (the 1280-channel features, before ReLU6).

    Taught in notebooks/04_feature_depth.ipynb.
    """
    for attr in ("_bn0", "_blocks", "_bn1"):
        if not hasattr(model, attr):
            raise TypeError(f"expected an EfficientNet (with .{attr}); got {type(model).__name__}")
    layers = {"stem": model._bn0}
    layers.update({f"block {i}": block for i, block in enumerate(model._blocks)})
    layers["head"] = model._bn1
    return layers


@torch.no_grad()
def capture_activations(model: nn.Module, modules: dict[str, nn.Module], inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of the named modules for one forward pass of ``inputs`` ``(N, 3, H, W)``.

    ``modules`` is ``{label: module}`` (e.g. :func:`depth_layers`); each gets a
    :class:`camlib.hooks.Capture`, removed on exit. Returns ``{label: (N, K, h, w) tensor}``
    in the order of ``modules``. A module that runs more than once per forward pass (a
    shared module such as ``model._swish``) raises ``ValueError`` instead of silently
    keeping one of its outputs. The model runs in whatever mode the caller left it in
    (use ``model.eval()`` for inference).

    Taught in notebooks/04_feature_depth.ipynb.
    """
    with ExitStack() as stack:
        captures = {label: stack.enter_context(Capture(module)) for label, module in modules.items()}
        model(inputs)
    missing = [label for label, c in captures.items() if c.calls == 0]
    if missing:
        raise ValueError(f"modules {missing} did not run in the forward pass")
    repeated = {label: c.calls for label, c in captures.items() if c.calls > 1}
    if repeated:
        raise ValueError(f"modules ran more than once in one forward pass {repeated} (shared, like "
                         "model._swish for stem and head?); hook modules that run once, e.g. model._bn0")
    return {label: c.value for label, c in captures.items()}


def unit_centre(index: int, map_size: int, image_size: int, padding: str = "symmetric") -> float:
    """Input coordinate (pixels) of the centre of unit ``index`` of a map of ``map_size`` units.

    With the jump ``J = H / h`` (input pixels between neighbouring units):

    - ``padding="symmetric"`` (PyTorch's ``padding=k // 2``): unit ``i`` sits at
      ``(i + 0.5) * J - 0.5``, the middle of its ``J x J`` cell;
    - ``padding="tf_same"`` (TensorFlow's "same", used by EfficientNet-Lite0: at stride 2
      the extra padding goes to the bottom/right): unit ``i`` sits at ``(i + 1) * J - 1``.

    Returns a float.

    Taught in notebooks/04_feature_depth.ipynb.
    """
    if not 0 <= index < map_size:
        raise ValueError(f"unit {index} is outside a map of {map_size} units")
    jump = image_size / map_size
    if padding == "symmetric":
        return (index + 0.5) * jump - 0.5
    if padding == "tf_same":
        return (index + 1) * jump - 1
    raise ValueError(f"padding must be 'symmetric' or 'tf_same', got {padding!r}")


def crop_patch(image: torch.Tensor, centre: tuple[float, float], size: int) -> torch.Tensor:
    """The ``size x size`` square of ``image`` ``(C, H, W)`` centred at ``centre`` ``(row, col)``.

    Pixels outside the image are filled with 0, so every patch has shape ``(C, size, size)``.

    Taught in notebooks/04_feature_depth.ipynb.
    """
    if size < 1:
        raise ValueError(f"patch size must be positive, got {size}")
    if image.ndim != 3:
        raise ValueError(f"expected an image (C, H, W), got shape {tuple(image.shape)}")
    c, h, w = image.shape
    top = int(round(centre[0] - (size - 1) / 2))
    left = int(round(centre[1] - (size - 1) / 2))
    patch = image.new_zeros(c, size, size)
    r0, r1 = max(top, 0), min(top + size, h)
    c0, c1 = max(left, 0), min(left + size, w)
    if r0 < r1 and c0 < c1:
        patch[:, r0 - top : r1 - top, c0 - left : c1 - left] = image[:, r0:r1, c0:c1]
    return patch


def top_activating_patches(activations: torch.Tensor, images: torch.Tensor, channel: int,
                           k: int = 6, patch_size: int = 64, one_per_image: bool = True,
                           exclude_border: int = 0, padding: str = "symmetric") -> dict:
    """Where channel ``channel`` of a layer responds most, and the input patches there.

    ``activations`` ``(N, K, h, w)`` are the layer's outputs for ``images`` ``(N, C, H, W)``.
    Takes the ``k`` largest values of ``activations[:, channel]`` (at most one per image when
    ``one_per_image``, so one photo cannot fill every slot) and cuts a
    ``patch_size x patch_size`` patch of the image centred on each unit. Units within
    ``exclude_border`` cells of the map's edge are skipped (they see mostly padding).
    ``padding`` says where a unit's centre is (see :func:`unit_centre`; ``"tf_same"`` for
    EfficientNet-Lite0).

    Returns ``{"values": (k,), "image_index": (k,), "position": (k, 2) map (row, col),
    "patches": (k, C, patch_size, patch_size)}``, strongest first.

    Taught in notebooks/04_feature_depth.ipynb.
    """
    if activations.ndim != 4 or images.ndim != 4 or len(activations) != len(images):
        raise ValueError(f"expected activations (N, K, h, w) and images (N, C, H, W) with the same N; "
                         f"got {tuple(activations.shape)} and {tuple(images.shape)}")
    n, n_channels, h, w = activations.shape
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not 0 <= channel < n_channels:
        raise ValueError(f"channel {channel} is out of range for a layer with {n_channels} channels")
    if padding not in ("symmetric", "tf_same"):
        raise ValueError(f"padding must be 'symmetric' or 'tf_same', got {padding!r}")
    if exclude_border < 0 or 2 * exclude_border >= min(h, w):
        raise ValueError(f"exclude_border={exclude_border} leaves no unit of a {h} x {w} map")
    maps = activations[:, channel].clone()  # (N, h, w)
    if exclude_border:
        inner = torch.zeros(h, w, dtype=torch.bool)
        inner[exclude_border : h - exclude_border, exclude_border : w - exclude_border] = True
        maps[:, ~inner] = float("-inf")
    if one_per_image:
        best_per_image, where = maps.flatten(1).max(1)  # (N,), (N,)
        k = min(k, n)
        values, image_index = best_per_image.topk(k)
        flat_pos = where[image_index]
    else:
        k = min(k, maps.numel())
        values, flat = maps.flatten().topk(k)
        image_index, flat_pos = flat // (h * w), flat % (h * w)
    rows, cols = flat_pos // w, flat_pos % w
    H, W = images.shape[-2:]
    patches = torch.stack([
        crop_patch(images[i], (unit_centre(int(r), h, H, padding), unit_centre(int(c), w, W, padding)), patch_size)
        for i, r, c in zip(image_index.tolist(), rows.tolist(), cols.tolist())
    ])
    return {"values": values, "image_index": image_index, "position": torch.stack([rows, cols], 1),
            "patches": patches}


def augment(images: torch.Tensor, zoom: float = 2.0) -> torch.Tensor:
    """The images ``(N, C, H, W)`` and five augmentations of each: ``(6N, C, H, W)``.

    Order (blocks of N): originals, horizontal flips, then a ``zoom``-times enlargement
    of the top-left, top-right, bottom-left and bottom-right corner regions, each
    resized back to ``H x W`` (bilinear, antialiased). Deterministic: no randomness.

    Taught in notebooks/04_feature_depth.ipynb.
    """
    import torch.nn.functional as F

    if images.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got {tuple(images.shape)}")
    if zoom < 1:
        raise ValueError(f"zoom must be at least 1, got {zoom}")
    h, w = images.shape[-2:]
    ch, cw = round(h / zoom), round(w / zoom)
    out = [images, images.flip(-1)]
    for top, left in ((0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw)):
        crop = images[..., top : top + ch, left : left + cw]
        out.append(F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False, antialias=True))
    return torch.cat(out)


def correlation_with_image(activations: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """How picture-like each feature map is: its Pearson correlation with the grey photo.

    Every map of ``activations`` ``(N, K, h, w)`` is resized (bilinear) to the size of
    ``images`` ``(N, C, H, W)`` and correlated, over all pixels, with the channel mean of
    its image. Returns ``(N, K)`` values in [-1, 1] (0 for a constant map): near +-1 the map
    is the photo (or its negative), near 0 it no longer looks like it.

    Taught in notebooks/04_feature_depth.ipynb.
    """
    import torch.nn.functional as F

    if activations.ndim != 4 or images.ndim != 4 or len(activations) != len(images):
        raise ValueError(f"expected activations (N, K, h, w) and images (N, C, H, W) with the same N; "
                         f"got {tuple(activations.shape)} and {tuple(images.shape)}")
    maps = F.interpolate(activations.double(), size=images.shape[-2:], mode="bilinear",
                         align_corners=False).flatten(2)  # (N, K, H*W)
    grey = images.double().mean(1).flatten(1)  # (N, H*W)
    maps = maps - maps.mean(-1, keepdim=True)
    grey = grey - grey.mean(-1, keepdim=True)
    numerator = torch.einsum("nkp,np->nk", maps, grey)
    denominator = maps.norm(dim=-1) * grey.norm(dim=-1)[:, None]
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), 0.0).float()
