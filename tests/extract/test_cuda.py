"""Extraction on a CUDA GPU (``-m cuda``; skipped without one): bf16 batches == single utterances, the pipeline's
recorded dtype, and ``torchrun`` with two processes sharing one GPU. Run by ``benchmarks/gpu_check.sh``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from extract.registry import build
from tests.conftest import make_tone
from tests.extract.conftest import write_corpus

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")]

CKPT = Path(__file__).resolve().parents[1] / "fixtures" / "wav2vec" / "large.pt"
BIN = Path(sys.executable).parent


def _close(got: np.ndarray, ref: np.ndarray, rel: float) -> None:
    """``got`` within ``rel`` × max|ref| of ``ref`` everywhere (bf16 keeps ~3 significant digits)."""
    assert got.shape == ref.shape and np.isfinite(got).all()
    np.testing.assert_allclose(got, ref, atol=rel * float(np.abs(ref).max()), rtol=0)


def _waves() -> list[np.ndarray]:
    return [make_tone(s, freq=f, seed=i) for i, (s, f) in enumerate([(0.7, 200.0), (0.23, 330.0), (1.9, 150.0),
                                                                     (0.4, 260.0)])]


def _batch_vs_single(fs, waves, rel: float) -> None:
    batch = fs.encode(waves)
    for w, got in zip(waves, batch):
        alone = fs.encode([w])[0]
        assert got.dtype == np.float32
        _close(got, alone, rel)  # padding never leaks into a shorter utterance's frames


def test_wav2vec_bf16_batch_equals_single_and_cpu():
    cpu = build(f"wav2vec:{CKPT}")
    ref = cpu.encode(_waves())
    fs = build(f"wav2vec:{CKPT}").to("cuda", "bfloat16")
    _batch_vs_single(fs, _waves(), rel=0.03)
    for got, want in zip(fs.encode(_waves()), ref):
        _close(got, want, rel=0.08)  # bf16 on the GPU ~ fp32 on the CPU


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory) -> dict[str, Path]:
    """A random wav2vec2-large-style model (layer norm: padded batches with a mask) and a tiny Whisper."""
    from transformers import AutoModel, WhisperConfig, WhisperModel

    from tests.extract.test_hf import _ssl_config

    out = {}
    torch.manual_seed(0)
    out["wav2vec2-large"] = tmp_path_factory.mktemp("w2v2l")
    AutoModel.from_config(_ssl_config("wav2vec2-large")).save_pretrained(out["wav2vec2-large"])
    torch.manual_seed(1)
    out["whisper"] = tmp_path_factory.mktemp("whisper")
    WhisperModel(WhisperConfig(d_model=16, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                               decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=64,
                               pad_token_id=1, bos_token_id=2, eos_token_id=3, decoder_start_token_id=2,
                               max_target_positions=16, suppress_tokens=None, begin_suppress_tokens=None,
                               num_mel_bins=80, max_source_positions=1500)).save_pretrained(out["whisper"])
    return out


@pytest.mark.parametrize("family", ["wav2vec2-large", "whisper"])
def test_hf_bf16_batch_equals_single_and_cpu(hf_models, family):
    spec = f"hf:{hf_models[family]}@2"
    ref = build(spec).encode(_waves())
    fs = build(spec).to("cuda", "bfloat16")
    _batch_vs_single(fs, _waves(), rel=0.03)
    for got, want in zip(fs.encode(_waves()), ref):
        _close(got, want, rel=0.08)


def test_pipeline_on_cuda_records_its_dtype_and_matches_cpu(tmp_path):
    from extract.config import ExtractConfig
    from extract.pipeline import extract_feature
    from ser_common.store import FeatureStore

    manifest = write_corpus(tmp_path, n=6)
    spec = f"wav2vec:{CKPT}"
    extract_feature(manifest, spec, tmp_path / "cpu", ExtractConfig(workers=0, progress=False, device="cpu"))
    extract_feature(manifest, spec, tmp_path / "gpu", ExtractConfig(workers=0, progress=False, device="auto"))
    with FeatureStore(tmp_path / "cpu" / "wav2vec.h5") as a, FeatureStore(tmp_path / "gpu" / "wav2vec.h5") as b:
        assert b.provenance["device_type"] == "cuda"
        assert b.provenance["compute_dtype"] == ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")
        assert list(a.utt_ids) == list(b.utt_ids)
        for i in range(len(a)):
            _close(b.frames(i).astype(np.float32), a.frames(i).astype(np.float32), rel=0.08)


def test_torchrun_two_processes_share_one_gpu(tmp_path):
    """Two ranks on GPU 0 (``--device cuda``), each writing its shard; merged == one process on the GPU."""
    from click.testing import CliRunner

    from extract.cli import main as cli
    from extract.config import ExtractConfig
    from extract.pipeline import extract_feature
    from ser_common.store import FeatureStore

    torchrun, ser_extract = BIN / "torchrun", BIN / "ser-extract"
    manifest = write_corpus(tmp_path, n=8)
    spec = f"wav2vec:{CKPT}"
    extract_feature(manifest, spec, tmp_path / "single", ExtractConfig(workers=0, progress=False, device="cuda"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", str(ser_extract), "--manifest",
                          str(manifest), "--feature", spec, "--out", str(tmp_path / "shards"), "--shard", "auto",
                          "--device", "cuda", "--workers", "0", "-q"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    res = CliRunner().invoke(cli, ["merge", str(tmp_path / "shards")])
    assert res.exit_code == 0, res.output
    with FeatureStore(tmp_path / "single" / "wav2vec.h5") as a, FeatureStore(tmp_path / "shards" / "wav2vec.h5") as b:
        assert list(a.utt_ids) == list(b.utt_ids) and b.provenance["device_type"] == "cuda"
        for i in range(len(a)):
            _close(b.frames(i).astype(np.float32), a.frames(i).astype(np.float32), rel=0.03)
