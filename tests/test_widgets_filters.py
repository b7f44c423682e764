"""camlib.widgets.filters: the explorers redraw on every control and draw the right array."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camlib import conv, widgets
from camlib.widgets import filters


def _expected_filtered(ex):
    return F.conv2d(ex.image[None, None], ex.kernel[None, None], padding=1)[0, 0]


def test_exports_through_lazy_package():
    assert widgets.kernel_explorer is filters.kernel_explorer
    assert widgets.pooling_explorer is filters.pooling_explorer


def test_kernel_explorer_presets_and_cells():
    ex = filters.kernel_explorer("coffee", kernel="sobel x", max_side=64)
    assert max(ex.image.shape) == 64 and ex.draws == 1
    torch.testing.assert_close(ex.kernel, conv.kernel("sobel x"))
    torch.testing.assert_close(ex.filtered, _expected_filtered(ex))
    before = ex.filtered.clone()

    ex.preset.value = "gaussian"  # one redraw, cells follow the preset
    assert ex.draws == 2
    assert [c.value for c in ex.cells] == pytest.approx(conv.kernel("gaussian").flatten().tolist())
    torch.testing.assert_close(ex.filtered, F.conv2d(ex.image[None, None], conv.kernel("gaussian")[None, None], padding=1)[0, 0])
    assert not torch.allclose(ex.filtered, before)

    ex.cells[4].value = 2.0  # editing a cell makes a custom kernel
    assert ex.preset.value == "custom" and ex.draws == 3
    assert ex.kernel[1, 1] == 2.0
    torch.testing.assert_close(ex.filtered, _expected_filtered(ex))

    ex.preset.value = "identity"
    torch.testing.assert_close(ex.filtered, ex.image)

    png = ex.picture.value
    ex.photo.value = "chelsea"
    assert ex.draws == 5
    torch.testing.assert_close(ex.filtered, ex.image)
    assert ex.picture.value[:8] == b"\x89PNG\r\n\x1a\n" and ex.picture.value != png  # a new picture


def test_kernel_explorer_custom_array_and_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    k = rng.normal(size=(3, 3))
    ex = filters.kernel_explorer(image, kernel=k)
    assert ex.preset.value == "custom" and ex.photo.disabled
    assert ex.image.shape == (40, 50)
    torch.testing.assert_close(ex.kernel, torch.tensor(k, dtype=torch.float32))
    torch.testing.assert_close(ex.filtered, _expected_filtered(ex))


def test_kernel_explorer_bad_input():
    with pytest.raises(ValueError, match="kernel must be 3x3"):
        filters.kernel_explorer("coffee", kernel=np.ones((5, 5)))
    with pytest.raises(KeyError, match="available"):
        filters.kernel_explorer("coffee", kernel="blurry")
    with pytest.raises(ValueError, match="unknown sample photo"):
        filters.kernel_explorer("dog")


def test_pooling_explorer_controls():
    ex = filters.pooling_explorer("coffee", mode="max", size=4, max_side=64)
    torch.testing.assert_close(ex.pooled, F.max_pool2d(ex.input[None, None], 4)[0, 0])
    assert ex.draws == 1

    ex.mode.value = "avg"
    torch.testing.assert_close(ex.pooled, F.avg_pool2d(ex.input[None, None], 4)[0, 0])

    ex.size.value = 3
    ex.stride.value = 1  # overlapping windows
    assert ex.draws == 4
    torch.testing.assert_close(ex.pooled, F.avg_pool2d(ex.input[None, None], 3, 1)[0, 0])
    assert ex.pooled.shape == (ex.input.shape[0] - 2, ex.input.shape[1] - 2)

    png = ex.picture.value
    photo = ex.input.clone()
    ex.source.value = "feature map"
    ex.mode.value = "max"
    torch.testing.assert_close(ex.input, filters.edge_map(photo))
    torch.testing.assert_close(ex.pooled, F.max_pool2d(ex.input[None, None], 3, 1)[0, 0])
    assert ex.picture.value != png


def test_edge_map_values():
    gray = torch.zeros(6, 6)
    gray[:, 3:] = 1.0  # a vertical step edge
    edges = filters.edge_map(gray)
    assert edges[2, 2] == 4.0 and edges[2, 3] == 4.0 and edges[2, 0] == 0.0


def test_pooling_explorer_bad_input():
    with pytest.raises(ValueError, match="stride must be a positive int"):
        filters.pooling_explorer("coffee", stride=0, max_side=64)
    with pytest.raises(ValueError, match="pool size 100 is larger than allowed here"):
        filters.pooling_explorer("coffee", size=100, max_side=64)
    with pytest.raises(ValueError, match="mode must be"):
        filters.pooling_explorer("coffee", mode="median", max_side=64)
    with pytest.raises(ValueError, match="source must be"):
        filters.pooling_explorer("coffee", source="edges", max_side=64)


def test_pooling_explorer_small_image_limits_sliders():
    image = np.zeros((12, 20, 3), np.uint8)
    ex = filters.pooling_explorer(image, size=2)
    assert ex.size.max == 12 and ex.stride.max == 12
    with pytest.raises(ValueError, match=r"pool size 13 is larger than allowed here \(at most 12; the image is \(12, 20\)\)"):
        filters.pooling_explorer(image, size=13)
