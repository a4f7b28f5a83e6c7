"""``ser-extract --like MODEL``: the features a fitted bundle expects, read from its recorded identity.

The bundles here are real: stores extracted from generated audio and fitted with ``ser-train fit`` (the test
imports ``train`` to make them; ``extract`` itself never does). Tiny random Whisper/BERT folders stand in
for real encoders in the path-override tests; one test uses ../shared's Whisper-base encoder.
"""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402

from extract import like  # noqa: E402
from extract.cli import main as extract_main  # noqa: E402
from extract.weights import weights_sha256  # noqa: E402
from extract.config import ExtractConfig  # noqa: E402
from extract.pipeline import extract_all  # noqa: E402
from ser_common.identity import FeatureIdentity  # noqa: E402
from ser_common.store import FeatureStore  # noqa: E402
from tests.extract.conftest import write_corpus  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- helpers -------------------------------------------------------------------------------------------------
def _cfg(**kw) -> ExtractConfig:
    return ExtractConfig(**{"workers": 0, "progress": False, "device": "cpu", **kw})


def ser_extract(*args) -> tuple[int, str]:
    r = CliRunner().invoke(extract_main, [str(a) for a in args] + ["--workers", "0", "-q", "--device", "cpu"])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.output


def ser_train(*args) -> tuple[int, str]:
    from train.cli import main as train_main

    r = CliRunner().invoke(train_main, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.output


def fit(store: Path, out: Path, *extra) -> Path:
    code, text = ser_train("fit", "--store", store, "--head", "mean", "--epochs", "2", "--device", "cpu",
                           "-o", out, *extra)
    assert code == 0, text
    return out


def next_command(output: str) -> list[str]:
    """The ``next: ser-train predict …`` line ``--like`` prints, split like a shell would."""
    [line] = [x for x in output.splitlines() if x.startswith("next: ser-train ")]
    return shlex.split(line.removeprefix("next: "))


def bundle_identities(model: Path) -> list[FeatureIdentity]:
    d = torch.load(model, map_location="cpu", weights_only=True)
    return [FeatureIdentity.from_dict(e["identity"]) for e in d["stores"]]


def assert_like(model: Path, store: Path, index: int = 0) -> FeatureStore:
    with FeatureStore(store) as s:
        assert bundle_identities(model)[index].diff(s.identity, scope="features") == {}
        return s


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- LLD: a real bundle, a new pool ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lld_model(tmp_path_factory):
    """(model.pt fitted on 12 labelled clips' LLDs, a 6-clip pool manifest, the training store)."""
    root = tmp_path_factory.mktemp("lld-model")
    train_manifest = write_corpus(root / "train", n=12, seed=0)
    extract_all(train_manifest, ["lld"], root / "train" / "stores", _cfg())
    model = fit(root / "train" / "stores" / "lld.h5", root / "model.pt")
    pool = write_corpus(root / "pool", n=6, seconds=(0.8, 1.4), seed=1)
    return model, pool, root / "train" / "stores" / "lld.h5"


def test_like_extracts_the_model_features_and_predict_runs_on_them(lld_model, tmp_path):
    model, pool, train_store = lld_model
    code, out = ser_extract("--like", model, "--manifest", pool, "--out", tmp_path / "pool_stores")
    assert code == 0, out
    store = tmp_path / "pool_stores" / "lld.h5"
    assert f"--like {model} (mean head): 1 store with the features it was trained on" in out
    assert f"  audio {store}  (written; lld)" in out
    cmd = next_command(out)
    assert cmd == ["ser-train", "predict", "--model", str(model), "--store", str(store),
                   "-o", str(tmp_path / "predictions.csv")]
    s = assert_like(model, store)
    assert len(s) == 6
    with FeatureStore(train_store) as t:            # another pool: only the manifest differs
        assert set(t.identity.diff(s.identity)) == {"manifest_sha256"}

    code, text = ser_train(*cmd[1:])
    assert code == 0, text
    assert f"wrote 6 predictions to {tmp_path / 'predictions.csv'}" in text
    assert sorted(r["utt_id"] for r in rows(tmp_path / "predictions.csv")) == [f"u{i:03d}" for i in range(6)]

    code, again = ser_extract("--like", model, "--manifest", pool, "--out", tmp_path / "pool_stores")
    assert code == 0 and f"  audio {store}  (up to date; lld)" in again       # idempotent


def test_like_takes_crop_and_store_dtype_from_the_model(tmp_path):
    train_manifest = write_corpus(tmp_path / "train", n=8, seconds=(1.5, 2.0), seed=2)
    extract_all(train_manifest, ["lld"], tmp_path / "s", _cfg(crop_s=1.0, store_dtype="float32"))
    model = fit(tmp_path / "s" / "lld.h5", tmp_path / "model.pt")
    pool = write_corpus(tmp_path / "pool", n=4, seconds=(1.5, 2.0), seed=3)

    code, out = ser_extract("--like", model, "--manifest", pool, "--out", tmp_path / "p")
    assert code == 0, out
    s = assert_like(model, tmp_path / "p" / "lld.h5")
    assert (s.identity.crop_s, s.identity.store_dtype) == (1.0, "float32")
    assert all(n <= 41 for n in s.n_frames)          # 1 s at 40 frames/s, not the 5 s default

    code, out = ser_extract("--like", model, "--manifest", pool, "--out", tmp_path / "q", "--crop", "2")
    assert code == 1
    assert (f"Error: {model}: lld (the spec it records) with --crop 2 would give other features than the model was "
            f"trained on (crop_s): crop_s: 1.0 (model) vs 2.0 (this extraction); leave out --crop/--no-crop: --like "
            f"then uses the model's (--crop 1)") in out
    assert not (tmp_path / "q").exists()             # refused before anything was written

    code, out = ser_extract("--like", model, "--manifest", pool, "--out", tmp_path / "r", "--store-dtype", "float16")
    assert code == 0, out                            # the dtype is no part of the features a model compares
    assert assert_like(model, tmp_path / "r" / "lld.h5").identity.store_dtype == "float16"


def test_bundles_that_cannot_say_what_to_extract_are_refused(lld_model, tmp_path):
    model, pool, _ = lld_model
    d = torch.load(model, map_location="cpu", weights_only=True)

    v1 = {**{k: v for k, v in d.items() if k != "stores"}, "version": 1,
          "provenance": [{"feature": "lld", "crop_s": 5.0, "dims": 34, "frame_rate_hz": 40.0}]}
    torch.save(v1, tmp_path / "v1.pt")
    code, out = ser_extract("--like", tmp_path / "v1.pt", "--manifest", pool, "--out", tmp_path / "o")
    assert code == 1
    assert (f"Error: {tmp_path / 'v1.pt'}: a version-1 model bundle: it records only part of its training features' "
            f"provenance, not their identity, so --like cannot tell what to extract. Refit it with `ser-train fit` "
            f"(the new bundle records it), or give the features by hand: ser-extract --manifest … --feature SPEC "
            f"(the spec the training store was extracted with) and the same --crop") in out

    torch.save({**d, "version": 3}, tmp_path / "v3.pt")
    code, out = ser_extract("--like", tmp_path / "v3.pt", "--manifest", pool, "--out", tmp_path / "o")
    assert code == 1 and "bundle version 3 is not 2; refit it with `ser-train fit`" in out

    (tmp_path / "notes.pt").write_text("not a model")
    code, out = ser_extract("--like", tmp_path / "notes.pt", "--manifest", pool, "--out", tmp_path / "o")
    assert code == 1 and f"Error: {tmp_path / 'notes.pt'}: not a ser-train model bundle (" in out

    code, out = ser_extract("--like", tmp_path / "absent.pt", "--manifest", pool, "--out", tmp_path / "o")
    assert code == 1 and "absent.pt: no such model bundle (make one with `ser-train fit`)" in out

    no_spec = {**d, "stores": [{**d["stores"][0], "spec": None}]}
    torch.save(no_spec, tmp_path / "nospec.pt")
    code, out = ser_extract("--like", tmp_path / "nospec.pt", "--manifest", pool, "--out", tmp_path / "o")
    assert code == 1 and "records no feature spec, so --like cannot tell how it was extracted; give it with " \
                         "--feature (e.g. --feature lld)" in out
    code, out = ser_extract("--like", tmp_path / "nospec.pt", "--feature", "lld", "--manifest", pool,
                            "--out", tmp_path / "o")
    assert code == 0, out

    code, out = ser_extract("--like", model, "--feature", "hf:/models/whisper@4", "--manifest", pool,
                            "--out", tmp_path / "o2")
    assert code == 1 and (f"Error: --feature hf:/models/whisper@4: {model} was trained on lld (audio) features, not "
                          f"hf: with --like, --feature can only point at another copy") in out

    code, out = ser_extract("--manifest", pool, "--out", tmp_path / "o3")
    assert code == 2 and "give at least one --feature SPEC, or --like MODEL" in out


def test_bundle_format_is_the_one_train_writes():
    from train import bundle

    assert (like.BUNDLE_FORMAT, like.BUNDLE_VERSION) == (bundle.BUNDLE_FORMAT, bundle.BUNDLE_VERSION)


def test_extract_like_does_not_import_train():
    code = ("import sys, extract.like, extract.cli, extract.pipeline; "
            "bad = sorted(m for m in sys.modules if m == 'train' or m.startswith('train.')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ---- encoders at other paths: tiny random Whisper and BERT folders ------------------------------------------
def _tiny_whisper(folder: Path, seed: int) -> Path:
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(seed)
    cfg = WhisperConfig(d_model=16, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=64,
                        pad_token_id=1, bos_token_id=2, eos_token_id=3, decoder_start_token_id=2,
                        max_target_positions=16, suppress_tokens=None, begin_suppress_tokens=None,
                        num_mel_bins=80, max_source_positions=1500)
    WhisperModel(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """Folders of two tiny random Whisper encoders (different weights) and a tiny BERT with its tokenizer."""
    from transformers import BertConfig, BertModel, BertTokenizer

    root = tmp_path_factory.mktemp("encoders")
    a = _tiny_whisper(root / "whisper-a", 9)
    b = _tiny_whisper(root / "whisper-b", 10)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "utterance", "number", "1", "2", "3", "4", "5"]
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32)).save_pretrained(root / "bert-tiny")
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(root / "bert-tiny")
    return {"a": a, "b": b, "bert": root / "bert-tiny"}


def test_a_model_folder_elsewhere_is_named_by_its_weights_and_overrides_are_checked(encoders, tmp_path):
    a, b = encoders["a"], encoders["b"]
    link = tmp_path / "links" / "my-whisper"
    link.parent.mkdir()
    link.symlink_to(a, target_is_directory=True)
    train_manifest = write_corpus(tmp_path / "train", n=8, seed=4)
    extract_all(train_manifest, [f"hf:{link}@1"], tmp_path / "s", _cfg())
    model = fit(tmp_path / "s" / "hf-my-whisper-l1.h5", tmp_path / "model.pt")
    pool = write_corpus(tmp_path / "pool", n=4, seed=5)
    sha = weights_sha256(a)
    assert bundle_identities(model)[0].weights_sha256 == sha

    link.unlink()                                     # the bundle's spec path is gone on "this machine"
    code, out = ser_extract("--like", model, "--manifest", pool, "--out", tmp_path / "p")
    assert code == 1
    assert (f"Error: {model}: its audio features were extracted with 'hf:{link}@1', which cannot be loaded on this "
            f"machine (model directory '{link}' does not exist") in out
    assert (f"The model needs hf features (audio, layer 1) from weights with sha256 {sha}: point --feature at your "
            f"copy, e.g. ser-extract --like {model} --feature hf:/path/to/my-whisper@1 --manifest … --out … "
            f"(checked against the model's features)") in " ".join(out.split())

    code, out = ser_extract("--like", model, "--feature", f"hf:{a}", "--manifest", pool, "--out", tmp_path / "p")
    assert code == 0, out                             # same weights at another path; the layer is the model's
    store = tmp_path / "p" / "hf-whisper-a-l1.h5"
    assert f"  audio {store}  (written; hf:{a}@1)" in out
    assert_like(model, store)
    code, text = ser_train(*next_command(out)[1:])
    assert code == 0 and "wrote 4 predictions" in text

    code, out = ser_extract("--like", model, "--feature", f"hf:{a}@2", "--manifest", pool, "--out", tmp_path / "q")
    assert code == 1
    assert (f"Error: --feature hf:{a}@2 would give other features than the model was trained on (layer): layer: 1 "
            f"(model) vs 2 (this extraction); give the model's layer (@1) or none") in out

    code, out = ser_extract("--like", model, "--feature", f"hf:{b}@1", "--manifest", pool, "--out", tmp_path / "q")
    assert code == 1
    assert (f"Error: --feature hf:{b}@1 would give other features than the model was trained on (weights_sha256): "
            f"weights_sha256: '{sha[:12]}…' (model) vs '{weights_sha256(b)[:12]}…' (this extraction); the model needs "
            f"the weights with sha256 {sha}: point --feature at a copy of them") in " ".join(out.split())

    code, out = ser_extract("--like", model, "--feature", f"hf:{a}@all", "--manifest", pool, "--out", tmp_path / "q")
    assert code == 1 and f"--feature hf:{a}@all: writes 3 stores; with --like give one layer (the model's: @1)" in out
    assert not (tmp_path / "q").exists()


def test_bimodal_bundle_gets_both_stores_and_a_sweep_is_pinned_to_its_layer(encoders, tmp_path):
    a, bert = encoders["a"], encoders["bert"]
    train_manifest = write_corpus(tmp_path / "train", n=8, seed=6)
    extract_all(train_manifest, [f"hf:{a}@all", f"bert:{bert}"], tmp_path / "s", _cfg())
    model = fit(tmp_path / "s" / "hf-whisper-a-l1.h5", tmp_path / "model.pt",
                "--text", tmp_path / "s" / "bert-bert-tiny.h5", "--head", "bimodal")
    pool = write_corpus(tmp_path / "pool", n=4, seed=7)

    code, out = ser_extract("--like", model, "--manifest", pool, "--out", tmp_path / "p")
    assert code == 0, out
    assert f"--like {model} (bimodal head): 2 stores with the features it was trained on" in out
    assert f"  audio {tmp_path / 'p' / 'hf-whisper-a-l1.h5'}  (written; hf:{a}@1)" in out
    assert f"  text  {tmp_path / 'p' / 'bert-bert-tiny.h5'}  (written; bert:{bert})" in out
    assert sorted(p.name for p in (tmp_path / "p").glob("*.h5")) == ["bert-bert-tiny.h5", "hf-whisper-a-l1.h5"]
    assert_like(model, tmp_path / "p" / "hf-whisper-a-l1.h5", 0)
    assert_like(model, tmp_path / "p" / "bert-bert-tiny.h5", 1)
    cmd = next_command(out)
    assert cmd[cmd.index("--text") + 1] == str(tmp_path / "p" / "bert-bert-tiny.h5")
    code, text = ser_train(*cmd[1:])
    assert code == 0 and "wrote 4 predictions" in text


# ---- the real Whisper-base encoder: one path spelling at fit time, another at --like -------------------------
def test_real_whisper_bundle_is_satisfied_by_another_spelling_of_its_path(whisper_dir, tmp_path):
    t0 = time.perf_counter()
    train_manifest = write_corpus(tmp_path / "train", n=4, seconds=(0.6, 1.0), seed=8)
    extract_all(train_manifest, [f"hf:{whisper_dir}@4"], tmp_path / "s", _cfg())
    model = fit(tmp_path / "s" / "hf-whisper-base-encoder-l4.h5", tmp_path / "model.pt")
    link = tmp_path / "elsewhere" / "whisper"
    link.parent.mkdir()
    link.symlink_to(whisper_dir.resolve(), target_is_directory=True)
    pool = write_corpus(tmp_path / "pool", n=3, seconds=(0.6, 1.0), seed=9)

    code, out = ser_extract("--like", model, "--feature", f"hf:{link}", "--manifest", pool, "--out", tmp_path / "p")
    assert code == 0, out
    store = tmp_path / "p" / "hf-whisper-l4.h5"
    s = assert_like(model, store)
    assert bundle_spec(model) == f"hf:{whisper_dir}@4" and s.provenance["spec"] == f"hf:{link}@4"
    code, text = ser_train(*next_command(out)[1:])
    assert code == 0 and "wrote 3 predictions" in text
    assert time.perf_counter() - t0 < 60


def bundle_spec(model: Path, index: int = 0) -> str:
    return torch.load(model, map_location="cpu", weights_only=True)["stores"][index]["spec"]


# ---- make predict ---------------------------------------------------------------------------------------------
def test_make_predict_runs_folder_to_predictions_and_is_idempotent(lld_model, tmp_path):
    installed = ROOT / ".venv" / ".installed"
    if shutil.which("make") is None or not installed.exists() or any(
            (ROOT / f).stat().st_mtime > installed.stat().st_mtime for f in ("setup.cfg", "pyproject.toml")):
        pytest.skip("make, or an up-to-date `make install` (.venv/.installed), is not available")
    model, _, _ = lld_model
    audio = write_corpus(tmp_path / "calls", n=5, seconds=(0.8, 1.2), seed=11).parent / "audio"
    out = tmp_path / "out"
    cmd = ["make", "-s", "--no-print-directory", "-C", str(ROOT), "predict", f"AUDIO_DIR={audio}", f"MODEL={model}",
           f"OUT={out}", "WORKERS=0", "DEVICE=cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"predictions: {out / 'predictions.csv'}" in first.stdout
    assert len(rows(out / "predictions.csv")) == 5
    assert_like(model, out / "stores" / "lld.h5")
    mtime = (out / "stores" / "lld.h5").stat().st_mtime_ns

    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "up to date" in second.stdout and (out / "stores" / "lld.h5").stat().st_mtime_ns == mtime

    shutil.copy(audio / "u000.flac", audio / "u099.flac")    # the folder changed: a new pool, new stores
    third = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert third.returncode == 0, third.stdout + third.stderr
    assert f"{audio} changed: removing the old pool's stores {out / 'stores'}" in third.stdout
    assert len(rows(out / "predictions.csv")) == 6
    assert_like(model, out / "stores" / "lld.h5")


def test_like_takes_the_whisper_window_from_the_model(encoders, tmp_path):
    a = encoders["a"]
    train_manifest = write_corpus(tmp_path / "train", n=8, seed=8)
    extract_all(train_manifest, [f"hf:{a}@1"], tmp_path / "s", _cfg(whisper_window="native"))
    store = tmp_path / "s" / "hf-whisper-a-native-l1.h5"
    model = fit(store, tmp_path / "model.pt")
    assert bundle_identities(model)[0].settings_dict()["whisper_window"] == "native"
    pool = write_corpus(tmp_path / "pool", n=4, seed=9)
    code, out = ser_extract("--like", model, "--manifest", pool, "--out", tmp_path / "p")
    assert code == 0, out
    assert_like(model, tmp_path / "p" / "hf-whisper-a-native-l1.h5")
    code, out = ser_extract("--like", model, "--manifest", pool, "--out", tmp_path / "q", "--whisper-window", "padded")
    assert code == 1 and "settings.whisper_window" in out and "encoder_window_s" in out
