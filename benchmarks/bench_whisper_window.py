"""Whisper's input window: extraction speed of padded (30 s), fixed shorter windows and native, in one run.

The same clips (the first ``--n`` of a manifest, decoded and cropped once, as ``ser-extract`` does) are
encoded under each ``--whisper-window`` back to back in this process, on the same device, all layers in one
forward pass (``@all``), batches as the pipeline makes them. Prints and writes (``results/bench/``) audio
seconds per wall second (x real time) per window; UA per layer for each window comes from the stores
(``ser-extract --whisper-window W`` + ``ser-train sweep``).

    python benchmarks/bench_whisper_window.py --manifest manifests/emodb.jsonl \\
        --model ../shared/models/whisper-base-encoder --windows padded,10,native --n 60
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from bench_json import bench_json_path, write_bench_json

from extract.audio import load_audio
from extract.feature_set import SAMPLE_RATE
from extract.registry import build
from ser_common.manifest import read_manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--model", required=True, help="Whisper model folder or hub id")
    ap.add_argument("--windows", default="padded,10,native")
    ap.add_argument("--n", type=int, default=60, help="clips (the manifest's first n)")
    ap.add_argument("--crop", type=float, default=5.0)
    ap.add_argument("--batch", type=int, default=4, help="clips per forward pass (the CPU default)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    records = read_manifest(a.manifest)[: a.n]
    waves = [load_audio(r.audio, crop_s=a.crop, start=r.start, end=r.end) for r in records]
    audio_s = sum(w.shape[0] for w in waves) / SAMPLE_RATE
    rows = []
    for window in a.windows.split(","):
        fs = build(f"hf:{a.model}@all", whisper_window=window).to("cpu")
        fs.encode_outputs(waves[:1])                                   # warm-up (allocations, first kernels)
        t0 = time.perf_counter()
        for i in range(0, len(waves), a.batch):
            fs.encode_outputs(waves[i:i + a.batch])
        wall = time.perf_counter() - t0
        rows.append({"window": window, "clips": len(waves), "audio_s": round(audio_s, 1), "wall_s": round(wall, 2),
                     "x_real_time": round(audio_s / wall, 2), "store": fs.name})
        print(f"{window:>8}: {len(waves)} clips, {audio_s:.0f} s of audio in {wall:.1f} s = "
              f"{audio_s / wall:.1f}x real time", flush=True)
    base = next((r for r in rows if r["window"] == "padded"), rows[0])
    for r in rows:
        r["speed_up_vs_padded"] = round(base["wall_s"] / r["wall_s"], 2)
    write_bench_json(a.json or bench_json_path("bench_whisper_window", a.manifest.stem, f"n{len(waves)}", "cpu"),
                     {"benchmark": "bench_whisper_window", "command": "python " + " ".join(sys.argv),
                      "machine": {"cpus": torch.get_num_threads(), "processor": platform.processor(),
                                  "torch": torch.__version__}, "rows": rows})


if __name__ == "__main__":
    main()
