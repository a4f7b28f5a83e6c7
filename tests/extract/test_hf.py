"""extract.hf: tiny random encoders of every family, saved and loaded by path; the real Whisper-base encoder."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from extract import hf  # noqa: E402
from extract.hub import ModelNotAvailableError  # noqa: E402
from extract.registry import build  # noqa: E402
from ser_common.provenance import sha256_file  # noqa: E402
from tests.conftest import make_tone  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


_SSL_COMMON = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                   conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def _ssl_config(family: str):
    from transformers import Data2VecAudioConfig, HubertConfig, Wav2Vec2Config, WavLMConfig

    if family == "wav2vec2-base":  # group norm: never padded
        return Wav2Vec2Config(**_SSL_COMMON, feat_extract_norm="group")
    if family == "wav2vec2-large":  # layer norm + stable layer norm: padded with attention_mask
        return Wav2Vec2Config(**_SSL_COMMON, feat_extract_norm="layer", do_stable_layer_norm=True)
    if family == "hubert":
        return HubertConfig(**_SSL_COMMON, feat_extract_norm="group")
    if family == "hubert-large":
        return HubertConfig(**_SSL_COMMON, feat_extract_norm="layer", do_stable_layer_norm=True)
    if family == "wavlm":
        return WavLMConfig(**_SSL_COMMON, feat_extract_norm="layer", do_stable_layer_norm=True, num_buckets=32,
                           max_bucket_distance=50)
    if family == "data2vec-audio":
        return Data2VecAudioConfig(**{**_SSL_COMMON, "num_conv_pos_embeddings": 2}, conv_pos_kernel_size=5)
    raise KeyError(family)


SSL_FAMILIES = ["wav2vec2-base", "wav2vec2-large", "hubert", "hubert-large", "wavlm", "data2vec-audio"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """family -> folder of a saved random 2-layer model (built once per module)."""
    from transformers import AutoModel, WhisperConfig, WhisperModel

    out = {}
    for i, fam in enumerate(SSL_FAMILIES):
        torch.manual_seed(i)
        folder = tmp_path_factory.mktemp(fam)
        AutoModel.from_config(_ssl_config(fam)).save_pretrained(folder)
        out[fam] = folder
    torch.manual_seed(9)
    wcfg = WhisperConfig(d_model=16, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                         decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=64,
                         pad_token_id=1, bos_token_id=2, eos_token_id=3, decoder_start_token_id=2,
                         max_target_positions=16, suppress_tokens=None, begin_suppress_tokens=None,
                         num_mel_bins=80, max_source_positions=1500)
    folder = tmp_path_factory.mktemp("tiny-whisper")
    WhisperModel(wcfg).save_pretrained(folder)
    out["whisper"] = folder
    return out


def _norm(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / np.sqrt(x.var() + 1e-7)


def _ssl_reference(fs, x: np.ndarray, layer: int) -> np.ndarray:
    """One utterance, unpadded, through the model by hand: hidden_states[layer][0]."""
    inp = _norm(x) if fs.feat_extract_norm == "layer" else x
    with torch.inference_mode():
        hs = fs.model(torch.from_numpy(inp)[None], output_hidden_states=True).hidden_states
    return hs[layer][0].numpy()


LENGTHS = [400, 719, 720, 8000, 12345]


# ---- spec parsing ---------------------------------------------------------------------------------------------
def test_parse_and_resolve_layers():
    assert hf.parse_hf_arg("/m/whisper@4") == ("/m/whisper", "4")
    assert hf.parse_hf_arg("facebook/hubert-base-ls960") == ("facebook/hubert-base-ls960", None)
    assert hf.parse_hf_arg("m@2, 4,6") == ("m", "2, 4,6")
    assert hf.parse_hf_arg("m@all") == ("m", "all")
    for bad in ("m@x", "m@", "@3", None, ""):
        with pytest.raises(ValueError):
            hf.parse_hf_arg(bad)
    assert hf.resolve_layers(None, 6) == [6]
    assert hf.resolve_layers("all", 2) == [0, 1, 2]
    assert hf.resolve_layers("4,2,4", 6) == [2, 4]
    assert hf.resolve_layers(-1, 6) == [6]
    with pytest.raises(ValueError, match="out of range"):
        hf.resolve_layers(7, 6)


# ---- wav2vec2-style families ----------------------------------------------------------------------------------
@pytest.mark.parametrize("family", SSL_FAMILIES)
def test_ssl_layer_frames_and_batching(saved, family):
    folder = saved[family]
    fs = build(f"hf:{folder}@1")
    assert fs.spec == f"hf:{folder}@1" and fs.name == f"hf-{folder.name}-l1"
    assert (fs.dims, fs.frame_rate_hz, fs.min_samples, fs.layers) == (16, 50.0, 400, [1])
    assert fs.pad_batches == (family in ("wav2vec2-large", "hubert-large", "wavlm"))
    waves = [make_tone(n / 16000, seed=n) for n in LENGTHS]
    batched = fs.encode(waves)
    for n, x, out in zip(LENGTHS, waves, batched):
        frames = (n - 400) // 320 + 1
        assert out.shape == (frames, 16) and out.dtype == np.float32 and fs.n_frames(n) == frames
        np.testing.assert_allclose(out, _ssl_reference(fs, x, 1), atol=2e-5)  # == one at a time, by hand
    p = fs.provenance()
    assert p["layer"] == 1 and p["layer_desc"] == "hidden_states[1]" and p["dims"] == 16
    assert p["weights_sha256"] == sha256_file(folder / "model.safetensors")
    assert p["encoder"] == str(folder) and p["model_type"] == fs.model.config.model_type


def test_group_norm_model_gets_no_padding(saved):
    fs = build(f"hf:{saved['wav2vec2-base']}")
    assert fs.layers == [2] and fs.name.endswith("-l2")  # default: the last layer
    shapes = []
    hook = fs.model.register_forward_pre_hook(lambda mod, args, kw: shapes.append(tuple(kw["input_values"].shape)),
                                              with_kwargs=True)
    try:
        fs.encode([make_tone(0.5), make_tone(0.3), make_tone(0.5, seed=1)])
    finally:
        hook.remove()
    assert sorted(shapes) == [(1, 4800), (2, 8000)]  # equal lengths together, the other alone


def test_layer_norm_model_is_padded_with_mask(saved):
    fs = build(f"hf:{saved['wav2vec2-large']}@2")
    seen = []
    hook = fs.model.register_forward_pre_hook(lambda mod, args, kw: seen.append(sorted(kw)), with_kwargs=True)
    try:
        fs.encode([make_tone(0.5), make_tone(0.3)])
    finally:
        hook.remove()
    assert len(seen) == 1 and "attention_mask" in seen[0]


def test_multi_layer_one_pass(saved):
    folder = saved["wav2vec2-large"]
    sweep = build(f"hf:{folder}@all")
    names = [f"hf-{folder.name}-l{k}" for k in (0, 1, 2)]
    assert sweep.output_names() == names and sweep.name == f"hf-{folder.name}-lall"
    waves = [make_tone(0.4), make_tone(0.7, seed=3)]
    calls = []
    hook = sweep.model.register_forward_hook(lambda *a: calls.append(1))
    outs = sweep.encode_outputs(waves)
    hook.remove()
    assert list(outs) == names and len(calls) == 1
    for k, name in enumerate(names):
        single = build(f"hf:{folder}@{k}").encode(waves)
        for a, b in zip(outs[name], single):
            np.testing.assert_allclose(a, b, atol=1e-6)
        prov = sweep.output_provenance(name)
        assert prov["feature"] == name and prov["layer"] == k and prov["layer_desc"] == f"hidden_states[{k}]"
    with pytest.raises(ValueError, match="encode_outputs"):
        sweep.encode(waves)
    two = build(f"hf:{folder}@0,2")
    assert two.output_names() == [names[0], names[2]] and set(two.encode_outputs(waves)) == {names[0], names[2]}


def test_bad_inputs(saved, tmp_path):
    fs = build(f"hf:{saved['wavlm']}@1")
    with pytest.raises(ValueError, match="at least 400"):
        fs.encode([make_tone(0.01)])
    with pytest.raises(ValueError, match="mono"):
        fs.encode([make_tone(0.5, channels=2)])
    assert fs.encode([]) == []
    with pytest.raises(ValueError, match="out of range"):
        build(f"hf:{saved['wavlm']}@3")
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not supported"):
        build(f"hf:{tmp_path}")
    with pytest.raises(FileNotFoundError):
        build("hf:/no/such/model@2")


def test_hub_id_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelNotAvailableError) as err:
        build("hf:ser-toolkit-test-nonexistent/tiny-hubert@3")
    assert time.perf_counter() - t0 < 5.0
    assert "hf:/path/to/tiny-hubert@3" in str(err.value)


# ---- Whisper ---------------------------------------------------------------------------------------------------
def _whisper_reference(fs, x: np.ndarray) -> tuple:
    feats = fs.fe([x], sampling_rate=16000, padding="max_length", return_tensors="pt").input_features
    with torch.inference_mode():
        return fs.model(feats, output_hidden_states=True).hidden_states


def test_tiny_whisper(saved):
    folder = saved["whisper"]
    fs = build(f"hf:{folder}@1")
    assert (fs.dims, fs.frame_rate_hz, fs.min_samples, fs.num_layers) == (16, 50.0, 160, 2)
    assert type(fs.model).__name__ == "WhisperEncoder"
    lengths = [160, 3201, 16000]
    waves = [make_tone(n / 16000, seed=n) for n in lengths]
    batched = fs.encode(waves)
    for n, x, out in zip(lengths, waves, batched):
        assert out.shape == (math.ceil(n / 320), 16)
        ref = _whisper_reference(fs, x)[1][0, :out.shape[0]].numpy()
        np.testing.assert_allclose(out, ref, atol=1e-5)
    assert fs.provenance()["weights_sha256"] == sha256_file(folder / "model.safetensors")


def test_whisper_checkpoint_without_encoder_weights_is_rejected(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(saved["whisper"] / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("encoder.layers.1.")},
              str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text((saved["whisper"] / "config.json").read_text())
    with pytest.raises(ValueError, match="encoder weights missing.*encoder.layers.1"):
        build(f"hf:{tmp_path}")


def test_tiny_whisper_longer_than_30s_is_windowed(saved):
    fs = build(f"hf:{saved['whisper']}@2")
    x = make_tone(31.0, seed=5)
    (out,) = fs.encode([x])
    assert out.shape == (math.ceil(x.size / 320), 16) == (1550, 16)
    first, rest = fs.encode([x[:480_000], x[480_000:]])
    np.testing.assert_allclose(out, np.concatenate([first, rest]), atol=1e-5)


@pytest.mark.shared
def test_real_whisper_base_encoder(whisper_dir, capfd):
    from safetensors import safe_open

    fs = build(f"hf:{whisper_dir}@all")
    assert "MISSING" not in capfd.readouterr().err  # the absent decoder is expected, not reported
    assert fs.output_names() == [f"hf-whisper-base-encoder-l{k}" for k in range(7)]
    with safe_open(str(whisper_dir / "model.safetensors"), "pt") as f:
        torch.testing.assert_close(fs.model.conv1.weight, f.get_tensor("encoder.conv1.weight").float())
    x = make_tone(3.0)
    outs = fs.encode_outputs([x])
    ref = _whisper_reference(fs, x)
    for k, name in enumerate(fs.output_names()):
        (out,) = outs[name]
        assert out.shape == (150, 512) and np.isfinite(out).all()
        np.testing.assert_allclose(out, ref[k][0, :150].numpy(), atol=1e-4)
    assert not np.allclose(outs[fs.output_names()[4]], outs[fs.output_names()[6]])
    prov = fs.output_provenance("hf-whisper-base-encoder-l4")
    assert prov["layer"] == 4 and prov["frame_rate_hz"] == 50.0 and prov["dims"] == 512
    assert prov["weights_sha256"] == sha256_file(whisper_dir / "model.safetensors")


def _whisper_by_hand(model, feats: torch.Tensor, layer: int) -> torch.Tensor:
    """Whisper's encoder written out with the positional embeddings sliced to the input's frames:
    hidden_states[layer] (the last one after the final layer norm)."""
    import torch.nn.functional as F

    with torch.inference_mode():
        x = F.gelu(model.conv2(F.gelu(model.conv1(feats)))).permute(0, 2, 1)
        x = x + model.embed_positions.weight[:x.shape[1]]
        for lay in model.layers[:layer]:
            out = lay(x, None)
            x = out[0] if isinstance(out, tuple) else out
        return model.layer_norm(x) if layer == len(model.layers) else x


@pytest.mark.parametrize("window", ["native", "10"])
def test_whisper_window_slices_the_positional_embeddings(saved, window):
    from extract.hf import parse_whisper_window

    fs = build(f"hf:{saved['whisper']}@all", whisper_window=window)
    seconds = parse_whisper_window(window)
    lengths = [3201, 16000, 16000, 40000]
    rng = np.random.default_rng(0)   # noise, not a tone: a tone's last layer is near-constant, and layer norm
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]   # then amplifies rounding
    outs = fs.encode_outputs(waves)
    for i, (n, x) in enumerate(zip(lengths, waves)):
        pad = math.ceil(n / 320) * 320 if seconds is None else int(seconds * 16000)
        feats = fs.fe([x], sampling_rate=16000, padding="max_length", max_length=pad, return_tensors="pt").input_features
        for k, name in enumerate(fs.output_names()):
            ref = _whisper_by_hand(fs.model, feats, k)[0, :math.ceil(n / 320)].numpy()
            np.testing.assert_allclose(outs[name][i], ref, atol=1e-5, err_msg=f"clip {i} layer {k}")
    # one clip alone gives what it gives in the batch
    (alone,) = fs.encode_outputs([waves[1]])[fs.output_names()[1]]
    np.testing.assert_allclose(alone, outs[fs.output_names()[1]][1], atol=1e-5)
    padded = build(f"hf:{saved['whisper']}@1")
    assert not np.allclose(fs.encode_outputs([waves[0]])[fs.output_names()[1]][0], padded.encode([waves[0]])[0],
                           atol=1e-4), "a shorter window changes the features (the padding frames are attended to)"


def test_a_shorter_whisper_window_runs_only_the_layers_it_keeps(saved):
    every = build(f"hf:{saved['whisper']}@all", whisper_window="native")
    one = build(f"hf:{saved['whisper']}@1", whisper_window="native")
    called = []
    hooks = [lay.register_forward_hook(lambda *a, i=i: called.append(i)) for i, lay in enumerate(one.model.layers)]
    x = [(0.1 * np.random.default_rng(2).standard_normal(16000)).astype(np.float32)]
    try:
        (mine,) = one.encode(x)
    finally:
        for h in hooks:
            h.remove()
    assert called == [0], "@1 runs the first layer only"
    np.testing.assert_array_equal(mine, every.encode_outputs(x)[one.name][0])


def test_whisper_window_names_and_identity(saved):
    from ser_common.identity import FeatureIdentity

    padded = build(f"hf:{saved['whisper']}@1")
    native = build(f"hf:{saved['whisper']}@1", whisper_window="native")
    ten = build(f"hf:{saved['whisper']}@1", whisper_window="10")
    base = padded.name.removesuffix("-l1")
    assert (native.name, ten.name) == (f"{base}-native-l1", f"{base}-w10-l1")
    ids = [FeatureIdentity.from_provenance(f.provenance()) for f in (padded, native, ten)]
    assert ids[0].encoder_window_s == 30.0 and ids[1].encoder_window_s is None and ids[2].encoder_window_s == 10.0
    assert "whisper_window" not in padded.provenance()      # padded stores keep the identity they always had
    assert ids[1].diff(ids[0]) and ids[2].diff(ids[0]) and ids[1].diff(ids[2])
    for bad in ("0", "31", "7.013", "wide"):
        with pytest.raises(ValueError, match="--whisper-window"):
            build(f"hf:{saved['whisper']}@1", whisper_window=bad)


def test_whisper_native_splits_clips_longer_than_30s(saved):
    fs = build(f"hf:{saved['whisper']}@2", whisper_window="native")
    x = make_tone(31.0, seed=5)
    (out,) = fs.encode([x])
    assert out.shape == (1550, 16)
    first, rest = fs.encode([x[:480_000], x[480_000:]])
    np.testing.assert_allclose(out, np.concatenate([first, rest]), atol=1e-5)


def test_whisper_forward_written_out_equals_transformers_at_30s(saved):
    fs = build(f"hf:{saved['whisper']}@all")
    rng = np.random.default_rng(1)
    x = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 40000)]
    feats = fs.fe(x, sampling_rate=16000, padding="max_length", return_tensors="pt").input_features
    with torch.inference_mode():
        ours = fs._windowed_states(feats, 1500)
        theirs = fs.model(feats, output_hidden_states=True).hidden_states
    for k in fs.layers:
        torch.testing.assert_close(ours[k], theirs[k], rtol=1e-5, atol=1e-5)
