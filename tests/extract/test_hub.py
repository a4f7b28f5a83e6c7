"""extract.hub: local paths, fail-fast hub ids offline, weights hashes, hidden-state helpers (no network)."""

from __future__ import annotations

import hashlib
import socket
import time

import pytest

from extract import hub, naming, runtime
from extract.hub import ModelNotAvailableError, load_pretrained
from extract.weights import weights_sha256
from ser_common.provenance import sha256_file

FAKE_ID = "ser-toolkit-test-nonexistent/fake-bert-model"


class _Loader:
    """A stand-in for AutoModel & co.: records calls; succeeds only for local dirs or when ``cached``."""

    def __init__(self, cached: bool = False):
        self.cached = cached
        self.calls: list[tuple[str, dict]] = []

    def from_pretrained(self, name, **kw):
        self.calls.append((name, kw))
        if kw.get("local_files_only") and not self.cached:
            raise OSError(f"{name} is not in the cache")
        if not kw.get("local_files_only") and "/" in name and not name.startswith("/"):
            raise AssertionError("tried the network")
        return ("loaded", name)


@pytest.fixture
def online_env(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_offline_env_fails_fast_with_clear_message(monkeypatch):
    from transformers import AutoConfig

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelNotAvailableError) as err:
        load_pretrained(AutoConfig, FAKE_ID, spec_prefix="bert")
    assert time.perf_counter() - t0 < 5.0
    msg = str(err.value)
    assert FAKE_ID in msg and "HF_HUB_OFFLINE" in msg and "hub" in msg
    assert "bert:/path/to/fake-bert-model" in msg


def test_unreachable_hub_fails_fast(online_env):
    online_env.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused at once
    loader = _Loader()
    t0 = time.perf_counter()
    with pytest.raises(ModelNotAvailableError, match="unreachable") as err:
        load_pretrained(loader, FAKE_ID, spec_prefix="hf", spec_suffix="@4")
    assert time.perf_counter() - t0 < 5.0
    assert "hf:/path/to/fake-bert-model@4" in str(err.value)
    assert [kw.get("local_files_only") for _, kw in loader.calls] == [True]  # the cache was tried, not the hub


def test_cached_hub_id_needs_no_network(online_env):
    online_env.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    loader = _Loader(cached=True)
    assert load_pretrained(loader, FAKE_ID, foo=1) == ("loaded", FAKE_ID)
    assert loader.calls == [(FAKE_ID, {"foo": 1, "trust_remote_code": False, "local_files_only": True})]


def test_hub_reachable_probe():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
            assert hub.hub_endpoint() == ("127.0.0.1", port)
            assert hub.hub_reachable(timeout=2.0)
            mp.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
            t0 = time.perf_counter()
            assert not hub.hub_reachable(timeout=2.0)
            assert time.perf_counter() - t0 < 3.0
    finally:
        srv.close()


def test_local_dir_is_used_directly(tmp_path, online_env):
    from transformers import AutoConfig, BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path)
    cfg = load_pretrained(AutoConfig, tmp_path)
    assert cfg.model_type == "bert" and cfg.hidden_size == 8
    loader = _Loader()
    load_pretrained(loader, str(tmp_path))
    assert loader.calls == [(str(tmp_path), {"trust_remote_code": False})]


@pytest.mark.parametrize("bad", ["/no/such/model", "./no-such-model", "a/b/c", "no-such-dir/"])
def test_missing_path_is_a_clear_file_error(bad):
    loader = _Loader()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(loader, bad)
    assert loader.calls == []


def test_path_or_id_and_basenames(tmp_path):
    assert not naming.looks_like_path("bert-base-uncased")
    assert not naming.looks_like_path("facebook/hubert-base-ls960")
    assert naming.looks_like_path("../shared/models/minilm-l6-v2") and naming.looks_like_path(str(tmp_path))
    assert naming.model_basename("/x/y/minilm-l6-v2/") == "minilm-l6-v2"
    assert naming.model_basename("facebook/hubert-base-ls960") == "facebook-hubert-base-ls960"
    assert naming.sanitize_name("a b:c") == "a-b-c"


# ---- weights hash -------------------------------------------------------------------------------------------
def _tiny_bert():
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=32))


def test_weights_sha256_single_file_and_random(tmp_path):
    model = _tiny_bert()
    assert weights_sha256(model) is None  # random: no folder
    assert weights_sha256(None) is None
    model.save_pretrained(tmp_path)
    expected = sha256_file(tmp_path / "model.safetensors")
    assert weights_sha256(tmp_path) == expected == weights_sha256(str(tmp_path))
    from transformers import AutoModel

    assert weights_sha256(AutoModel.from_pretrained(tmp_path)) == expected  # a loaded model: its name_or_path


def test_weights_sha256_shards_and_bin(tmp_path):
    sharded = tmp_path / "sharded"
    _tiny_bert().save_pretrained(sharded, max_shard_size="20KB")
    shards = sorted(sharded.glob("model-*.safetensors"))
    assert len(shards) > 1 and (sharded / "model.safetensors.index.json").is_file()
    expected = hashlib.sha256("".join(sha256_file(s) for s in shards).encode()).hexdigest()
    assert weights_sha256(sharded) == expected

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "pytorch_model.bin").write_bytes(b"not really a checkpoint")
    assert weights_sha256(legacy) == sha256_file(legacy / "pytorch_model.bin")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert weights_sha256(empty) is None
    assert weights_sha256(FAKE_ID) is None  # a hub id not in the cache


def test_hidden_states_selection_matches_full_output():
    import torch

    model = _tiny_bert().eval()
    ids = torch.tensor([[2, 7, 9, 11, 3]])
    with torch.inference_mode():
        full = model(input_ids=ids, output_hidden_states=True).hidden_states
        sel = runtime.hidden_states(model, [0, 1], input_ids=ids)
    assert set(sel) == {0, 1}
    for k in (0, 1):
        torch.testing.assert_close(sel[k], full[k])


def test_compute_dtype_rules():
    from extract.feature_set import check_compute_dtype

    assert check_compute_dtype("cpu", "bfloat16") == "float32"
    assert check_compute_dtype("cuda", "bfloat16") == "bfloat16"
    with pytest.raises(ValueError, match="compute_dtype"):
        check_compute_dtype("cpu", "int8")
