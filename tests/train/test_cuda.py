"""Training on a CUDA GPU (``-m cuda``; skipped without one): the pooled, frame-level and bimodal paths give the
CPU's models (to float tolerance), and the cuDNN Bi-LSTM equals the packed one. Run by ``benchmarks/gpu_check.sh``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train.config import TrainConfig
from train.inputs import load_inputs
from train.protocol import cross_validate, speaker_independent_folds
from train.recurrent import BiLSTM
from train.jobs import Job
from train.trainer import predict_proba, train_frame, train_pooled

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")]


@pytest.fixture(autouse=True)
def strict_fp32():
    """Full-precision matmuls/convolutions (no TF32), so GPU and CPU results are comparable."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize("head", ["mean", "meanmax"])
def test_train_pooled_on_cuda_equals_cpu(head, toy_store):
    inputs = load_inputs(toy_store)
    cfg = TrainConfig(epochs=6, lr=3e-3, dropout=0.0)
    folds, _ = speaker_independent_folds(inputs)
    jobs = [Job(f.train, seed=s, stream=f.index) for s in (0, 1) for f in folds]
    cpu = train_pooled(inputs, head, cfg, jobs, device="cpu")
    gpu = train_pooled(inputs, head, cfg, jobs, device="cuda")
    for a, b, f in zip(cpu, gpu, folds * 2):
        assert a.steps == b.steps
        np.testing.assert_allclose(predict_proba(b, inputs, f.test, device="cuda"),
                                   predict_proba(a, inputs, f.test), atol=1e-3)


@pytest.mark.parametrize("head", ["attention", "mlp"])
def test_frame_level_heads_on_cuda_equal_cpu(head, toy_store):
    inputs = load_inputs(toy_store)
    cfg = TrainConfig(epochs=3, lr=3e-3, dropout=0.0, mlp_hidden=16)
    f = speaker_independent_folds(inputs)[0][0]
    a = train_frame(inputs, head, cfg, Job(f.train, 0), device="cpu")
    b = train_frame(inputs, head, cfg, Job(f.train, 0), device="cuda")
    np.testing.assert_allclose(predict_proba(b, inputs, f.test, device="cuda"), predict_proba(a, inputs, f.test),
                               atol=5e-3)


def test_cudnn_bilstm_equals_packed_and_cpu():
    torch.manual_seed(0)
    dense, packed = BiLSTM(5, 4, "dense"), BiLSTM(5, 4, "packed")
    packed.load_state_dict(dense.state_dict())
    x = torch.randn(3, 7, 5)
    mask = torch.arange(7)[None, :] < torch.tensor([7, 4, 1])[:, None]
    x_bad = x.masked_fill(~mask[..., None], 1e3)  # padding must not leak into either direction
    ref = dense(x_bad, mask)
    dense_gpu, packed_gpu = dense.cuda(), packed.cuda()
    with torch.backends.cudnn.flags(enabled=True):
        got = dense_gpu(x_bad.cuda(), mask.cuda())
    torch.testing.assert_close(got.cpu(), ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(packed_gpu(x_bad.cuda(), mask.cuda()).cpu(), ref, rtol=1e-4, atol=1e-5)
    got.sum().backward()  # the cuDNN backward runs (training needs it)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in dense_gpu.parameters())


def test_bimodal_head_on_cuda_equals_cpu(toy_store, toy_text):
    inputs = load_inputs(toy_store, toy_text)
    cfg = TrainConfig(epochs=2, lr=3e-3, dropout=0.0, lstm_hidden=8)
    f = speaker_independent_folds(inputs)[0][0]
    a = train_frame(inputs, "bimodal", cfg, Job(f.train, 0), device="cpu")
    b = train_frame(inputs, "bimodal", cfg, Job(f.train, 0), device="cuda")
    np.testing.assert_allclose(predict_proba(b, inputs, f.test, device="cuda"), predict_proba(a, inputs, f.test),
                               atol=1e-2)


def test_cross_validate_on_cuda(toy_store):
    r = cross_validate(load_inputs(toy_store), "mean", TrainConfig(epochs=20, lr=1e-2), seeds=(0,), device="cuda")
    assert 0.5 < r.summary["ua_mean"] <= 1.0  # the toy classes are separable
