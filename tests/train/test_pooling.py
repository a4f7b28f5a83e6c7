import pytest
import torch

from train.pooling import fill_padding, masked_max, masked_mean, stride_pool, zero_padding


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


def _stride_pool_reference(x, mask, stride):
    """The window means by definition: a masked mean over each window of ``stride`` frames (``.sum``)."""
    b, t, d = x.shape
    n = -(-t // stride)
    out = torch.zeros(b, n, d)
    valid = torch.zeros(b, n, dtype=torch.bool)
    for i in range(n):
        w, m = x[:, i * stride:(i + 1) * stride], mask[:, i * stride:(i + 1) * stride]
        count = m.sum(1, keepdim=True)
        out[:, i] = (w * m[..., None]).sum(1) / count.clamp(min=1).to(x.dtype)
        valid[:, i] = count[:, 0] > 0
    return out, valid


@pytest.mark.parametrize("stride", [2, 3, 4, 5])
@pytest.mark.parametrize("t", [11, 12, 3, 1])
def test_stride_pool_gives_each_windows_masked_mean_with_and_without_autograd(stride, t):
    g = torch.Generator().manual_seed(stride * 100 + t)
    lengths = torch.tensor([t, max(1, t // 2), max(1, t - 3)])
    mask = torch.arange(t)[None, :] < lengths[:, None]
    x = torch.randn(3, t, 6, generator=g).masked_fill(~mask[..., None], float("nan"))   # padding ignored
    want, want_mask = _stride_pool_reference(x.nan_to_num(0.0), mask, stride)
    got, got_mask = stride_pool(x, mask, stride)                       # outside autograd: written in place
    assert torch.equal(got_mask, want_mask)
    torch.testing.assert_close(got, want)
    leaf = x.clone().requires_grad_(True)
    got_grad, _ = stride_pool(leaf, mask, stride)                      # the autograd path: same numbers
    assert torch.equal(got_grad.detach(), got)
    weights = torch.randn(got.shape, generator=g)
    (got_grad * weights).sum().backward()
    counts = torch.stack([mask[:, i * stride:(i + 1) * stride].sum(1) for i in range(got.shape[1])], 1)
    expect = (weights / counts.clamp(min=1)[..., None]).repeat_interleave(stride, 1)[:, :t] * mask[..., None]
    torch.testing.assert_close(leaf.grad, expect)                     # every valid frame: 1/count of its window


def test_stride_pool_at_stride_2_gives_the_window_sums_numbers_to_the_bit():
    g = torch.Generator().manual_seed(0)
    for t in (17, 18):
        x = torch.randn(4, t, 16, generator=g) * 10.0 ** torch.randint(-4, 4, (4, t, 1), generator=g)
        mask = torch.arange(t)[None, :] < torch.tensor([t, 9, 2, 1])[:, None]
        x = x * mask[..., None]
        full = t - t % 2
        count, sums = mask[:, :full].reshape(4, -1, 2).sum(2), x[:, :full].reshape(4, -1, 2, 16).sum(2)
        if full < t:   # the last window: one frame
            count = torch.cat([count, mask[:, full:].sum(1, keepdim=True)], 1)
            sums = torch.cat([sums, x[:, full:].sum(1, keepdim=True)], 1)
        assert torch.equal(stride_pool(x, mask, 2)[0], sums / count.clamp(min=1)[..., None].float())
    assert stride_pool(x, mask, 1)[0] is x
