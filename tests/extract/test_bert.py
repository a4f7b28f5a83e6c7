"""extract.bert: WordPiece-token rows of hidden_states[-2]; tiny random BERT and the real MiniLM (shared)."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from extract.bert import BertFeatureSet, bert_feature_name, build_bert  # noqa: E402
from extract.hub import ModelNotAvailableError  # noqa: E402
from ser_common.provenance import sha256_file  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


WORDS = ["the", "cat", "cats", "sat", "on", "mat", "dog", "run", "##s", "##ning", "a", ".", ",", "?"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
TEXTS = ["the cat sat on the mat.", "a dog", "the dogs running on a mat , the cat sat ?", "cats"]
EMODB_A01 = "Der Lappen liegt auf dem Eisschrank."


def _reference(model, tokenizer, text: str) -> tuple[list[str], np.ndarray]:
    """Unbatched, by hand: tokens of the text and hidden_states[-2] rows without [CLS]/[SEP]."""
    enc = tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        hs = model(**enc, output_hidden_states=True).hidden_states
    return tokenizer.tokenize(text), hs[-2][0, 1:-1].numpy()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, tokenizer, folder): a random 3-layer BertModel (d=32) and a WordPiece tokenizer, saved."""
    from transformers import BertConfig, BertModel, BertTokenizer

    tok = BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)})
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=3,
                                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=40)).eval()
    folder = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model, tok, folder


def test_names():
    assert bert_feature_name("bert-base-uncased") == "bert"
    assert bert_feature_name("/models/bert-base-uncased/") == "bert"  # a local copy of the default
    assert bert_feature_name("/shared/models/minilm-l6-v2") == "bert-minilm-l6-v2"
    assert bert_feature_name("google/bert_uncased_L-2_H-128_A-2") == "bert-google-bert_uncased_L-2_H-128_A-2"


def test_tiny_rows_are_second_to_last_layer_without_specials(tiny):
    model, tok, _ = tiny
    fs = BertFeatureSet(model, tok)
    assert (fs.modality, fs.dims, fs.frame_rate_hz, fs.layer) == ("text", 32, None, 2)
    assert fs.name.startswith("bert-") and fs.max_length == 40
    out = fs.encode_text(TEXTS)
    assert len(out) == len(TEXTS)
    for text, (tokens, x) in zip(TEXTS, out):
        ref_tokens, ref = _reference(model, tok, text)
        assert tokens == ref_tokens and "[CLS]" not in tokens and "[SEP]" not in tokens
        assert x.dtype == np.float32 and x.shape == (len(tokens), 32)
        np.testing.assert_allclose(x, ref, atol=1e-5)
    assert out[2][0][:5] == ["the", "dog", "##s", "run", "##ning"]


def test_tiny_batch_equals_single(tiny):
    model, tok, _ = tiny
    fs = BertFeatureSet(model, tok, batch_size=3)  # 4 texts: a full and a partial sub-batch
    batched = fs.encode_text(TEXTS)
    for text, (tokens, x) in zip(TEXTS, batched):
        (t1, x1), = fs.encode_text([text])
        assert tokens == t1
        np.testing.assert_allclose(x, x1, atol=1e-5)


def test_empty_transcript_keeps_cls(tiny):
    model, tok, _ = tiny
    fs = BertFeatureSet(model, tok)
    (tokens, x), (t2, x2) = fs.encode_text(["", "cats"])
    assert tokens == ["[CLS]"] and x.shape == (1, 32)
    with torch.inference_mode():
        ref = model(**tok("", return_tensors="pt"), output_hidden_states=True).hidden_states[-2][0, 0]
    np.testing.assert_allclose(x[0], ref.numpy(), atol=1e-5)
    assert t2 == ["cats"]
    with pytest.raises(TypeError):
        fs.encode_text("a single string")


def test_long_transcript_is_truncated_with_warning(tiny):
    model, tok, _ = tiny
    fs = BertFeatureSet(model, tok, max_length=12)
    long = " ".join(["cat"] * 30)
    with pytest.warns(UserWarning, match="keeping the first 12"):
        (tokens, x), (t2, _) = fs.encode_text([long, "the cat"])
    assert tokens == ["cat"] * 10 and x.shape == (10, 32)  # 12 - [CLS] - [SEP]
    assert t2 == ["the", "cat"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fs.encode_text(["the cat"])  # no warning under the limit


def test_tiny_from_folder_provenance(tiny):
    from extract.registry import build

    model, tok, folder = tiny
    fs = build(f"bert:{folder}")
    assert fs.spec == f"bert:{folder}" and fs.name == f"bert-{folder.name}"
    p = fs.provenance()
    assert p["feature"] == fs.name and p["modality"] == "text" and p["encoder"] == str(folder)
    assert p["encoder_class"] == "BertModel" and p["layer"] == 2 and p["layer_desc"] == "hidden_states[-2]"
    assert p["weights_sha256"] == sha256_file(folder / "model.safetensors")
    assert p["lowercase"] is True and p["dims"] == 32 and p["frame_rate_hz"] is None
    (tokens, x), = fs.encode_text([TEXTS[0]])
    (_, ref), = BertFeatureSet(model, tok).encode_text([TEXTS[0]])
    np.testing.assert_allclose(x, ref, atol=1e-5)  # same weights after the round trip
    assert BertFeatureSet(model, tok).provenance()["weights_sha256"] is None  # random model
    with pytest.warns(UserWarning, match="on the CPU computes in float32"):
        assert fs.to("cpu", "bfloat16").compute_dtype == "float32"  # CPU computes in fp32


def test_hub_id_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelNotAvailableError) as err:
        build_bert("ser-toolkit-test-nonexistent/tiny-bert")
    assert time.perf_counter() - t0 < 5.0
    assert "ser-toolkit-test-nonexistent/tiny-bert" in str(err.value)
    assert "bert:/path/to/tiny-bert" in str(err.value)


# ---- the real MiniLM (../shared) ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return build_bert(str(minilm_dir))


@pytest.mark.shared
def test_minilm_emodb_sentence(minilm, minilm_dir):
    from transformers import AutoModel, AutoTokenizer

    assert minilm.name == "bert-minilm-l6-v2" and minilm.dims == 384 and minilm.layer == 5
    assert minilm.provenance()["weights_sha256"] == sha256_file(minilm_dir / "model.safetensors")
    tok = AutoTokenizer.from_pretrained(minilm_dir)
    model = AutoModel.from_pretrained(minilm_dir, dtype=torch.float32).eval()
    (tokens, x), = minilm.encode_text([EMODB_A01])
    ref_tokens, ref = _reference(model, tok, EMODB_A01)
    assert tokens == ref_tokens
    assert tokens[:3] == ["der", "lap", "##pen"] and tokens[-1] == "."
    assert x.shape == (len(tokens), 384) and np.isfinite(x).all()
    np.testing.assert_allclose(x, ref, atol=1e-4)


@pytest.mark.shared
def test_minilm_batch_equals_single(minilm):
    texts = [EMODB_A01, "Kids are talking by the door", "",
             "Was sind denn das für Tüten, die da unter dem Tisch stehen?"]
    batched = minilm.encode_text(texts)
    for text, (tokens, x) in zip(texts, batched):
        (t1, x1), = minilm.encode_text([text])
        assert tokens == t1
        np.testing.assert_allclose(x, x1, atol=1e-4)
    assert batched[2][0] == ["[CLS]"]
