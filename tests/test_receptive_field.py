"""Tests for camlib.receptive_field: the recursion, the layer trace and the gradient measurement."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from camlib import receptive_field as rf


def test_known_answers():
    assert rf.receptive_field_sizes([3, 3], [1, 1]) == ([3, 5], [1, 1])
    # stride 2 doubles what the next 3x3 adds: 3 -> 3 + 2*2 = 7
    assert rf.receptive_field_sizes([3, 3], [2, 1]) == ([3, 7], [2, 2])
    # conv3, pool2 (stride 2), conv3, pool2: 3, 4, 8, 10
    assert rf.receptive_field_sizes([3, 2, 3, 2], [1, 2, 1, 2]) == ([3, 4, 8, 10], [1, 2, 2, 4])
    # dilation 2 makes a 3x3 kernel span 5 pixels
    assert rf.receptive_field_sizes([3], [1], [2]) == ([5], [1])
    assert rf.receptive_field_sizes([1, 1], [1, 1]) == ([1, 1], [1, 1])


def test_bad_input():
    with pytest.raises(ValueError, match="kernel sizes"):
        rf.receptive_field_sizes([3, 3], [1])
    with pytest.raises(ValueError, match="positive"):
        rf.receptive_field_sizes([3, 0], [1, 1])
    with pytest.raises(ValueError, match="square"):
        rf.trace_spatial_layers(nn.Conv2d(1, 1, (3, 5)), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="2-D"):
        rf.empirical_receptive_field(torch.zeros(3, 4, 4))
    conv = nn.Conv2d(1, 1, 3)
    with pytest.raises(ValueError, match="outside"):
        rf.input_gradient(conv, conv, torch.zeros(1, 1, 8, 8), position=(6, 0))
    with pytest.raises(ValueError, match="did not run"):
        rf.input_gradient(conv, nn.Conv2d(1, 1, 3), torch.zeros(1, 1, 8, 8))
    assert not conv._forward_hooks


def _chain(spec):
    layers = []
    for kind, k, s in spec:
        if kind == "conv":
            layers += [nn.Conv2d(2, 2, k, stride=s), nn.Tanh()]
        else:
            layers.append(nn.AvgPool2d(k, stride=s))
    return nn.Sequential(*layers)


@settings(max_examples=15, deadline=None)
@given(spec=st.lists(st.tuples(st.sampled_from(["conv", "pool"]), st.sampled_from([1, 2, 3, 5]),
                               st.sampled_from([1, 2])), min_size=1, max_size=4))
def test_analytic_size_equals_gradient_measurement(spec):
    torch.manual_seed(0)
    model = _chain(spec)
    sizes, _ = rf.receptive_field_sizes([k for _, k, _ in spec], [s for _, _, s in spec])
    x = torch.randn(1, 2, sizes[-1] + 40, sizes[-1] + 40)
    traced = rf.trace_spatial_layers(model, x)
    assert [(l.kernel_size, l.stride) for l in traced] == [(k, s) for _, k, s in spec]
    grad = rf.input_gradient(model, model, x)
    assert rf.empirical_receptive_field(grad) == (sizes[-1], sizes[-1])


def test_receptive_fields_of_named_modules():
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3), nn.ReLU())
    result = rf.receptive_fields(model, {"first": model[1], "pool": model[2], "last": model[4]},
                                 torch.zeros(1, 1, 16, 16))
    assert result == {"first": {"size": 3, "jump": 1}, "pool": {"size": 4, "jump": 2},
                      "last": {"size": 8, "jump": 2}}
    with pytest.raises(ValueError, match="did not run"):
        rf.receptive_fields(model, {"stray": nn.ReLU()}, torch.zeros(1, 1, 16, 16))


def test_efficientnet_analytic_equals_empirical(pretrained):
    model = pretrained[0]
    modules = {"stem": model._bn0, "block 0": model._blocks[0], "block 3": model._blocks[3],
               "block 5": model._blocks[5]}
    analytic = rf.receptive_fields(model, modules, torch.zeros(1, 3, 224, 224))
    assert [analytic[k]["size"] for k in modules] == [3, 7, 35, 83]
    assert [analytic[k]["jump"] for k in modules] == [2, 2, 8, 16]
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))  # room for 83 px around the centre
    for label, module in modules.items():
        size = analytic[label]["size"]
        assert rf.empirical_receptive_field(rf.input_gradient(model, module, x)) == (size, size), label
    assert not model.training


def test_gradient_is_cleaned_up_and_position_is_respected():
    conv = nn.Conv2d(1, 1, 3, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    grad = rf.input_gradient(conv, conv, torch.zeros(1, 1, 6, 6), position=(0, 0))
    expected = torch.zeros(6, 6)
    expected[:3, :3] = 1.0
    assert torch.equal(grad, expected)
    assert not conv._forward_hooks


def test_effective_receptive_field_known_answers():
    delta = torch.zeros(9, 9)
    delta[4, 4] = 1.0
    assert rf.effective_receptive_field(delta) == 1
    box = torch.zeros(9, 9)
    box[2:7, 2:7] = 1.0  # 5x5 uniform: a 3x3 square holds 9/25, the 5x5 holds all
    assert rf.effective_receptive_field(box, mass=0.3) == 3
    assert rf.effective_receptive_field(box, mass=0.9) == 5
    peaked = box.clone()
    peaked[4, 4] = 100.0  # 100 of 124 in the centre pixel
    assert rf.effective_receptive_field(peaked, mass=0.8) == 1
    with pytest.raises(ValueError, match="mass"):
        rf.effective_receptive_field(box, mass=0.0)
    with pytest.raises(ValueError, match="zero"):
        rf.effective_receptive_field(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="2-D"):
        rf.effective_receptive_field(torch.ones(1, 3, 3))
