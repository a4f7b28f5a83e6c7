import torch

from train.recurrent import reverse_index, reverse_valid


def test_reverse_valid_reverses_each_rows_valid_part_and_leaves_padding_in_place():
    lengths = torch.tensor([4, 1, 0, 3])
    mask = torch.arange(4)[None, :] < lengths[:, None]
    x = torch.randn(4, 4, 3, requires_grad=True)
    index = reverse_index(mask)
    out = reverse_valid(x, index)
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(out[b, :n], x[b, :n].flip(0))
        assert torch.equal(out[b, n:], x[b, n:])
    assert torch.equal(reverse_valid(out, index), x)      # its own inverse
    # the gradient is the reversed gradient, copied (a permutation: no sums)
    g = torch.randn(4, 4, 3)
    out.backward(g)
    assert torch.equal(x.grad, reverse_valid(g, index))
