"""Tests for camlib.digits: digit data, the two small classifiers and the training loop."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from camlib import digits


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models train fastest on one thread (and much faster on a shared, busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sklearn_digits():
    return digits.load_digits("sklearn", test_fraction=0.25, seed=0)


def test_mnist_split_is_stratified_complete_and_scaled():
    x_train, y_train, x_test, y_test = digits.load_digits("mnist", test_fraction=0.2, seed=0)
    assert x_train.shape == (4000, 1, 28, 28) and x_test.shape == (1000, 1, 28, 28)
    assert torch.equal(torch.bincount(y_test), torch.full((10,), 100))
    assert torch.equal(torch.bincount(y_train), torch.full((10,), 400))
    assert x_train.dtype == torch.float32 and x_train.min() == 0.0 and x_train.max() == 1.0
    # shuffled: the labels are not sorted as they are in the raw data
    assert (y_train[1:] != y_train[:-1]).float().mean() > 0.5


def test_sklearn_split_and_seed(sklearn_digits):
    x_train, y_train, x_test, y_test = sklearn_digits
    assert x_train.shape[1:] == (1, 8, 8) and len(x_train) + len(x_test) == 1797
    assert x_train.max() == 1.0
    again = digits.load_digits("sklearn", test_fraction=0.25, seed=0)
    assert torch.equal(again[0], x_train) and torch.equal(again[3], y_test)
    other = digits.load_digits("sklearn", test_fraction=0.25, seed=1)
    assert not torch.equal(other[1], y_train)
    # no image is in both sets (sum of all pixels is preserved by the split)
    total = torch.as_tensor(__import__("sklearn.datasets").datasets.load_digits().images).sum() / 16
    torch.testing.assert_close((x_train.sum() + x_test.sum()).double(), total.double())


def test_load_digits_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown digit source"):
        digits.load_digits("emnist")
    with pytest.raises(ValueError, match="test_fraction"):
        digits.load_digits("sklearn", test_fraction=1.0)


def test_shift_images_known_answer():
    x = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    expected = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 2.0], [0.0, 4.0, 5.0]])
    assert torch.equal(digits.shift_images(x, 1, 1)[0, 0], expected)
    expected_up_left = torch.tensor([[9.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.equal(digits.shift_images(x, -2, -2)[0, 0], expected_up_left)


@settings(max_examples=30, deadline=None)
@given(dy=st.integers(-4, 4), dx=st.integers(-4, 4), seed=st.integers(0, 100))
def test_shift_images_equals_roll_of_a_zero_bordered_image(dy, dx, seed):
    inner = torch.rand(2, 3, 6, 7, generator=torch.Generator().manual_seed(seed))
    padded = nn.functional.pad(inner, (4, 4, 4, 4))  # a border wide enough that roll cannot wrap content
    torch.testing.assert_close(digits.shift_images(padded, dy, dx), torch.roll(padded, (dy, dx), dims=(2, 3)))


def test_shift_images_errors():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        digits.shift_images(torch.zeros(3, 3), 1, 1)
    with pytest.raises(ValueError, match="out of"):
        digits.shift_images(torch.zeros(1, 1, 3, 3), 3, 0)


def test_model_parameter_counts_follow_the_formulas():
    mlp = digits.small_mlp((28, 28), hidden=11)
    assert sum(p.numel() for p in mlp.parameters()) == (784 * 11 + 11) + (11 * 10 + 10)
    cnn = digits.small_cnn((28, 28), channels=(8, 16))
    assert sum(p.numel() for p in cnn.parameters()) == (8 * 9 + 8) + (16 * 8 * 9 + 16) + (16 * 7 * 7 * 10 + 10)
    assert cnn(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert digits.small_cnn((8, 8))(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    with pytest.raises(ValueError, match="divisible by 4"):
        digits.small_cnn((10, 10))


def test_models_are_seeded_without_touching_the_global_rng():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = digits.small_cnn(seed=5)
    assert torch.equal(torch.rand(1), expected_next)
    b = digits.small_cnn(seed=5)
    c = digits.small_cnn(seed=6)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a[0].weight, c[0].weight)


def test_accuracy_and_predict_known_answer():
    # A "model" whose logits are the first 10 pixels: the predicted class is the brightest of them.
    model = nn.Flatten()
    images = torch.zeros(4, 1, 1, 10)
    images[0, 0, 0, 3] = 1
    images[1, 0, 0, 7] = 1
    images[2, 0, 0, 0] = 1
    images[3, 0, 0, 9] = 1
    assert torch.equal(digits.predict(model, images), torch.tensor([3, 7, 0, 9]))
    assert digits.accuracy(model, images, torch.tensor([3, 7, 1, 1])) == 0.5
    with pytest.raises(ValueError, match="labels"):
        digits.accuracy(model, images, torch.tensor([3]))


def test_predict_restores_training_flag():
    model = digits.small_mlp((8, 8))
    model.train()
    digits.predict(model, torch.zeros(2, 1, 8, 8))
    assert model.training
    model.eval()
    digits.predict(model, torch.zeros(2, 1, 8, 8))
    assert not model.training


def test_train_classifier_learns(sklearn_digits):
    x_train, y_train, x_test, y_test = sklearn_digits
    model = digits.small_mlp((8, 8), hidden=32, seed=0)
    history = digits.train_classifier(model, x_train, y_train, epochs=3, lr=1e-2, seed=0,
                                      test_images=x_test, test_labels=y_test, progress=False)
    assert [len(v) for v in history.values()] == [3, 3, 3]
    assert history["loss"][-1] < history["loss"][0]
    assert history["test_accuracy"][-1] > 0.85  # chance is 0.1
    assert history["test_accuracy"][-1] == digits.accuracy(model, x_test, y_test)


def test_train_classifier_is_reproducible(sklearn_digits):
    x_train, y_train, _, _ = sklearn_digits
    runs = []
    for seed in (0, 0, 1):
        model = digits.small_mlp((8, 8), hidden=8, seed=0)
        runs.append(digits.train_classifier(model, x_train[:400], y_train[:400], epochs=1, seed=seed,
                                            progress=False))
    assert runs[0] == runs[1]
    assert runs[0]["loss"] != runs[2]["loss"]  # another batch order gives another run
    assert runs[0]["test_accuracy"] == []


def test_train_classifier_errors(sklearn_digits):
    x_train, y_train, x_test, y_test = sklearn_digits
    model = digits.small_mlp((8, 8))
    with pytest.raises(ValueError, match="labels"):
        digits.train_classifier(model, x_train, y_train[:5], progress=False)
    with pytest.raises(ValueError, match="positive"):
        digits.train_classifier(model, x_train, y_train, epochs=0, progress=False)
    with pytest.raises(ValueError, match="both"):
        digits.train_classifier(model, x_train, y_train, test_images=x_test, progress=False)
