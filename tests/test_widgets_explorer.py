"""camlib.widgets.explorer: set each control's value and check the state it leaves.

The reference for every map and box is computed here independently with
camlib.cam (a fresh CAM forward pass), not read back from the explorer.
"""

from __future__ import annotations

import datetime
import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from camlib import cam, data, widgets
from camlib.widgets import explorer as explorer_module

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def two_photos(photos):
    return {name: photos[name] for name in ("coffee", "chelsea")}


@pytest.fixture
def explorer(pretrained, two_photos):
    model, preprocess, categories = pretrained
    return widgets.cam_explorer(photos=two_photos, model=model, preprocess=preprocess, categories=categories)


def reference(pretrained, image, class_idx=None):
    """(logits, normalized up-scaled map (224, 224)) from a fresh camlib.cam pass."""
    model, preprocess, _ = pretrained
    with cam.CAM(model) as cam_of:
        result = cam_of(preprocess(image)[None], class_idx=class_idx)
    return result.logits[0], cam.normalize(cam.upsample(result.maps[0, 0], (224, 224)))


def upload(explorer, content: bytes, name: str = "photo.png") -> None:
    """What JupyterLab's FileUpload sends to the kernel (ipywidgets 8 format)."""
    explorer.upload.value = ({
        "name": name, "type": "image/png", "size": len(content), "content": memoryview(content),
        "last_modified": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    },)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def decoded(png) -> np.ndarray:
    png = bytes(png)  # the Image widget keeps a memoryview
    assert png.startswith(PNG_MAGIC)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


class ForwardCounter:
    """Counts forward passes of a model through a hook on the model itself."""

    def __init__(self, model):
        self.calls = 0
        self._handle = model.register_forward_hook(self._hook)

    def _hook(self, *args):
        self.calls += 1

    def remove(self):
        self._handle.remove()


# --------------------------------------------------------------------------- construction
def test_defaults_are_the_pretrained_model_and_the_shipped_photos(monkeypatch, pretrained, photos):
    from camlib import models

    calls = []
    monkeypatch.setattr(models, "load_pretrained", lambda: calls.append("model") or pretrained)
    monkeypatch.setattr(data, "sample_images", lambda: calls.append("photos") or dict(photos))
    ex = widgets.cam_explorer()
    assert sorted(calls) == ["model", "photos"]
    assert list(ex.photo.options) == list(photos)
    assert ex.current_photo == list(photos)[0]
    assert ex.categories == list(pretrained[2])
    assert widgets.cam_explorer is explorer_module.cam_explorer


def test_widget_holds_every_control(explorer):
    def walk(w):
        yield w
        for child in getattr(w, "children", ()):
            yield from walk(child)

    inside = {id(w) for w in walk(explorer.widget)}
    for name in ("photo", "upload", "top_classes", "class_name", "threshold", "alpha", "cmap", "show_box",
                 "message", "image_view"):
        assert id(getattr(explorer, name)) in inside, name


def test_initial_state_is_the_top_class_of_the_first_photo(explorer, pretrained, two_photos):
    logits, expected_map = reference(pretrained, two_photos["coffee"])
    categories = pretrained[2]
    assert explorer.current_class == int(logits.argmax()) == categories.index("espresso")
    torch.testing.assert_close(explorer.current_map, expected_map)
    probs = logits.softmax(-1)
    top_p, top_i = probs.topk(5)
    assert [v for _, v in explorer.top_classes.options] == top_i.tolist()
    first_label = explorer.top_classes.options[0][0]
    assert first_label.startswith("espresso ") and first_label.endswith(f"{float(top_p[0]):.0%}")
    assert explorer.top_classes.value == explorer.current_class
    assert explorer.class_name.value == "espresso"
    torch.testing.assert_close(explorer.current_box, cam.cam_to_box(expected_map, 0.2))
    picture = decoded(explorer.image_view.value)
    assert picture.shape == (224, 224, 3)
    assert explorer.message.value == ""


# --------------------------------------------------------------------------- class switch
def test_top_class_switch_shows_that_class_map_without_a_forward_pass(explorer, pretrained, two_photos):
    second = explorer.top_classes.options[1][1]
    before = explorer.image_view.value
    counter = ForwardCounter(explorer.model)
    try:
        explorer.top_classes.value = second
    finally:
        counter.remove()
    assert counter.calls == 0
    assert explorer.current_class == second
    assert explorer.class_name.value == pretrained[2][second]
    _, expected_map = reference(pretrained, two_photos["coffee"], class_idx=second)
    torch.testing.assert_close(explorer.current_map, expected_map)
    torch.testing.assert_close(explorer.current_box, cam.cam_to_box(expected_map, explorer.threshold.value))
    assert explorer.image_view.value != before


def test_class_by_name_outside_the_top_k(explorer, pretrained, two_photos):
    categories = pretrained[2]
    tabby = categories.index("tabby")
    assert tabby not in [v for _, v in explorer.top_classes.options]
    explorer.class_name.value = "tabby"
    assert explorer.current_class == tabby
    assert explorer.top_classes.value is None  # no top-k button is pressed for it
    _, expected_map = reference(pretrained, two_photos["coffee"], class_idx=tabby)
    torch.testing.assert_close(explorer.current_map, expected_map)
    # back to a top-k class by name: its button is pressed again
    explorer.class_name.value = "cup"
    assert explorer.current_class == categories.index("cup") == explorer.top_classes.value


def test_unknown_class_name_gives_a_message_and_keeps_the_class(explorer):
    before = explorer.current_class
    explorer.class_name.value = "flying saucer"
    assert explorer.current_class == before
    assert "No class called" in explorer.message.value and "flying saucer" in explorer.message.value
    explorer.class_name.value = "Tabby"  # case does not matter
    assert explorer.categories[explorer.current_class] == "tabby"
    assert explorer.message.value == ""


# --------------------------------------------------------------------------- threshold, drawing
def test_threshold_changes_the_box_as_cam_to_box_says(explorer, pretrained, two_photos):
    _, expected_map = reference(pretrained, two_photos["coffee"], class_idx=explorer.current_class)
    box_low = explorer.current_box.clone()
    before = explorer.image_view.value
    counter = ForwardCounter(explorer.model)
    try:
        explorer.threshold.value = 0.7
    finally:
        counter.remove()
    assert counter.calls == 0
    expected = cam.cam_to_box(expected_map, 0.7)
    torch.testing.assert_close(explorer.current_box, expected)
    assert not torch.equal(expected, box_low)
    # a higher threshold keeps fewer pixels: the box shrinks inside the old one
    assert (expected[:2] >= box_low[:2]).all() and (expected[2:] <= box_low[2:]).all()
    assert explorer.image_view.value != before
    x0, y0, x1, y1 = (int(v) for v in expected)
    assert f"[{x0}, {y0}, {x1}, {y1}]" in explorer.info.value


def test_box_is_drawn_in_lime_on_its_edges(explorer):
    explorer.threshold.value = 0.5
    explorer.alpha.value = 0.0  # the photo alone under the box
    x0, y0, x1, y1 = (int(v) for v in explorer.current_box)
    picture = decoded(explorer.image_view.value)
    assert tuple(picture[y0, (x0 + x1) // 2]) == explorer_module.CAM_BOX_COLOR
    assert tuple(picture[(y0 + y1) // 2, x1 - 1]) == explorer_module.CAM_BOX_COLOR
    explorer.show_box.value = False
    np.testing.assert_array_equal(decoded(explorer.image_view.value), explorer.current_image)


def test_alpha_and_cmap_redraw_without_changing_the_state(explorer):
    from camlib import viz

    state = (explorer.current_class, explorer.current_map.clone(), explorer.current_box.clone())
    explorer.show_box.value = False
    pictures = set()
    for alpha, cmap in ((0.5, "jet"), (0.8, "jet"), (0.8, "viridis")):
        explorer.alpha.value = alpha
        explorer.cmap.value = cmap
        picture = decoded(explorer.image_view.value)
        expected = viz.overlay(explorer.current_image, explorer.current_map, alpha=alpha, cmap=cmap)
        np.testing.assert_allclose(picture.astype(int), expected.astype(int), atol=1)
        pictures.add(picture.tobytes())
    assert len(pictures) == 3
    assert explorer.current_class == state[0]
    torch.testing.assert_close(explorer.current_map, state[1])
    torch.testing.assert_close(explorer.current_box, state[2])


# --------------------------------------------------------------------------- photos and uploads
def test_photo_change_runs_the_model_once(explorer, pretrained, two_photos):
    counter = ForwardCounter(explorer.model)
    try:
        explorer.photo.value = "chelsea"
    finally:
        counter.remove()
    assert counter.calls == 1
    logits, expected_map = reference(pretrained, two_photos["chelsea"])
    assert explorer.current_class == int(logits.argmax())
    assert "cat" in pretrained[2][explorer.current_class]
    torch.testing.assert_close(explorer.current_map, expected_map)
    np.testing.assert_array_equal(explorer.current_image, pretrained[1].display(two_photos["chelsea"]))


@pytest.mark.parametrize("content", [b"this is not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, b""])
def test_garbage_upload_shows_a_message_and_keeps_the_photo(explorer, content):
    before = (explorer.current_photo, explorer.current_class, explorer.image_view.value, tuple(explorer.photo.options))
    upload(explorer, content, name="notes.png")
    assert "Could not use notes.png" in explorer.message.value
    assert "Still showing coffee" in explorer.message.value
    assert "Traceback" not in explorer.message.value and " object at 0x" not in explorer.message.value
    assert (explorer.current_photo, explorer.current_class, explorer.image_view.value,
            tuple(explorer.photo.options)) == before


def test_huge_upload_is_resized_not_refused(explorer, pretrained):
    y, x = np.mgrid[0:2000, 0:3000]
    huge = np.stack([(x * 255 // 2999), (y * 255 // 1999), np.full_like(x, 90)], axis=-1).astype(np.uint8)
    upload(explorer, png_bytes(huge), name="wide.png")
    assert explorer.current_photo == "upload: wide.png"
    assert explorer.photo.value == "upload: wide.png"
    stored = explorer._images["upload: wide.png"]
    assert stored.shape == (683, 1024, 3)  # longest side 1024, aspect kept
    assert "resized from 3000x2000 to 1024x683" in explorer.message.value
    _, expected_map = reference(pretrained, stored, class_idx=explorer.current_class)
    torch.testing.assert_close(explorer.current_map, expected_map)
    # the shipped photos are still there and still work
    explorer.photo.value = "coffee"
    assert explorer.categories[explorer.current_class] == "espresso"


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "I;16"])
def test_rgba_grayscale_palette_and_16_bit_uploads_work(explorer, pretrained, photos, mode):
    rgb = photos["chelsea"][::2, ::2]
    img = Image.fromarray(rgb)
    if mode == "RGBA":
        img = img.convert("RGBA")
        img.putalpha(200)
    elif mode == "I;16":
        img = Image.fromarray((np.asarray(img.convert("L")).astype(np.uint16) * 257))
    else:
        img = img.convert(mode)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    upload(explorer, buffer.getvalue(), name=f"cat_{mode[0]}.png")
    name = f"upload: cat_{mode[0]}.png"
    assert explorer.current_photo == name, explorer.message.value
    assert "Could not" not in explorer.message.value
    expected_rgb = data.load_image(buffer.getvalue())
    logits, expected_map = reference(pretrained, expected_rgb)
    assert explorer.current_class == int(logits.argmax())
    torch.testing.assert_close(explorer.current_map, expected_map)
    assert explorer.current_image.shape == (224, 224, 3)


# --------------------------------------------------------------------------- any GAP model
class TinyGap(nn.Module):
    """conv -> ReLU -> GAP -> linear: bright-square detector with hand-set weights."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, kernel_size=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, :, 0, 0] = 1.0 / 3  # channel 0: brightness
            self.conv.weight[1, :, 0, 0] = -1.0 / 3  # channel 1: darkness
            self.conv.bias.copy_(torch.tensor([0.0, 1.0]))
            self.fc.weight.copy_(torch.tensor([[20.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


def square_images():
    """Two 32x32 images, each a white square on black, and the squares' xyxy boxes."""
    images, boxes = {}, {}
    for name, (x0, y0, x1, y1) in {"left": (2, 4, 12, 20), "right": (18, 10, 30, 26)}.items():
        image = np.zeros((32, 32, 3), np.uint8)
        image[y0:y1, x0:x1] = 255
        images[name], boxes[name] = image, [x0, y0, x1, y1]
    return images, boxes


def test_tiny_gap_model_with_true_boxes_and_iou():
    from torchvision.ops import box_iou

    model = TinyGap()
    images, boxes = square_images()
    ex = widgets.cam_explorer(photos=images, model=model, true_boxes=boxes, top_k=2)
    assert ex.categories == ["class 0", "class 1", "class 2"]
    assert ex.current_class == 0  # the bright-square class wins on the mostly-black image
    assert ex.current_image.shape == (32, 32, 3)
    # class 0's map is the brightness: its box is exactly the square, IoU 1
    torch.testing.assert_close(ex.current_box, torch.tensor(boxes["left"], dtype=torch.float32))
    assert ex.current_iou == pytest.approx(1.0)
    ex.photo.value = "right"
    torch.testing.assert_close(ex.current_box, torch.tensor(boxes["right"], dtype=torch.float32))
    # class 1's map is the darkness, which touches the border everywhere: the whole image
    ex.class_name.value = "class 1"
    torch.testing.assert_close(ex.current_box, torch.tensor([0.0, 0.0, 32.0, 32.0]))
    whole, square = 32 * 32, 12 * 16
    assert ex.current_iou == pytest.approx(square / whole)
    expected = box_iou(ex.current_box[None], torch.tensor([boxes["right"]], dtype=torch.float32))[0, 0]
    assert ex.current_iou == pytest.approx(float(expected))
    assert f"IoU with the CAM box = {square / whole:.2f}" in ex.info.value
    # small images are enlarged (7 x 32 = 224) by whole pixels; both boxes are drawn
    ex.alpha.value = 0.0
    picture = decoded(ex.image_view.value)
    assert picture.shape == (224, 224, 3)
    x0, y0, x1, y1 = (7 * v for v in boxes["right"])
    assert tuple(picture[y0, (x0 + x1) // 2]) == explorer_module.TRUE_BOX_COLOR
    assert tuple(picture[0, 100]) == explorer_module.CAM_BOX_COLOR


def test_shared_class_names_are_told_apart():
    images, _ = square_images()
    ex = widgets.cam_explorer(photos=images, model=TinyGap(), categories=["crane", "bird", "crane"], top_k=3)
    assert ex.class_name.options == ("crane (0)", "bird", "crane (2)")
    ex.class_name.value = "crane (2)"
    assert ex.current_class == 2
    ex.class_name.value = "crane"  # the bare name is the first crane
    assert ex.current_class == 0
    assert ex.class_name.value == "crane (0)"


def test_single_channel_model_gets_grayscale_input():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    images, _ = square_images()
    ex = widgets.cam_explorer(photos=images, model=model, categories=["square", "background"], top_k=2)
    assert ex.current_map.shape == (32, 32)
    assert ex.class_name.options == ("square", "background")


def test_bad_arguments_are_refused_with_reasons(pretrained):
    images, boxes = square_images()
    with pytest.raises(TypeError, match="nn.Module"):
        widgets.cam_explorer(photos=images, model="resnet")
    with pytest.raises(ValueError, match="true_boxes names"):
        widgets.cam_explorer(photos=images, model=TinyGap(), true_boxes={"nowhere": [0, 0, 1, 1]})
    with pytest.raises(ValueError, match="3 classes but 2 category names"):
        widgets.cam_explorer(photos=images, model=TinyGap(), categories=["a", "b"])
    with pytest.raises(ValueError, match="top_k must be between 1 and 3"):
        widgets.cam_explorer(photos=images, model=TinyGap(), top_k=4)
    with pytest.raises(ValueError, match="at least one photo"):
        widgets.cam_explorer(photos={}, model=TinyGap())
    with pytest.raises(TypeError, match="photos must be a dict"):
        widgets.cam_explorer(photos=list(images.values()), model=TinyGap())
    max_pool = nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    with pytest.raises(ValueError, match="global MAX pooling"):
        widgets.cam_explorer(photos=images, model=max_pool)
