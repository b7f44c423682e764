"""Tests for camlib.gapnet: heads, the CAM identity on a trained net, determinism, the weight cache."""

from __future__ import annotations

import pytest
import torch

from camlib import benchmark, cam, gapnet

DATA = benchmark.BenchmarkConfig(canvas=16, digit_size=(8, 14), n_train=64, n_val=16, n_test=16,
                                 fragments=1, fragment_size=4)


def tiny(**kwargs) -> gapnet.TrainConfig:
    base = dict(channels=(4, 8), pools=2, epochs=1, batch_size=32, data=DATA)
    return gapnet.TrainConfig(**dict(base, **kwargs))


@pytest.fixture(scope="module")
def tiny_data():
    return benchmark.make_benchmark(DATA)


@pytest.fixture(scope="module")
def trained(tiny_data):
    model, info = gapnet.train(tiny(), data=tiny_data, progress=False)
    return model, info


def test_shapes_and_parameter_counts():
    x = torch.rand(3, 1, 16, 16)
    for head, n_head in [("gap", 8 * 10 + 10), ("gmp", 8 * 10 + 10), ("fc", 8 * 4 * 4 * 10 + 10)]:
        net = gapnet.GapNet(tiny(head=head))
        assert net(x).shape == (3, 10)
        assert net.features(x).shape == (3, 8, 4, 4)
        assert gapnet.count_parameters(net.fc) == n_head
    # conv weights (no bias) + batch norm (2 per channel) + head
    assert gapnet.count_parameters(gapnet.GapNet(tiny())) == (1 * 4 * 9 + 2 * 4) + (4 * 8 * 9 + 2 * 8) + 90


def test_same_seed_same_initial_weights_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a, b = gapnet.GapNet(tiny()), gapnet.GapNet(tiny())
    assert torch.equal(torch.random.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    c = gapnet.GapNet(tiny(seed=1))
    assert not torch.equal(a.features[0].weight, c.features[0].weight)


def test_trained_gap_net_reproduces_the_cam_identity(trained, tiny_data):
    model, info = trained
    x = tiny_data["test"].images
    with cam.CAM(model) as cam_of:
        result = cam_of(x, class_idx="all")
    # mean of each class's map plus its bias == the logits
    torch.testing.assert_close(result.maps.mean((-2, -1)) + model.fc.bias.detach(), result.logits, rtol=1e-4, atol=1e-5)
    assert gapnet.cam_check(model, x) < 1e-4
    # class_maps gives the same maps as CAM for one class per image
    labels = tiny_data["test"].labels
    logits, maps = gapnet.class_maps(model, x, labels)
    torch.testing.assert_close(logits, result.logits)
    torch.testing.assert_close(maps, result.maps[torch.arange(len(x)), labels])
    assert len(info["loss"]) == 1 and info["train_seconds"] > 0 and 0 <= info["val_accuracy"] <= 1
    assert not model.training


def test_gmp_and_fc_heads(tiny_data):
    gmp = gapnet.GapNet(tiny(head="gmp"))
    with pytest.raises(ValueError, match="MAX pooling"):
        cam.CAM(gmp)
    logits, maps = gapnet.class_maps(gmp, tiny_data["val"].images)
    assert maps.shape == (16, 4, 4) and logits.shape == (16, 10)
    # for GMP the logits are the weighted maxima, not the maps' means
    feats = gmp.eval().features(tiny_data["val"].images).detach()
    torch.testing.assert_close(logits, feats.amax((-2, -1)) @ gmp.fc.weight.detach().T + gmp.fc.bias.detach())
    with pytest.raises(ValueError, match="no CAM"):
        gapnet.class_maps(gapnet.GapNet(tiny(head="fc")), tiny_data["val"].images)
    with pytest.raises(ValueError, match="class_idx"):
        gapnet.class_maps(gmp, tiny_data["val"].images, torch.zeros(3, dtype=torch.long))


def test_training_is_deterministic(tiny_data, trained):
    model, _ = trained
    again, _ = gapnet.train(tiny(), data=tiny_data, progress=False)
    for (name, p), q in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(p, q), name
    assert torch.get_num_threads() >= 1


def test_config_key_and_validation():
    assert tiny().key() == tiny().key()
    assert tiny().key() != tiny(epochs=2).key()
    assert tiny().key() != tiny(data=benchmark.BenchmarkConfig(**dict(DATA.to_dict(), n_train=65, digit_size=(8, 14),
                                                                      source_fractions=(0.7, 0.15, 0.15)))).key()
    assert tiny().map_size == 4
    with pytest.raises(ValueError, match="head"):
        tiny(head="avg")
    with pytest.raises(ValueError, match="divisible"):
        gapnet.TrainConfig(pools=3, data=benchmark.BenchmarkConfig(canvas=20, digit_size=(8, 14)))
    with pytest.raises(ValueError, match="pools"):
        tiny(pools=3)


def test_cache_round_trip_and_invalidation(tmp_path, monkeypatch, tiny_data):
    monkeypatch.setenv("CAMLIB_CACHE", str(tmp_path))
    config = tiny()
    assert gapnet.cache_path(config).parent == tmp_path
    model, info = gapnet.load_or_train(config, data=tiny_data, progress=False)
    assert not info["cached"] and (tmp_path / f"gapnet-{config.key()}.pt").exists()
    loaded, info2 = gapnet.load_or_train(config, data=tiny_data, progress=False)
    assert info2["cached"] and info2["loss"] == info["loss"]
    for p, q in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(p, q)
    # another configuration, another file
    other = tiny(seed=1)
    assert gapnet.cache_path(other) != gapnet.cache_path(config)

    # a file whose stored configuration differs: warned about, retrained, rewritten
    path = gapnet.cache_path(config)
    stored = torch.load(path, weights_only=True)
    stored["config"] = other.to_dict()
    torch.save(stored, path)
    with pytest.warns(UserWarning, match="configuration differs"):
        retrained, info3 = gapnet.load_or_train(config, data=tiny_data, progress=False)
    assert not info3["cached"]
    assert torch.load(path, weights_only=True)["config"] == config.to_dict()

    # a corrupt file: warned about, retrained
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="could not be read"):
        _, info4 = gapnet.load_or_train(config, data=tiny_data, progress=False)
    assert not info4["cached"]
    _, info5 = gapnet.load_or_train(config, data=tiny_data, progress=False)
    assert info5["cached"]


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("CAMLIB_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert gapnet.cache_dir() == tmp_path / ".cache" / "camlib"


def test_train_refuses_data_from_another_config(tiny_data):
    with pytest.raises(ValueError, match="not made from"):
        gapnet.train(tiny(data=benchmark.BenchmarkConfig(canvas=16, digit_size=(8, 14), n_train=32, n_val=16,
                                                         n_test=16, fragments=1, fragment_size=4)),
                     data=tiny_data, progress=False)


def test_parallel_training_gives_the_sequential_weights(tmp_path, tiny_data, trained):
    """Two missing configurations trained in two processes: same weights as one process, then cached."""
    configs = {"gap": tiny(), "gmp": tiny(head="gmp")}
    results = gapnet.load_or_train_many(configs, data=tiny_data, progress=False, directory=tmp_path, workers=2)
    assert list(results) == ["gap", "gmp"]
    model, info = results["gap"]
    assert info["cached"] is False and info["train_seconds"] > 0
    for (name, p), q in zip(trained[0].state_dict().items(), model.state_dict().values()):
        assert torch.equal(p, q), name
    gmp_alone, _ = gapnet.train(tiny(head="gmp"), data=tiny_data, progress=False)
    for p, q in zip(gmp_alone.state_dict().values(), results["gmp"][0].state_dict().values()):
        assert torch.equal(p, q)
    again = gapnet.load_or_train_many(configs, data=tiny_data, progress=False, directory=tmp_path)
    assert all(info["cached"] for _, info in again.values())
