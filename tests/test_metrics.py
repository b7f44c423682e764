"""Tests for camlib.metrics: IoU, localization error, sweeps, box rules, saliency, crop mapping."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from camlib import metrics


def iou_by_hand(a, b):
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


box = st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(1, 20), st.integers(1, 20)).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(box, box), min_size=1, max_size=8))
def test_paired_iou_matches_manual_formula(pairs):
    pred = torch.tensor([p for p, _ in pairs], dtype=torch.float32)
    true = torch.tensor([t for _, t in pairs], dtype=torch.float32)
    expected = torch.tensor([iou_by_hand(p, t) for p, t in pairs])
    torch.testing.assert_close(metrics.paired_iou(pred, true), expected)


def test_iou_hand_checked_values():
    pred = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 10.], [0., 0., 4., 4.]])
    true = torch.tensor([[5., 0., 15., 10.], [0., 0., 10., 10.], [4., 4., 8., 8.]])
    torch.testing.assert_close(metrics.paired_iou(pred, true), torch.tensor([1 / 3, 1.0, 0.0]))
    assert metrics.gt_known_accuracy(pred, true) == pytest.approx(1 / 3)
    assert metrics.gt_known_accuracy(pred, true, iou_threshold=0.3) == pytest.approx(2 / 3)


def test_bad_boxes():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        metrics.paired_iou(torch.zeros(3, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="xyxy"):
        metrics.paired_iou(torch.tensor([[5., 0., 1., 1.]]), torch.tensor([[0., 0., 1., 1.]]))
    with pytest.raises(ValueError, match="same shape"):
        metrics.paired_iou(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(TypeError):
        metrics.paired_iou([[0, 0, 1, 1]], torch.zeros(1, 4))


def test_localization_error_top1_and_top5():
    true = torch.tensor([[0., 0., 10., 10.]] * 3)
    good, bad = [0., 0., 10., 10.], [20., 20., 30., 30.]
    labels = torch.tensor([1, 2, 3])
    # image 0: right class, good box; 1: right class, bad box; 2: wrong class, good box
    pred_cls = torch.tensor([1, 2, 0])
    pred_box = torch.tensor([good, bad, good])
    assert metrics.localization_error(pred_cls, pred_box, labels, true) == pytest.approx(2 / 3)
    # top-2: image 1 gets a second guess with the right class and a good box; image 2 still misses
    pred_cls2 = torch.tensor([[1, 0], [2, 2], [0, 4]])
    pred_box2 = torch.tensor([[good, good], [bad, good], [good, good]])
    assert metrics.localization_error(pred_cls2, pred_box2, labels, true) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="shapes"):
        metrics.localization_error(pred_cls2, pred_box, labels, true)


def halo_maps(n=4):
    """A core (value 1) over the true box inside a wider halo (value 0.5)."""
    maps = torch.zeros(n, 20, 20)
    maps[:, 2:13, 2:13] = 0.5
    maps[:, 5:10, 5:10] = 1.0
    true = torch.tensor([[5., 5., 10., 10.]] * n)
    return maps, true


def test_sweep_picks_the_right_threshold():
    maps, true = halo_maps()
    thresholds = [0.3, 0.5, 0.7, 0.9]
    acc = metrics.threshold_sweep(maps, true, thresholds)
    # <= 0.5 keeps the halo (IoU 25/121), above keeps the core (IoU 1)
    torch.testing.assert_close(acc, torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert metrics.best_threshold(thresholds, acc) == 0.7
    # the halo's box is what the low thresholds give
    assert metrics.boxes_at(maps, 0.3, 20)[0].tolist() == [2, 2, 13, 13]
    # the same maps at lower resolution, up-scaled: still a sweep of shape (T,)
    assert metrics.threshold_sweep(maps[:, ::2, ::2].contiguous(), true, thresholds, size=20).shape == (4,)
    with pytest.raises(ValueError, match="rule"):
        metrics.threshold_sweep(maps, true, thresholds, rule="median")
    with pytest.raises(ValueError, match="same length"):
        metrics.best_threshold([0.1, 0.2], torch.tensor([1.0]))


def test_range_rule_and_the_papers_max_rule_differ_on_negative_maps():
    # background -1, a weak halo 0.1 over [2, 8), a core 1.0 over [4, 6)
    maps = torch.full((1, 10, 10), -1.0)
    maps[:, 2:8, 2:8] = 0.1
    maps[:, 4:6, 4:6] = 1.0
    # range: keep >= -1 + 0.2 * 2 = -0.6, the halo; max: keep >= 0.2 * 1.0, the core only
    assert metrics.boxes_at(maps, 0.2, 10).tolist() == [[2, 2, 8, 8]]
    assert metrics.boxes_at(maps, 0.2, 10, relative_to="max").tolist() == [[4, 4, 6, 6]]
    core = torch.tensor([[4., 4., 6., 6.]])
    torch.testing.assert_close(metrics.threshold_sweep(maps, core, [0.2], rule="range"), torch.tensor([0.0]))
    torch.testing.assert_close(metrics.threshold_sweep(maps, core, [0.2], rule="max"), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="not positive"):
        metrics.boxes_at(-maps.abs(), 0.2, 10, relative_to="max")


def test_top_fraction_rule_is_not_the_max_rule():
    maps, true = halo_maps(1)
    # the core is 25 of 400 pixels = 6.25 %: keeping the top 6.25 % gives the core exactly
    assert metrics.top_fraction_boxes(maps, 25 / 400, 20)[0].tolist() == [5, 5, 10, 10]
    # the top 20 % of pixels (80 of them) reaches into the halo; 20 % of the max keeps the whole halo
    top20 = metrics.top_fraction_boxes(maps, 0.2, 20)[0]
    assert top20.tolist() == [2, 2, 13, 13]
    acc_top = metrics.threshold_sweep(maps, true, [25 / 400, 0.5], rule="top")
    torch.testing.assert_close(acc_top, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="fraction"):
        metrics.top_fraction_boxes(maps, 0.0, 20)


def test_multi_threshold_boxes():
    cam = torch.zeros(30, 40)
    cam[2:12, 2:20] = 0.3      # a wide, weak blob: only above level 20/255
    cam[5:9, 5:9] = 1.0        # its strong core: above 100 and 110
    cam[20:26, 30:36] = 0.6    # a second separate blob: above 20 and 100 (0.6*255=153)
    boxes = metrics.multi_threshold_boxes(cam)
    # level 20: [2,2,20,12] and [30,20,36,26]; level 100: core [5,5,9,9] and [30,20,36,26] (a duplicate);
    # level 110: the same two again. Duplicates overlap completely and are pruned.
    assert boxes.tolist() == [[2, 2, 20, 12], [30, 20, 36, 26], [5, 5, 9, 9]]
    # sorted by area, largest first
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert torch.all(areas[:-1] >= areas[1:])
    with pytest.raises(ValueError, match="0-255"):
        metrics.multi_threshold_boxes(cam, thresholds=(20, 300))
    # scaled as the released heat maps: divided by the max, negatives clipped to 0 (not min-max)
    neg = torch.full((20, 20), -1.0)
    neg[2:10, 2:10] = 0.05     # 0.05 x 255 = 13: below level 20 (min-max would put it at 134, above 110)
    neg[4:8, 4:8] = 1.0
    assert metrics.multi_threshold_boxes(neg).tolist() == [[4, 4, 8, 8]]
    with pytest.raises(ValueError, match="maximum"):
        metrics.multi_threshold_boxes(torch.full((5, 5), -1.0))
    with pytest.raises(ValueError, match="one map"):
        metrics.multi_threshold_boxes(cam[None])


def test_baseline_boxes():
    assert metrics.centre_box(56, 56, 0.5).tolist() == [[14, 14, 42, 42]]
    assert metrics.whole_image_box(30, 40, n=2).tolist() == [[0, 0, 40, 30]] * 2
    with pytest.raises(ValueError, match="fraction"):
        metrics.centre_box(10, 10, 1.5)


def test_saliency_of_a_linear_model_is_its_weight():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 4, 5))
    model.train()
    x = torch.randn(6, 2, 3, 4)
    cls = torch.tensor([0, 1, 2, 3, 4, 0])
    sal = metrics.saliency_maps(model, x, cls)
    expected = model[1].weight.detach().abs().reshape(5, 2, 3, 4).amax(1)[cls]
    torch.testing.assert_close(sal, expected)
    assert model.training                                     # the caller's mode is restored
    assert model[1].weight.grad is None                        # parameter gradients untouched
    with pytest.raises(ValueError, match="class_idx"):
        metrics.saliency_maps(model, x, cls[:3])


def test_crop_mapping_known_answer_and_round_trip():
    # 512 x 512 -> resized to 256 x 256 (scale 0.5), crop starts at 16: crop pixel 0 is image pixel 32
    whole_crop = torch.tensor([0., 0., 224., 224.])
    torch.testing.assert_close(metrics.crop_box_to_image(whole_crop, (512, 512, 3)), torch.tensor([32., 32., 480., 480.]))
    # 400 x 600: scale 0.64, resized 256 x 384, left = 80, top = 16
    box = torch.tensor([10., 20., 200., 150.])
    image_box = metrics.crop_box_to_image(box, (400, 600))
    torch.testing.assert_close(image_box, (box + torch.tensor([80., 16., 80., 16.])) / 0.64)
    torch.testing.assert_close(metrics.image_box_to_crop(image_box, (400, 600)), box)
    # an image box beyond the crop is clipped to it
    assert metrics.image_box_to_crop(torch.tensor([0., 0., 600., 400.]), (400, 600)).tolist() == [0, 0, 224, 224]
