"""camlib.data: every kind of image becomes RGB uint8; bad files are named."""

import numpy as np
import pytest
import torch
from PIL import Image

from camlib import data


def test_sample_photos_ship_offline_with_licences(photos):
    info = data.sample_photos()
    assert set(photos) == set(info) and len(photos) >= 6
    for name, img in photos.items():
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
        assert img.std() > 10, f"{name} looks blank"
        assert info[name].license and info[name].source and info[name].credit
    assert "CC BY" in info["china"].license  # sklearn's photos need their photographers credited


def test_sample_images_subset_and_unknown_name():
    one = data.sample_images("coffee")
    assert list(one) == ["coffee"]
    with pytest.raises(KeyError, match="available"):
        data.sample_images(["coffee", "unicorn"])


def test_grayscale_rgba_16bit_float_and_palette():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = data.load_image(gray)
    assert rgb.shape == (3, 4, 3) and (rgb[..., 0] == gray).all() and (rgb[..., 2] == gray).all()

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[0, 0, 3] = 255  # opaque red pixel
    rgba[1, 1, 3] = 0  # fully transparent: composited on white
    out = data.load_image(rgba)
    assert out[0, 0].tolist() == [200, 0, 0]
    assert out[1, 1].tolist() == [255, 255, 255]

    sixteen = np.array([[0, 65535]], dtype=np.uint16)
    assert data.load_image(sixteen)[0, :, 0].tolist() == [0, 255]
    assert data.load_image(np.array([[0.0, 0.5, 1.0]]))[0, :, 0].tolist() == [0, 128, 255]
    assert data.load_image(torch.ones(2, 2, 3))[0, 0].tolist() == [255, 255, 255]

    pal = Image.new("P", (3, 2))
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.putpixel((1, 0), 1)
    assert data.load_image(pal)[0, 1].tolist() == [10, 20, 30]


def test_files_round_trip_and_16bit_png(tmp_path):
    arr = (np.arange(48, dtype=np.uint8).reshape(4, 4, 3)) * 5
    Image.fromarray(arr).save(tmp_path / "a.png")
    assert (data.load_image(tmp_path / "a.png") == arr).all()
    Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)).save(tmp_path / "b.png")
    assert data.load_image(str(tmp_path / "b.png"))[0, :, 1].tolist() == [0, 255]
    raw = (tmp_path / "a.png").read_bytes()
    assert (data.load_image(raw) == arr).all()


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.jpg"):
        data.load_image(tmp_path / "nothere.jpg")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(data.ImageError, match="broken.png"):
        data.load_image(bad)
    with pytest.raises(data.ImageError, match="not a readable image"):
        data.load_image(b"\x00\x01garbage")


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((3, 8, 8)), "channels-first"),
        (np.zeros((4, 4, 2)), r"\(H, W, 3\)"),
        (np.zeros((2, 2, 2, 3)), "expected an image of shape"),
        (np.zeros((0, 5)), "empty"),
        (np.full((2, 2), 2.0), r"\[0, 1\]"),
        (np.full((2, 2), np.nan), "NaN"),
        (np.full((2, 2), -1, dtype=np.int16), r"outside 0 \.\. 255"),
        (np.array([[0, 256]]), r"outside 0 \.\. 255"),
        (np.full((2, 2), -0.01), r"\[0, 1\]"),
    ],
)
def test_bad_arrays(array, match):
    with pytest.raises(data.ImageError, match=match):
        data.load_image(array)


def test_integer_images_scale_by_type_not_by_value():
    # uint16 is 16-bit whatever its values: 200 / 65535 of full scale is almost black
    assert data.load_image(np.array([[0, 200, 256, 65535]], dtype=np.uint16))[0, :, 0].tolist() == [0, 1, 1, 255]
    # other integer types hold 8-bit values
    assert data.load_image(np.array([[0, 128, 255]]))[0, :, 0].tolist() == [0, 128, 255]
    # tiny rounding below 0 or above 1 in float images is clipped, not refused
    assert data.load_image(np.array([[-1e-9, 1 + 1e-9]]))[0, :, 0].tolist() == [0, 255]


def test_pil_32bit_modes(tmp_path):
    img = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.int32), mode="I")
    assert data.load_image(img)[0, :, 0].tolist() == [0, 128, 255]
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    assert data.load_image(floats)[0, :, 0].tolist() == [0, 128, 255]
    negative = Image.fromarray(np.array([[-5, 0]], dtype=np.int32), mode="I")
    with pytest.raises(data.ImageError, match="outside 0 .. 65535"):
        data.load_image(negative)


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = 255  # left half white
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: "rotate 90 degrees clockwise to view"
    Image.fromarray(arr).save(path, exif=exif)
    out = data.load_image(path)
    assert out.shape == (40, 20, 3)  # shown upright, as a photo viewer shows it
    assert out[:15].mean() > 200 and out[-15:].mean() < 50  # the white half is now on top


def test_unsupported_type():
    with pytest.raises(data.ImageError, match="cannot make an image from dict"):
        data.load_image({"a": 1})
