"""Tests for camlib.cost: parameter and multiply-add formulas checked against torch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from camlib import cost


@settings(max_examples=25, deadline=None)
@given(n_in=st.integers(1, 40), n_out=st.integers(1, 40), bias=st.booleans(), batch=st.integers(1, 3))
def test_linear_cost_matches_torch(n_in, n_out, bias, batch):
    layer = nn.Linear(n_in, n_out, bias=bias)
    expected = cost.linear_cost(n_in, n_out, bias=bias)
    assert expected["params"] == cost.count_parameters(layer)
    assert cost.count_flops(layer, torch.zeros(batch, n_in)) == 2 * expected["macs"] * batch


@settings(max_examples=25, deadline=None)
@given(groups=st.sampled_from([1, 2]), c_in=st.integers(1, 4), c_out=st.integers(1, 4),
       k=st.sampled_from([1, 3, 5]), size=st.integers(5, 12), stride=st.sampled_from([1, 2]),
       bias=st.booleans())
def test_conv2d_cost_matches_torch(groups, c_in, c_out, k, size, stride, bias):
    c_in, c_out = c_in * groups, c_out * groups
    layer = nn.Conv2d(c_in, c_out, k, stride=stride, groups=groups, bias=bias)
    x = torch.zeros(1, c_in, size, size)
    h, w = layer(x).shape[-2:]
    expected = cost.conv2d_cost(c_in, c_out, k, (h, w), groups=groups, bias=bias)
    assert expected["params"] == cost.count_parameters(layer)
    assert cost.count_flops(layer, x) == 2 * expected["macs"]


def test_known_numbers_for_a_28x28_image():
    # 784 pixels fully connected to 100 units vs 100 3x3 filters sliding over the image.
    assert cost.linear_cost(784, 100) == {"params": 78_500, "macs": 78_400}
    assert cost.conv2d_cost(1, 100, 3, (28, 28)) == {"params": 1_000, "macs": 900 * 784}


def test_count_parameters_skips_frozen_and_flops_restore_mode():
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    assert cost.count_parameters(model) == 4 + 8 + 2
    model.train()
    assert cost.count_flops(model, torch.zeros(1, 3)) == 2 * (12 + 8)
    assert model.training


def test_cost_errors():
    with pytest.raises(ValueError, match="positive"):
        cost.linear_cost(0, 3)
    with pytest.raises(ValueError, match="groups"):
        cost.conv2d_cost(3, 4, 3, (5, 5), groups=2)
    with pytest.raises(ValueError, match="positive"):
        cost.conv2d_cost(3, 4, 3, (5, 5), groups=0)
    with pytest.raises(ValueError, match="positive"):
        cost.conv2d_cost(3, 4, 0, (5, 5))
