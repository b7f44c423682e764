"""camlib.pooling: max/avg pooling, its gradient and GAP against torch, by value."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from camlib import conv, pooling

SETTINGS = settings(max_examples=40, deadline=None)

shapes = dict(
    n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)), seed=st.integers(0, 2**31 - 1),
)


def _valid(h, w, k, padding):
    return all(p <= kk // 2 and kk <= s + 2 * p for kk, s, p in zip(k, (h, w), padding))


def test_pooling_by_hand():
    x = torch.tensor([[1.0, 3.0, 2.0, 0.0],
                      [4.0, 2.0, 1.0, 1.0],
                      [0.0, 1.0, 5.0, 6.0],
                      [2.0, 2.0, 7.0, 8.0]])[None, None]
    torch.testing.assert_close(pooling.max_pool2d(x, 2), torch.tensor([[[[4.0, 2.0], [2.0, 8.0]]]]))
    torch.testing.assert_close(pooling.avg_pool2d(x, 2), torch.tensor([[[[2.5, 1.0], [1.25, 6.5]]]]))
    # overlapping windows: size 3, stride 1 -> 2x2
    torch.testing.assert_close(pooling.max_pool2d(x, 3, 1), torch.tensor([[[[5.0, 6.0], [7.0, 8.0]]]]))
    _, idx = pooling.max_pool2d(x, 2, return_indices=True)
    assert idx.flatten().tolist() == [4, 2, 12, 15]


def _input_or_error(pool, n, c, h, w, k, stride, padding, seed):
    """A seeded input for a valid setting; for an invalid one, check ``pool`` refuses it and return None."""
    x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    if _valid(h, w, k, padding):
        return x
    with pytest.raises(ValueError, match="padding|larger than the input"):
        pool(x, k, stride, padding)
    return None


@SETTINGS
@given(**shapes)
def test_max_pool2d_equals_torch(n, c, h, w, k, stride, padding, seed):
    x = _input_or_error(pooling.max_pool2d, n, c, h, w, k, stride, padding, seed)
    if x is None:
        return
    values, indices = pooling.max_pool2d(x, k, stride, padding, return_indices=True)
    expected_values, expected_indices = F.max_pool2d(x, k, stride, padding, return_indices=True)
    torch.testing.assert_close(values, expected_values)
    assert torch.equal(indices, expected_indices)
    s = k if stride is None else stride
    assert values.shape[-2:] == tuple(pooling.output_size(size, kk, ss, p) for size, kk, ss, p in zip((h, w), k, s, padding))
    torch.testing.assert_close(pooling.max_pool2d(x[0], k, stride, padding), expected_values[0])


@SETTINGS
@given(**shapes)
def test_avg_pool2d_equals_torch(n, c, h, w, k, stride, padding, seed):
    x = _input_or_error(pooling.avg_pool2d, n, c, h, w, k, stride, padding, seed)
    if x is None:
        return
    torch.testing.assert_close(pooling.avg_pool2d(x, k, stride, padding), F.avg_pool2d(x, k, stride, padding))
    torch.testing.assert_close(pooling.pool2d(x, k, stride, padding, mode="avg"), F.avg_pool2d(x, k, stride, padding))


def test_max_pool_ties_pick_first_like_torch():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = x[0, 0, 1, 0] = 1.0
    _, ours = pooling.max_pool2d(x, 2, return_indices=True)
    _, theirs = F.max_pool2d(x, 2, return_indices=True)
    assert torch.equal(ours, theirs)


@SETTINGS
@given(**shapes)
def test_max_pool2d_backward_equals_autograd(n, c, h, w, k, stride, padding, seed):
    if not _valid(h, w, k, padding):
        return
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    out = F.max_pool2d(x, k, stride, padding)
    upstream = torch.randn(out.shape, generator=g, dtype=torch.float64)
    out.backward(upstream)
    _, indices = pooling.max_pool2d(x.detach(), k, stride, padding, return_indices=True)
    torch.testing.assert_close(pooling.max_pool2d_backward(upstream, indices, x.shape), x.grad)


def test_global_average_pool_is_the_whole_map_window():
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64)
    gap = pooling.global_average_pool(x)
    assert gap.shape == (2, 5)
    torch.testing.assert_close(gap, pooling.avg_pool2d(x, (7, 6))[..., 0, 0])
    torch.testing.assert_close(gap, F.adaptive_avg_pool2d(x, 1)[..., 0, 0])
    with pytest.raises(ValueError, match=r"\(N, K, h, w\)"):
        pooling.global_average_pool(torch.zeros(5, 7, 6))


def test_shift_sensitivity_max_pooling_is_more_stable():
    g = torch.Generator().manual_seed(0)
    image = F.avg_pool2d(torch.rand(1, 1, 80, 120, generator=g), 3, 1, 1)  # a smooth-ish random texture
    sobel = torch.stack([conv.kernel("sobel x"), conv.kernel("sobel y")])[:, None]

    def features(x):
        return torch.relu(conv.conv2d(x, torch.cat([sobel, -sobel]), padding=1))

    shifts = [0, 1, 2, 3]
    none = pooling.shift_sensitivity(features, image, shifts)
    pooled = pooling.shift_sensitivity(features, image, shifts, kernel_size=4, mode="max")
    assert none[0] == 0 and pooled[0] == 0
    assert (pooled[1:] < none[1:]).all()
    assert (none.diff() > 0).all()  # farther shifts change more
    # by value: the shift-1 number, computed directly
    ref = F.max_pool2d(features(image[..., 3:120]), 4)
    moved = F.max_pool2d(features(image[..., 2:119]), 4)
    torch.testing.assert_close(pooled[1], (moved - ref).norm() / ref.norm())


def test_pooling_errors():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="pool size 5 is larger than the input"):
        pooling.max_pool2d(x, 5)
    with pytest.raises(ValueError, match="pool size 5 is larger than the input"):
        pooling.avg_pool2d(x, 5)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        pooling.max_pool2d(x, 2, stride=0)
    with pytest.raises(ValueError, match="padding .* at most half"):
        pooling.avg_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="mode must be"):
        pooling.pool2d(x, 2, mode="median")
    with pytest.raises(ValueError, match=r"input must be \(N, C, H, W\)"):
        pooling.max_pool2d(torch.zeros(4, 4), 2)
    with pytest.raises(TypeError, match="kernel_size must be an int"):
        pooling.max_pool2d(x, 2.0)
    with pytest.raises(TypeError, match=r"kernel_size must be an int \(one axis\)"):
        pooling.output_size(4, (2, 2))
    with pytest.raises(ValueError, match="shifts"):
        pooling.shift_sensitivity(lambda t: t, x, [-1])
    with pytest.raises(ValueError, match="all zero"):
        pooling.shift_sensitivity(lambda t: t, x, [0, 1])
