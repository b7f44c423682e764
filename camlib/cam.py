"""Class Activation Mapping (Zhou et al., CVPR 2016), one small step per function.

For a network whose head is global average pooling (GAP) followed by one linear
layer, the score of class ``c`` is

    S_c = sum_k w_k^c * (1/Z) sum_xy f_k(x, y) + b_c = (1/Z) sum_xy M_c(x, y) + b_c,
    M_c(x, y) = sum_k w_k^c f_k(x, y),

so the class activation map ``M_c`` says how much each location adds to ``S_c``.
The steps, each a pure function: :func:`class_activation_maps` (weighted sum)
-> :func:`normalize` -> :func:`upsample` -> :func:`cam_to_box`.
:class:`CAM` hooks a model and gets the features and logits from one forward pass.

Taught in notebooks/06_class_activation_mapping.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numbers

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from camlib.hooks import Capture


# --------------------------------------------------------------------------- steps
def class_activation_maps(features: torch.Tensor, fc_weight: torch.Tensor) -> torch.Tensor:
    """Weighted sums of feature maps, one per class: ``M[n, c] = sum_k W[c, k] A[n, k]``.

    ``features``: ``(N, K, h, w)`` last convolutional feature maps; ``fc_weight``:
    ``(C, K)`` weight of the linear layer after GAP. Returns ``(N, C, h, w)``.
    No bias, no ReLU, no normalization: the paper's ``M_c`` exactly, so that
    ``M.mean((-2, -1)) + bias`` equals the logits.
    """
    if not isinstance(features, torch.Tensor) or not isinstance(fc_weight, torch.Tensor):
        raise TypeError("features and fc_weight must be torch tensors")
    if features.ndim != 4:
        raise ValueError(f"features must have shape (N, K, h, w), got {tuple(features.shape)}")
    if fc_weight.ndim != 2:
        raise ValueError(f"fc_weight must have shape (C, K), got {tuple(fc_weight.shape)}")
    if features.shape[1] != fc_weight.shape[1]:
        raise ValueError(
            f"features have K={features.shape[1]} channels but fc_weight expects K={fc_weight.shape[1]} "
            "(fc_weight is (C, K): one row per class)"
        )
    return torch.einsum("nkhw,ck->nchw", features, fc_weight.to(features.dtype))


def _check_map_rank(cam: torch.Tensor, name: str) -> None:
    if not isinstance(cam, torch.Tensor):
        raise TypeError(f"{name} expects a torch tensor, got {type(cam).__name__}")
    if cam.ndim not in (2, 3, 4):
        raise ValueError(f"{name} expects a map of shape (h, w), (C, h, w) or (N, C, h, w), got {tuple(cam.shape)}")
    if not torch.is_floating_point(cam):
        raise TypeError(f"{name} expects a floating-point map, got {cam.dtype}")


def upsample(cam: torch.Tensor, size, mode: str = "bilinear") -> torch.Tensor:
    """Resize maps to ``size`` (int or ``(H, W)``) with ``F.interpolate``.

    ``cam`` is ``(h, w)``, ``(C, h, w)`` or ``(N, C, h, w)``; the result has the
    same rank. ``mode`` is ``"bilinear"`` (the default, as in the paper's figures)
    or ``"nearest"`` (shows the blocks of the coarse map).
    """
    _check_map_rank(cam, "upsample")
    if mode not in ("bilinear", "nearest", "bicubic"):
        raise ValueError(f"mode must be 'bilinear', 'nearest' or 'bicubic', got {mode!r}")
    size = (int(size), int(size)) if isinstance(size, numbers.Integral) else tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be a positive int or (H, W), got {size}")
    x = cam.reshape(-1, 1, *cam.shape[-2:]) if cam.ndim != 4 else cam
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    out = F.interpolate(x, size=size, mode=mode, **kwargs)
    return out.reshape(*cam.shape[:-2], *size)


def normalize(cam: torch.Tensor) -> torch.Tensor:
    """Min-max scale each map (over its last two dims) to [0, 1]; returns a new tensor.

    A constant map has no peak to show and becomes all zeros (never NaN); a map
    with NaN or infinite values raises ``ValueError`` instead of hiding them.
    """
    _check_map_rank(cam, "normalize")
    if not torch.isfinite(cam).all():
        raise ValueError("the map contains NaN or infinite values; check the features and weights that made it")
    lo = cam.amin(dim=(-2, -1), keepdim=True)
    hi = cam.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    if not torch.isfinite(span).all():  # values near the dtype's limits: subtract in float64
        return normalize(cam.double()).to(cam.dtype)
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (cam - lo) / safe, torch.zeros_like(cam))


def cam_to_box(cam: torch.Tensor, threshold: float = 0.2, relative_to: str = "max") -> torch.Tensor:
    """The paper's box: keep values >= ``threshold`` x max, box the largest region.

    ``cam`` is one map ``(H, W)`` or a stack ``(N, H, W)``, usually already up-scaled
    to the image. ``relative_to="max"`` (default) is the paper's rule as written:
    keep ``cam >= threshold * cam.max()``. ``relative_to="range"`` first min-max
    normalizes the map (as many CAM implementations do before drawing), so the rule
    reads "at least ``threshold`` of the way from the minimum to the maximum". The two agree on maps whose minimum is 0, such as :func:`normalize`'s
    output. The largest 8-connected region of the kept pixels (as MATLAB's
    ``bwlabel``) is found with ``scipy.ndimage.label``. Returns ``xyxy`` pixel boxes
    ``[x0, y0, x1, y1]`` with exclusive ends (a single pixel at (x, y) is
    ``[x, y, x+1, y+1]``): shape ``(4,)`` or ``(N, 4)``, float32. A constant map
    gives the whole image. A map with no positive value has no "20 % of the max"
    under ``relative_to="max"`` and raises ``ValueError``.
    """
    from scipy import ndimage

    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if not isinstance(cam, torch.Tensor):
        raise TypeError(f"cam_to_box expects a torch tensor, got {type(cam).__name__}")
    if cam.ndim not in (2, 3):
        raise ValueError(f"cam_to_box expects a map (H, W) or maps (N, H, W), got {tuple(cam.shape)}")
    if not torch.isfinite(cam).all():
        raise ValueError("cam contains NaN or infinite values")
    if relative_to not in ("max", "range"):
        raise ValueError(f"relative_to must be 'max' or 'range', got {relative_to!r}")
    maps = cam.float().reshape(-1, *cam.shape[-2:])
    if relative_to == "range":
        maps = normalize(maps)
    peak = maps.amax(dim=(-2, -1), keepdim=True)
    constant = (maps == peak).flatten(1).all(dim=1)
    if ((peak[:, 0, 0] <= 0) & ~constant).any():
        raise ValueError(
            "a map's maximum is not positive, so 'threshold x max' keeps nothing meaningful; "
            "normalize the map first or use relative_to='range'"
        )
    keep = (maps >= threshold * peak).cpu().numpy()
    keep[constant.cpu().numpy()] = True  # no peak to find: the whole image
    structure = np.ones((3, 3), dtype=bool)
    boxes = []
    for mask in keep:
        labels, n = ndimage.label(mask, structure=structure)
        sizes = np.bincount(labels.ravel())[1:]
        largest = int(np.argmax(sizes)) + 1
        rows, cols = ndimage.find_objects(labels)[largest - 1]
        boxes.append([cols.start, rows.start, cols.stop, rows.stop])
    out = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return out[0] if cam.ndim == 2 else out


# --------------------------------------------------------------------------- model head
def _gap_head(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """Find the GAP module and the single linear layer after it, or say why not."""
    modules = list(model.named_modules())
    last_conv = max((i for i, (_, m) in enumerate(modules) if isinstance(m, nn.Conv2d)), default=-1)
    pools = [
        (i, name, m)
        for i, (name, m) in enumerate(modules)
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))
        # a fixed-size nn.AvgPool2d is the head's GAP only after the last convolution
        # (DenseNet's transition layers use it for down-sampling between blocks)
        or (isinstance(m, nn.AvgPool2d) and i > last_conv)
    ]
    linears = [(i, name, m) for i, (name, m) in enumerate(modules) if isinstance(m, nn.Linear)]
    cls = type(model).__name__
    hint = (
        "CAM needs the last convolutional maps to go through global average pooling and then "
        "exactly one linear layer (as in ResNet, GoogLeNet-GAP, EfficientNet). For other heads "
        "use a gradient-based map such as Grad-CAM. If the head is GAP + linear but found "
        "wrongly, name it: CAM(model, feature_layer=<pooling module>, fc=<linear layer>), or "
        "feature_layer=<last convolutional block>, where='output'."
    )
    if not pools:
        raise ValueError(
            f"{cls} has no pooling module: either it has no GAP head to take CAM from, or it "
            f"pools with a function (x.mean(...), F.adaptive_avg_pool2d) that no hook can see. {hint}"
        )
    i_pool, pool_name, pool = pools[-1]
    if isinstance(pool, nn.AdaptiveMaxPool2d):
        raise ValueError(
            f"{cls}.{pool_name} is global MAX pooling: the logits are not the mean of a map, so the "
            f"CAM identity does not hold. {hint}"
        )
    out = getattr(pool, "output_size", (1, 1))  # nn.AvgPool2d: its output size shows at run time
    out = (out, out) if isinstance(out, int) else tuple(out)
    if any(o != 1 for o in out):
        n_lin = sum(1 for i, _, _ in linears if i > i_pool)
        raise ValueError(
            f"{cls}.{pool_name} pools to {out[0]}x{out[1]} (not 1x1) and is followed by {n_lin} linear "
            f"layer(s): its head flattens a spatial map into fully connected layers (like VGG), "
            f"not global average pooling + one linear layer. {hint}"
        )
    after = [(name, m) for i, name, m in linears if i > i_pool]
    if len(linears) == 1:
        # The only linear layer of the model is the head, wherever it was registered
        # (a model may define self.fc before its convolutions); the identity check
        # at call time still proves that it really follows the pooling.
        after = [(linears[0][1], linears[0][2])]
    if len(after) != 1:
        raise ValueError(
            f"{cls} has {len(after)} linear layers after its global pooling ({[n for n, _ in after]}); "
            f"CAM needs exactly one. {hint}"
        )
    return pool, after[0][1]


def _first_conv_channels(model: nn.Module) -> int | None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return None


@dataclass
class CAMResult:
    """What one forward pass gives: logits, features, and maps for the asked classes.

    ``logits`` ``(N, C)``; ``features`` ``(N, K, h, w)``; ``class_idx`` ``(N, k)`` the
    classes of ``maps`` ``(N, k, h, w)`` (raw ``M_c``, feature resolution).
    :meth:`maps_for` computes other classes' maps from the stored features, with no
    new forward pass.
    """

    logits: torch.Tensor
    features: torch.Tensor
    fc_weight: torch.Tensor
    fc_bias: torch.Tensor | None
    class_idx: torch.Tensor
    maps: torch.Tensor

    def maps_for(self, class_idx) -> torch.Tensor:
        """Raw maps ``(N, k, h, w)`` for ``class_idx`` (int, list, ``(N,)``/``(N, k)`` tensor or "all")."""
        idx = _class_index(class_idx, self.logits)
        if idx is None:
            return class_activation_maps(self.features, self.fc_weight)
        weight = self.fc_weight[idx]  # (N, k, K)
        return torch.einsum("nkhw,nck->nchw", self.features, weight.to(self.features.dtype))

    def upsampled(self, size, mode: str = "bilinear") -> torch.Tensor:
        """The asked maps, min-max normalized and up-scaled to ``size``: ``(N, k, H, W)``."""
        return normalize(upsample(self.maps, size, mode=mode))


def _class_index(class_idx, logits: torch.Tensor) -> torch.Tensor | None:
    """Turn the many ways of naming classes into an ``(N, k)`` long tensor (None = all).

    A Python list or tuple names classes for every image; a 1-D tensor or numpy array
    is data, one class per image (e.g. the true labels), and must have length N;
    a 2-D ``(N, k)`` tensor or array gives k classes per image.
    """
    n, num_classes = logits.shape
    if isinstance(class_idx, str):
        if class_idx != "all":
            raise ValueError(f"class_idx must be an int, a sequence of ints, a tensor, None or 'all'; got {class_idx!r}")
        return None
    if class_idx is None:
        idx = logits.argmax(dim=1, keepdim=True)
    elif isinstance(class_idx, (int, np.integer)) and not isinstance(class_idx, bool):
        idx = torch.full((n, 1), int(class_idx), dtype=torch.long)
    else:
        is_list = isinstance(class_idx, (list, tuple))
        if is_list and len(class_idx) == 0:
            raise ValueError("class_idx is an empty list: name at least one class")
        idx = torch.as_tensor(np.asarray(class_idx) if isinstance(class_idx, np.ndarray) else class_idx)
        if idx.dtype == torch.bool or torch.is_floating_point(idx) or torch.is_complex(idx):
            raise TypeError(f"class indices must be integers, got {idx.dtype}")
        idx = idx.long()
        if idx.ndim == 0:
            idx = idx.expand(n, 1)
        elif idx.ndim == 1 and is_list:  # the same classes for every image
            idx = idx[None].expand(n, -1)
        elif idx.ndim == 1:  # a tensor or array: one class per image
            if idx.shape[0] != n:
                raise ValueError(
                    f"a 1-D tensor or array gives one class per image, but it has {idx.shape[0]} entries "
                    f"for a batch of {n}; to ask for several classes for every image pass a list, e.g. {idx.tolist()[:3]}"
                )
            idx = idx[:, None]
        if idx.ndim != 2 or idx.shape[0] != n:
            raise ValueError(f"class_idx of shape {tuple(idx.shape)} does not fit a batch of {n}")
    bad = (idx < 0) | (idx >= num_classes)
    if bad.any():
        raise IndexError(
            f"class index {int(idx[bad][0])} is out of range: the model has {num_classes} classes "
            f"(valid indices 0..{num_classes - 1})"
        )
    return idx.to(logits.device)


class CAM:
    """Class activation maps from one forward pass of a GAP + linear model.

    ``with CAM(model) as cam_of: result = cam_of(x, class_idx=None)`` hooks the input
    of the global average pooling (the last convolutional maps), runs the model
    once in eval mode without gradients, and returns a :class:`CAMResult`.
    ``class_idx``: ``None`` (each image's top class), an int, a list of ints (the
    same classes for every image), an ``(N,)`` tensor or array (one class per image,
    e.g. the labels), an ``(N, k)`` tensor, or ``"all"``. With ``feature_layer=`` and
    ``fc=`` the head is named by hand (``where="output"`` when ``feature_layer`` is the
    last convolutional block rather than the pooling).

    On exit the hook is removed (also after an exception) and every module's
    train/eval flag is restored. The head is checked when entering (a model whose
    pooling is not global average pooling + one linear layer is refused with the
    reason) and at each call (GAP of the captured features through the linear
    layer must reproduce the logits).
    """

    def __init__(self, model: nn.Module, feature_layer: nn.Module | None = None, fc: nn.Linear | None = None,
                 where: str = "input", check: bool = True):
        if not isinstance(model, nn.Module):
            raise TypeError(f"CAM needs a torch nn.Module, got {type(model).__name__}")
        if (feature_layer is None) != (fc is None):
            raise ValueError("pass both feature_layer= (the GAP module) and fc= (the linear layer), or neither")
        if feature_layer is None:
            feature_layer, fc = _gap_head(model)
            where = "input"
        if not isinstance(fc, nn.Linear):
            raise TypeError(f"fc must be an nn.Linear, got {type(fc).__name__}")
        self.model = model
        self.pool = feature_layer
        self.fc = fc
        self.check = check
        self._capture = Capture(feature_layer, where=where)
        self._modes: list[tuple[nn.Module, bool]] | None = None

    def __enter__(self) -> "CAM":
        self._capture.__enter__()  # raises if this CAM is already active, before touching any mode
        self._modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self

    def __exit__(self, *exc) -> None:
        self._capture.remove()
        for module, training in self._modes or []:
            module.training = training
        self._modes = None

    def __call__(self, x: torch.Tensor, class_idx=None) -> CAMResult:
        if not self._capture.active:
            raise RuntimeError("use CAM as a context manager: `with CAM(model) as cam_of: cam_of(x)`")
        x = self._check_input(x)
        self._capture.value = None
        with torch.no_grad():
            logits = self.model(x)
        features = self._capture.value
        if features is None:
            raise RuntimeError(f"the forward pass never reached {type(self.pool).__name__}: nothing was captured")
        if features.ndim != 4:
            raise ValueError(f"the input of the pooling layer has shape {tuple(features.shape)}, expected (N, K, h, w)")
        weight, bias = self.fc.weight.detach(), None if self.fc.bias is None else self.fc.bias.detach()
        if self.check:
            self._check_identity(features, weight, bias, logits)
        idx = _class_index(class_idx, logits)
        result = CAMResult(logits, features, weight, bias, torch.empty(0, dtype=torch.long), torch.empty(0))
        if idx is None:
            result.class_idx = torch.arange(logits.shape[1]).expand(logits.shape[0], -1)
            result.maps = class_activation_maps(features, weight)
        else:
            result.class_idx = idx
            result.maps = result.maps_for(idx)
        return result

    def _check_input(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"CAM expects a preprocessed (N, 3, H, W) float tensor, got {type(x).__name__}; "
                "use the model's preprocess (e.g. preprocess(image)[None])"
            )
        if x.ndim == 3:
            raise ValueError(f"input has shape {tuple(x.shape)}: add the batch dimension, e.g. x[None]")
        if x.ndim != 4:
            raise ValueError(f"input must have shape (N, C, H, W), got {tuple(x.shape)}")
        if not torch.is_floating_point(x):
            raise TypeError(f"input must be a float tensor (preprocessed), got {x.dtype}")
        if x.shape[0] == 0:
            raise ValueError("the batch is empty (N = 0): there is no image to compute a map for")
        channels = _first_conv_channels(self.model)
        if channels is not None and x.shape[1] != channels:
            raise ValueError(
                f"the model expects {channels} input channels, got {x.shape[1]}; grayscale or RGBA "
                "images must be converted to RGB first (camlib.data.load_image does that)"
            )
        if not torch.isfinite(x).all():
            raise ValueError("input contains NaN or infinite values")
        param = next(self.model.parameters(), None)
        return x if param is None or not torch.is_floating_point(param) else x.to(param.dtype)

    def _check_identity(self, features, weight, bias, logits) -> None:
        if weight.shape[1] != features.shape[1]:
            raise ValueError(
                f"the captured features have {features.shape[1]} channels but the linear layer takes "
                f"{weight.shape[1]} inputs: {type(self.model).__name__}'s head is not GAP on these "
                "features followed by this one linear layer"
            )
        pooled = features.mean(dim=(-2, -1)) @ weight.T.to(features.dtype)
        if bias is not None:
            pooled = pooled + bias
        if pooled.shape != logits.shape or not torch.allclose(pooled, logits, rtol=1e-3, atol=1e-3 * (1 + logits.abs().max().item())):
            raise ValueError(
                "global average pooling of the captured features through the linear layer does not "
                f"reproduce the model's logits: {type(self.model).__name__}'s head is not GAP followed by "
                "one linear layer (something else happens between them), so CAM would be wrong for it"
            )
