"""Tests for camlib.filters: the hand-made bank and matching learned filters to it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from camlib import filters


def test_bank_shapes_and_known_values():
    bank = filters.hand_made_filters()
    assert all(k.shape == (3, 3, 3) for k in bank.values())
    sobel = bank["sobel x (vertical edge)"]
    expected = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / math.sqrt(3)
    for channel in range(3):  # grey filter: the same kernel on R, G and B
        torch.testing.assert_close(sobel[channel], expected)
    torch.testing.assert_close(bank["sobel y (horizontal edge)"][0], expected[0].new_tensor(expected.T.tolist()))
    torch.testing.assert_close(bank["gaussian blur"].sum(), torch.tensor(math.sqrt(3)))
    # colour-opponent filters give zero on a grey (R = G = B) patch
    for name in ("red - green", "blue - yellow", "red/green centre-surround", "blue/yellow centre-surround"):
        torch.testing.assert_close(bank[name].sum(0), torch.zeros(3, 3), msg=name)
    assert {k.shape for k in filters.hand_made_filters(5).values()} == {(3, 5, 5)}
    with pytest.raises(ValueError, match="odd"):
        filters.hand_made_filters(4)


def test_gabor_kernel_known_values():
    g = filters.gabor_kernel(5, theta=0.0, wavelength=4.0, sigma=10.0)
    assert g[2, 2] == pytest.approx(1.0)
    # theta = 0: stripes run vertically, so the kernel only varies along x: cos(2 pi x / 4) ~ [1, 0, -1, 0, 1]
    torch.testing.assert_close(g[2], torch.tensor([-1.0, 0.0, 1.0, 0.0, -1.0]) * torch.exp(-torch.tensor([4.0, 1, 0, 1, 4]) / 200),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(filters.gabor_kernel(5, math.pi / 2, 4.0, 10.0), g.T, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="positive"):
        filters.gabor_kernel(3, 0.0, 3.0, sigma=0.0)


def test_cosine_similarity_matrix_matches_torch():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, 3, 3, generator=gen), torch.randn(4, 3, 3, 3, generator=gen)
    expected = F.cosine_similarity(a.flatten(1)[:, None], b.flatten(1)[None], dim=-1)
    torch.testing.assert_close(filters.cosine_similarity_matrix(a, b), expected)
    with pytest.raises(ValueError, match="same C"):
        filters.cosine_similarity_matrix(a, torch.zeros(2, 1, 3, 3))


def test_match_filters_finds_planted_filters():
    bank = filters.hand_made_filters()
    gen = torch.Generator().manual_seed(1)
    learned = torch.stack([
        -2.0 * bank["sobel y (horizontal edge)"],
        0.5 * bank["red - green"] + 0.01 * torch.randn(3, 3, 3, generator=gen),
        torch.zeros(3, 3, 3),  # a dead filter
    ])
    result = filters.match_filters(learned, bank)
    assert result[0]["match"] == "sobel y (horizontal edge)"
    assert result[0]["similarity"] == pytest.approx(-1.0, abs=1e-6)
    assert result[1]["match"] == "red - green" and result[1]["similarity"] > 0.95
    assert result[2]["dead"] and result[2]["match"] is None and math.isnan(result[2]["similarity"])


def test_pretrained_stem_matches_better_than_chance(pretrained):
    model = pretrained[0]
    bank = filters.hand_made_filters()
    result = filters.match_filters(model._conv_stem.weight, bank)
    alive = torch.tensor([abs(r["similarity"]) for r in result if not r["dead"]])
    chance = filters.random_filter_baseline((1000, 3, 3, 3), bank, seed=0)
    assert len(alive) == 28  # four of the 32 stem filters are zero after training
    assert alive.median() > chance.quantile(0.95)
    assert torch.equal(chance, filters.random_filter_baseline((1000, 3, 3, 3), bank, seed=0))
