"""The 34 LLDs per clip: pyAudioAnalysis as published against ``extract.lld`` (its chroma bin tables built
once per process instead of once per 50 ms frame), side by side in one run on the same clips.

Clips: the first ``--n`` utterances of ``--manifest`` (decoded, mono 16 kHz, cropped to 5 s as extraction
does), or, without a manifest, ``--n`` synthetic 2-5 s clips (a chirp in noise). Each clip is analysed by both
paths in turn, one process, one thread; the descriptors must be equal to the bit (checked). Figures go to
``results/bench/bench_lld-<clips>-n<N>.json``.

    python benchmarks/bench_lld.py --manifest manifests/emodb.jsonl --n 100
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

from bench_json import bench_json_path, write_bench_json


def clips(manifest: Path | None, n: int) -> list[np.ndarray]:
    if manifest is None:
        rng = np.random.default_rng(0)
        out = []
        for _ in range(n):
            t = np.arange(int(rng.uniform(2, 5) * 16_000)) / 16_000
            out.append((0.3 * np.sin(2 * np.pi * 150 * t * (1 + t)) + 0.05 * rng.standard_normal(t.size))
                       .astype(np.float32))
        return out
    from extract.audio import load_audio
    from ser_common.manifest import read_manifest

    return [load_audio(r.audio, crop_s=5.0) for r in read_manifest(manifest)[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()

    from pyAudioAnalysis import ShortTermFeatures

    from extract.lld import LLDFeatureSet

    waves = clips(a.manifest, a.n)
    ours = LLDFeatureSet()
    ours.encode_one(waves[0])                          # memoises the tables in this process
    published = ShortTermFeatures.chroma_features_init.original
    memoised = ShortTermFeatures.chroma_features_init
    seconds = {"pyAudioAnalysis": 0.0, "extract.lld": 0.0}
    identical = True
    for w in waves:
        ShortTermFeatures.chroma_features_init = published
        t0 = time.perf_counter()
        ref, _ = ShortTermFeatures.feature_extraction(w.astype(np.float64), 16_000, ours.window, ours.step,
                                                      deltas=False)
        t1 = time.perf_counter()
        ShortTermFeatures.chroma_features_init = memoised
        got = ours.encode_one(w)
        t2 = time.perf_counter()
        seconds["pyAudioAnalysis"] += t1 - t0
        seconds["extract.lld"] += t2 - t1
        identical &= bool(np.array_equal(got, np.ascontiguousarray(ref.T, dtype=np.float32)))
    audio_s = sum(len(w) for w in waves) / 16_000
    rows = [{"path": k, "clips": len(waves), "audio_s": round(audio_s, 1), "seconds": round(v, 2),
             "ms_per_clip": round(1e3 * v / len(waves), 1), "x_real_time": round(audio_s / v, 1)}
            for k, v in seconds.items()]
    rows[1]["speedup"] = round(seconds["pyAudioAnalysis"] / seconds["extract.lld"], 2)
    print("| path | clips | audio (s) | seconds | ms per clip | x real time |\n|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['path']} | {r['clips']} | {r['audio_s']} | {r['seconds']} | {r['ms_per_clip']} | "
              f"{r['x_real_time']} |")
    print(f"\nspeed-up {rows[1]['speedup']}x; descriptors identical to the bit: {identical}")
    name = a.manifest.stem if a.manifest else "synthetic"
    write_bench_json(a.json or bench_json_path("bench_lld", name, f"n{len(waves)}"),
                     {"benchmark": "bench_lld", "command": "python " + " ".join(sys.argv),
                      "machine": {"platform": platform.platform(), "python": platform.python_version()},
                      "clips": str(a.manifest or "synthetic"), "rows": rows, "identical": identical})
    if not identical:
        sys.exit("the descriptors differ")


if __name__ == "__main__":
    main()
