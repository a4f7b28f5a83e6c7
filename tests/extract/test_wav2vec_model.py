"""The plain-PyTorch wav2vec port against fairseq's own outputs (fixtures made by fairseq 0.12, see
tests/fixtures/wav2vec/make_fixture.py), strict and safe checkpoint loading, masked padding, checkpoints."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from extract import checkpoints
from extract.checkpoints import CheckpointError, load_checkpoint
from extract.wav2vec_model import Wav2VecConfig, Wav2VecModel, parse_layers

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wav2vec"
CONFIGS = ("large", "base5")


@pytest.fixture(scope="module", params=CONFIGS)
def case(request):
    """(name, model loaded from the fixture checkpoint, fairseq's arrays)."""
    name = request.param
    return name, Wav2VecModel.from_checkpoint(FIXTURES / f"{name}.pt"), np.load(FIXTURES / f"{name}.npz")


def test_matches_fairseq(case):
    name, model, ref = case
    with torch.no_grad():
        z, c = model(torch.from_numpy(ref["wav"]))
    assert z.shape == ref["z"].shape and c.shape == ref["c"].shape
    np.testing.assert_allclose(z.numpy(), ref["z"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(c.numpy(), ref["c"], atol=1e-5, rtol=0)


def test_geometry(case):
    name, model, ref = case
    assert model.hop_length == 160 and model.frame_rate_hz == 100.0
    assert model.receptive_field == 465  # 10 + 7*5 + 3*20 + 3*40 + 3*80
    n = ref["wav"].shape[1]
    assert model.num_frames(n) == ref["c"].shape[2] == (n - 465) // 160 + 1
    assert model.num_frames(464) == 0 and model.num_frames(465) == 1 and model.num_frames(625) == 2


def test_padded_batch_equals_single(case):
    name, model, ref = case
    wav = ref["wav"]
    waves = [wav[0], wav[1][:3001], wav[0][1000:1465], wav[1][:2000]]  # 465 samples: a single frame
    batch = model.encode_batch(waves)
    for w, got in zip(waves, batch):
        alone = model.encode_batch([w])[0]
        assert got.shape == alone.shape == (model.num_frames(len(w)), model.output_dim)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, alone, atol=1e-5, rtol=0)
    # the full-length row of the padded batch is fairseq's output
    np.testing.assert_allclose(batch[0], ref["c"][0].T, atol=1e-5, rtol=0)


def test_unmasked_padding_would_differ(case):
    """Why masking is needed: fairseq's GroupNorm over a zero-padded row changes its frames."""
    name, model, ref = case
    short = ref["wav"][1][:2000]
    padded = np.zeros(ref["wav"].shape[1], np.float32)
    padded[:2000] = short
    with torch.no_grad():
        _, c_pad = model(torch.from_numpy(padded)[None])
    alone = model.encode_batch([short])[0]
    assert np.abs(c_pad[0].T.numpy()[: len(alone)] - alone).max() > 1e-3


def test_too_short_input_is_refused(case):
    _, model, _ = case
    with pytest.raises(ValueError, match="receptive field"):
        model(torch.zeros(1, 464))


def _save(ckpt: dict, path: Path) -> Path:
    torch.save(ckpt, path)
    return path


def _trusted(name: str) -> dict:
    return load_checkpoint(FIXTURES / f"{name}.pt")


def test_fixture_layout():
    ckpt = _trusted("large")
    assert isinstance(ckpt["args"], argparse.Namespace)
    assert "feature_extractor.conv_layers.0.0.weight" in ckpt["model"]
    assert "feature_aggregator.conv_layers.11.1.bias" in ckpt["model"]
    assert "wav2vec_predictions.project_to_steps.weight" in ckpt["model"]
    assert "project_features.conv_layers.0.1.weight" in _trusted("base5")["model"]  # project_features='same'


def test_missing_key_is_refused(tmp_path):
    ckpt = _trusted("large")
    del ckpt["model"]["feature_aggregator.conv_layers.3.3.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys \[feature_aggregator\.conv_layers\.3\.3\.weight\]"):
        Wav2VecModel.from_checkpoint(_save(ckpt, tmp_path / "missing.pt"))


def test_extra_key_is_refused(tmp_path):
    ckpt = _trusted("large")
    ckpt["model"]["vector_quantizer.vars"] = torch.zeros(1, 4, 8)
    with pytest.raises(CheckpointError, match=r"unexpected keys \[vector_quantizer\.vars\]"):
        Wav2VecModel.from_checkpoint(_save(ckpt, tmp_path / "extra.pt"))


def test_args_mismatch_is_refused(tmp_path):
    ckpt = _trusted("large")
    ckpt["args"].conv_aggregator_layers = "[(16, 2, 1), (16, 3, 1)]"  # weights are for 12 layers
    with pytest.raises(CheckpointError, match="unexpected keys"):
        Wav2VecModel.from_checkpoint(_save(ckpt, tmp_path / "args.pt"))


def test_shape_mismatch_is_refused(tmp_path):
    ckpt = _trusted("large")
    ckpt["model"]["feature_extractor.conv_layers.0.0.weight"] = torch.zeros(16, 1, 9)
    with pytest.raises(CheckpointError, match="shapes differ"):
        Wav2VecModel.from_checkpoint(_save(ckpt, tmp_path / "shape.pt"))


_EXECUTED: list[str] = []


def _payload() -> None:
    _EXECUTED.append("ran")


class _Evil:
    def __reduce__(self):
        return (_payload, ())


def test_arbitrary_pickled_object_is_refused(tmp_path):
    ckpt = _trusted("large")
    ckpt["extra_state"]["hook"] = _Evil()
    path = _save(ckpt, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refusing to load"):
        Wav2VecModel.from_checkpoint(path)
    assert _EXECUTED == []


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError):
        Wav2VecModel.from_checkpoint(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        Wav2VecModel.from_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="not a fairseq checkpoint"):
        Wav2VecModel.from_checkpoint(_save({"weights": torch.zeros(2)}, tmp_path / "plain.pt"))


def test_parse_layers():
    assert parse_layers("[(512, 10, 5)] + [(512, 8, 4)] + [(512, 4, 2)] * 3") == \
        [(512, 10, 5), (512, 8, 4), (512, 4, 2), (512, 4, 2), (512, 4, 2)]
    with pytest.raises(ValueError):
        parse_layers("__import__('os').system('true')")
    with pytest.raises(ValueError):
        parse_layers("[(512, 10)]")


def test_missing_args_take_fairseq_architecture_defaults():
    cfg = Wav2VecConfig.from_args(argparse.Namespace(arch="wav2vec"))
    assert len(cfg.conv_feature_layers) == 5 and cfg.conv_aggregator_layers == [(512, 3, 1)] * 9
    assert not cfg.log_compression and not cfg.skip_connections_agg
    with pytest.raises(NotImplementedError, match="vq-wav2vec"):
        Wav2VecConfig.from_args(argparse.Namespace(vq_type="gumbel"))


# -- checkpoint resolution -------------------------------------------------------------------------------------

def test_resolve_local_path(tmp_path):
    assert checkpoints.resolve_checkpoint(str(FIXTURES / "large.pt")) == FIXTURES / "large.pt"
    with pytest.raises(FileNotFoundError, match="not found"):
        checkpoints.resolve_checkpoint(str(tmp_path / "nope.pt"))


def test_resolve_cached_url_needs_no_network(tmp_path, monkeypatch):
    target = tmp_path / "checkpoints" / "wav2vec_large.pt"
    target.parent.mkdir()
    target.write_bytes(b"x")
    monkeypatch.setattr(checkpoints.socket, "create_connection", _no_network)
    assert checkpoints.resolve_checkpoint(checkpoints.WAV2VEC_LARGE_URL, cache_dir=tmp_path) == target
    monkeypatch.setenv("SER_CACHE", str(tmp_path))
    assert checkpoints.resolve_checkpoint(None) == target


def _no_network(*a, **k):
    raise OSError("Network is unreachable")


def test_offline_download_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints.socket, "create_connection", _no_network)
    t0 = time.perf_counter()
    with pytest.raises(checkpoints.CheckpointError, match="pass its path"):
        checkpoints.resolve_checkpoint(checkpoints.WAV2VEC_LARGE_URL, cache_dir=tmp_path)
    assert time.perf_counter() - t0 < 10
    assert not any(tmp_path.rglob("*.pt")) and not any(tmp_path.rglob("*.part"))


def test_refused_connection_fails_fast(tmp_path):
    """A real connection attempt, to a closed port on the loopback interface (no traffic leaves the machine)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends
    t0 = time.perf_counter()
    with pytest.raises(checkpoints.CheckpointError, match="offline"):
        checkpoints.resolve_checkpoint(f"http://127.0.0.1:{port}/wav2vec_large.pt", cache_dir=tmp_path, timeout_s=1)
    assert time.perf_counter() - t0 < 10
