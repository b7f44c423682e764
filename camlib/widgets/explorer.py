"""The interactive CAM explorer: pick a photo (or upload one), pick a class, watch the map.

One forward pass per photo: :class:`camlib.cam.CAM` keeps the features, so a class
switch is one weighted sum (:meth:`camlib.cam.CAMResult.maps_for`) and a threshold
change is one :func:`camlib.cam.cam_to_box` on the min-max normalized map, so the
threshold is a fraction of the map's range (min to max); it equals the paper's
"threshold x max" only for a map whose minimum is 0. The overlay is drawn with
:func:`camlib.viz.overlay` and PIL into an ``ipywidgets.Image`` (PNG bytes), which is
fast to update and can be checked in a browser.

Taught in notebooks/06_class_activation_mapping.ipynb.
"""

from __future__ import annotations

import html
import io
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn

from camlib import cam as cam_steps
from camlib import data, viz

MAX_UPLOAD_SIDE = 1024
MIN_VIEW_SIDE = 224
CMAPS = ("jet", "viridis", "inferno", "magma", "turbo", "gray")
CAM_BOX_COLOR = (0, 255, 0)  # lime, as camlib.viz.draw_box
TRUE_BOX_COLOR = (255, 255, 255)


class ImagePreprocess:
    """Default preprocessing for a model that is not the pretrained one.

    ``image`` (anything :func:`camlib.data.load_image` accepts) -> ``(C, H, W)``
    float tensor in [0, 1] at the image's own size; ``C`` is 3, or 1 (the mean of
    R, G, B) when ``channels=1``. :meth:`display` is the RGB uint8 image itself.
    """

    def __init__(self, channels: int = 3):
        if channels not in (1, 3):
            raise ValueError(f"the default preprocessing makes 1 or 3 channels, not {channels}; pass preprocess=")
        self.channels = channels

    def __call__(self, image) -> torch.Tensor:
        x = torch.from_numpy(np.array(data.load_image(image), copy=True)).permute(2, 0, 1).float() / 255.0
        return x.mean(0, keepdim=True) if self.channels == 1 else x

    def display(self, image) -> np.ndarray:
        return data.load_image(image)


def _shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """``rgb`` with its longest side at most ``max_side`` (aspect kept, antialiased)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def render_png(image: np.ndarray, raw_map: torch.Tensor, alpha: float = 0.5, cmap: str = "jet",
               box=None, true_box=None, min_side: int = MIN_VIEW_SIDE) -> bytes:
    """PNG bytes of the overlay of ``raw_map`` on ``image`` (``(H, W, 3)`` uint8).

    The overlay is :func:`camlib.viz.overlay` (map up-scaled to the image, normalized,
    coloured, blended with ``alpha``). ``box`` (CAM box, lime) and ``true_box``
    (white) are ``xyxy`` pixel boxes with exclusive ends in image pixels. An image
    smaller than ``min_side`` is enlarged by a whole factor (nearest) so that its
    pixels stay visible.
    """
    from PIL import Image, ImageDraw

    picture = Image.fromarray(viz.overlay(image, raw_map, alpha=alpha, cmap=cmap))
    h, w = image.shape[:2]
    scale = max(1, -(-min_side // max(h, w)))  # ceil
    if scale > 1:
        picture = picture.resize((w * scale, h * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(picture)
    width = max(2, round(max(picture.size) / 150))
    for b, color in ((true_box, TRUE_BOX_COLOR), (box, CAM_BOX_COLOR)):
        if b is None:
            continue
        x0, y0, x1, y1 = (float(v) * scale for v in torch.as_tensor(b).reshape(-1)[:4])
        # PIL's rectangle includes its end pixel; our boxes exclude it
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=color, width=width)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _class_labels(categories) -> list[str]:
    """One unique label per class: its name, or "name (i)" for a name that several
    classes share (ImageNet has two "crane"s)."""
    counts: dict[str, int] = {}
    for name in categories:
        counts[name] = counts.get(name, 0) + 1
    return [f"{name} ({i})" if counts[name] > 1 else name for i, name in enumerate(categories)]


class CAMExplorer:
    """The explorer built by :func:`cam_explorer`; display ``.widget``.

    Controls: ``photo`` (Dropdown), ``upload`` (FileUpload), ``top_classes``
    (ToggleButtons of the top-k classes with probabilities), ``class_name`` (Combobox
    over all categories), ``threshold``, ``alpha`` (FloatSliders), ``cmap`` (Dropdown),
    ``show_box`` (Checkbox), ``message`` (HTML, user-facing messages), ``info`` (HTML,
    what is shown). State: ``current_photo`` (name), ``current_image`` (the ``(H, W, 3)``
    uint8 image the model saw), ``result`` (the :class:`camlib.cam.CAMResult` of the one
    forward pass), ``current_class`` (int), ``current_map`` (normalized map up-scaled to
    the image, ``(H, W)``), ``current_box`` (``xyxy`` float tensor ``(4,)``: the largest
region of ``current_map >= threshold``, i.e. ``threshold`` of the map's range),
    ``current_iou`` (IoU with the true box, or None), ``image_view`` (``ipywidgets.Image``
    with the PNG of the overlay).
    """

    def __init__(self, photos, model: nn.Module, preprocess: Callable, categories, true_boxes=None,
                 top_k: int = 5, max_upload_side: int = MAX_UPLOAD_SIDE):
        import ipywidgets as W

        self.model = model
        self.preprocess = preprocess
        self.categories = list(categories)
        self.true_boxes = {k: torch.as_tensor(v, dtype=torch.float32).reshape(4) for k, v in (true_boxes or {}).items()}
        self.max_upload_side = max_upload_side
        self._images: dict[str, object] = dict(photos)
        if not self._images:
            raise ValueError("cam_explorer needs at least one photo")
        self._cam = cam_steps.CAM(model)
        num_classes = self._cam.fc.out_features
        if len(self.categories) != num_classes:
            raise ValueError(f"the model has {num_classes} classes but {len(self.categories)} category names were given")
        if not 1 <= top_k <= num_classes:
            raise ValueError(f"top_k must be between 1 and {num_classes}, got {top_k}")
        self.top_k = top_k
        self._label_of = _class_labels(self.categories)  # class index -> Combobox label
        self._labels = {label: i for i, label in enumerate(self._label_of)}
        for i, name in enumerate(self.categories):  # a shared name alone means its first class
            self._labels.setdefault(name, i)
        self._quiet = False

        self.photo = W.Dropdown(options=list(self._images), description="photo")
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="upload")
        self.top_classes = W.ToggleButtons(options=[], description="top classes",
                                           style={"button_width": "auto"})
        self.class_name = W.Combobox(options=self._label_of, ensure_option=False, placeholder="any class by name",
                                     description="class", continuous_update=False)
        self.threshold = W.FloatSlider(value=0.2, min=0.0, max=1.0, step=0.05, description="threshold",
                                       continuous_update=True, readout_format=".2f")
        self.alpha = W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="alpha",
                                   continuous_update=True, readout_format=".2f")
        self.cmap = W.Dropdown(options=list(CMAPS), value="jet", description="colour map")
        self.show_box = W.Checkbox(value=True, description="show box")
        self.message = W.HTML(value="")
        self.info = W.HTML(value="")
        self.image_view = W.Image(format="png", layout=W.Layout(width="336px", min_width="224px"))
        controls = W.VBox([self.top_classes, self.class_name, self.threshold, self.alpha, self.cmap,
                           self.show_box, self.info])
        self.widget = W.VBox([W.HBox([self.photo, self.upload]), self.message,
                              W.HBox([self.image_view, controls])])

        self.current_photo: str | None = None
        self.current_image: np.ndarray | None = None
        self.result: cam_steps.CAMResult | None = None
        self.current_class: int | None = None
        self._raw_map: torch.Tensor | None = None
        self.current_map: torch.Tensor | None = None
        self.current_box: torch.Tensor | None = None
        self.current_iou: float | None = None

        self.photo.observe(self._on_photo, names="value")
        self.upload.observe(self._on_upload, names="value")
        self.top_classes.observe(self._on_top_class, names="value")
        self.class_name.observe(self._on_class_name, names="value")
        self.threshold.observe(self._on_threshold, names="value")
        for control in (self.alpha, self.cmap, self.show_box):
            control.observe(lambda change: self.render(), names="value")
        self.set_photo(self.photo.value)

    # ------------------------------------------------------------------ steps
    def set_photo(self, name: str) -> None:
        """Run the model once on photo ``name``; show its top class."""
        image = self._images[name]
        x = self.preprocess(image)[None]  # (1, C, H, W)
        with self._cam as cam_of:
            result = cam_of(x)
        self.current_image = np.ascontiguousarray(_display(self.preprocess, image))
        self.current_photo = name
        self.result = result
        probs = result.logits[0].softmax(-1)
        top_p, top_i = probs.topk(self.top_k)
        self._quiet = True
        try:
            self.top_classes.options = [(f"{self.categories[int(i)]} {float(p):.0%}", int(i)) for p, i in zip(top_p, top_i)]
            self.top_classes.value = int(top_i[0])
        finally:
            self._quiet = False
        self.set_class(int(top_i[0]))

    def set_class(self, class_idx: int) -> None:
        """Show the map of ``class_idx`` from the stored features (no forward pass)."""
        self.update_class(class_idx)
        self.render()

    def update_class(self, class_idx: int) -> None:
        """The state part of :meth:`set_class`: map and box, no drawing."""
        self.current_class = int(class_idx)
        self._raw_map = self.result.maps_for(self.current_class)[0, 0]  # (h, w)
        self.current_map = cam_steps.normalize(cam_steps.upsample(self._raw_map, self.current_image.shape[:2]))
        self._sync_class_controls()
        self.update_box()

    def update_box(self, threshold: float | None = None) -> None:
        """The box of the current map at ``threshold`` (default: the slider's value), and
        its IoU with the true box; no drawing."""
        threshold = self.threshold.value if threshold is None else threshold
        self.current_box = cam_steps.cam_to_box(self.current_map, threshold)
        true_box = self.true_boxes.get(self.current_photo)
        if true_box is None:
            self.current_iou = None
        else:
            from torchvision.ops import box_iou

            self.current_iou = float(box_iou(self.current_box[None], true_box[None])[0, 0])

    def render_png(self) -> bytes:
        """PNG bytes of the current overlay (with boxes when ``show_box`` is ticked)."""
        show = self.show_box.value
        return render_png(self.current_image, self._raw_map, alpha=self.alpha.value, cmap=self.cmap.value,
                          box=self.current_box if show else None,
                          true_box=self.true_boxes.get(self.current_photo) if show else None)

    def render(self) -> None:
        """Redraw the picture and the caption."""
        if self._raw_map is None:
            return
        self.image_view.value = self.render_png()
        p = float(self.result.logits[0].softmax(-1)[self.current_class])
        x0, y0, x1, y1 = (int(v) for v in self.current_box)
        lines = [f"<b>{html.escape(self.categories[self.current_class])}</b> (class {self.current_class}), p = {p:.3f}",
                 f"<span style='color:#2a2'>CAM box</span> [{x0}, {y0}, {x1}, {y1}] at threshold "
                 f"{self.threshold.value:.2f} of the map's range"]
        if self.current_iou is not None:
            lines.append(f"true box (white); IoU with the CAM box = {self.current_iou:.2f}")
        self.info.value = "<br>".join(lines)

    def add_photo(self, name: str, image) -> None:
        """Add ``image`` to the photo picker as ``name`` and show it."""
        self._images[name] = image
        self._quiet = True
        try:
            self.photo.options = list(self._images)
        finally:
            self._quiet = False
        if self.photo.value == name:
            self.set_photo(name)
        else:
            self.photo.value = name

    # ------------------------------------------------------------------ events
    def _say(self, text: str, kind: str = "error") -> None:
        color = {"error": "#b00020", "info": "#555"}[kind]
        self.message.value = f"<span style='color:{color}'>{html.escape(text)}</span>" if text else ""

    def _on_photo(self, change) -> None:
        if self._quiet:
            return
        self.set_photo(change["new"])

    def _on_upload(self, change) -> None:
        if self._quiet or not change["new"]:
            return
        item = change["new"][-1]
        filename = str(item.get("name") or "upload")
        try:
            rgb = data.load_image(bytes(item["content"]))
        except Exception as err:  # ImageError or any decoder failure: a message, never a traceback
            reason = str(err) if isinstance(err, data.ImageError) and " object at 0x" not in str(err) else (
                "it is not a readable image (PNG, JPEG, GIF, BMP, TIFF or WebP), or the file is damaged")
            self._say(f"Could not use {filename}: {reason}. Still showing {self.current_photo}.")
            return
        h, w = rgb.shape[:2]
        rgb = _shrink(rgb, self.max_upload_side)
        note = "" if rgb.shape[:2] == (h, w) else f" (resized from {w}x{h} to {rgb.shape[1]}x{rgb.shape[0]})"
        name = f"upload: {filename}"
        previous = self.current_photo
        try:
            self.add_photo(name, rgb)
        except Exception as err:
            self._images.pop(name, None)
            self._quiet = True
            try:
                self.photo.options = list(self._images)
                self.photo.value = previous
            finally:
                self._quiet = False
            self.set_photo(previous)
            self._say(f"Could not run the model on {filename!r}: {err}")
            return
        self._say(f"Showing {filename}{note}.", kind="info")

    def _on_top_class(self, change) -> None:
        if self._quiet or change["new"] is None:
            return
        self.set_class(change["new"])

    def _on_class_name(self, change) -> None:
        if self._quiet:
            return
        text = (change["new"] or "").strip()
        if not text:
            return
        idx = self._labels.get(text)
        if idx is None:
            lowered = text.lower()
            matches = [label for label in self._labels if lowered == label.lower()]
            idx = self._labels[matches[0]] if matches else None
        if idx is None:
            self._say(f"No class called {text!r}; pick one from the list (type a few letters).")
            return
        self._say("")
        self.set_class(idx)

    def _on_threshold(self, change) -> None:
        if self.current_map is None:
            return
        self.update_box()
        self.render()

    def _sync_class_controls(self) -> None:
        self._quiet = True
        try:
            top = [v for _, v in self.top_classes.options]
            self.top_classes.value = self.current_class if self.current_class in top else None
            self.class_name.value = self._label_of[self.current_class]
        finally:
            self._quiet = False


def _display(preprocess, image) -> np.ndarray:
    """The image the model saw, as uint8 RGB: ``preprocess.display`` or the image itself."""
    if hasattr(preprocess, "display"):
        return data.load_image(preprocess.display(image))
    return data.load_image(image)


def cam_explorer(photos: Mapping | None = None, model: nn.Module | None = None, preprocess: Callable | None = None,
                 categories=None, true_boxes: Mapping | None = None, top_k: int = 5) -> CAMExplorer:
    """Build the interactive CAM explorer; display its ``.widget``.

    Defaults: the pretrained EfficientNet-Lite0 (:func:`camlib.models.load_pretrained`)
    and the shipped photos (:func:`camlib.data.sample_images`). Any GAP + linear model
    works: ``photos`` is ``{name: image}``, ``preprocess(image)`` gives the model's
    ``(C, H, W)`` input (default for a custom model: :class:`ImagePreprocess`, pixels in
    [0, 1] at the image's size), ``categories`` the class names (default "class i"),
    ``true_boxes`` ``{name: xyxy}`` boxes in the pixels of the image the model saw, drawn
    in white beside the CAM box with their IoU (``torchvision.ops.box_iou``).
    Returns a :class:`CAMExplorer`.

    Taught in notebooks/06_class_activation_mapping.ipynb.
    """
    if model is None:
        from camlib import models

        if preprocess is not None or categories is not None:
            raise ValueError("preprocess= and categories= go with model=; the pretrained model brings its own")
        model, preprocess, categories = models.load_pretrained()
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module, got {type(model).__name__}")
    if preprocess is None:
        channels = cam_steps._first_conv_channels(model) or 3
        preprocess = ImagePreprocess(channels=1 if channels == 1 else 3)
    if categories is None:
        categories = [f"class {i}" for i in range(cam_steps.CAM(model).fc.out_features)]
    if photos is None:
        photos = data.sample_images()
    elif not isinstance(photos, Mapping):
        raise TypeError(f"photos must be a dict {{name: image}}, got {type(photos).__name__}")
    if true_boxes is not None:
        unknown = sorted(set(true_boxes) - set(photos))
        if unknown:
            raise ValueError(f"true_boxes names {unknown} are not among the photos {sorted(photos)}")
    return CAMExplorer(photos, model, preprocess, categories, true_boxes=true_boxes, top_k=top_k)
