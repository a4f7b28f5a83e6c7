"""A store is never stale, never lost, never silently wrong: reuse, overwrite, locks, skips, worker death.

Every refusal is checked for its message (the file, the problem, the fix) AND for what it left on disk: the
old store still opens and equals its earlier content; committed batches survive.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from extract.cli import main as extract_cli
from extract.pipeline import ExtractConfig, ExtractionError, WorkerDied, _in_order, extract_all, extract_feature
from ser_common.identity import FeatureIdentity
from ser_common.lock import StoreLocked, lock_path
from ser_common.manifest import read_manifest, write_manifest
from ser_common.merge import merge_stores
from ser_common.store import FeatureStore, StoreError, StoreWriter, UtteranceMeta, partial_path
from tests.extract.conftest import run_until_commits, slow_extraction_script, write_corpus

ROOT = Path(__file__).resolve().parents[2]
CKPTS = ROOT / "tests" / "fixtures" / "wav2vec"


def _cfg(**kw):
    return ExtractConfig(workers=0, progress=False, device="cpu", **kw)


def snapshot(path: Path) -> dict:
    """utt_id -> (frames, label) and the provenance: what 'equals its earlier content' means here."""
    with FeatureStore(path) as s:
        return {"rows": {u: (s.frames(i).copy(), s.labels[i]) for i, u in enumerate(s.utt_ids)},
                "prov": s.provenance, "skipped": dict(s.skipped)}


def assert_same(a: dict, b: dict) -> None:
    assert a["prov"] == b["prov"]
    assert_same_rows(a, b)


def assert_same_rows(a: dict, b: dict) -> None:
    """The same utterances with bit-equal frames and equal labels (provenance may differ: another run)."""
    assert a["rows"].keys() == b["rows"].keys()
    for u in a["rows"]:
        np.testing.assert_array_equal(a["rows"][u][0], b["rows"][u][0])
        assert a["rows"][u][1] == b["rows"][u][1]


def assert_equals_fresh_run(manifest: Path, out: Path, ref: Path) -> None:
    """The store in ``out`` equals an uninterrupted extraction of ``manifest`` into ``ref``."""
    extract_feature(manifest, "lld", ref, _cfg())
    assert_same_rows(snapshot(out / "lld.h5"), snapshot(ref / "lld.h5"))


@pytest.fixture
def built(tmp_path):
    """A manifest of 12 clips and a complete LLD store of it."""
    manifest = write_corpus(tmp_path)
    out = tmp_path / "stores"
    extract_feature(manifest, "lld", out, _cfg())
    return manifest, out, out / "lld.h5"


# ---- never stale ----------------------------------------------------------------------------------------
def test_same_settings_reuse_the_store(built):
    manifest, out, path = built
    assert extract_feature(manifest, "lld", out, _cfg()).status == "up to date"


@pytest.mark.parametrize("change, field", [
    (dict(crop_s=2.0), "crop_s"),
    (dict(crop_s=None), "crop_s"),
    (dict(store_dtype="float32"), "store_dtype"),
])
def test_changed_settings_are_refused_and_the_store_kept(built, change, field):
    manifest, out, path = built
    before = snapshot(path)
    with pytest.raises(StoreError) as e:
        extract_feature(manifest, "lld", out, _cfg(**change))
    msg = str(e.value)
    assert str(path) in msg and field in msg and "--overwrite" in msg
    assert_same(snapshot(path), before)


def test_relabelled_or_other_manifest_is_refused(built):
    manifest, out, path = built
    before = snapshot(path)
    recs = read_manifest(manifest)
    relabelled = [type(r)(**{**r.__dict__, "label": "angry" if r.label == "happy" else r.label}) for r in recs]
    write_manifest(relabelled, manifest)
    with pytest.raises(StoreError, match=r"manifest_sha256.*--overwrite"):
        extract_feature(manifest, "lld", out, _cfg())
    assert_same(snapshot(path), before)
    rep = extract_feature(manifest, "lld", out, _cfg(overwrite=True))
    assert rep.status == "done"
    after = snapshot(path)
    assert sum(lab == "angry" for _, lab in after["rows"].values()) > sum(lab == "angry" for _, lab in before["rows"].values())


def test_another_checkpoint_is_refused(tmp_path):
    manifest = write_corpus(tmp_path, n=4)
    out = tmp_path / "stores"
    extract_feature(manifest, f"wav2vec:{CKPTS / 'large.pt'}", out, _cfg())
    with pytest.raises(StoreError, match=r"weights_sha256"):
        extract_feature(manifest, f"wav2vec:{CKPTS / 'base5.pt'}", out, _cfg())


def test_two_specs_for_one_store_name_are_refused_up_front(tmp_path):
    manifest = write_corpus(tmp_path, n=4)
    out = tmp_path / "stores"
    with pytest.raises(ValueError, match=r"both write wav2vec\.h5.*different --out"):
        extract_all(manifest, [f"wav2vec:{CKPTS / 'large.pt'}", f"wav2vec:{CKPTS / 'base5.pt'}"], out, _cfg())
    assert not out.exists() or not list(out.iterdir())
    res = CliRunner().invoke(extract_cli, ["--manifest", str(manifest), "--feature", f"wav2vec:{CKPTS / 'large.pt'}",
                                           "--feature", f"wav2vec:{CKPTS / 'base5.pt'}", "--out", str(out), "-q"])
    assert res.exit_code == 1 and "both write wav2vec.h5" in res.output and "Traceback" not in res.output


def test_skipped_utterance_is_retried_once_its_file_changes(tmp_path):
    manifest = write_corpus(tmp_path, n=6)
    recs = read_manifest(manifest)
    broken = Path(recs[2].audio)
    good_bytes = broken.read_bytes()
    broken.write_bytes(b"not audio at all")
    out = tmp_path / "stores"
    rep = extract_feature(manifest, "lld", out, _cfg())
    assert rep.n_written == 5 and recs[2].utt_id in rep.skipped
    # unchanged file: still skipped, nothing recomputed
    assert extract_feature(manifest, "lld", out, _cfg()).status == "up to date"
    before = snapshot(out / "lld.h5")
    # --retry-skipped retries it even though nothing changed (and it fails again: the store is unchanged)
    again = extract_feature(manifest, "lld", out, _cfg(retry_skipped=True))
    assert again.status == "done" and again.n_written == 0 and recs[2].utt_id in again.skipped
    assert_same({**snapshot(out / "lld.h5"), "prov": before["prov"]}, before)
    # the file is repaired: the next plain run retries it, and the old reason is gone
    broken.write_bytes(good_bytes)
    os.utime(broken, ns=(time.time_ns(), time.time_ns() + 10**9))
    fixed = extract_feature(manifest, "lld", out, _cfg())
    assert fixed.n_written == 1 and fixed.n_skipped == 0
    with FeatureStore(out / "lld.h5") as s:
        assert len(s) == 6 and not s.skipped and recs[2].utt_id in set(s.utt_ids)
    assert_equals_fresh_run(manifest, out, tmp_path / "ref")


# ---- never lost -----------------------------------------------------------------------------------------
def test_killed_overwrite_leaves_the_old_store(tmp_path):
    manifest = write_corpus(tmp_path, n=24, seconds=(0.5, 0.8))
    out = tmp_path / "stores"
    extract_feature(manifest, "lld", out, _cfg(crop_s=0.3))
    before = snapshot(out / "lld.h5")
    proc = run_until_commits(slow_extraction_script(manifest, out, "--overwrite"), 2)
    proc.kill()
    proc.wait(timeout=30)
    assert_same(snapshot(out / "lld.h5"), before)           # the old complete store is untouched
    assert partial_path(out / "lld.h5").exists()
    # the same overwrite again resumes the interrupted replacement and then renames it over the old store
    rep = extract_feature(manifest, "lld", out, _cfg(overwrite=True))
    assert rep.status == "done" and 0 < rep.n_written < 24
    with FeatureStore(out / "lld.h5") as s:
        assert len(s) == 24 and s.provenance["crop_s"] == 5.0
    assert not partial_path(out / "lld.h5").exists() and not lock_path(out / "lld.h5").exists()


@pytest.mark.parametrize("hdf5_locking", ["TRUE", "FALSE"])
def test_second_writer_is_refused_naming_the_first(tmp_path, hdf5_locking):
    manifest = write_corpus(tmp_path, n=24, seconds=(0.5, 0.8))
    out = tmp_path / "stores"
    proc = run_until_commits(slow_extraction_script(manifest, out), 1, env={"HDF5_USE_FILE_LOCKING": hdf5_locking})
    try:
        res = CliRunner().invoke(extract_cli, ["--manifest", str(manifest), "--feature", "lld", "--out", str(out),
                                               "--workers", "0", "-q"])
        assert res.exit_code == 1 and "Traceback" not in res.output
        assert "another process is writing this store" in res.output and f"pid {proc.pid}" in res.output
        assert "lld.h5.lock" in res.output
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    # the winner's partial store was not touched by the loser: it resumes to a store equal to a fresh run
    extract_feature(manifest, "lld", out, _cfg())
    assert_equals_fresh_run(manifest, out, tmp_path / "ref")


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    path = tmp_path / "f.h5"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket
    lock_path(path).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with StoreWriter(path, dims=2, provenance={"feature": "x"}):
        assert json.loads(lock_path(path).read_text())["pid"] == os.getpid()
        with pytest.raises(StoreLocked, match=f"pid {os.getpid()}"):
            StoreWriter(path, dims=2, provenance={"feature": "x"})
    assert not lock_path(path).exists()
    lock_path(path).write_text(json.dumps({"pid": 1, "host": "another-host", "started_utc": "then"}))
    with pytest.raises(StoreLocked, match=r"pid 1 on another-host.*delete .*f\.h5\.lock"):
        StoreWriter(path, dims=2, provenance={"feature": "x"})


def test_full_disk_is_a_clear_stop_and_resumes_exactly(tmp_path, monkeypatch):
    """The commit-time check (simulated free space): stop before writing, keep what was committed."""
    manifest = write_corpus(tmp_path, n=12)
    out = tmp_path / "stores"
    import ser_common.store as store

    calls = {"n": 0}
    real = store.free_bytes

    def shrinking(folder):
        calls["n"] += 1
        return real(folder) if calls["n"] <= 3 else 1000

    monkeypatch.setattr(store, "free_bytes", shrinking)
    res = CliRunner().invoke(extract_cli, ["--manifest", str(manifest), "--feature", "lld", "--out", str(out),
                                           "--workers", "0", "-q"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "disk full" in res.output and "committed" in res.output and "rerun the same command to resume" in res.output
    with FeatureStore(partial_path(out / "lld.h5"), allow_partial=True) as s:
        committed = len(s)
    assert committed > 0
    monkeypatch.setattr(store, "free_bytes", real)
    rep = extract_feature(manifest, "lld", out, _cfg())
    assert rep.n_written == 12 - committed
    assert_equals_fresh_run(manifest, out, tmp_path / "ref")


def _mount_tmpfs(where: Path, size: str, options: str = "") -> None:
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (f",{options}" if options else "")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.decode().strip()}): run as root to test a real full disk")


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size, options)`` -> a folder on a fresh tmpfs of that size (root only; skipped otherwise)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a real full disk needs root (mount -t tmpfs); run the suite as root to include it")
    mounted = []

    def make(size: str, options: str = "") -> Path:
        where = tmp_path / f"tmpfs{len(mounted)}"
        _mount_tmpfs(where, size, options)
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _wide_batches(n_batches: int, per: int = 4, frames: int = 100, dims: int = 256):
    rng = np.random.default_rng(0)
    for b in range(n_batches):
        metas = [UtteranceMeta(utt_id=f"u{b * per + i:04d}", label="sad", speaker="s", session="g1", duration=2.0,
                               manifest_index=b * per + i) for i in range(per)]
        yield metas, [rng.standard_normal((frames, dims)).astype(np.float32) for _ in range(per)]


def _write_until_full(path: Path, n_batches: int) -> int:
    """Append batches until the disk refuses one; returns the utterances committed."""
    with StoreWriter(path, dims=256, provenance={"feature": "wide"}, dtype="float32") as w:
        try:
            for metas, frames in _wide_batches(n_batches):
                w.append(metas, frames)
        except StoreError as e:
            assert "committed" in str(e) and "resume" in str(e)
            return len(w.done_ids)
    raise AssertionError("the disk never filled up")


def _resume_and_compare(path: Path, n_batches: int, ref_dir: Path) -> None:
    with StoreWriter(path, dims=256, provenance={"feature": "wide"}, dtype="float32") as w:
        assert w.resumed
        for metas, frames in _wide_batches(n_batches):
            todo = [(m, x) for m, x in zip(metas, frames) if m.utt_id not in w.done_ids]
            if todo:
                w.append([m for m, _ in todo], [x for _, x in todo])
        w.finalize()
    with StoreWriter(ref_dir / "ref.h5", dims=256, provenance={"feature": "wide"}, dtype="float32") as w:
        for metas, frames in _wide_batches(n_batches):
            w.append(metas, frames)
        w.finalize()
    with FeatureStore(path) as a, FeatureStore(ref_dir / "ref.h5") as b:
        assert list(a.utt_ids) == list(b.utt_ids)
        np.testing.assert_array_equal(a.load(), b.load())


def test_real_full_disk_stops_before_the_disk_is_full(tmp_path, tmpfs):
    """A real 8 MB tmpfs: the free-space check stops the writer cleanly; freeing space resumes exactly."""
    disk = tmpfs("8m")
    path = disk / "wide.h5"
    committed = _write_until_full(path, 40)          # 40 batches of 400 KB do not fit in 8 MB
    assert 0 < committed < 160
    with FeatureStore(partial_path(path), allow_partial=True) as s:
        assert len(s) == committed
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    _resume_and_compare(path, 40, tmp_path)


def test_real_enospc_inside_a_write_keeps_committed_batches(tmp_path, tmpfs, monkeypatch):
    """With the check switched off, HDF5 itself hits ENOSPC mid-batch: a clear error, not a crash, and the
    batches committed before it survive and resume exactly."""
    import ser_common.store as store

    monkeypatch.setattr(store, "DISK_MARGIN_BYTES", -(1 << 40))
    disk = tmpfs("3m")
    path = disk / "wide.h5"
    committed = _write_until_full(path, 40)
    assert committed > 0
    monkeypatch.undo()
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    with FeatureStore(partial_path(path), allow_partial=True) as s:
        assert len(s) == committed
    _resume_and_compare(path, 40, tmp_path)


def test_read_only_output_folder_is_a_clear_error(tmp_path, tmpfs):
    manifest = write_corpus(tmp_path, n=3)
    ro = tmpfs("1m", "ro")
    res = CliRunner().invoke(extract_cli, ["--manifest", str(manifest), "--feature", "lld", "--out", str(ro / "s"),
                                           "--workers", "0", "-q"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert str(ro) in res.output and "writable --out" in res.output


def test_fit_out_over_an_existing_bundle_is_atomic(tmp_path, monkeypatch):
    from train.bundle import fit_bundle, load_bundle, save_bundle
    from train.config import TrainConfig
    from train.inputs import load_inputs
    from tests.train.toy_stores import write_toy_store

    store = write_toy_store(tmp_path / "toy.h5")
    b = fit_bundle(load_inputs(store), "mean", TrainConfig(epochs=2))
    path = save_bundle(b, tmp_path / "model.pt")
    before = path.read_bytes()
    import torch

    def full(obj, f, *a, **k):
        Path(f).write_bytes(b"half a bund")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(RuntimeError, match=r"model\.pt: cannot write.*No space left.*unchanged"):
        save_bundle(b, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
    monkeypatch.undo()
    load_bundle(path)


# ---- a dead decode worker ---------------------------------------------------------------------------------
def test_a_dead_worker_is_reported_not_a_traceback(tmp_path, monkeypatch):
    from tests.reliability import dying_worker

    with pytest.raises(WorkerDied):
        list(_in_order([[1], [2]], dying_worker.die, (), workers=1, prefetch=1))
    manifest = write_corpus(tmp_path, n=4)

    def broken(*a, **k):
        raise WorkerDied("A process in the process pool was terminated abruptly")
        yield

    import extract.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_in_order", broken)
    with pytest.raises(ExtractionError, match=r"decoding worker died.*u00\d.*rerun the same command to resume"):
        extract_feature(manifest, "lld", tmp_path / "s", _cfg())
    assert not lock_path(tmp_path / "s" / "lld.h5").exists()


# ---- merge and portable models --------------------------------------------------------------------------------
def test_merge_refuses_shards_of_other_features(tmp_path):
    manifest = write_corpus(tmp_path, n=6)
    out = tmp_path / "s"
    extract_feature(manifest, "lld", out, _cfg(shard=(0, 2)))
    extract_feature(manifest, "lld", out, _cfg(shard=(1, 2), crop_s=1.0))
    with pytest.raises(StoreError, match=r"merge: .*other features.*crop_s"):
        merge_stores(sorted(out.glob("*.shard-*.h5")), out / "lld.h5")
    assert not (out / "lld.h5").exists()


def test_a_bundle_matches_the_same_weights_under_another_path(tmp_path):
    from train.bundle import ProvenanceMismatch, bundle_inputs, fit_bundle, load_bundle, save_bundle
    from train.config import TrainConfig
    from train.data import load_store
    from train.inputs import load_inputs
    from tests.train.toy_stores import AUDIO_PROV, write_toy_store

    here = {**AUDIO_PROV, "spec": "hf:/home/alice/models/whisper-base@3", "encoder": "/home/alice/models/whisper-base"}
    there = {**here, "spec": "hf:D:/weights/Whisper@3", "encoder": "D:/weights/Whisper", "manifest_sha256": "other",
             "compute_dtype": "bfloat16"}
    a = write_toy_store(tmp_path / "a.h5", provenance=here)
    b = write_toy_store(tmp_path / "b.h5", provenance=there, seed=4)
    model = save_bundle(fit_bundle(load_inputs(a), "mean", TrainConfig(epochs=2)), tmp_path / "m.pt")
    bundle = load_bundle(model)
    bundle_inputs(bundle, load_store(b))                     # same weights sha256, other path: accepted
    c = write_toy_store(tmp_path / "c.h5", provenance={**there, "weights_sha256": "f" * 64})
    with pytest.raises(ProvenanceMismatch, match=r"weights_sha256"):
        bundle_inputs(bundle, load_store(c))
    assert FeatureIdentity.from_dict(bundle.stores[0]["identity"]).weights_sha256 == "abc"
