import numpy as np
import pytest
import torch
from torch import nn

import train.trainer as trainer
from train.adam import FlatAdam, TorchAdam
from train.config import TrainConfig
from train.heads import HEADS, build_head
from train.inputs import load_inputs
from train.jobs import Job

from .test_layers import N_LAYERS, write_layer_stores

ADAM = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
HEAD_DIMS = {"bimodal": (12, 6), "bimodal-xu": (12, 6)}


def _twin_heads(name: str, layer_sum: int = 1) -> tuple[nn.Module, nn.Module]:
    cfg = TrainConfig(layer_sum=layer_sum)
    dims = HEAD_DIMS.get(name, 10) if layer_sum == 1 else 10 * layer_sum
    torch.manual_seed(0)
    a = build_head(name, dims, 4, cfg)
    torch.manual_seed(0)
    b = build_head(name, dims, 4, cfg)
    return a, b


@pytest.mark.parametrize("name", sorted(HEADS))
def test_flat_adam_takes_torch_adams_steps_to_the_bit(name):
    ours_head, ref_head = _twin_heads(name)
    ours = FlatAdam(ours_head.parameters(), **ADAM)
    ref = TorchAdam(list(ref_head.parameters()), **ADAM)
    g = torch.Generator().manual_seed(1)
    for step in range(60):
        for p, q in zip(ours_head.parameters(), ref_head.parameters()):
            grad = torch.randn(p.shape, generator=g) * 10.0 ** float(torch.randint(-6, 3, (), generator=g))
            if step % 7 == 0:
                grad.view(-1)[::3] = 0.0        # exact zeros, and a sign-less update
            p.grad, q.grad = grad.clone(), grad.clone()
        ours.step()
        ref.step()
        ours.zero_grad()
        assert all(p.grad is None for p in ours_head.parameters())
    for (n, p), q in zip(ours_head.named_parameters(), ref_head.parameters()):
        assert torch.equal(p, q), n


@pytest.mark.parametrize("name", ["attention", "bimodal"])
def test_parameters_are_aligned_views_of_one_buffer_until_unflattened(name):
    head, _ = _twin_heads(name)     # attention on 10 dims: tensors of 10, 1, 40 and 4 values
    before = {n: p.detach().clone() for n, p in head.named_parameters()}
    opt = FlatAdam(head.parameters(), **ADAM)
    for n, p in head.named_parameters():
        assert p.untyped_storage().data_ptr() == opt.flat.untyped_storage().data_ptr(), n
        assert p.data_ptr() % 64 == 0, n        # as its own allocation was: BLAS results can depend on it
        assert torch.equal(p, before[n]), n
    opt.unflatten()
    storages = {p.untyped_storage().data_ptr() for p in head.parameters()}
    assert len(storages) == len(before) and opt.flat.untyped_storage().data_ptr() not in storages
    assert all(torch.equal(p, before[n]) for n, p in head.named_parameters())


def test_a_parameter_without_gradient_hands_over_to_torch_adam_with_its_semantics():
    def net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))

    ours_net, ref_net = net(), net()
    ours = FlatAdam(ours_net.parameters(), **ADAM)
    ref = TorchAdam(list(ref_net.parameters()), **ADAM)
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(2))
    for step in range(12):
        for model, opt in ((ours_net, ours), (ref_net, ref)):
            opt.zero_grad()
            # steps 4-7 leave the last layer out of the loss: torch's Adam skips it (no step counted for it)
            out = model[1](model[0](x)) if 4 <= step < 8 else model(x)
            out.square().mean().backward()
            opt.step()
    for p, q in zip(ours_net.parameters(), ref_net.parameters()):
        assert torch.equal(p, q)


def test_flat_adam_refuses_what_it_cannot_hold():
    p = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="twice"):
        FlatAdam([p, p], **ADAM)
    with pytest.raises(ValueError, match="float32"):
        FlatAdam([nn.Parameter(torch.zeros(3, dtype=torch.float64))], **ADAM)
    with pytest.raises(ValueError, match="at least one"):
        FlatAdam([], **ADAM)


@pytest.fixture(scope="module")
def layer_inputs(tmp_path_factory):
    return load_inputs(write_layer_stores(tmp_path_factory.mktemp("adam-layers")) / "hf-toy-l0.h5", layer_sum=True)


@pytest.mark.parametrize("head,layer_sum", [("attention", 1), ("mlp", 1), ("bimodal", 1), ("attention", N_LAYERS),
                                            ("mlp", N_LAYERS)])
def test_training_with_flat_adam_gives_the_models_of_torch_adam(head, layer_sum, toy_store, toy_text, layer_inputs,
                                                                 monkeypatch):
    inputs = (layer_inputs if layer_sum > 1 else
              load_inputs(toy_store, toy_text) if head == "bimodal" else load_inputs(toy_store))
    rows = inputs.labelled[:48]
    cfg = TrainConfig(epochs=3, layer_sum=layer_sum, lstm_hidden=8, mlp_hidden=16)
    ours = trainer.train_frame(inputs, head, cfg, Job(rows, 0, 1))
    monkeypatch.setattr(trainer, "FlatAdam", TorchAdam)
    ref = trainer.train_frame(inputs, head, cfg, Job(rows, 0, 1))
    a, b = ours.head.state_dict(), ref.head.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    test = np.setdiff1d(inputs.labelled, rows)
    assert np.array_equal(trainer.predict_proba(ours, inputs, test), trainer.predict_proba(ref, inputs, test))
