"""Tests for camlib.features: activations at depth via hooks and top-activating patches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camlib import features


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, stride=2, padding=1))


def test_capture_activations_equals_partial_forward(tiny):
    x = torch.randn(2, 3, 8, 8)
    acts = features.capture_activations(tiny, {"relu": tiny[1], "out": tiny[2]}, x)
    assert list(acts) == ["relu", "out"]
    torch.testing.assert_close(acts["relu"], tiny[1](tiny[0](x)))
    torch.testing.assert_close(acts["out"], tiny(x))
    assert not any(m._forward_hooks for m in tiny.modules())


def test_capture_rejects_modules_that_run_twice_and_removes_hooks():
    relu = nn.ReLU()
    shared = nn.Sequential(nn.Conv2d(1, 1, 1), relu, nn.Conv2d(1, 1, 1), relu)
    with pytest.raises(ValueError, match="more than once"):
        features.capture_activations(shared, {"relu": relu}, torch.zeros(1, 1, 2, 2))
    assert not relu._forward_hooks
    with pytest.raises(ValueError, match="did not run"):
        features.capture_activations(shared, {"stray": nn.ReLU()}, torch.zeros(1, 1, 2, 2))


def test_depth_layers_reach_the_logits(pretrained, photos):
    model, preprocess, _ = pretrained
    layers = features.depth_layers(model)
    assert list(layers)[:2] == ["stem", "block 0"] and list(layers)[-1] == "head" and len(layers) == 18
    x = preprocess.batch([photos["chelsea"]])
    acts = features.capture_activations(model, layers, x)
    assert acts["stem"].shape == (1, 32, 112, 112)
    assert acts["block 15"].shape == (1, 320, 7, 7)
    # the head's output, through ReLU6, pooling and the fc layer, gives the model's logits
    logits = model._fc(F.relu6(acts["head"]).mean((2, 3)))
    torch.testing.assert_close(logits, model(x), atol=1e-4, rtol=1e-4)
    with pytest.raises(TypeError, match="EfficientNet"):
        features.depth_layers(nn.Linear(2, 2))


def test_unit_centre_and_crop_patch():
    assert features.unit_centre(0, 7, 224) == pytest.approx(15.5)
    assert features.unit_centre(6, 7, 224) == pytest.approx(207.5)
    assert features.unit_centre(3, 8, 8) == 3.0
    with pytest.raises(ValueError, match="outside"):
        features.unit_centre(7, 7, 224)
    assert features.unit_centre(0, 112, 224, padding="tf_same") == 1.0  # stride 2, pad (0, 1): pixels 0..2
    with pytest.raises(ValueError, match="padding must be"):
        features.unit_centre(0, 7, 224, padding="valid")
    image = torch.arange(25.0).reshape(1, 5, 5)
    torch.testing.assert_close(features.crop_patch(image, (2, 2), 3), image[:, 1:4, 1:4])
    corner = features.crop_patch(image, (0, 0), 3)  # half outside: zero-filled
    expected = torch.zeros(1, 3, 3)
    expected[:, 1:, 1:] = image[:, :2, :2]
    torch.testing.assert_close(corner, expected)
    with pytest.raises(ValueError, match="positive"):
        features.crop_patch(image, (2, 2), 0)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        features.crop_patch(image[0], (2, 2), 3)


def test_unit_centre_tf_same_is_where_efficientnet_units_look(pretrained):
    # the centre of the box of input pixels a unit depends on (from its gradient) is where unit_centre says
    from camlib import receptive_field

    model = pretrained[0]
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    for block, map_size, position in ((1, 56, (20, 9)), (5, 14, (6, 4))):
        g = receptive_field.input_gradient(model, model._blocks[block], x, position=position)
        rows, cols = torch.nonzero(g.sum(1) > 0).flatten(), torch.nonzero(g.sum(0) > 0).flatten()
        assert rows[0] > 0 and cols[0] > 0 and rows[-1] < 223 and cols[-1] < 223  # the box is not cut by the border
        measured = (float(rows[0] + rows[-1]) / 2, float(cols[0] + cols[-1]) / 2)
        assert measured == tuple(features.unit_centre(p, map_size, 224, padding="tf_same") for p in position)
        assert measured != tuple(features.unit_centre(p, map_size, 224) for p in position)


def test_top_activating_patches_known_answer():
    images = torch.arange(3 * 8 * 8, dtype=torch.float32).reshape(3, 1, 8, 8)
    acts = torch.zeros(3, 2, 4, 4)
    acts[0, 1, 1, 2] = 5.0
    acts[0, 1, 3, 3] = 4.0  # second-best in image 0: skipped with one_per_image
    acts[2, 1, 0, 0] = 7.0
    acts[1, 1, 2, 1] = 1.0
    out = features.top_activating_patches(acts, images, channel=1, k=2, patch_size=2)
    assert out["values"].tolist() == [7.0, 5.0]
    assert out["image_index"].tolist() == [2, 0]
    assert out["position"].tolist() == [[0, 0], [1, 2]]
    # unit (1, 2) of a 4x4 map of an 8x8 image is centred at pixel (2.5, 4.5): rows 2-3, cols 4-5
    torch.testing.assert_close(out["patches"][1], images[0, :, 2:4, 4:6])
    both = features.top_activating_patches(acts, images, channel=1, k=3, patch_size=2, one_per_image=False)
    assert both["values"].tolist() == [7.0, 5.0, 4.0] and both["image_index"].tolist() == [2, 0, 0]
    inner = features.top_activating_patches(acts, images, channel=1, k=2, patch_size=2, exclude_border=1)
    assert inner["values"].tolist() == [5.0, 1.0] and inner["position"].tolist() == [[1, 2], [2, 1]]
    # unit (0, 0) of a 2x2 map of an 8x8 image: centre 1.5 (rows 1-2) symmetric, 3 (rows 2-3, rounded) tf_same
    coarse = torch.zeros(1, 1, 2, 2)
    coarse[0, 0, 0, 0] = 1.0
    sym = features.top_activating_patches(coarse, images[:1], channel=0, k=1, patch_size=2)
    tf = features.top_activating_patches(coarse, images[:1], channel=0, k=1, patch_size=2, padding="tf_same")
    torch.testing.assert_close(sym["patches"][0], images[0, :, 1:3, 1:3])
    torch.testing.assert_close(tf["patches"][0], images[0, :, 2:4, 2:4])
    with pytest.raises(ValueError, match="leaves no unit"):
        features.top_activating_patches(acts, images, channel=1, exclude_border=2)
    with pytest.raises(ValueError, match="out of range"):
        features.top_activating_patches(acts, images, channel=2)
    with pytest.raises(ValueError, match="k must be"):
        features.top_activating_patches(acts, images, channel=0, k=0)
    with pytest.raises(ValueError, match="same N"):
        features.top_activating_patches(acts[:2], images, channel=0)


def test_augment():
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = features.augment(images)
    assert out.shape == (12, 3, 8, 8)
    torch.testing.assert_close(out[:2], images)
    torch.testing.assert_close(out[2:4], images.flip(-1))
    # the four 2x zooms, by value: each corner quarter resized back to 8 x 8
    for block, (rows, cols) in enumerate([(slice(0, 4), slice(0, 4)), (slice(0, 4), slice(4, 8)),
                                          (slice(4, 8), slice(0, 4)), (slice(4, 8), slice(4, 8))], start=2):
        corner = F.interpolate(images[..., rows, cols], size=(8, 8), mode="bilinear", align_corners=False, antialias=True)
        torch.testing.assert_close(out[2 * block : 2 * block + 2], corner)
    assert not torch.allclose(out[4:6], out[6:8])  # different corners give different images
    # a constant image stays constant under every augmentation
    torch.testing.assert_close(features.augment(torch.full((1, 3, 8, 8), 0.25)), torch.full((6, 3, 8, 8), 0.25))
    with pytest.raises(ValueError, match="zoom"):
        features.augment(images, zoom=0.5)


def test_correlation_with_image_known_answers():
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    grey = images.mean(1, keepdim=True)  # (2, 1, 8, 8)
    noise = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    acts = torch.cat([grey, -3 * grey + 1, torch.ones_like(grey), noise], 1)  # (2, 4, 8, 8)
    r = features.correlation_with_image(acts, images)
    torch.testing.assert_close(r[:, :3], torch.tensor([[1.0, -1.0, 0.0]] * 2))
    expected = torch.corrcoef(torch.stack([noise[0].flatten(), grey[0].flatten()]))[0, 1]
    torch.testing.assert_close(r[0, 3], expected)
    # a 1 x 1 map is constant after resizing: correlation 0
    assert torch.equal(features.correlation_with_image(torch.ones(2, 5, 1, 1), images), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="same N"):
        features.correlation_with_image(acts[:1], images)
