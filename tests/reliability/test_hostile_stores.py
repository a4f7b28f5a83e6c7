"""Corrupt or hostile stores are refused on open, in O(metadata), with the file and the fix named."""

from __future__ import annotations

import json
import resource
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from extract.cli import main as extract_cli
from ser_common.store import FeatureStore, StoreError, StoreWriter, UtteranceMeta
from train.cli import run as train_cli


def _good(path, n=6, dims=4):
    rng = np.random.default_rng(0)
    with StoreWriter(path, dims=dims, provenance={"feature": "x", "modality": "audio"}, dtype="float32") as w:
        w.append([UtteranceMeta(utt_id=f"u{i}", label=("sad", "happy")[i % 2], speaker=f"s{i % 3}",
                                session=f"g{i % 3}", duration=1.0, manifest_index=i) for i in range(n)],
                 [rng.standard_normal((3 + i, dims)).astype(np.float32) for i in range(n)])
        return w.finalize()


def _offsets_not_monotonic(f):
    off = f["offsets"][:]
    off[2], off[3] = off[3], off[2]
    f["offsets"][:] = off


def _offsets_past_data(f):
    f["offsets"][-1] = f["data"].shape[0] + 10


def _offsets_short_of_data(f):
    f["data"].resize(f["data"].shape[0] + 5, axis=0)


def _short_label_column(f):
    f["label"].resize(3, axis=0)


def _n_written_too_big(f):
    f.attrs["n_written"] = 1000


def _dims_lie(f):
    f.attrs["dims"] = 7


def _duplicate_ids(f):
    f["utt_id"][1] = "u0"


def _complete_is_a_string(f):
    f.attrs["complete"] = "True"


def _provenance_not_json(f):
    f.attrs["provenance_json"] = "{not json"


def _provenance_a_list(f):
    f.attrs["provenance_json"] = json.dumps([1, 2])


def _provenance_mistyped_layer(f):
    f.attrs["provenance_json"] = json.dumps({"feature": "x", "layer": "three"})


def _skipped_not_an_object(f):
    f.attrs["skipped_json"] = json.dumps(["u9"])


def _missing_dataset(f):
    del f["speaker"]


def _label_is_numbers(f):
    del f["label"]
    f.create_dataset("label", data=np.arange(6))


def _data_is_int(f):
    del f["data"]
    f.create_dataset("data", data=np.zeros((33, 4), np.int32))


@pytest.mark.parametrize("damage, words", [
    (_offsets_not_monotonic, "offsets"), (_offsets_past_data, "offsets"), (_offsets_short_of_data, "/data"),
    (_short_label_column, "/label"), (_n_written_too_big, "n_written|offsets"), (_dims_lie, "dims"),
    (_duplicate_ids, "'u0' appears more than once"), (_complete_is_a_string, "complete"),
    (_provenance_not_json, "provenance_json is not valid JSON"), (_provenance_a_list, "not a JSON object"),
    (_provenance_mistyped_layer, "mistyped identity"), (_skipped_not_an_object, "skipped_json"),
    (_missing_dataset, "/speaker is missing"), (_label_is_numbers, "/label is not a string"),
    (_data_is_int, "/data is not a 2-D float"),
])
def test_damaged_store_is_refused_naming_file_and_fix(tmp_path, damage, words):
    path = _good(tmp_path / "s.h5")
    with h5py.File(path, "r+") as f:
        damage(f)
    with pytest.raises(StoreError) as e:
        FeatureStore(path)
    msg = str(e.value)
    assert str(path) in msg and "re-extract" in msg
    import re
    assert re.search(words, msg), msg


def test_a_tiny_file_claiming_30m_frames_is_refused_without_allocating(tmp_path):
    path = _good(tmp_path / "s.h5")
    with h5py.File(path, "r+") as f:
        f["data"].resize(30_000_000, axis=0)
        off = f["offsets"][:]
        off[-1] = 30_000_000
        f["offsets"][:] = off
    assert path.stat().st_size < 2_000_000
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(StoreError, match=r"claims 30000000 frames .* holds only"):
        FeatureStore(path)
    assert time.perf_counter() - t0 < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200_000  # KB: far from 480 MB


def test_not_hdf5_at_all(tmp_path):
    path = tmp_path / "s.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 100)
    with pytest.raises(StoreError, match="not a readable HDF5 store"):
        FeatureStore(path)


def test_info_reports_a_corrupt_store_and_lists_the_others(tmp_path):
    good = _good(tmp_path / "a.h5")
    bad = _good(tmp_path / "b.h5")
    with h5py.File(bad, "r+") as f:
        _offsets_past_data(f)
    res = CliRunner().invoke(extract_cli, ["info", str(tmp_path)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"{good}: 6 utterances" in res.output and f"{bad}: corrupt store" in res.output
    assert "weights_sha256" in res.output and "identity" in res.output


def test_training_on_a_corrupt_store_is_a_one_line_error(tmp_path, capsys):
    bad = _good(tmp_path / "b.h5")
    with h5py.File(bad, "r+") as f:
        _duplicate_ids(f)
    assert train_cli(["cv", "--store", str(bad), "--head", "mean", "--out", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert "Error:" in err and str(bad) in err and "appears more than once" in err and "Traceback" not in err
