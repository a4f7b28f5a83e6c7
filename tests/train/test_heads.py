from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from train.config import TrainConfig
from train.inputs import load_inputs
from train.heads import HEADS, Head, build_head, head_class, head_config, head_names, register_head
from train.protocol import speaker_independent_folds
from train.recurrent import BiLSTM
from train.fitting import fit_jobs
from train.jobs import Job
from train.trainer import predict_proba

ACOUSTIC = ("mean", "meanmax", "attention", "mlp")


def test_registry_has_the_paper_heads():
    assert set(head_names()) >= {"mean", "meanmax", "attention", "mlp", "bimodal"}
    with pytest.raises(ValueError, match="unknown head 'nope'"):
        build_head("nope", 8, 4, TrainConfig())
    with pytest.raises(ValueError, match="in_dims"):
        build_head("bimodal", 8, 4, TrainConfig())
    with pytest.raises(ValueError, match="already registered"):
        register_head("mean")(type("X", (Head,), {}))


def test_a_new_head_registers_and_builds():
    @register_head("_test_last")
    class Last(Head):
        def __init__(self, in_dims, n_classes, cfg):
            super().__init__()
            self.out = nn.Linear(in_dims, n_classes)

        def forward(self, x, mask):
            return self.out(x[torch.arange(len(x)), mask.sum(1) - 1])

    try:
        h = build_head("_test_last", 8, 3, TrainConfig())
        assert h.name == "_test_last" and h(torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)).shape == (2, 3)
    finally:
        HEADS.pop("_test_last")


@pytest.mark.parametrize("head", [*ACOUSTIC, "bimodal", "bimodal-xu"])
def test_every_head_beats_chance_on_separable_toy_data(head, toy_store, toy_text):
    inputs = load_inputs(toy_store, toy_text)
    folds, _ = speaker_independent_folds(inputs)
    cfg = TrainConfig(epochs=12, lr=1e-2, dropout=0.1, mlp_hidden=32, lstm_hidden=16)
    model = fit_jobs(inputs, head, cfg, [Job(folds[0].train, seed=0)])[0]
    proba = predict_proba(model, inputs, folds[0].test)
    assert proba.shape == (len(folds[0].test), 4)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    acc = (proba.argmax(1) == inputs.y[folds[0].test]).mean()
    assert acc > 0.5, f"{head}: accuracy {acc:.2f} is not clearly above chance (0.25)"


def _garbage_batch(lengths, dims, seed, garbage):
    g = torch.Generator().manual_seed(seed)
    t_max = max(lengths) + 7
    x = torch.randn(len(lengths), t_max, dims, generator=g)
    mask = torch.arange(t_max)[None, :] < torch.tensor(lengths)[:, None]
    return x.masked_fill(~mask[..., None], garbage), mask


@pytest.mark.parametrize("garbage", [0.0, 1e4, float("nan")])
@pytest.mark.parametrize("head", [*ACOUSTIC, "bimodal", "bimodal-xu"])
def test_padding_never_changes_a_heads_output(head, garbage):
    torch.manual_seed(0)
    cfg = TrainConfig(dropout=0.3, mlp_hidden=16, lstm_hidden=8, audio_stride=2)
    bimodal = head_class(head).bimodal
    h = build_head(head, (8, 6) if bimodal else 8, 4, cfg).eval()
    lengths, tlengths = [5, 13, 9, 1], [3, 1, 7, 4]
    x, mask = _garbage_batch(lengths, 8, 1, garbage)
    t, tmask = _garbage_batch(tlengths, 6, 2, garbage)
    with torch.no_grad():
        batch = h(x, mask, t, tmask) if bimodal else h(x, mask)
        assert torch.isfinite(batch).all()
        for i, (n, m) in enumerate(zip(lengths, tlengths)):
            xi, mi = x[i:i + 1, :n], mask[i:i + 1, :n]
            ti, tmi = t[i:i + 1, :m], tmask[i:i + 1, :m]
            alone = h(xi, mi, ti, tmi) if bimodal else h(xi, mi)
            torch.testing.assert_close(batch[i:i + 1], alone, rtol=1e-5, atol=1e-5)


def test_dense_bilstm_equals_packed_and_torch_bidirectional():
    torch.manual_seed(0)
    ref = nn.LSTM(5, 4, batch_first=True, bidirectional=True)
    dense, packed = BiLSTM(5, 4, "dense"), BiLSTM(5, 4, "packed")
    for m in (dense, packed):
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(m.forward_lstm, f"{name}_l0").copy_(getattr(ref, f"{name}_l0"))
                getattr(m.backward_lstm, f"{name}_l0").copy_(getattr(ref, f"{name}_l0_reverse"))
    lengths = torch.tensor([6, 2, 4])
    x = torch.randn(3, 6, 5)
    mask = torch.arange(6)[None, :] < lengths[:, None]
    x_bad = x.masked_fill(~mask[..., None], 99.0)
    out, _ = ref(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    want, _ = pad_packed_sequence(out, batch_first=True, total_length=6)
    torch.testing.assert_close(dense(x_bad, mask), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(packed(x_bad, mask), want, rtol=1e-5, atol=1e-6)


def test_attention_weights_are_zero_on_padding_and_sum_to_one():
    h = build_head("attention", 8, 4, TrainConfig()).eval()
    x, mask = _garbage_batch([3, 6], 8, 0, 5.0)
    _, w = h.attend(x, mask)
    assert (w[~mask] == 0).all()
    torch.testing.assert_close(w.sum(1), torch.ones(2))


def test_bimodal_xu_is_the_published_configuration_whatever_the_config_says():
    cfg = TrainConfig(lstm_hidden=8, align="bilinear", audio_stride=2, input_proj=64)
    xu = build_head("bimodal-xu", (8, 6), 4, cfg)
    fast = build_head("bimodal", (8, 6), 4, cfg)
    assert head_config("bimodal-xu", cfg) == replace(cfg, align="additive", audio_stride=1, input_proj=0)
    assert head_config("bimodal", cfg) == cfg
    assert xu.align_kind == "additive" and xu.audio_stride == 1
    assert isinstance(xu.audio_proj, nn.Identity) and xu.audio_lstm.forward_lstm.input_size == 8
    assert fast.align_kind == "bilinear" and fast.audio_stride == 2
    assert fast.audio_lstm.forward_lstm.input_size == 64
    # additive scores: each token's attention is a softmax over the valid frames only
    x, mask = _garbage_batch([4, 9], 8, 3, 7.0)
    t, tmask = _garbage_batch([2, 5], 6, 4, 7.0)
    with torch.no_grad():
        ha = xu.audio_lstm(x, mask)
        ht = xu.text_lstm(t, tmask)
        w = xu.alignment(ht, ha, mask)
    assert (w.masked_select(~mask[:, None, :].expand_as(w)) == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, w.shape[1]))
