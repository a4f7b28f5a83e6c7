"""``torchrun --nproc-per-node 2 ser-extract --shard auto`` for real (CPU), merged == one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from extract.config import ExtractConfig
from extract.pipeline import extract_feature
from ser_common.store import FeatureStore
from tests.extract.conftest import write_corpus
from tests.extract.test_pipeline import _assert_same, _store_dict

BIN = Path(sys.executable).parent


def _tool(name: str) -> Path:
    path = BIN / name
    if not path.is_file():
        pytest.skip(f"{path} not found (torchrun ships with torch; ser-extract with `pip install -e .`)")
    return path


@pytest.mark.slow
def test_torchrun_two_processes_merged_equal_single_process(tmp_path):
    torchrun, ser_extract = _tool("torchrun"), _tool("ser-extract")
    manifest = write_corpus(tmp_path, n=7, seconds=(0.3, 0.6))  # short clips: the LLDs dominate
    extract_feature(manifest, "lld", tmp_path / "single", ExtractConfig(workers=0, progress=False, device="cpu"))
    shards = tmp_path / "shards"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2", str(ser_extract), "--manifest", str(manifest),
           "--feature", "lld", "--out", str(shards), "--shard", "auto", "--device", "cpu", "--workers", "0", "-q"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(p.name for p in shards.glob("*.h5")) == ["lld.shard-0-of-2.h5", "lld.shard-1-of-2.h5"]
    for i, n in ((0, 4), (1, 3)):  # rank i takes manifest positions p % 2 == i
        with FeatureStore(shards / f"lld.shard-{i}-of-2.h5") as s:
            assert len(s) == n and s.provenance["shard"] == f"{i}/2"
    merge = subprocess.run([str(ser_extract), "merge", str(shards)], env=env, capture_output=True, text=True,
                           timeout=60)
    assert merge.returncode == 0, merge.stdout + merge.stderr
    assert "7 utterances from 2 shards" in merge.stdout
    assert sorted(p.name for p in shards.glob("*.h5")) == ["lld.h5"]
    a, prov_a = _store_dict(tmp_path / "single" / "lld.h5")
    b, prov_b = _store_dict(shards / "lld.h5")
    _assert_same(a, b)  # frames bit-identical, labels/speakers/sessions/durations/manifest positions equal
    ignore = {"shard", "merged_from", "package_versions", "created_utc"}
    assert {k: v for k, v in prov_a.items() if k not in ignore} == {k: v for k, v in prov_b.items() if k not in ignore}
    with FeatureStore(shards / "lld.h5") as s:
        assert list(s.manifest_index) == list(range(7))
