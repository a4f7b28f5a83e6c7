import pytest
import torch

from train.pooling import fill_padding, masked_max, masked_mean, zero_padding


def _batch(fill: float):
    x = torch.randn(3, 5, 4)
    mask = torch.arange(5)[None, :] < torch.tensor([5, 2, 3])[:, None]
    return x.masked_fill(~mask[..., None], fill), mask


def test_an_already_zero_padded_batch_is_returned_as_it_is():
    x, mask = _batch(0.0)
    assert zero_padding(x, mask) is x


@pytest.mark.parametrize("garbage", [1e4, float("nan"), float("-inf")])
def test_a_batch_with_other_padding_is_filled_on_a_copy(garbage):
    x, mask = _batch(garbage)
    before = x.clone()
    out = zero_padding(x, mask)
    assert out is not x and (out[~mask] == 0).all() and torch.equal(out[mask], x[mask])
    torch.testing.assert_close(x, before, equal_nan=True)   # the input is never written
    assert (masked_max(x, mask) == torch.stack([x[i, mask[i]].amax(0) for i in range(3)])).all()
    torch.testing.assert_close(masked_mean(x, mask), torch.stack([x[i, mask[i]].mean(0) for i in range(3)]))


def test_with_autograd_padding_gets_no_gradient_even_when_it_already_holds_the_value():
    x, mask = _batch(0.0)
    x.requires_grad_(True)
    out = fill_padding(x, mask, 0.0)
    assert out is not x                     # the copy stops the gradient at padded positions
    out.sum().backward()
    assert (x.grad[~mask] == 0).all() and (x.grad[mask] == 1).all()
