"""extract.hub_fetch: pinned model folders from a fake hub on loopback ($HF_ENDPOINT), checked and loadable."""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from extract import hub_fetch
from extract.hub_fetch import MINILM_L6_V2, PINNED_MODELS, WHISPER_BASE, PinnedModel, fetch_model, is_model_folder
from ser_common.download import DownloadError, DownloadUnavailable
from tests.loopback_server import closed_port, serve

REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def tiny_bert_files(tmp_path_factory) -> dict[str, bytes]:
    """config.json + model.safetensors of a tiny random BertModel (real transformers files)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32)).save_pretrained(folder)
    return {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}


def _pinned(files: dict[str, bytes], repo: str = "test-org/tiny-bert", model_type: str = "bert") -> PinnedModel:
    return PinnedModel(key="tiny-bert", repo=repo, revision=REV, model_type=model_type, make_var="MINILM",
                       files=tuple((n, len(b), hashlib.sha256(b).hexdigest()) for n, b in files.items()))


def _hub_paths(model: PinnedModel, files: dict[str, bytes]) -> dict[str, bytes]:
    return {f"/{model.repo}/resolve/{model.revision}/{n}": b for n, b in files.items()}


@pytest.fixture
def online(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_fetch_pinned_folder_and_load_it(tmp_path, online, tiny_bert_files, capsys):
    from transformers import AutoModel

    model = _pinned(tiny_bert_files)
    dest = tmp_path / "models" / "tiny-bert"
    with serve(_hub_paths(model, tiny_bert_files)) as srv:
        online.setenv("HF_ENDPOINT", srv.base + "/")
        assert fetch_model(model, dest) == (dest, "downloaded")
        assert [p for p, _ in srv.requests] == [f"/test-org/tiny-bert/resolve/{REV}/{n}" for n in tiny_bert_files]
        n = len(srv.requests)
        assert fetch_model(model, dest) == (dest, "present") and len(srv.requests) == n
    assert not (tmp_path / "models" / "tiny-bert.partial").exists() and is_model_folder(dest)
    marker = json.loads((dest / hub_fetch.MARKER).read_text())
    assert marker["repo"] == "test-org/tiny-bert" and marker["revision"] == REV
    loaded = AutoModel.from_pretrained(dest)
    assert loaded.config.hidden_size == 16


def test_interrupted_download_resumes_in_partial_folder(tmp_path, online, tiny_bert_files):
    model = _pinned(tiny_bert_files)
    dest = tmp_path / "tiny-bert"
    with serve(_hub_paths(model, tiny_bert_files)) as srv:
        online.setenv("HF_ENDPOINT", srv.base)
        srv.drop_after, srv.drops = 500, 1          # config.json fails once, then resumes at byte 500
        fetch_model(model, dest)
        assert srv.requests[1][1] == "bytes=500-"
    assert (dest / "config.json").read_bytes() == tiny_bert_files["config.json"]


def test_checksum_mismatch_deletes_that_file(tmp_path, online, tiny_bert_files):
    model = _pinned(tiny_bert_files)
    bad = replace(model, files=(model.files[0], ("model.safetensors", model.files[1][1], "0" * 64)))
    dest = tmp_path / "tiny-bert"
    with serve(_hub_paths(model, tiny_bert_files)) as srv:
        online.setenv("HF_ENDPOINT", srv.base)
        with pytest.raises(DownloadError, match="model.safetensors.*sha256 mismatch.*was deleted"):
            fetch_model(bad, dest)
    partial = tmp_path / "tiny-bert.partial"
    assert not dest.exists() and sorted(p.name for p in partial.iterdir()) == ["config.json"]


def test_wrong_model_type_and_404(tmp_path, online, tiny_bert_files):
    model = _pinned(tiny_bert_files, model_type="whisper")
    with serve(_hub_paths(model, tiny_bert_files)) as srv:
        online.setenv("HF_ENDPOINT", srv.base)
        with pytest.raises(DownloadError, match="model_type 'bert', expected 'whisper'"):
            fetch_model(model, tmp_path / "a")
        missing = replace(_pinned(tiny_bert_files), repo="test-org/other")
        with pytest.raises(DownloadError, match="HTTP 404"):
            fetch_model(missing, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("model", [WHISPER_BASE, MINILM_L6_V2], ids=lambda m: m.key)
def test_offline_switch_fails_at_once_with_what_to_download(tmp_path, monkeypatch, model):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dest = tmp_path / model.key
    with pytest.raises(DownloadUnavailable) as err:
        fetch_model(model, dest)
    msg = str(err.value)
    for part in (model.repo, model.revision, "HF_HUB_OFFLINE", str(dest), f"{model.make_var}=/path/to/{model.key}",
                 *(name for name, _, _ in model.files)):
        assert part in msg, part
    assert not dest.exists() and not (tmp_path / f"{model.key}.partial").exists()


def test_unreachable_hub_fails_fast(tmp_path, online):
    online.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    t0 = time.perf_counter()
    with pytest.raises(DownloadUnavailable, match="unreachable") as err:
        fetch_model(WHISPER_BASE, tmp_path / "whisper-base")
    assert time.perf_counter() - t0 < 5
    assert "make demo WHISPER=/path/to/whisper-base" in str(err.value)


def test_existing_non_model_folder_is_not_overwritten(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x.txt").write_text("mine")
    with pytest.raises(DownloadError, match="not a model folder.*MINILM="):
        fetch_model(MINILM_L6_V2, tmp_path / "m")


def test_cli(tmp_path, online, tiny_bert_files):
    model = _pinned(tiny_bert_files)
    online.setitem(PINNED_MODELS, "minilm-l6-v2", model)  # the command's choices are fixed at import
    with serve(_hub_paths(model, tiny_bert_files)) as srv:
        online.setenv("HF_ENDPOINT", srv.base)
        res = CliRunner().invoke(hub_fetch.main, ["minilm-l6-v2", str(tmp_path / "tb")])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == f"test-org/tiny-bert: {tmp_path / 'tb'} (downloaded)"
    online.setenv("HF_HUB_OFFLINE", "1")
    res = CliRunner().invoke(hub_fetch.main, ["minilm-l6-v2", str(tmp_path / "tb2")])
    assert res.exit_code == 1 and res.output.startswith("Error: cannot download test-org/tiny-bert")


# ---- the real pins ----------------------------------------------------------------------------------------
def test_real_pins_are_well_formed():
    for m in (WHISPER_BASE, MINILM_L6_V2):
        assert re.fullmatch(r"[0-9a-f]{40}", m.revision)
        assert all(re.fullmatch(r"[0-9a-f]{64}", sha) and size > 0 for _, size, sha in m.files)
        assert {"config.json", "model.safetensors"} <= {n for n, _, _ in m.files}
    assert "preprocessor_config.json" in {n for n, _, _ in WHISPER_BASE.files}  # WhisperFeatureExtractor
    assert {"tokenizer.json", "tokenizer_config.json"} <= {n for n, _, _ in MINILM_L6_V2.files}
    assert dict((n, s) for n, s, _ in WHISPER_BASE.files)["model.safetensors"] == 290_403_936


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_minilm_small_file_pins_match_their_rebuilt_content():
    """The two small MiniLM JSON files, rebuilt byte for byte: their git blob sha1s are the hub's published ones
    (config.json 72b987fd…, tokenizer_config.json c79f2b6a…), so their sha256 pins are those of the real files."""
    config = ('{\n  "_name_or_path": "nreimers/MiniLM-L6-H384-uncased",\n  "architectures": [\n    "BertModel"\n  ],\n'
              '  "attention_probs_dropout_prob": 0.1,\n  "gradient_checkpointing": false,\n  "hidden_act": "gelu",\n'
              '  "hidden_dropout_prob": 0.1,\n  "hidden_size": 384,\n  "initializer_range": 0.02,\n'
              '  "intermediate_size": 1536,\n  "layer_norm_eps": 1e-12,\n  "max_position_embeddings": 512,\n'
              '  "model_type": "bert",\n  "num_attention_heads": 12,\n  "num_hidden_layers": 6,\n'
              '  "pad_token_id": 0,\n  "position_embedding_type": "absolute",\n  "transformers_version": "4.8.2",\n'
              '  "type_vocab_size": 2,\n  "use_cache": true,\n  "vocab_size": 30522\n}\n').encode()
    tok = json.dumps({"do_lower_case": True, "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                      "cls_token": "[CLS]", "mask_token": "[MASK]", "tokenize_chinese_chars": True,
                      "strip_accents": None, "name_or_path": "nreimers/MiniLM-L6-H384-uncased",
                      "do_basic_tokenize": True, "never_split": None, "tokenizer_class": "BertTokenizer",
                      "model_max_length": 512}).encode()
    assert _git_blob_sha1(config) == "72b987fd805cfa2b58c4c8c952b274a11bfd5a00"
    assert _git_blob_sha1(tok) == "c79f2b6a0cea6f4b564fed1938984bace9d30ff0"
    pins = {n: (size, sha) for n, size, sha in MINILM_L6_V2.files}
    assert pins["config.json"] == (len(config), hashlib.sha256(config).hexdigest())
    assert pins["tokenizer_config.json"] == (len(tok), hashlib.sha256(tok).hexdigest())


@pytest.mark.shared
def test_shared_folders_count_as_present(whisper_dir, minilm_dir):
    assert fetch_model(WHISPER_BASE, whisper_dir) == (Path(whisper_dir), "present")
    assert fetch_model(MINILM_L6_V2, minilm_dir) == (Path(minilm_dir), "present")
