"""Tests for camlib.benchmark: exact boxes and masks, disjoint splits, determinism."""

from __future__ import annotations

import pytest
import torch

from camlib import benchmark

TINY = dict(canvas=24, digit_size=(8, 14), n_train=12, n_val=6, n_test=6, fragment_size=5)


def test_paste_known_answer():
    digit = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 0.9]])
    canvas = torch.zeros(5, 6)
    canvas[0, 0] = 0.5
    out = benchmark.paste(canvas, digit, top=1, left=2)
    expected = torch.zeros(5, 6)
    expected[0, 0] = 0.5
    expected[1:3, 2:5] = digit
    assert torch.equal(out, expected)
    assert canvas[1, 3] == 0  # the input is not modified
    # max, not sum, where things meet
    assert benchmark.paste(out, torch.full((1, 1), 0.3), 2, 2)[2, 3] == 1.0
    assert benchmark.paste(out, torch.full((1, 1), 0.3), 2, 2)[2, 2] == 1.0
    assert benchmark.paste(out, torch.full((1, 1), 0.3), 0, 1)[0, 1] == pytest.approx(0.3)


def test_paste_out_of_bounds():
    with pytest.raises(ValueError, match="does not fit"):
        benchmark.paste(torch.zeros(5, 5), torch.ones(2, 2), 4, 0)


def test_mask_to_box_and_crop_to_ink_known_answers():
    mask = torch.zeros(6, 8, dtype=torch.bool)
    mask[2, 3] = True
    assert benchmark.mask_to_box(mask).tolist() == [3, 2, 4, 3]   # one pixel -> [x, y, x+1, y+1]
    mask[4, 6] = True
    assert benchmark.mask_to_box(mask).tolist() == [3, 2, 7, 5]
    with pytest.raises(ValueError, match="empty"):
        benchmark.mask_to_box(torch.zeros(3, 3, dtype=torch.bool))
    digit = torch.zeros(5, 5)
    digit[1, 2] = 0.9
    digit[3, 1] = 0.5
    digit[4, 4] = 0.1  # below INK: not part of the digit
    assert torch.equal(benchmark.crop_to_ink(digit), digit[1:4, 1:3])


def test_resize_and_rotate_shapes():
    bar = torch.ones(3, 7)
    assert benchmark.resize_digit(bar, 14).shape == (6, 14)
    assert torch.equal(benchmark.rotate_digit(bar, 0.0), bar)
    turned = benchmark.rotate_digit(bar, 90.0)
    assert turned.shape == (7, 3)
    torch.testing.assert_close(turned, torch.ones(7, 3), atol=1e-4, rtol=0)


def test_rotate_digit_turns_clockwise_on_screen():
    ell = torch.zeros(7, 5)
    ell[:, 0] = 1.0            # an "L": a bar down the left side ...
    ell[-1, :] = 1.0           # ... and a foot along the bottom
    turned = benchmark.rotate_digit(ell, 90.0)
    expected = torch.zeros(5, 7)
    expected[0, :] = 1.0       # clockwise by 90 degrees: the left bar lies along the top,
    expected[:, 0] = 1.0       # the foot runs down the left side
    torch.testing.assert_close(turned, expected, atol=1e-4, rtol=0)


def test_boxes_and_masks_match_the_pasted_digit_exactly():
    config = benchmark.BenchmarkConfig(fragments=0, noise=0.0, **TINY)
    data = benchmark.make_benchmark(config)
    for split in data.values():
        for i in range(len(split)):
            image = split.images[i, 0]
            assert torch.equal(split.masks[i], image >= benchmark.INK)      # no clutter: the ink is the digit
            assert torch.equal(split.boxes[i], benchmark.mask_to_box(image >= benchmark.INK))
            w = split.boxes[i, 2] - split.boxes[i, 0]
            h = split.boxes[i, 3] - split.boxes[i, 1]
            assert 6 <= max(w, h) <= 14 + 2  # scaled to 8..14 px (bilinear edges may drop a pixel or two)


def test_clutter_stays_outside_the_box():
    config = benchmark.BenchmarkConfig(fragments=4, noise=0.0, **TINY)
    data = benchmark.make_benchmark(config)
    for split in data.values():
        for i in range(len(split)):
            x0, y0, x1, y1 = split.boxes[i].long().tolist()
            inside = split.images[i, 0, y0:y1, x0:x1] >= benchmark.INK
            assert torch.equal(inside, split.masks[i, y0:y1, x0:x1])
            outside = split.masks[i].clone()
            outside[y0:y1, x0:x1] = False
            assert not outside.any()                                        # the mask lies inside its box
    # and clutter exists: some ink outside the boxes
    train = data["train"]
    outside = [(train.images[i, 0] >= benchmark.INK) & ~train.masks[i] for i in range(len(train))]
    assert sum(int(o.sum()) for o in outside) > 0


def test_deterministic_and_split_independent():
    a = benchmark.make_benchmark(benchmark.BenchmarkConfig(**TINY))
    b = benchmark.make_benchmark(benchmark.BenchmarkConfig(**TINY))
    for s in benchmark.SPLITS:
        assert torch.equal(a[s].images, b[s].images) and torch.equal(a[s].boxes, b[s].boxes)
    more_train = benchmark.make_benchmark(benchmark.BenchmarkConfig(**dict(TINY, n_train=20)))
    assert torch.equal(more_train["test"].images, a["test"].images)   # test images do not depend on n_train
    other_seed = benchmark.make_benchmark(benchmark.BenchmarkConfig(**dict(TINY, seed=1)))
    assert not torch.equal(other_seed["test"].images, a["test"].images)


def test_source_digits_never_shared_between_splits():
    pools = benchmark.split_sources()
    assert sum(len(p) for p in pools.values()) == 5000
    assert not set(pools["train"].tolist()) & set(pools["val"].tolist())
    assert not set(pools["train"].tolist()) & set(pools["test"].tolist())
    assert not set(pools["val"].tolist()) & set(pools["test"].tolist())
    data = benchmark.make_benchmark(benchmark.BenchmarkConfig(**TINY))
    for s in benchmark.SPLITS:
        assert set(data[s].source.tolist()) <= set(pools[s].tolist())
    # labels are the source digits' labels
    _, labels = benchmark._mnist()
    assert torch.equal(data["test"].labels, labels[data["test"].source])


def test_split_indexing():
    data = benchmark.make_benchmark(benchmark.BenchmarkConfig(**TINY))
    part = data["train"][:5]
    assert len(part) == 5 and part.images.shape == (5, 1, 24, 24) and part.masks.shape == (5, 24, 24)


@pytest.mark.parametrize("kwargs, match", [
    (dict(digit_size=(30, 20)), "digit_size"),
    (dict(canvas=16, digit_size=(8, 20)), "digit_size"),
    (dict(noise=-1.0), "noise"),
    (dict(rotation=200.0), "rotation"),
    (dict(source_fractions=(0.5, 0.2, 0.2)), "source_fractions"),
    (dict(fragment_size=0), "fragment"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        benchmark.BenchmarkConfig(**kwargs)


def test_make_benchmark_type_error():
    with pytest.raises(TypeError, match="BenchmarkConfig"):
        benchmark.make_benchmark({"canvas": 24})


def test_single_thread_restores():
    before = torch.get_num_threads()
    with benchmark.single_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
