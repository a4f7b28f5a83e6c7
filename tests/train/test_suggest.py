"""ser-train suggest: the audio column (from the store's manifest or --manifest), --max-per-speaker, the
diversity strategies (kcenter, diverse-entropy), the hint when fewer suggestions than asked are written, the
CSV's formula safety and the Label Studio format."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ser_common.labels import FOUR_CLASSES
from ser_common.manifest import ManifestRecord, manifest_sha256, write_manifest
from ser_common.spreadsheet import restore_cell
from ser_common.store import StoreWriter, UtteranceMeta
from train.bundle import bundle_inputs, fit_bundle, save_bundle
from train.cli import run as cli
from train.config import TrainConfig
from train.data import load_store
from train.inputs import load_inputs
from train.suggest import kmeans, rank_pool, suggest

from .toy_stores import AUDIO_PROV, toy_rows, write_toy_store

CFG = TrainConfig(epochs=4, lr=1e-2)


@pytest.fixture(scope="module")
def model(toy_store, tmp_path_factory) -> Path:
    """A mean-head bundle fitted on the toy store (features of AUDIO_PROV)."""
    return save_bundle(fit_bundle(load_inputs(toy_store), "mean", CFG), tmp_path_factory.mktemp("m") / "m.pt")


def pool_with_manifest(root: Path, name: str = "pool", rows=None, recorded: str | None = None,
                       seed: int = 5) -> tuple[Path, Path, dict[str, Path]]:
    """``root/manifests/<name>.jsonl`` (relative audio paths ``audio/<id>.wav``, files created) and a store
    ``root/stores/<name>/wav2vec-toy.h5`` whose provenance records the manifest as ``recorded`` (default: the
    path relative to ``root``, as when ser-extract ran there) and its sha256. Returns (store, manifest,
    utt_id -> absolute audio path)."""
    rows = toy_rows() if rows is None else rows
    manifest = root / "manifests" / f"{name}.jsonl"
    audio = {}
    recs = []
    for utt, label, spk, sess, _ in rows:
        rel = f"audio/{name}/{len(audio):03d}.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
        audio[utt] = (root / rel).resolve()
        recs.append(ManifestRecord(utt_id=utt, audio=rel, corpus=name, speaker=spk, session=sess, label=label or None))
    write_manifest(recs, manifest)
    prov = {**AUDIO_PROV, "manifest": recorded or f"manifests/{name}.jsonl",
            "manifest_sha256": manifest_sha256(manifest)}
    store = write_toy_store(root / "stores" / name / "wav2vec-toy.h5", seed=seed, sep=1.2, provenance=prov, rows=rows)
    return store, manifest, audio


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_audio_column_comes_from_the_manifest_the_store_names(tmp_path, model, monkeypatch, capsys):
    rows = toy_rows()
    rows[-1] = ("=1+2", "", "@spk", rows[-1][3], rows[-1][4])  # a formula-looking id and speaker
    store, _, audio = pool_with_manifest(tmp_path / "proj", rows=rows)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the recorded relative path is found from the store's folders, not the cwd
    out = tmp_path / "s.csv"
    assert cli(["suggest", "--model", str(model), "--store", str(store), "--n", "4", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "note" not in err
    sug = read_csv(out)
    assert len(sug) == 4 and list(sug[0])[:6] == ["rank", "utt_id", "score", "pred", "speaker", "audio"]
    for r in sug:
        uid = restore_cell(r["utt_id"])
        assert Path(r["audio"]).is_absolute() and Path(r["audio"]) == audio[uid]
    evil = next(r for r in sug if restore_cell(r["utt_id"]) == "=1+2")
    assert evil["utt_id"] == "'=1+2" and evil["speaker"] == "'@spk"  # CSV safety kept


def test_a_missing_manifest_leaves_the_column_empty_with_a_note_and_manifest_fills_it(tmp_path, model, capsys):
    store, manifest, audio = pool_with_manifest(tmp_path / "proj", recorded="/nowhere/pool.jsonl")
    out = tmp_path / "s.csv"
    assert cli(["suggest", "--model", str(model), "--store", str(store), "--n", "3", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "(/nowhere/pool.jsonl) is not on this machine" in err and "the audio column is empty: pass --manifest" in err
    assert [r["audio"] for r in read_csv(out)] == ["", "", ""]
    assert cli(["suggest", "--model", str(model), "--store", str(store), "--n", "3", "--manifest", str(manifest),
                "-o", str(out)]) == 0
    assert "note" not in capsys.readouterr().err
    assert all(Path(r["audio"]) == audio[r["utt_id"]] for r in read_csv(out))
    other = tmp_path / "other.jsonl"
    write_manifest([ManifestRecord(utt_id="x", audio="/a.wav", corpus="c", speaker="s", session="g")], other)
    assert cli(["suggest", "--model", str(model), "--store", str(store), "--manifest", str(other),
                "-o", str(out)]) == 1
    assert f"{other}: none of the 124 utterances of {store} is in this manifest" in capsys.readouterr().err
    assert cli(["suggest", "--model", str(model), "--store", str(store), "--manifest", str(other),
                "--manifest", str(other), "-o", str(out)]) == 2
    assert "2 --manifest for 1 --store" in capsys.readouterr().err


def test_several_stores_get_audio_under_their_corpus_prefix(tmp_path, model, capsys):
    a, _, audio_a = pool_with_manifest(tmp_path / "proj", name="alpha", seed=5)
    b, _, audio_b = pool_with_manifest(tmp_path / "proj", name="beta", seed=6)
    out = tmp_path / "s.csv"
    assert cli(["suggest", "--model", str(model), "--store", str(a), "--store", str(b), "--n", "8",
                "-o", str(out)]) == 0
    sug = read_csv(out)
    assert {r["utt_id"].split("/")[0] for r in sug} == {"alpha", "beta"}
    for r in sug:
        corpus, uid = r["utt_id"].split("/", 1)
        assert Path(r["audio"]) == (audio_a if corpus == "alpha" else audio_b)[uid]
    (tmp_path / "done.txt").write_text("U_00\n")  # ids without the prefix: nothing is excluded, and we say why
    assert cli(["suggest", "--model", str(model), "--store", str(a), "--store", str(b), "--n", "8",
                "--exclude", str(tmp_path / "done.txt"), "-o", str(out)]) == 0
    assert "none of the 1 ids in --exclude is in the store" in capsys.readouterr().err


@pytest.mark.parametrize("strategy,balanced", [("entropy", False), ("margin", True), ("kcenter", False),
                                               ("diverse-entropy", False)])
def test_max_per_speaker_caps_every_strategy(toy_store, strategy, balanced):
    inputs = load_inputs(toy_store)
    b = fit_bundle(inputs, "mean", CFG)
    rows = suggest(b, inputs, n=50, strategy=strategy, balanced=balanced, include_labelled=True, max_per_speaker=2)
    per = Counter(r["speaker"] for r in rows)
    assert len(per) == 10 and max(per.values()) == 2 and len(rows) == 20
    assert [r["rank"] for r in rows] == list(range(1, 21)) and len({r["utt_id"] for r in rows}) == 20


def test_round_robin_skips_full_speakers_and_keeps_order():
    proba = np.array([[0.5, 0.5], [0.6, 0.4], [0.7, 0.3], [0.9, 0.1]])
    spk = np.array(["a", "a", "b", ""], dtype=object)
    picks, scores = rank_pool("margin", proba, 4, speakers=spk, max_per_speaker=1)
    assert picks.tolist() == [0, 2, 3]  # row 1 is speaker a's second; "" is not capped
    assert np.all(np.diff(scores) <= 0)


def write_cluster_store(path: Path, labelled: bool = True) -> Path:
    """8 dims: 40 labelled utterances (class c around 3·e_c; left out unless ``labelled``) and an unlabelled
    pool of four obvious clusters: 20 utterances around 0 and 6 each around 6·e_4, 6·e_5, 6·e_6 (frames
    N(centre, 0.5²))."""
    rng = np.random.default_rng(0)
    metas, frames = [], []
    centres = [np.zeros(8)] + [6.0 * np.eye(8)[k] for k in (4, 5, 6)]
    rows = [(f"L{c}_{i}", FOUR_CLASSES[c], 3.0 * np.eye(8)[c]) for c in range(4) for i in range(10) if labelled]
    rows += [(f"P{k}_{i:02d}", "", centres[k]) for k, size in enumerate((20, 6, 6, 6)) for i in range(size)]
    for j, (utt, label, mu) in enumerate(rows):
        n = int(rng.integers(10, 30))
        frames.append((mu + 0.5 * rng.standard_normal((n, 8))).astype(np.float32))
        metas.append(UtteranceMeta(utt_id=utt, label=label, speaker=f"spk{j % 7}", session=f"Ses0{j % 5 + 1}",
                                   duration=n / 50, manifest_index=j))
    with StoreWriter(path, dims=8, provenance=AUDIO_PROV, dtype="float32") as w:
        w.append(metas, frames)
        return w.finalize()


def test_diversity_strategies_spread_picks_over_obvious_clusters_deterministically(tmp_path):
    inputs = load_inputs(write_cluster_store(tmp_path / "clusters.h5"))
    b = fit_bundle(inputs, "mean", CFG)

    def clusters(rows):
        return [r["utt_id"].split("_")[0] for r in rows]

    assert clusters(suggest(b, inputs, n=4, strategy="entropy")) == ["P0"] * 4  # uncertainty alone: one cluster
    kc = suggest(b, inputs, n=4, strategy="kcenter")
    assert sorted(clusters(kc)) == ["P0", "P1", "P2", "P3"]
    assert clusters(kc)[3] == "P0"  # the far clusters first: P0 is nearest the labelled utterances
    assert all(s is not None for s in [r["score"] for r in kc]) and kc[0]["score"] >= kc[3]["score"]
    assert kc == suggest(b, inputs, n=4, strategy="kcenter")
    for seed in (0, 1, 2):
        de = suggest(b, inputs, n=4, strategy="diverse-entropy", seed=seed)
        assert sorted(clusters(de)) == ["P0", "P1", "P2", "P3"]
        assert de == suggest(b, inputs, n=4, strategy="diverse-entropy", seed=seed)
        assert [r["score"] for r in de] == sorted([r["score"] for r in de], reverse=True)
    # with no labelled utterance to start from, kcenter starts at the most uncertain one (no score)
    pool = bundle_inputs(b, load_store(write_cluster_store(tmp_path / "pool.h5", labelled=False)))
    alone = suggest(b, pool, n=4, strategy="kcenter")
    ent = suggest(b, pool, n=1, strategy="entropy")
    assert alone[0]["utt_id"] == ent[0]["utt_id"] and alone[0]["score"] is None
    assert sorted(clusters(alone)) == ["P0", "P1", "P2", "P3"]


def test_kmeans_finds_obvious_clusters_and_is_seeded():
    rng = np.random.default_rng(1)
    x = np.concatenate([c + 0.1 * rng.standard_normal((n, 3)) for c, n in ((0, 30), (5, 4), (-5, 4))])
    truth = np.repeat([0, 1, 2], [30, 4, 4])
    for seed in range(5):
        got = kmeans(x, 3, seed=seed)
        assert len({(t, g) for t, g in zip(truth, got)}) == 3  # a one-to-one relabelling of the truth
        assert np.array_equal(got, kmeans(x, 3, seed=seed))


def test_fewer_suggestions_than_asked_say_why(tmp_path, model, capsys):
    full = write_toy_store(tmp_path / "labelled.h5", seed=5, sep=1.2, rows=toy_rows(n_unlabelled=0))
    out = tmp_path / "s.csv"
    base = ["suggest", "--model", str(model), "-o", str(out)]
    assert cli([*base, "--store", str(full)]) == 0
    res = capsys.readouterr()
    assert "wrote 0 suggestions" in res.out
    assert "every one of the store's 120 utterances already carries a label; rerun with --include-labelled" in res.err
    assert read_csv(out) == []
    ids = tmp_path / "all.txt"
    ids.write_text("\n".join(r[0] for r in toy_rows(n_unlabelled=0)) + "\n")
    assert cli([*base, "--store", str(full), "--include-labelled", "--exclude", str(ids)]) == 0
    assert "all 120 utterances of the store are listed in --exclude" in capsys.readouterr().err
    assert cli([*base, "--store", str(full), "--include-labelled", "--n", "30", "--max-per-speaker", "1"]) == 0
    err = capsys.readouterr().err
    assert "10 of --n 30 written: --max-per-speaker 1 over the 10 speakers of the 120 candidates allows at most 10" in err
    pool = write_toy_store(tmp_path / "pool.h5", seed=5, sep=1.2)
    assert cli([*base, "--store", str(pool), "--n", "10"]) == 0
    assert ("4 of --n 10 written: only 4 of the store's 124 utterances are candidates; 120 labelled "
            "(--include-labelled ranks them too)") in capsys.readouterr().err


def test_balanced_is_refused_with_a_diversity_strategy(model, toy_store, tmp_path, capsys):
    assert cli(["suggest", "--model", str(model), "--store", str(toy_store), "--strategy", "kcenter", "--balanced",
                "-o", str(tmp_path / "s.csv")]) == 2
    assert "--balanced (round-robin over predicted classes) applies to entropy, margin and random" in capsys.readouterr().err


def test_label_studio_format_writes_tasks_with_audio(tmp_path, model, capsys):
    store, _, audio = pool_with_manifest(tmp_path / "proj")
    out = tmp_path / "tasks.json"
    base = ["suggest", "--model", str(model), "--store", str(store), "--n", "3", "-o", str(out)]
    assert cli([*base, "--format", "label-studio", "--ls-document-root", str(tmp_path / "proj")]) == 0
    assert "wrote 3 Label Studio tasks" in capsys.readouterr().out
    tasks = json.loads(out.read_text())
    assert len(tasks) == 3 and all(t["data"]["utt_id"].startswith("U_") for t in tasks)
    assert (tmp_path / "tasks.label_config.xml").is_file()
    assert cli([*base, "--ls-document-root", str(tmp_path)]) == 2
    assert "--ls-document-root only applies to --format label-studio" in capsys.readouterr().err
