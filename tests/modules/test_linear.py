"""modules.Linear: nn.Linear's parameters and numbers; a bfloat16 row on the CPU goes through torch.mv."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformers_zoo.modules import Linear
from transformers_zoo.modules.linear import linear


def test_one_bfloat16_row_is_a_matrix_vector_product_equal_to_f_linear_to_rounding(monkeypatch):
    torch.manual_seed(0)
    w, b = torch.randn(96, 64).bfloat16(), torch.randn(96).bfloat16()
    x = torch.randn(1, 1, 64).bfloat16()
    calls = []
    mv = torch.mv
    monkeypatch.setattr(torch, "mv", lambda *a: calls.append(1) or mv(*a))
    y = linear(x, w, b)
    assert calls and y.shape == (1, 1, 96) and y.dtype == torch.bfloat16
    exact = F.linear(x.double(), w.double(), b.double())
    # both round to bfloat16 once per sum (and once more for the bias): within a few of its steps of the exact sum
    assert (y.double() - exact).abs().max() <= 4 * 2 ** -8 * exact.abs().max()
    assert (F.linear(x, w, b).double() - exact).abs().max() <= 4 * 2 ** -8 * exact.abs().max()


@pytest.mark.parametrize("dtype, shape", [(torch.float32, (1, 64)), (torch.bfloat16, (3, 64)),
                                          (torch.bfloat16, (2, 5, 64))])
def test_everything_else_is_f_linear_bitwise(dtype, shape):
    torch.manual_seed(0)
    w, b, x = torch.randn(32, 64).to(dtype), torch.randn(32).to(dtype), torch.randn(shape).to(dtype)
    assert torch.equal(linear(x, w, b), F.linear(x, w, b))
    assert torch.equal(linear(x, w), F.linear(x, w))


def test_linear_is_an_nn_linear_with_its_state_dict_and_gradients():
    torch.manual_seed(0)
    ours, theirs = Linear(8, 4), nn.Linear(8, 4)
    theirs.load_state_dict(ours.state_dict())
    assert isinstance(ours, nn.Linear) and ours.state_dict().keys() == theirs.state_dict().keys()
    x = torch.randn(1, 8, requires_grad=True)
    ours(x).sum().backward()
    assert ours.weight.grad is not None and torch.allclose(ours(x), theirs(x))
