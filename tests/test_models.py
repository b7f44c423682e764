"""camlib.models: packaged weights, the preprocessing they expect, the class names."""

import numpy as np
import pytest
import torch

from camlib import models


def test_model_loads_offline_in_eval_mode(pretrained):
    model, preprocess, categories = pretrained
    assert not model.training
    assert len(categories) == 1000 and categories[967] == "espresso"
    assert model._fc.weight.shape == (1000, 1280)
    assert models.weights_path().is_file()


def test_preprocess_scales_to_minus_one_one_and_crops_the_centre():
    # a 300 x 600 image whose left and right quarters are black, middle white
    img = np.zeros((300, 600, 3), dtype=np.uint8)
    img[:, 150:450] = 255
    p = models.Preprocess()
    x = p(img)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    # resized to 256 x 512, the crop is columns 144..368 of it: the white band spans 128..384,
    # so the whole crop is white -> +1 everywhere (not ImageNet mean/std)
    torch.testing.assert_close(x, torch.ones_like(x), atol=1e-3, rtol=0)
    black = p(np.zeros((256, 256, 3), dtype=np.uint8))
    torch.testing.assert_close(black, -torch.ones_like(black))
    assert p.display(img).shape == (224, 224, 3) and p.display(img).dtype == np.uint8


def test_preprocess_pins_resize_256_and_centre_crop_224():
    """A 256 x 256 image: the crop is exactly its central 224 x 224, pixel for pixel.

    A 16-px black frame lies just outside the crop and a 2-px red ring just inside it,
    so any other resize or crop shows black or loses the red border.
    """
    img = np.full((256, 256, 3), 255, dtype=np.uint8)
    img[16:240, 16:240][:2] = img[16:240, 16:240][-2:] = [255, 0, 0]
    img[16:240, 16:240][:, :2] = img[16:240, 16:240][:, -2:] = [255, 0, 0]
    img[:16] = img[-16:] = img[:, :16] = img[:, -16:] = 0
    p = models.Preprocess()
    assert (p.display(img) == img[16:240, 16:240]).all()
    for other in (models.Preprocess(resize=240), models.Preprocess(resize=300)):
        assert not (other.display(img) == img[16:240, 16:240]).all()
    with pytest.raises(ValueError, match="crop <= resize"):
        models.Preprocess(resize=200)


def test_preprocess_accepts_grayscale_and_small_images():
    p = models.Preprocess()
    x = p(np.full((100, 50), 127, dtype=np.uint8))  # grayscale, shorter side < 224
    assert x.shape == (3, 224, 224)
    torch.testing.assert_close(x, torch.full_like(x, 127 / 127.5 - 1), atol=1e-3, rtol=0)
    assert p.batch([np.zeros((10, 10, 3), np.uint8)] * 2).shape == (2, 3, 224, 224)
