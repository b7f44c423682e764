"""camlib.cam: the CAM identity, the steps by value, the hook's life, bad input."""

from __future__ import annotations

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from camlib import cam
from camlib.hooks import active_hook_count


def _randomize_head(model: nn.Module, fc: nn.Linear, generator: torch.Generator) -> None:
    """Random-init heads give near-zero logits; make them large enough to test."""
    with torch.no_grad():
        fc.weight.copy_(torch.randn(fc.weight.shape, generator=generator))
        fc.bias.copy_(torch.randn(fc.bias.shape, generator=generator))


# ---------------------------------------------------------------- the identity
@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "regnet_x_400mf", "googlenet"])
def test_identity_on_random_torchvision_gap_models(name):
    g = torch.Generator().manual_seed(1)
    kwargs = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    model = getattr(torchvision.models, name)(weights=None, num_classes=10, **kwargs)
    pool, fc = cam._gap_head(model)
    _randomize_head(model, fc, g)
    x = torch.randn(2, 3, 96, 96, generator=g)
    with cam.CAM(model) as cam_of:
        result = cam_of(x, class_idx="all")
    assert result.maps.shape[:2] == (2, 10)
    recon = result.maps.mean(dim=(-2, -1)) + fc.bias  # (1/Z) sum_xy M_c + b_c
    torch.testing.assert_close(recon, result.logits, rtol=1e-4, atol=1e-4)
    assert result.logits.std() > 0.1  # the identity is not trivially 0 == 0


def test_identity_on_pretrained_model(pretrained, photos):
    model, preprocess, categories = pretrained
    x = preprocess.batch([photos["coffee"], photos["chelsea"]])
    with cam.CAM(model) as cam_of:
        result = cam_of(x, class_idx="all")
    assert result.features.shape == (2, 1280, 7, 7)
    recon = result.maps.mean(dim=(-2, -1)) + model._fc.bias
    torch.testing.assert_close(recon, result.logits, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(result.logits, model(x), rtol=1e-5, atol=1e-5)


def test_pretrained_top1_on_shipped_photos(pretrained, photos):
    """Weights and preprocessing are right: well-known photos get their ImageNet class."""
    model, preprocess, categories = pretrained
    expected = {
        "coffee": {"espresso"},
        "chelsea": {"tiger cat", "Egyptian cat", "tabby"},
        "motorcycle": {"moped", "motor scooter"},
        "rocket": {"missile", "projectile"},
        "flower": {"daisy"},
    }
    x = preprocess.batch([photos[n] for n in expected])
    with torch.no_grad():
        top1 = model(x).argmax(1)
    got = {name: categories[int(i)] for name, i in zip(expected, top1)}
    for name, allowed in expected.items():
        assert got[name] in allowed, f"{name}: predicted {got[name]!r}, expected one of {allowed}"


# ---------------------------------------------------------------- weighted sum
def test_einsum_equals_explicit_loop():
    g = torch.Generator().manual_seed(2)
    features = torch.randn(2, 5, 3, 4, generator=g)
    weight = torch.randn(6, 5, generator=g)
    expected = torch.zeros(2, 6, 3, 4)
    for n in range(2):
        for c in range(6):
            for k in range(5):
                expected[n, c] += weight[c, k] * features[n, k]
    torch.testing.assert_close(cam.class_activation_maps(features, weight), expected)


def test_hand_computed_map():
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])  # (1, 2, 2, 2)
    weight = torch.tensor([[1.0, 10.0]])  # one class
    expected = torch.tensor([[[[1.0, 12.0], [3.0, 14.0]]]])
    torch.testing.assert_close(cam.class_activation_maps(features, weight), expected)


@pytest.mark.parametrize(
    "features, weight, match",
    [
        (torch.zeros(2, 3, 4), torch.zeros(5, 2), r"features must have shape \(N, K, h, w\)"),
        (torch.zeros(1, 3, 4, 4), torch.zeros(5), r"fc_weight must have shape \(C, K\)"),
        (torch.zeros(1, 3, 4, 4), torch.zeros(5, 4), "K=3 channels but fc_weight expects K=4"),
    ],
)
def test_class_activation_maps_bad_shapes(features, weight, match):
    with pytest.raises(ValueError, match=match):
        cam.class_activation_maps(features, weight)


# ---------------------------------------------------------------- normalize / upsample
def test_normalize_known_values_and_constant_map():
    m = torch.tensor([[[2.0, 4.0], [6.0, 10.0]], [[3.0, 3.0], [3.0, 3.0]]])
    out = cam.normalize(m)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    torch.testing.assert_close(out[1], torch.zeros(2, 2))  # constant -> zeros, not NaN
    assert m[0, 0, 0] == 2.0  # not in place


def test_normalize_refuses_non_finite_and_survives_huge_values():
    with pytest.raises(ValueError, match="NaN or infinite"):
        cam.normalize(torch.tensor([[0.0, 1.0, float("nan")]]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        cam.normalize(torch.tensor([[0.0, 1.0, float("inf")]]))
    out = cam.normalize(torch.tensor([[-3e38, 0.0, 3e38]]))
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.5, 1.0]]))


@given(st.integers(1, 6), st.integers(1, 6), st.floats(-1e3, 1e3), st.floats(1e-3, 1e3))
@settings(max_examples=40, deadline=None)
def test_normalize_range_property(h, w, shift, scale):
    m = torch.randn(3, h, w, generator=torch.Generator().manual_seed(h * 7 + w)) * scale + shift
    out = cam.normalize(m)
    assert torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1
    for one in out:
        if one.numel() > 1 and (m.amax((-2, -1)) > m.amin((-2, -1))).all():
            assert one.max() == 1.0 and one.min() == 0.0


def test_upsample_bilinear_and_nearest():
    m = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    nearest = cam.upsample(m, 4, mode="nearest")
    torch.testing.assert_close(nearest, m.repeat_interleave(2, 0).repeat_interleave(2, 1))
    bilinear = cam.upsample(m, (4, 4))
    # align_corners=False: corners keep the corner values, the middle is the mean
    assert bilinear[0, 0] == 0.0 and bilinear[3, 3] == 3.0
    torch.testing.assert_close(bilinear[1:3, 1:3].mean(), m.mean())
    assert cam.upsample(torch.zeros(2, 3, 7, 7), 224).shape == (2, 3, 224, 224)
    assert cam.upsample(torch.zeros(5, 7, 7), (20, 30)).shape == (5, 20, 30)
    import numpy as np

    assert cam.upsample(torch.zeros(7, 7), np.int64(14)).shape == (14, 14)


def test_upsample_bad_input():
    with pytest.raises(ValueError, match="mode must be"):
        cam.upsample(torch.zeros(3, 3), 6, mode="area")
    with pytest.raises(ValueError, match="expects a map of shape"):
        cam.upsample(torch.zeros(3), 6)
    with pytest.raises(TypeError, match="floating-point"):
        cam.upsample(torch.zeros(3, 3, dtype=torch.long), 6)


# ---------------------------------------------------------------- boxes
def test_cam_to_box_finds_known_box():
    m = torch.zeros(20, 30)
    m[4:9, 10:17] = 1.0  # rows 4..8, cols 10..16
    torch.testing.assert_close(cam.cam_to_box(m), torch.tensor([10.0, 4.0, 17.0, 9.0]))


def test_cam_to_box_keeps_largest_component_and_threshold():
    m = torch.zeros(20, 20)
    m[1:3, 1:3] = 1.0  # small, strongest blob (4 px)
    m[10:18, 5:15] = 0.5  # large, weaker blob (80 px)
    m[0, 19] = 0.15  # below 20 % of the max: ignored
    torch.testing.assert_close(cam.cam_to_box(m, 0.2), torch.tensor([5.0, 10.0, 15.0, 18.0]))
    # at 60 % only the strong blob survives
    torch.testing.assert_close(cam.cam_to_box(m, 0.6), torch.tensor([1.0, 1.0, 3.0, 3.0]))
    # diagonal neighbours join (8-connectivity, as MATLAB's bwlabel)
    d = torch.zeros(6, 6)
    d[0, 0] = d[1, 1] = d[2, 2] = 1.0
    torch.testing.assert_close(cam.cam_to_box(d, 0.5), torch.tensor([0.0, 0.0, 3.0, 3.0]))


def test_cam_to_box_relative_to_max_vs_range():
    m = torch.full((10, 10), -1.0)
    m[2:5, 2:5] = 1.0
    m[6:9, 6:9] = 0.1  # above 0.2 of the range (-1..1 -> 0.55), below 0.2 x max (0.2)
    torch.testing.assert_close(cam.cam_to_box(m, 0.2), torch.tensor([2.0, 2.0, 5.0, 5.0]))
    m[4, 5:7] = 0.1  # join the weak blob to the strong one: under "range" they form one region
    m[5, 6] = 0.1
    torch.testing.assert_close(cam.cam_to_box(m, 0.2, relative_to="range"), torch.tensor([2.0, 2.0, 9.0, 9.0]))
    torch.testing.assert_close(cam.cam_to_box(m, 0.2), torch.tensor([2.0, 2.0, 5.0, 5.0]))
    with pytest.raises(ValueError, match="maximum is not positive"):
        cam.cam_to_box(-torch.rand(5, 5) - 0.1)
    with pytest.raises(ValueError, match="relative_to"):
        cam.cam_to_box(m, relative_to="min")
    assert cam.cam_to_box(torch.zeros(0, 5, 5)).shape == (0, 4)


def test_cam_to_box_batch_and_constant_map():
    maps = torch.zeros(2, 8, 8)
    maps[0, 2:4, 5:7] = 3.0
    boxes = cam.cam_to_box(maps)
    assert boxes.shape == (2, 4)
    torch.testing.assert_close(boxes[0], torch.tensor([5.0, 2.0, 7.0, 4.0]))
    torch.testing.assert_close(boxes[1], torch.tensor([0.0, 0.0, 8.0, 8.0]))  # no peak: whole image
    torch.testing.assert_close(cam.cam_to_box(torch.full((4, 6), -2.0)), torch.tensor([0.0, 0.0, 6.0, 4.0]))


def test_cam_to_box_bad_input():
    with pytest.raises(ValueError, match="threshold must be in"):
        cam.cam_to_box(torch.zeros(4, 4), 1.5)
    with pytest.raises(ValueError, match="NaN"):
        cam.cam_to_box(torch.full((4, 4), float("nan")))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        cam.cam_to_box(torch.zeros(1, 1, 4, 4))


# ---------------------------------------------------------------- the CAM context manager
class TinyGap(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.fc(self.drop(self.pool(x).flatten(1)))


def test_cam_one_forward_pass_and_class_selection():
    model = TinyGap()
    calls = []
    model.conv.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(3, 3, 6, 6)
    with cam.CAM(model) as cam_of:
        top = cam_of(x)
        assert len(calls) == 1
        assert top.maps.shape == (3, 1, 6, 6)
        torch.testing.assert_close(top.class_idx[:, 0], top.logits.argmax(1))
        all_maps = top.maps_for("all")
        torch.testing.assert_close(top.maps[:, 0], all_maps[torch.arange(3), top.class_idx[:, 0]])
        two = top.maps_for([1, 3])
        torch.testing.assert_close(two, all_maps[:, [1, 3]])
        per_image = cam_of(x, class_idx=torch.tensor([0, 1, 2]))
        torch.testing.assert_close(per_image.maps[:, 0], all_maps[torch.arange(3), torch.tensor([0, 1, 2])])
        up = top.upsampled(12)
        assert up.shape == (3, 1, 12, 12) and up.amax() == 1.0


def test_hook_removed_and_mode_restored_after_exception():
    model = TinyGap()
    model.train()
    model.drop.eval()  # a mixed state must come back exactly
    before = {name: m.training for name, m in model.named_modules()}
    with pytest.raises(RuntimeError, match="boom"):
        with cam.CAM(model) as cam_of:
            assert active_hook_count(model) == 1
            assert not model.training  # maps are computed in eval mode
            cam_of(torch.randn(1, 3, 5, 5))
            raise RuntimeError("boom")
    assert active_hook_count(model) == 0
    assert {name: m.training for name, m in model.named_modules()} == before


def test_dropout_does_not_change_maps_in_train_mode_model():
    model = TinyGap().train()
    x = torch.randn(2, 3, 5, 5)
    with cam.CAM(model) as cam_of:
        a, b = cam_of(x, "all"), cam_of(x, "all")
    torch.testing.assert_close(a.maps, b.maps)
    assert model.training


@pytest.mark.parametrize(
    "name, match",
    [
        ("vgg11", r"pools to 7x7 \(not 1x1\)"),
        ("mobilenet_v3_small", "2 linear layers after its global pooling"),
        ("densenet121", "no pooling module"),
        ("squeezenet1_0", "0 linear layers"),
    ],
)
def test_refuses_models_without_gap_linear_head(name, match):
    model = getattr(torchvision.models, name)(weights=None, num_classes=10)
    with pytest.raises(ValueError, match=match) as info:
        cam.CAM(model)
    assert "Grad-CAM" in str(info.value)  # says what to use instead


def test_refuses_head_that_breaks_identity_at_call_time():
    model = torchvision.models.convnext_tiny(weights=None, num_classes=10)  # LayerNorm between GAP and fc
    with cam.CAM(model) as cam_of:
        with pytest.raises(ValueError, match="does not reproduce the model's logits"):
            cam_of(torch.randn(1, 3, 64, 64))
    assert active_hook_count(model) == 0


def test_head_registered_before_the_convolutions():
    """Registration order is not forward order: a lone linear layer is the head wherever it sits."""

    class FcFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 3)
            self.conv = nn.Conv2d(3, 6, 3)
            self.gap = nn.AdaptiveAvgPool2d((1, 1))

        def forward(self, x):
            return self.fc(self.gap(self.conv(x)).flatten(1))

    model = FcFirst()
    with cam.CAM(model) as cam_of:
        r = cam_of(torch.randn(2, 3, 8, 8), "all")
    torch.testing.assert_close(r.maps.mean((-2, -1)) + model.fc.bias, r.logits, rtol=1e-5, atol=1e-5)


def test_refuses_global_max_pooling():
    model = TinyGap()
    model.pool = nn.AdaptiveMaxPool2d(1)
    with pytest.raises(ValueError, match="global MAX pooling"):
        cam.CAM(model)


@pytest.mark.parametrize(
    "x, class_idx, error, match",
    [
        (torch.randn(3, 6, 6), None, ValueError, "add the batch dimension"),
        (torch.randn(1, 1, 6, 6), None, ValueError, "expects 3 input channels, got 1"),
        (torch.randn(1, 4, 6, 6), None, ValueError, "grayscale or RGBA"),
        (torch.zeros(1, 3, 6, 6, dtype=torch.uint8), None, TypeError, "float tensor"),
        ([[1.0]], None, TypeError, "preprocessed"),
        (torch.full((1, 3, 6, 6), float("nan")), None, ValueError, "NaN"),
        (torch.randn(1, 3, 6, 6), 4, IndexError, r"out of range: the model has 4 classes \(valid indices 0..3\)"),
        (torch.randn(1, 3, 6, 6), -1, IndexError, "out of range"),
        (torch.randn(1, 3, 6, 6), [0, 9], IndexError, "class index 9"),
        (torch.randn(1, 3, 6, 6), "top", ValueError, "'all'"),
        (torch.randn(1, 3, 6, 6), 1.5, TypeError, "integers"),
        (torch.randn(2, 3, 6, 6), torch.tensor([[0], [1], [2]]), ValueError, "does not fit a batch of 2"),
        (torch.randn(1, 3, 6, 6), torch.tensor([1, 2]), ValueError, "one class per image, but it has 2 entries"),
        (torch.randn(1, 3, 6, 6), [], ValueError, "empty list"),
        (torch.randn(0, 3, 6, 6), None, ValueError, "batch is empty"),
    ],
)
def test_cam_bad_input(x, class_idx, error, match):
    model = TinyGap()
    with cam.CAM(model) as cam_of:
        with pytest.raises(error, match=match):
            cam_of(x, class_idx=class_idx)
    assert active_hook_count(model) == 0


def test_class_idx_forms_agree():
    """Lists name classes for every image; tensors and arrays give one class per image."""
    import numpy as np

    model = TinyGap()
    x = torch.randn(3, 3, 6, 6)
    with cam.CAM(model) as cam_of:
        all_maps = cam_of(x, "all").maps
        labels = [2, 0, 3]
        per_image = all_maps[torch.arange(3), torch.tensor(labels)][:, None]
        for form in (torch.tensor(labels), np.array(labels), torch.tensor(labels)[:, None]):
            torch.testing.assert_close(cam_of(x, form).maps, per_image)
        for form in ([2, 0, 3], (2, 0, 3)):
            torch.testing.assert_close(cam_of(x, form).maps, all_maps[:, labels])
        torch.testing.assert_close(cam_of(x, np.int64(1)).maps, all_maps[:, [1]])
        torch.testing.assert_close(cam_of(x, torch.tensor(1)).maps, all_maps[:, [1]])


def test_reentering_an_active_cam_keeps_the_callers_mode():
    model = TinyGap().train()
    extractor = cam.CAM(model)
    with extractor:
        with pytest.raises(RuntimeError, match="already active"):
            with extractor:
                pass
    assert model.training and active_hook_count(model) == 0


def test_double_model_gets_float_input_cast():
    model = TinyGap().double()
    with cam.CAM(model) as cam_of:
        r = cam_of(torch.randn(2, 3, 5, 5), "all")
    assert r.maps.dtype == torch.float64
    torch.testing.assert_close(r.maps.mean((-2, -1)) + model.fc.bias, r.logits)


def test_functional_pooling_named_by_the_last_block_output():
    """mobilenet_v2 pools with F.adaptive_avg_pool2d: name its last block, where='output'."""
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=5)
    with pytest.raises(ValueError, match="pools with a function"):
        cam.CAM(model)
    _randomize_head(model, model.classifier[1], torch.Generator().manual_seed(3))
    with cam.CAM(model, feature_layer=model.features, fc=model.classifier[1], where="output") as cam_of:
        r = cam_of(torch.randn(2, 3, 64, 64), "all")
    torch.testing.assert_close(r.maps.mean((-2, -1)) + model.classifier[1].bias, r.logits, rtol=1e-4, atol=1e-4)
    # naming a layer whose output is not what the head pools is caught, not silently wrong
    with cam.CAM(model, feature_layer=model.features[-2], fc=model.classifier[1], where="output") as cam_of:
        with pytest.raises(ValueError, match="channels but the linear layer takes"):
            cam_of(torch.randn(1, 3, 64, 64))


def test_fixed_size_average_pool_head():
    """The old way to write GAP, nn.AvgPool2d(kernel = map size), is a GAP head too."""
    model = TinyGap()
    model.pool = nn.AvgPool2d(6)
    with cam.CAM(model) as cam_of:
        r = cam_of(torch.randn(2, 3, 6, 6), "all")
    torch.testing.assert_close(r.maps.mean((-2, -1)) + model.fc.bias, r.logits, rtol=1e-5, atol=1e-5)


def test_cam_outside_with_block_is_an_error():
    with pytest.raises(RuntimeError, match="context manager"):
        cam.CAM(TinyGap())(torch.randn(1, 3, 4, 4))
    with pytest.raises(TypeError, match="nn.Module"):
        cam.CAM(lambda x: x)
    with pytest.raises(ValueError, match="pass both"):
        cam.CAM(TinyGap(), feature_layer=nn.Identity())


def test_explicit_head_for_functional_pooling():
    """A model that pools with torch.mean: name the layers yourself, the identity is checked."""

    class MeanPool(nn.Module):
        def forward(self, x):
            return x.mean(dim=(-2, -1))

    model = TinyGap()
    model.pool = MeanPool()
    model.forward = lambda x: model.fc(model.pool(torch.relu(model.conv(x))))
    with cam.CAM(model, feature_layer=model.pool, fc=model.fc) as cam_of:
        r = cam_of(torch.randn(2, 3, 5, 5), "all")
    torch.testing.assert_close(r.maps.mean((-2, -1)) + model.fc.bias, r.logits, rtol=1e-5, atol=1e-5)
