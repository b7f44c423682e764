"""camlib.hooks: what is captured, and that hooks never outlive their block."""

import pytest
import torch
from torch import nn

from camlib.hooks import Capture, active_hook_count


def test_capture_input_and_output_values():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    with Capture(model[1], where="input") as before, Capture(model[1]) as after:
        model(x)
    torch.testing.assert_close(before.value, model[0](x).detach())
    torch.testing.assert_close(after.value, torch.relu(model[0](x)).detach())
    assert before.calls == after.calls == 1
    assert active_hook_count(model) == 0


def test_shared_module_fires_twice():
    """Why camlib hooks the GAP input: a module used twice (like _swish) records twice."""
    act = nn.ReLU()
    model = nn.Sequential(nn.Linear(2, 2), act, nn.Linear(2, 3), act)
    with Capture(act) as cap:
        model(torch.randn(1, 2))
    assert cap.calls == 2 and cap.value.shape == (1, 3)


def test_capture_removed_after_exception_and_bad_args():
    layer = nn.Linear(2, 2)
    with pytest.raises(ZeroDivisionError):
        with Capture(layer):
            1 / 0
    assert active_hook_count(layer) == 0
    with pytest.raises(ValueError, match="'input' or 'output'"):
        Capture(layer, where="grad")
    with pytest.raises(TypeError, match="nn.Module"):
        Capture("layer")
