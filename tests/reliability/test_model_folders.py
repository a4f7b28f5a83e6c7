"""Model folders that ship custom code (``auto_map``) are refused up front, never run nor prompted for; every
``from_pretrained`` the extract side makes passes ``trust_remote_code=False``. Real tiny folders built from
configs with ``save_pretrained``; no network, no downloaded weights."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402

from extract import hf  # noqa: E402
from extract.bert import BertFeatureSet  # noqa: E402
from extract.cli import main as cli  # noqa: E402
from extract.hub import RemoteCodeRefusedError, check_no_remote_code, load_pretrained  # noqa: E402
from tests.extract.conftest import write_corpus  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "utterance", "number"]
AUTO_MAP = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "modeling_evil.EvilModel"}


@pytest.fixture(autouse=True)
def _one_thread_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _bert_folder(path):
    """A saved random 1-layer BertModel (d=16) with its WordPiece tokenizer."""
    from transformers import BertConfig, BertModel, BertTokenizer

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32)).save_pretrained(path)
    BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}).save_pretrained(path)
    return path


def _wav2vec2_folder(path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                 conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                                 feat_extract_norm="group")).save_pretrained(path)
    return path


def _add_auto_map(path, name="config.json", auto_map=None):
    f = path / name
    cfg = json.loads(f.read_text())
    cfg["auto_map"] = auto_map or AUTO_MAP
    f.write_text(json.dumps(cfg))
    return f


@pytest.fixture
def spy_from_pretrained(monkeypatch):
    """Every ``from_pretrained`` of the transformers classes extract/ uses: [(class name, kwargs)]."""
    calls: list[tuple[str, dict]] = []
    for name in ("AutoConfig", "AutoModel", "AutoTokenizer", "AutoFeatureExtractor", "WhisperModel",
                 "WhisperFeatureExtractor", "Wav2Vec2FeatureExtractor"):
        klass = getattr(transformers, name)
        orig = klass.from_pretrained

        def spy(*args, _orig=orig, _name=name, **kw):
            calls.append((_name, kw))
            return _orig(*args, **kw)

        monkeypatch.setattr(klass, "from_pretrained", staticmethod(spy))
    return calls


def _assert_refused(err, file, name="config.json"):
    msg = str(err.value)
    assert msg.startswith(f"{file}: refused: the model folder ships custom Python code")
    assert '"auto_map": AutoConfig, AutoModel' in msg or '"auto_map"' in msg
    assert "trust_remote_code=False" in msg
    assert "architecture transformers implements itself" in msg and f"delete the auto_map entry from {name}" in msg
    return msg


# ---- bert ---------------------------------------------------------------------------------------------------
def test_bert_folder_without_auto_map_loads_with_trust_remote_code_false(tmp_path, spy_from_pretrained):
    folder = _bert_folder(tmp_path / "tiny-bert")
    fs = BertFeatureSet.from_pretrained(str(folder))
    assert fs.dims == 16 and type(fs.model).__name__ == "BertModel"
    (tokens, rows), = fs.encode_text(["the cat sat"])
    assert tokens == ["the", "cat", "sat"] and rows.shape == (3, 16)
    assert spy_from_pretrained and all(kw.get("trust_remote_code") is False for _, kw in spy_from_pretrained)


@pytest.mark.parametrize("name", ["config.json", "tokenizer_config.json"])
def test_bert_folder_with_auto_map_is_refused_before_loading(tmp_path, spy_from_pretrained, name):
    folder = _bert_folder(tmp_path / "evil-bert")
    f = _add_auto_map(folder, name, {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
                      if name == "tokenizer_config.json" else None)
    with pytest.raises(RemoteCodeRefusedError) as err:
        BertFeatureSet.from_pretrained(str(folder))
    _assert_refused(err, f, name)
    assert spy_from_pretrained == []  # refused up front: transformers was never asked


def test_bert_spec_with_auto_map_is_a_one_line_cli_error(tmp_path):
    manifest = write_corpus(tmp_path / "corpus", n=2)
    folder = _bert_folder(tmp_path / "evil-bert")
    f = _add_auto_map(folder)
    res = CliRunner().invoke(cli, ["--manifest", str(manifest), "--feature", f"bert:{folder}", "--out",
                                   str(tmp_path / "stores"), "--workers", "0", "-q"])
    assert res.exit_code != 0
    assert "Traceback" not in res.output and not isinstance(res.exception, RemoteCodeRefusedError)
    assert f"{f}: refused: the model folder ships custom Python code" in res.output
    assert "trust_remote_code=False" in res.output


# ---- hf -----------------------------------------------------------------------------------------------------
def test_hf_folder_without_auto_map_loads(tmp_path, spy_from_pretrained):
    folder = _wav2vec2_folder(tmp_path / "tiny-w2v")
    fs = hf.from_pretrained(str(folder), layers="1")
    assert fs.layers == [1] and fs.dims == 16
    assert spy_from_pretrained and all(kw.get("trust_remote_code") is False for _, kw in spy_from_pretrained)


@pytest.mark.parametrize("name", ["config.json", "preprocessor_config.json"])
def test_hf_folder_with_auto_map_is_refused_before_loading(tmp_path, spy_from_pretrained, name):
    from transformers import Wav2Vec2FeatureExtractor

    folder = _wav2vec2_folder(tmp_path / "evil-w2v")
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000).save_pretrained(folder)
    f = _add_auto_map(folder, name, {"AutoFeatureExtractor": "fe_evil.EvilFE"}
                      if name == "preprocessor_config.json" else None)
    with pytest.raises(RemoteCodeRefusedError) as err:
        hf.build_hf(f"{folder}@1")
    msg = _assert_refused(err, f, name)
    assert "`hf:/path/to/model`" in msg
    assert spy_from_pretrained == []


def test_auto_map_in_a_nested_config_is_refused(tmp_path):
    folder = _bert_folder(tmp_path / "nested")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["text_config"] = {"auto_map": {"AutoModel": "x.Y"}}
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RemoteCodeRefusedError, match="nested config"):
        check_no_remote_code(folder)


# ---- load_pretrained itself -----------------------------------------------------------------------------------
class _Recorder:
    def __init__(self):
        self.calls: list[dict] = []

    def from_pretrained(self, name, **kw):
        self.calls.append(kw)
        return name


def test_trust_remote_code_true_is_refused_and_false_always_passed(tmp_path):
    folder = _bert_folder(tmp_path / "ok")
    loader = _Recorder()
    with pytest.raises(RemoteCodeRefusedError, match="trust_remote_code=True: this toolkit never runs code"):
        load_pretrained(loader, folder, trust_remote_code=True)
    assert loader.calls == []
    load_pretrained(loader, folder)
    load_pretrained(loader, folder, trust_remote_code=False)
    assert loader.calls == [{"trust_remote_code": False}] * 2


def test_refusal_is_a_value_error_the_cli_already_reports():
    assert issubclass(RemoteCodeRefusedError, ValueError)
