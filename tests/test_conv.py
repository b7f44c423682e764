"""camlib.conv: the Riemann sum, the discrete sum, and conv2d against torch, by value."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from camlib import conv

SETTINGS = settings(max_examples=40, deadline=None)


# ----------------------------------------------------------------- the integral
def test_riemann_box_box_is_triangle():
    box = lambda x: ((x >= -0.5) & (x < 0.5)).to(torch.float64)  # noqa: E731
    tau = torch.linspace(-0.5, 0.5, 4001, dtype=torch.float64)[:-1]
    t = torch.linspace(-1.5, 1.5, 61, dtype=torch.float64)
    triangle = (1 - t.abs()).clamp(min=0)
    torch.testing.assert_close(conv.riemann_convolution(box, box, t, tau), triangle, atol=1e-3, rtol=0)


def test_riemann_gaussians_add_variances():
    def normal(s):
        return lambda x: torch.exp(-(x**2) / (2 * s**2)) / (s * math.sqrt(2 * math.pi))

    tau = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    t = torch.linspace(-4, 4, 41, dtype=torch.float64)
    got = conv.riemann_convolution(normal(1.0), normal(0.5), t, tau)
    torch.testing.assert_close(got, normal(math.sqrt(1.25))(t), atol=1e-8, rtol=1e-6)


def test_riemann_error_shrinks_with_step():
    box = lambda x: ((x >= 0) & (x < 1)).to(torch.float64)  # noqa: E731
    t = torch.tensor([0.3, 1.0, 1.7], dtype=torch.float64)
    exact = torch.tensor([0.3, 1.0, 0.3], dtype=torch.float64)
    errors = [
        (conv.riemann_convolution(box, box, t, torch.arange(n, dtype=torch.float64) / n) - exact).abs().max()
        for n in (10, 100, 1000)
    ]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 2e-3


def test_riemann_rejects_bad_grid():
    f = lambda x: x  # noqa: E731
    with pytest.raises(ValueError, match="uniformly spaced"):
        conv.riemann_convolution(f, f, torch.zeros(3), torch.tensor([0.0, 1.0, 3.0]))
    with pytest.raises(ValueError, match="at least 2 points"):
        conv.riemann_convolution(f, f, torch.zeros(3), torch.tensor([0.0]))


# ----------------------------------------------------------------- 1-D
def test_convolve1d_by_hand():
    got = conv.convolve1d(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 1.0, 0.5]))
    torch.testing.assert_close(got, torch.tensor([0.0, 1.0, 2.5, 4.0, 1.5]))


@SETTINGS
@given(st.integers(1, 30), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_convolve1d_equals_numpy(length, k, seed):
    rng = np.random.default_rng(seed)
    x, h = rng.normal(size=length), rng.normal(size=k)
    np.testing.assert_allclose(conv.convolve1d(x, h).numpy(), np.convolve(x, h), atol=1e-12)


@SETTINGS
@given(st.integers(1, 30), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_cross_correlate1d_equals_conv1d_and_flipped_convolution(length, k, seed):
    k = min(k, length)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(length, generator=g, dtype=torch.float64)
    p = torch.randn(k, generator=g, dtype=torch.float64)
    got = conv.cross_correlate1d(x, p)
    torch.testing.assert_close(got, F.conv1d(x[None, None], p[None, None])[0, 0])
    # convolution = cross-correlation with the flipped kernel ("valid" part of the full sum)
    torch.testing.assert_close(got, conv.convolve1d(x, p.flip(0))[k - 1 : length])


def test_matched_filter_finds_hidden_pattern():
    g = torch.Generator().manual_seed(3)
    pattern = torch.tensor([0.0, 1.0, 2.0, 1.0, 0.0, -1.0, -2.0, -1.0])
    signal = 0.5 * torch.randn(300, generator=g)
    signal[137 : 137 + 8] += pattern
    scores, position = conv.matched_filter(signal, pattern)
    assert position == 137
    assert scores.shape == (300 - 8 + 1,)


def test_1d_errors():
    with pytest.raises(ValueError, match="longer than the signal"):
        conv.cross_correlate1d(torch.zeros(3), torch.zeros(5))
    with pytest.raises(ValueError, match="constant"):
        conv.matched_filter(torch.randn(10), torch.ones(3))
    with pytest.raises(ValueError, match="1-D"):
        conv.convolve1d(torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(TypeError, match="torch.Tensor or numpy"):
        conv.convolve1d([1, 2], [1])


# ----------------------------------------------------------------- 2-D
def test_conv2d_by_hand():
    # d2l's example: a 3x3 input and a 2x2 kernel give four numbers you can check on paper
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    k = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).reshape(1, 1, 2, 2)
    torch.testing.assert_close(conv.conv2d(x, k), torch.tensor([[[[19.0, 25.0], [37.0, 43.0]]]]))


@SETTINGS
@given(
    n=st.integers(1, 2), groups=st.integers(1, 3), c_per=st.integers(1, 2), o_per=st.integers(1, 2),
    h=st.integers(1, 12), w=st.integers(1, 12), kh=st.integers(1, 4), kw=st.integers(1, 4),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)), bias=st.booleans(), seed=st.integers(0, 2**31 - 1),
)
def test_conv2d_equals_torch(n, groups, c_per, o_per, h, w, kh, kw, stride, padding, dilation, bias, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, groups * c_per, h, w, generator=g, dtype=torch.float64)
    weight = torch.randn(groups * o_per, c_per, kh, kw, generator=g, dtype=torch.float64)
    b = torch.randn(groups * o_per, generator=g, dtype=torch.float64) if bias else None
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    fits = all(d * (k - 1) + 1 <= s + 2 * p for d, k, s, p in zip(dilation, (kh, kw), (h, w), padding))
    if not fits:
        with pytest.raises(ValueError, match="larger than the padded input"):
            conv.conv2d(x, weight, b, **args)
        return
    expected = F.conv2d(x, weight, b, **args)
    got = conv.conv2d(x, weight, b, **args)
    torch.testing.assert_close(got, expected)
    for axis, size, k in ((0, h, kh), (1, w, kw)):
        assert expected.shape[2 + axis] == conv.output_size(size, k, stride[axis], padding[axis], dilation[axis])
    # unbatched input, as torch allows
    torch.testing.assert_close(conv.conv2d(x[0], weight, b, **args), expected[0])


@SETTINGS
@given(h=st.integers(3, 10), w=st.integers(3, 10), k=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_convolve2d_is_flipped_cross_correlation(h, w, k, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 1, h, w, generator=g, dtype=torch.float64)
    weight = torch.randn(1, 1, k, k, generator=g, dtype=torch.float64)
    got = conv.convolve2d(x, weight)
    # textbook definition, written out: out[y, x] = sum_ij w[i, j] in[y + k-1 - i, x + k-1 - j]
    expected = torch.zeros(h - k + 1, w - k + 1, dtype=torch.float64)
    for y in range(h - k + 1):
        for xx in range(w - k + 1):
            for i in range(k):
                for j in range(k):
                    expected[y, xx] += weight[0, 0, i, j] * x[0, 0, y + k - 1 - i, xx + k - 1 - j]
    torch.testing.assert_close(got[0, 0], expected)
    torch.testing.assert_close(got, F.conv2d(x, weight.flip(-1, -2)))


def test_conv2d_errors():
    x = torch.zeros(1, 3, 5, 5)
    with pytest.raises(ValueError, match="weight must be"):
        conv.conv2d(x, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="weight expects 2 input channels"):
        conv.conv2d(x, torch.zeros(1, 2, 3, 3))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        conv.conv2d(x, torch.zeros(1, 3, 3, 3), stride=0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        conv.conv2d(x, torch.zeros(1, 3, 3, 3), padding=-1)
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv.conv2d(x, torch.zeros(1, 3, 7, 7))
    with pytest.raises(ValueError, match=r"input must be \(N, C, H, W\)"):
        conv.conv2d(torch.zeros(5, 5), torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match="bias must have shape"):
        conv.conv2d(x, torch.zeros(2, 3, 3, 3), bias=torch.zeros(3))
    with pytest.raises(TypeError, match="stride must be an int"):
        conv.conv2d(x, torch.zeros(1, 3, 3, 3), stride=1.5)


def test_output_size_known_values():
    assert conv.output_size(224, 3, stride=2, padding=1) == 112  # EfficientNet's stem
    assert conv.output_size(5, 3) == 3
    assert conv.output_size(7, 3, dilation=2) == 3
    with pytest.raises(ValueError, match="stride must be >= 1"):
        conv.output_size(5, 3, stride=0)
    with pytest.raises(TypeError, match=r"kernel_size must be an int \(one axis\)"):
        conv.output_size(5, (3, 3))


# ----------------------------------------------------------------- masks and photos
def test_kernels_and_gaussian():
    assert set(conv.KERNELS) >= {"identity", "box blur", "gaussian", "sobel x", "sobel y", "sharpen"}
    for name in conv.KERNELS:
        assert conv.kernel(name).shape == (3, 3)
    g = conv.gaussian_kernel(5, 1.0, dtype=torch.float64)
    assert g.shape == (5, 5) and abs(float(g.sum()) - 1) < 1e-12
    torch.testing.assert_close(g, g.T)
    assert g[2, 2] == g.max()
    # the 3x3 binomial preset is close to a sigma ~ 0.85 Gaussian
    torch.testing.assert_close(conv.gaussian_kernel(3, 0.85), conv.kernel("gaussian"), atol=0.01, rtol=0)
    with pytest.raises(KeyError, match="available"):
        conv.kernel("nope")
    with pytest.raises(ValueError, match="odd"):
        conv.gaussian_kernel(4)
    with pytest.raises(ValueError, match="sigma"):
        conv.gaussian_kernel(3, 0.0)
    # any real sigma works, e.g. a numpy float32
    torch.testing.assert_close(conv.gaussian_kernel(5, np.float32(1.5)), conv.gaussian_kernel(5, 1.5))


def test_filter_image_equals_torch(photos):
    gray = conv.to_grayscale(photos["coffee"][::4, ::4])
    assert gray.dtype == torch.float32 and gray.ndim == 2 and 0 <= gray.min() and gray.max() <= 1
    for name in conv.KERNELS:
        k = conv.kernel(name)
        torch.testing.assert_close(conv.filter_image(gray, name), F.conv2d(gray[None, None], k[None, None], padding=1)[0, 0])
    rgb = torch.rand(3, 20, 30)
    k = conv.gaussian_kernel(5, 1.5)
    torch.testing.assert_close(conv.filter_image(rgb, k), F.conv2d(rgb[:, None], k[None, None], padding=2)[:, 0])
    # identity leaves the image unchanged; Sobel x is zero on a constant image's interior
    torch.testing.assert_close(conv.filter_image(gray, "identity"), gray)
    assert conv.filter_image(torch.ones(8, 8), "sobel x")[1:-1, 1:-1].abs().max() == 0


def test_to_grayscale_luma():
    image = np.zeros((2, 2, 3), np.uint8)
    image[0, 0] = (255, 0, 0)
    image[1, 1] = (255, 255, 255)
    gray = conv.to_grayscale(image)
    torch.testing.assert_close(gray, torch.tensor([[0.299, 0.0], [0.0, 1.0]]))


def test_filter_image_errors():
    with pytest.raises(ValueError, match="square"):
        conv.filter_image(torch.zeros(5, 5), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="square"):
        conv.filter_image(torch.zeros(5, 5), torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"image must be \(H, W\)"):
        conv.filter_image(torch.zeros(5), torch.zeros(3, 3))
