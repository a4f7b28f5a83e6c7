"""Extraction benchmark: real-time factor and peak memory of each feature set, pipeline vs a naive loop.

Workloads (audio files on disk, decoded for real):

* ``iemocap-synth``: 5531 clips of 2-5 s (uniform), 16 kHz 16-bit WAV like IEMOCAP's, generated once into
  ``--workdir`` (speech-like noise bursts; content does not matter for speed);
* ``ravdess``: the real RAVDESS in ../shared (1440 FLAC files), or any manifest with ``--manifest``.

For each feature set the pipeline (``extract.pipeline.extract_feature``: worker decoding, length batching,
batched encoding, fp16 store) and a naive loop (decode one file, encode it alone, append it alone) run in
fresh subprocesses, so peak memory is per run. ``--n`` / ``--naive-n`` take the first N utterances of the
workload (the naive loop is slow by design). Real-time factor = seconds of cropped audio / wall seconds,
end to end (decode + encode + write). Both compute in the same dtype (``--compute-dtype``, default ``auto``:
the pipeline's rule, bfloat16 on a bf16-capable GPU, float32 on CPU), recorded in each row, so the speed-up
is the pipeline's batching and overlap, not a cheaper number format.

The figures go to ``results/bench/bench_extract-<workload>-<features>-n<N>-<device>.json`` (``--json`` for
another path): the machine, the command, and per row the feature, mode, utterances, audio and wall seconds,
real-time factor, compute dtype and peak memory.

    python benchmarks/bench_extract.py --workload iemocap-synth --feature lld --n 500 --naive-n 50
    python benchmarks/bench_extract.py --workload iemocap-synth --feature wav2vec:random-large --device cuda

``wav2vec:random-large`` writes a randomly initialised wav2vec-large checkpoint in the original fairseq
layout (the real one is a download; speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHARED = Path(os.environ.get("SER_SHARED", ROOT.parent / "shared"))


def make_iemocap_synth(workdir: Path, n: int = 5531, seed: int = 0) -> Path:
    """Write ``n`` 2-5 s 16 kHz WAV clips and their manifest into ``workdir`` (once; ``.done`` marker)."""
    import numpy as np
    import soundfile as sf

    from ser_common.manifest import ManifestRecord, write_manifest

    manifest = workdir / f"iemocap-synth-{n}.jsonl"
    done = workdir / f".iemocap-synth-{n}.done"
    if done.exists():
        return manifest
    rng = np.random.default_rng(seed)
    (workdir / "wav").mkdir(parents=True, exist_ok=True)
    labels = ("neutral", "happy", "sad", "angry")
    recs = []
    for i in range(n):
        dur = rng.uniform(2.0, 5.0)
        t = np.arange(int(dur * 16000)) / 16000
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t) ** 2
        x = (0.2 * env * np.sin(2 * np.pi * rng.uniform(90, 250) * t) + 0.02 * rng.standard_normal(t.size))
        path = workdir / "wav" / f"synth{i:05d}.wav"
        sf.write(path, x.astype(np.float32), 16000, subtype="PCM_16")
        sess = i % 5 + 1
        recs.append(ManifestRecord(utt_id=f"synth{i:05d}", audio=str(path), corpus="synthetic",
                                   speaker=f"Ses0{sess}{'FM'[i % 2]}", session=f"Session{sess}",
                                   label=labels[i % 4], transcript="this is a synthetic utterance", duration=dur))
    write_manifest(recs, manifest)
    done.touch()
    return manifest


def ravdess_manifest(workdir: Path) -> Path:
    from data_manifests.ravdess import build_ravdess
    from ser_common.manifest import write_manifest

    root = SHARED / "data" / "ravdess"
    if not root.exists():
        sys.exit(f"{root} not found: the ravdess workload needs ../shared")
    return write_manifest(build_ravdess(root, scheme="all"), workdir / "ravdess-all.jsonl")


def random_wav2vec_large(workdir: Path) -> Path:
    """A random-weight wav2vec-large checkpoint in fairseq's layout ({'args': Namespace, 'model': ...})."""
    import argparse

    import torch

    from extract.wav2vec_model import Wav2VecConfig, Wav2VecModel

    path = workdir / "wav2vec_large_random.pt"
    if not path.exists():
        args = argparse.Namespace(  # the released wav2vec_large.pt architecture
            arch="wav2vec",
            conv_feature_layers="[(512, 10, 5), (512, 8, 4), (512, 4, 2), (512, 4, 2), (512, 4, 2), (512, 1, 1), (512, 1, 1)]",
            conv_aggregator_layers="[" + ", ".join(f"(512, {k}, 1)" for k in range(2, 14)) + "]",
            skip_connections_agg=True, skip_connections_feat=False, log_compression=True, residual_scale=0.5,
            project_features="none", aggregator="cnn", encoder="cnn", vq_type="none", prediction_steps=12)
        torch.manual_seed(0)
        model = Wav2VecModel(Wav2VecConfig.from_args(args))
        torch.save({"args": args, "model": model.state_dict()}, path)
    return path


def subset(manifest: Path, n: int | None, workdir: Path) -> Path:
    if not n:
        return manifest
    lines = manifest.read_text().splitlines()[:n]
    out = workdir / f"{manifest.stem}-first{n}.jsonl"
    out.write_text("\n".join(lines) + "\n")
    return out


# ---- one measured run (in a fresh process) ---------------------------------------------------------------
def _peak() -> dict:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = {"peak_rss_main_mb": self_kb / 1024, "peak_rss_worker_mb": child_kb / 1024}
    try:
        import torch
        if torch.cuda.is_available():
            out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    except ImportError:
        pass
    return out


def run_one(mode: str, manifest: Path, spec: str, out: Path, device: str, workers: int,
            compute_dtype: str = "auto") -> dict:
    from extract.audio import load_audio
    from extract.config import ExtractConfig
    from extract.pipeline import extract_feature
    from extract.runtime import resolve_compute_dtype, resolve_device
    from extract.registry import build
    from ser_common.manifest import read_manifest
    from ser_common.store import StoreWriter, UtteranceMeta

    records = read_manifest(manifest)
    if mode == "pipeline":
        t0 = time.perf_counter()
        rep = extract_feature(manifest, spec, out, ExtractConfig(device=device, workers=workers, progress=False,
                                                                 overwrite=True, compute_dtype=compute_dtype),
                              records=records)
        wall = time.perf_counter() - t0
        from ser_common.store import FeatureStore

        with FeatureStore(rep.stores[0]) as st:  # the dtype the pipeline really computed in
            used = st.provenance.get("compute_dtype")
        return {"n": rep.n_written, "audio_s": rep.audio_s, "wall_s": wall, "compute_dtype": used,
                "device": resolve_device(device), **_peak()}
    # naive: one utterance at a time, decode -> encode -> append, in one process, in the pipeline's dtype
    fs = build(spec)
    dev = resolve_device(device)
    dtype = "float32" if fs.runs_in_workers else resolve_compute_dtype(compute_dtype, dev)
    t0 = time.perf_counter()
    fs.to(dev, dtype)
    audio_s = 0.0
    with StoreWriter(out / "naive.h5", fs.dims, fs.provenance(), overwrite=True) as w:
        for i, r in enumerate(records):
            x = load_audio(r.audio, crop_s=5.0, min_samples=fs.min_samples)
            y = fs.encode([x])[0]
            w.append([UtteranceMeta(r.utt_id, r.label, r.speaker, r.session, r.duration or 0.0, i)], [y])
            audio_s += x.shape[0] / 16000
        w.finalize()
    wall = time.perf_counter() - t0
    return {"n": len(records), "audio_s": audio_s, "wall_s": wall, "compute_dtype": dtype, "device": dev, **_peak()}


def main() -> None:
    from bench_json import bench_json_path, write_bench_json

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="iemocap-synth", choices=["iemocap-synth", "ravdess"])
    ap.add_argument("--manifest", type=Path, help="benchmark this manifest instead of a named workload")
    ap.add_argument("--feature", action="append", default=None, help="feature spec (repeatable); default lld")
    ap.add_argument("--n", type=int, default=None, help="first N utterances for the pipeline (default: all)")
    ap.add_argument("--naive-n", type=int, default=50, help="first N utterances for the naive loop (0: skip)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ser-bench")
    ap.add_argument("--compute-dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                    help="GPU compute dtype of both the pipeline and the naive loop (auto: the pipeline's rule)")
    ap.add_argument("--json", type=Path, default=None,
                    help="where the figures go (default: results/bench/bench_extract-<workload>-<features>-n<N>-<device>.json)")
    ap.add_argument("--_one", nargs=4, metavar=("MODE", "MANIFEST", "SPEC", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._one:
        mode, manifest, spec, out = a._one
        print("RESULT " + json.dumps(run_one(mode, Path(manifest), spec, Path(out), a.device, a.workers,
                                             a.compute_dtype)))
        return

    a.workdir.mkdir(parents=True, exist_ok=True)
    # with --n, only the first max(n, naive-n) synthetic clips are written: the same clips as the full 5531's
    n_synth = max(a.n, a.naive_n) if a.n else 5531
    base = a.manifest or (make_iemocap_synth(a.workdir, n_synth) if a.workload == "iemocap-synth"
                          else ravdess_manifest(a.workdir))
    rows = []
    for spec in a.feature or ["lld"]:
        real_spec = spec
        if spec == "wav2vec:random-large":
            real_spec = f"wav2vec:{random_wav2vec_large(a.workdir)}"
        for mode, n in (("pipeline", a.n), ("naive", a.naive_n)):
            if mode == "naive" and not n:
                continue
            m = subset(base, n, a.workdir)
            out = a.workdir / f"stores-{mode}"
            cmd = [sys.executable, __file__, "--device", a.device, "--workers", str(a.workers),
                   "--compute-dtype", a.compute_dtype, "--_one", mode, str(m), real_spec, str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                sys.exit(f"{mode} {spec} failed:\n{proc.stderr[-3000:]}")
            r = json.loads(line[7:])
            r.update(feature=spec, mode=mode, rtf=r["audio_s"] / r["wall_s"])
            rows.append(r)
            print(f"{spec:<28} {mode:<9} n={r['n']:<5} audio={r['audio_s']:8.1f}s wall={r['wall_s']:7.1f}s "
                  f"x{r['rtf']:8.1f} realtime  {r['compute_dtype']}  peak RSS main {r['peak_rss_main_mb']:.0f} MB",
                  flush=True)
    import torch
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
               "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    print(f"\nmachine: {machine}\ncommand: python {' '.join(sys.argv)}\n")
    print("| feature | mode | compute dtype | utterances | audio (s) | wall (s) | x real time | speed-up vs naive | "
          "peak RSS (MB) | peak GPU (MB) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        naive = next((x for x in rows if x["feature"] == r["feature"] and x["mode"] == "naive"), None)
        speed = f"{r['rtf'] / naive['rtf']:.1f}x" if naive and r["mode"] == "pipeline" else ""
        rss = r["peak_rss_main_mb"] + r.get("peak_rss_worker_mb", 0)
        r["speedup_vs_naive"] = round(r["rtf"] / naive["rtf"], 2) if naive and r["mode"] == "pipeline" else None
        print(f"| {r['feature']} | {r['mode']} | {r['compute_dtype']} | {r['n']} | {r['audio_s']:.0f} | "
              f"{r['wall_s']:.1f} | {r['rtf']:.1f} | {speed} | {rss:.0f} | {r.get('peak_gpu_mb', 0):.0f} |")
    workload = a.manifest.stem if a.manifest else a.workload
    path = a.json or bench_json_path("bench_extract", workload, *(a.feature or ["lld"]), f"n{a.n or 'all'}",
                                     rows[0]["device"].split(":")[0] if rows else a.device)
    write_bench_json(path, {"benchmark": "bench_extract", "command": "python " + " ".join(sys.argv),
                            "machine": machine, "workload": workload, "rows": rows})


if __name__ == "__main__":
    main()
