"""The ``wav2vec`` feature set, built through the registry from the small fairseq-made fixture checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from extract import checkpoints, registry
from extract.feature_set import FeatureSet
from ser_common.provenance import sha256_file
from tests.conftest import make_tone

CKPT = Path(__file__).resolve().parents[1] / "fixtures" / "wav2vec" / "large.pt"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fs() -> FeatureSet:
    return registry.build(f"wav2vec:{CKPT}")


def test_attributes(fs):
    assert fs.name == "wav2vec" and fs.modality == "audio" and fs.spec == f"wav2vec:{CKPT}"
    assert fs.dims == 16  # the fixture's width (512 for the released model)
    assert fs.frame_rate_hz == 100.0
    assert fs.min_samples == 465


def test_batch_equals_single_on_different_lengths(fs):
    waves = [make_tone(s, freq=f, seed=i) for i, (s, f) in enumerate([(0.7, 200.0), (0.23, 330.0), (0.4, 150.0)])]
    waves.append(make_tone(0.5, seed=9)[:465])
    batch = fs.encode(waves)
    for w, got in zip(waves, batch):
        alone = fs.encode([w])[0]
        assert got.dtype == np.float32 and got.shape == alone.shape == (fs.n_frames(len(w)), fs.dims)
        np.testing.assert_allclose(got, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("samples", [465, 624, 625, 1000, 16000, 16159, 16160])
def test_frames_formula(fs, samples):
    expected = (samples - 465) // 160 + 1
    assert fs.n_frames(samples) == expected
    assert fs.encode([make_tone(samples / 16000)[:samples]])[0].shape == (expected, fs.dims)


def test_too_short_is_refused(fs):
    with pytest.raises(ValueError, match="465"):
        fs.encode([np.zeros(464, np.float32)])


def test_provenance(fs):
    prov = fs.provenance()
    for key in ("feature", "spec", "modality", "encoder", "encoder_class", "weights_sha256", "layer",
                "frame_rate_hz", "dims", "sample_rate", "output", "conv_feature_layers", "conv_aggregator_layers"):
        assert key in prov, key
    assert prov["feature"] == "wav2vec" and prov["spec"] == f"wav2vec:{CKPT}" and prov["encoder"] == str(CKPT)
    assert prov["encoder_class"] == "fairseq.Wav2VecModel (plain-PyTorch port)"
    assert prov["weights_sha256"] == sha256_file(CKPT)
    assert prov["layer"] is None and prov["output"] == "c"
    assert prov["frame_rate_hz"] == 100.0 and prov["dims"] == 16 and prov["sample_rate"] == 16000
    assert prov["conv_feature_layers"][0] == [16, 10, 5] and len(prov["conv_aggregator_layers"]) == 12
    json.dumps(prov)  # stores record it as JSON


def test_to_cpu(fs):
    with pytest.warns(UserWarning, match="float32"):
        assert fs.to("cpu", "bfloat16") is fs
    assert fs.compute_dtype == "float32"
    with pytest.raises(ValueError, match="compute_dtype"):
        fs.to("cpu", "int8")
    fs.to("cpu")
    assert fs.max_batch_samples == 16000 * 5


def test_default_spec_offline_fails_fast(tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise OSError("Network is unreachable")

    monkeypatch.setenv("SER_CACHE", str(tmp_path))
    monkeypatch.setattr(checkpoints.socket, "create_connection", no_network)
    with pytest.raises(checkpoints.CheckpointError, match="download the file"):
        registry.build("wav2vec")


def test_missing_checkpoint_path():
    with pytest.raises(FileNotFoundError, match="not found"):
        registry.build("wav2vec:/nonexistent/wav2vec_large.pt")


def test_import_is_cheap():
    code = "import sys, extract.wav2vec; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("problem", ["junk", "missing", "offline"])
def test_checkpoint_problems_are_one_line_cli_errors(tmp_path, monkeypatch, problem):
    """A checkpoint that cannot be read, found or downloaded stops ``ser-extract`` with one ``Error:`` line."""
    from click.testing import CliRunner

    from extract.cli import main
    from tests.extract.conftest import write_corpus

    manifest = write_corpus(tmp_path / "corpus", n=2)
    import torch

    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(2)}, junk)
    spec, expected = {
        "junk": (f"wav2vec:{junk}", f"Error: {junk} is not a fairseq checkpoint"),
        "missing": ("wav2vec:/nonexistent/wav2vec_large.pt", "Error: checkpoint /nonexistent/wav2vec_large.pt not found"),
        "offline": ("wav2vec", f"Error: cannot download {checkpoints.WAV2VEC_LARGE_URL}"),
    }[problem]
    monkeypatch.setenv("SER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(checkpoints.socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(
        OSError("Network is unreachable")))
    res = CliRunner().invoke(main, ["--manifest", str(manifest), "--feature", spec, "--out", str(tmp_path / "s"),
                                    "--workers", "0", "-q"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    assert "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), res.output
