"""Images: the real photos that ship inside installed packages, and a strict loader.

Every photo here is read from a file inside an installed wheel (scikit-image,
matplotlib, scikit-learn), so nothing is downloaded. :func:`load_image` turns any
image (path, array, PIL image) into RGB uint8 ``(H, W, 3)``, converting grayscale,
RGBA, 16-bit and palette images, and names the file when it cannot.

Taught in notebooks/06_class_activation_mapping.ipynb.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageError(ValueError):
    """An image that cannot be used: unreadable file, or an array of the wrong shape."""


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale a numeric array to uint8 (0-255) by its type, never by a guess from its values.

    uint8 stays; uint16 is 16-bit (0-65535 -> 0-255); bool is 0/255; floats must lie
    in [0, 1]; any other integer type must already hold 0-255 (as ``np.array([[0, 255]])``
    does, which is int64).
    """
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return np.round(array.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        lo, hi = int(array.min(initial=0)), int(array.max(initial=0))
        if lo < 0 or hi > 255:
            raise ImageError(
                f"{array.dtype} image holds values {lo} .. {hi}, outside 0 .. 255; pass uint8 (0-255), "
                "uint16 (0-65535) or floats in [0, 1]"
            )
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError("the image contains NaN or infinite values")
        lo, hi = float(array.min(initial=0.0)), float(array.max(initial=0.0))
        eps = 1e-6  # rounding error of a computation in [0, 1] is not an error
        if lo < -eps or hi > 1.0 + eps:
            raise ImageError(
                f"float images must hold values in [0, 1] (got {lo:.3g} .. {hi:.3g}); "
                "divide by 255 or pass a uint8 array"
            )
        return np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ImageError(f"unsupported image dtype {array.dtype}")


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] > 4:
        raise ImageError(
            f"image array has shape {array.shape}, which looks channels-first; "
            "pass (H, W), (H, W, 3) or (H, W, 4), e.g. array.transpose(1, 2, 0)"
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    if min(array.shape[:2]) < 1:
        raise ImageError(f"the image is empty (shape {array.shape})")
    array = _to_uint8(array)
    if array.ndim == 2:  # grayscale -> three equal channels
        return np.repeat(array[..., None], 3, axis=-1)
    if array.shape[-1] == 4:  # RGBA -> composite on white, so transparent areas are not black
        rgb = array[..., :3].astype(np.float32)
        alpha = array[..., 3:].astype(np.float32) / 255.0
        return np.round(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return array


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    from PIL import ImageOps

    img = ImageOps.exif_transpose(img)  # phone photos: turn them the way a viewer shows them
    if img.mode.startswith("I;16"):
        return _array_to_rgb(np.asarray(img).astype(np.uint16))
    if img.mode == "I":  # 32-bit integers: in practice 16-bit data (e.g. 16-bit PNG, TIFF)
        values = np.asarray(img)
        if values.min(initial=0) < 0 or values.max(initial=0) > 65535:
            raise ImageError(f"32-bit integer image holds values outside 0 .. 65535 ({values.min()} .. {values.max()})")
        return _array_to_rgb(values.astype(np.uint16))
    if img.mode == "F":  # 32-bit floats: must be in [0, 1]
        return _array_to_rgb(np.asarray(img).astype(np.float32))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode not in ("L", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.mode else "RGB")
    return _array_to_rgb(np.asarray(img))


def load_image(image) -> np.ndarray:
    """Return ``image`` as an RGB uint8 array of shape ``(H, W, 3)``.

    ``image`` may be a path (str or ``os.PathLike``), raw file bytes, a PIL image,
    a numpy array or a torch tensor. Grayscale is repeated to three channels, RGBA
    and palette images are composited on white, 16-bit and float images in [0, 1]
    are scaled to 0-255. A missing or unreadable file raises ``FileNotFoundError``
    or :class:`ImageError` naming the file.
    """
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise FileNotFoundError(f"image file not found: {path}")
        try:
            with Image.open(path) as img:
                img.load()
                return _pil_to_rgb(img)
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise ImageError(f"cannot read {path} as an image: {err}") from err
    if isinstance(image, (bytes, bytearray, memoryview)):
        import io

        try:
            with Image.open(io.BytesIO(bytes(image))) as img:
                img.load()
                return _pil_to_rgb(img)
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise ImageError(f"the uploaded bytes are not a readable image: {err}") from err
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    if hasattr(image, "detach") and hasattr(image, "numpy"):  # torch tensor
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    raise ImageError(f"cannot make an image from {type(image).__name__}; pass a path, bytes, PIL image or array")


@dataclass(frozen=True)
class SamplePhoto:
    """A real photo that ships inside an installed package."""

    name: str
    title: str
    source: str
    license: str
    credit: str
    _loader: Callable[[], np.ndarray] = field(repr=False, compare=False)

    @property
    def image(self) -> np.ndarray:
        """The photo as RGB uint8 ``(H, W, 3)`` (read from disk on each access)."""
        return load_image(self._loader())


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _skimage_motorcycle() -> np.ndarray:
    import skimage.data

    return skimage.data.stereo_motorcycle()[0]


def _grace_hopper() -> Path:
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def _sklearn(filename: str) -> Callable[[], Path]:
    def load() -> Path:
        import sklearn.datasets

        return Path(sklearn.datasets.__file__).parent / "images" / filename

    return load


_PHOTOS = (
    SamplePhoto("coffee", "Coffee cup", "scikit-image (skimage.data.coffee)", "CC0",
                "Rachel Michetti, courtesy of Pikolo Espresso Bar", _skimage("coffee")),
    SamplePhoto("chelsea", "Chelsea the cat", "scikit-image (skimage.data.chelsea)", "CC0",
                "Stefan van der Walt", _skimage("chelsea")),
    SamplePhoto("rocket", "DSCOVR launch on Falcon 9", "scikit-image (skimage.data.rocket)", "public domain",
                "SpaceX", _skimage("rocket")),
    SamplePhoto("astronaut", "Astronaut Eileen Collins", "scikit-image (skimage.data.astronaut)", "public domain",
                "NASA", _skimage("astronaut")),
    SamplePhoto("motorcycle", "Motorcycle (left stereo view)", "scikit-image (skimage.data.stereo_motorcycle)",
                "research use (Middlebury 2014 stereo data set)",
                "D. Scharstein et al., Middlebury Stereo 2014", _skimage_motorcycle),
    SamplePhoto("grace_hopper", "Rear Admiral Grace Hopper", "matplotlib sample data (grace_hopper.jpg)",
                "public domain (U.S. Navy photo)", "U.S. Navy / James S. Davis", _grace_hopper),
    SamplePhoto("china", "Temple in China", "scikit-learn (load_sample_images: china.jpg)", "CC BY 2.0",
                "danielbuechele on Flickr", _sklearn("china.jpg")),
    SamplePhoto("flower", "Flower", "scikit-learn (load_sample_images: flower.jpg)", "CC BY 2.0",
                "vultilion on Flickr", _sklearn("flower.jpg")),
)


def sample_photos() -> dict[str, SamplePhoto]:
    """All shipped photos by name, with source, licence and credit (nothing is read yet)."""
    return {photo.name: photo for photo in _PHOTOS}


def sample_images(names=None) -> dict[str, np.ndarray]:
    """The shipped photos as ``{name: RGB uint8 (H, W, 3) array}``.

    ``names`` picks a subset (in that order); an unknown name raises ``KeyError``
    listing the available ones. Sources and licences: :func:`sample_photos`.
    """
    photos = sample_photos()
    if names is None:
        names = list(photos)
    elif isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in photos]
    if unknown:
        raise KeyError(f"unknown sample photo(s) {unknown}; available: {sorted(photos)}")
    return {name: photos[name].image for name in names}
