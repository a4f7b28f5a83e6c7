import h5py
import numpy as np
import pytest

from ser_common.merge import merge_stores
from ser_common.store import FeatureStore, StoreError, StoreWriter, UtteranceMeta, partial_path

PROV = {"feature": "test", "manifest_sha256": "abc", "crop_s": 5.0, "layer": None}


def _meta(i, label="happy"):
    return UtteranceMeta(utt_id=f"u{i:03d}", label=label, speaker=f"s{i % 3}", session=f"g{i % 5 + 1}",
                         duration=1.0 + i, manifest_index=i, transcript=f"text {i}")


def _frames(i, dims=6):
    rng = np.random.default_rng(i)
    return rng.standard_normal((3 + i % 7, dims)).astype(np.float32)


def _write_all(path, n=20, dtype="float16", batch=4):
    with StoreWriter(path, dims=6, provenance=PROV, dtype=dtype) as w:
        for s in range(0, n, batch):
            idx = range(s, min(n, s + batch))
            w.append([_meta(i) for i in idx], [_frames(i) for i in idx])
        return w.finalize()


def test_roundtrip_one_dataset_with_offsets(tmp_path):
    path = _write_all(tmp_path / "f.h5", dtype="float32")
    assert not partial_path(path).exists()
    with h5py.File(path) as f:
        assert set(f) >= {"data", "offsets", "utt_id", "label", "speaker", "session", "duration"}
        assert f["data"].chunks is not None and f["data"].shape[1] == 6
    with FeatureStore(path) as s:
        assert len(s) == 20 and s.dims == 6
        data = s.load()
        for i in range(20):
            np.testing.assert_array_equal(s.frames(i), _frames(i))
            np.testing.assert_array_equal(data[s.offsets[i]:s.offsets[i + 1]], _frames(i))
        assert s.labels[3] == "happy" and s.sessions[3] == "g4" and s.transcripts[2] == "text 2"
        assert s.provenance["feature"] == "test" and s.provenance["dtype"] == "float32"
        assert s.attrs["complete"]


def test_interrupt_and_resume_is_bit_exact(tmp_path):
    ref = _write_all(tmp_path / "ref" / "f.h5")
    path = tmp_path / "run" / "f.h5"
    w = StoreWriter(path, dims=6, provenance=PROV)
    w.append([_meta(i) for i in range(8)], [_frames(i) for i in range(8)])
    # simulate a crash in the middle of the next batch: data resized past the commit point, never committed
    w._f["data"].resize(w._f["data"].shape[0] + 5, axis=0)
    w._f["utt_id"].resize(10, axis=0)
    w.close()
    with pytest.raises(StoreError, match="incomplete"):
        FeatureStore(partial_path(path))
    w = StoreWriter(path, dims=6, provenance=PROV)
    assert w.resumed and w.done_ids == {f"u{i:03d}" for i in range(8)}
    todo = [i for i in range(20) if f"u{i:03d}" not in w.done_ids]
    w.append([_meta(i) for i in todo], [_frames(i) for i in todo])
    w.finalize()
    with FeatureStore(ref) as a, FeatureStore(path) as b:
        assert list(a.utt_ids) == list(b.utt_ids)
        np.testing.assert_array_equal(a.load(), b.load())
        np.testing.assert_array_equal(a.offsets, b.offsets)


def test_resume_refuses_other_settings_and_complete_store_is_not_overwritten(tmp_path):
    path = tmp_path / "f.h5"
    w = StoreWriter(path, dims=6, provenance=PROV)
    w.append([_meta(0)], [_frames(0)])
    w.close()
    with pytest.raises(StoreError, match="different settings.*manifest_sha256"):
        StoreWriter(path, dims=6, provenance={**PROV, "manifest_sha256": "other"})
    w = StoreWriter(path, dims=6, provenance=PROV)
    w.finalize()
    with pytest.raises(StoreError, match="already exists"):
        StoreWriter(path, dims=6, provenance=PROV)
    StoreWriter(path, dims=6, provenance=PROV, overwrite=True).close()


def test_bad_batches_are_refused_whole(tmp_path):
    w = StoreWriter(tmp_path / "f.h5", dims=6, provenance=PROV)
    bad = _frames(1).copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="u001: features contain NaN"):
        w.append([_meta(0), _meta(1)], [_frames(0), bad])
    with pytest.raises(ValueError, match=r"u000: frames must be \(n_frames, 6\)"):
        w.append([_meta(0)], [np.zeros((3, 5))])
    with pytest.raises(ValueError, match="overflow float16"):
        w.append([_meta(0)], [np.full((3, 6), 1e6)])
    assert w.done_ids == set()
    w.append([_meta(0)], [_frames(0)])
    with pytest.raises(ValueError, match="already in"):
        w.append([_meta(0)], [_frames(0)])
    w.skip("u009", "audio shorter than one window")
    path = w.finalize()
    with FeatureStore(path) as s:
        assert len(s) == 1 and s.skipped == {"u009": "audio shorter than one window"}


def test_text_store_keeps_tokens(tmp_path):
    with StoreWriter(tmp_path / "t.h5", dims=6, provenance=PROV, text=True) as w:
        w.append([_meta(0), _meta(1)], [_frames(0), _frames(1)],
                 tokens=[[f"t{j}" for j in range(len(_frames(i)))] for i in (0, 1)])
        path = w.finalize()
    with FeatureStore(path) as s:
        assert s.is_text and s.tokens("u001") == [f"t{j}" for j in range(len(_frames(1)))]


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(StoreError, match="not found"):
        FeatureStore(tmp_path / "nope.h5")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(StoreError, match="junk.h5: not a readable HDF5"):
        FeatureStore(tmp_path / "junk.h5")


def test_merge_restores_manifest_order_and_checks_provenance(tmp_path):
    ref = _write_all(tmp_path / "ref.h5")
    shards = []
    for k in range(3):
        prov = {**PROV, "shard": f"{k + 1}/3"}
        with StoreWriter(tmp_path / f"s{k}.h5", dims=6, provenance=prov) as w:
            idx = [i for i in range(20) if i % 3 == k][::-1]
            w.append([_meta(i) for i in idx], [_frames(i) for i in idx])
            shards.append(w.finalize())
    merged = merge_stores(shards, tmp_path / "merged.h5")
    with FeatureStore(ref) as a, FeatureStore(merged) as b:
        assert list(a.utt_ids) == list(b.utt_ids)
        np.testing.assert_array_equal(a.load(), b.load())
        assert b.provenance["shard"] is None
    with StoreWriter(tmp_path / "odd.h5", dims=6, provenance={**PROV, "crop_s": 3.0}) as w:
        w.append([_meta(99)], [_frames(99)])
        odd = w.finalize()
    with pytest.raises(StoreError, match="crop_s"):
        merge_stores([shards[0], odd], tmp_path / "bad.h5")


def _open_files(path):
    """Names of the HDF5 files this process still holds open at ``path``."""
    return [n for n in (i.name for i in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE)) if n == str(path).encode()]


@pytest.mark.parametrize("corrupt,match", [
    (lambda f: f.attrs.__setitem__("format_version", 99), "store format"),
    (lambda f: f.attrs.__setitem__("complete", False), "incomplete"),
    (lambda f: f.__delitem__("label"), "dataset /label is missing"),
    (lambda f: f["utt_id"].__setitem__(1, "u000"), "appears more than once"),
])
def test_a_store_refused_on_open_is_closed(tmp_path, corrupt, match):
    path = _write_all(tmp_path / "f.h5", n=4)
    with h5py.File(path, "r+") as f:
        corrupt(f)
    with pytest.raises(StoreError, match=match) as e:
        FeatureStore(path)
    # the refused handle is closed even while the traceback (and the half-built reader in it) lives
    assert e.value is not None and _open_files(path) == []
    h5py.File(path, "w").close()        # HDF5 refuses to truncate a file this process still has open


def test_a_writer_refused_on_open_or_failing_to_create_is_closed(tmp_path):
    path = tmp_path / "f.h5"
    StoreWriter(path, dims=6, provenance=PROV).close()
    with pytest.raises(StoreError, match="different settings") as e:
        StoreWriter(path, dims=6, provenance={**PROV, "crop_s": 2.0})
    assert e.value is not None and _open_files(partial_path(path)) == []
    partial_path(path).unlink()
    # a provenance value HDF5 cannot store fails after the new file is opened
    with pytest.raises(TypeError) as e:
        StoreWriter(path, dims=6, provenance={**PROV, "odd": {1, 2}})
    assert e.value is not None and _open_files(partial_path(path)) == []
    h5py.File(partial_path(path), "w").close()
