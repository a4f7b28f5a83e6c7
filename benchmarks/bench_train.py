"""Training benchmark: a full 5-fold CV of each head on an IEMOCAP-sized synthetic store, and a naive loop.

The store (written once into ``--workdir``): 5531 utterances in 5 sessions (2 speakers each), 4 classes,
lengths uniform in [200, 500] frames × 512 dims, float16 — the size of wav2vec features of IEMOCAP cropped
to 5 s. Each measurement runs in a fresh subprocess so that peak RSS (``resource.getrusage``) is per run.

* ``ser-train`` path: load the store once, per-utterance statistics, ``cross_validate`` (paper schedule:
  100 epochs, lr 1e-4, batch 16, 5 folds, one seed). Pooled heads (``mean``/``meanmax``) train all folds at
  once on pooled vectors; frame-level heads (``attention``/``mlp``) train fold by fold on bucketed batches.
  ``--frame-epochs E`` runs frame-level heads for E epochs only and extrapolates the training time
  linearly to ``--epochs`` (load and evaluation are measured, not scaled); the table says so.
* naive baseline (``mean`` head): every step reads its 16 utterances from HDF5 (``FeatureStore.frames``),
  standardises, pads and runs the frame-level head with autograd + ``torch.optim.Adam``, no precompute.
  ``--naive-steps`` steps of one fold are timed and extrapolated to 5 folds × ``--epochs`` epochs.

    python benchmarks/bench_train.py                       # all heads; frame-level heads extrapolated from 1 epoch
    python benchmarks/bench_train.py --heads mean --frame-epochs 100 --device cuda

The figures go to ``results/bench/bench_train-n<N>-<heads>-<device>.json`` (``--json`` for another path): the
command, the machine, the store and one row per head (times, peak memory, UA).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


CLASSES = ("neutral", "happy", "sad", "angry")


def make_store(workdir: Path, n: int, dims: int, min_frames: int, max_frames: int, seed: int = 0) -> Path:
    """Write the synthetic store once (reused when present)."""
    import numpy as np

    from ser_common.store import StoreWriter, UtteranceMeta

    path = workdir / f"synth-{n}x{min_frames}-{max_frames}x{dims}.h5"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    prov = {"feature": "synth", "modality": "audio", "encoder": "bench_train synthetic", "weights_sha256": None,
            "layer": None, "crop_s": 5.0, "frame_rate_hz": 100.0, "sample_rate": 16000}
    means = rng.standard_normal((4, dims)).astype(np.float32) * 0.3
    with StoreWriter(path, dims=dims, provenance=prov, dtype="float16", overwrite=True) as w:
        batch_m, batch_x = [], []
        for i in range(n):
            sess, spk, c = i % 5, (i // 5) % 2, int(rng.integers(4))
            t = int(rng.integers(min_frames, max_frames + 1))
            x = rng.standard_normal((t, dims), dtype=np.float32)
            x += means[c]
            batch_m.append(UtteranceMeta(utt_id=f"u{i:05d}", label=CLASSES[c], speaker=f"Ses0{sess + 1}{'FM'[spk]}",
                                         session=f"Ses0{sess + 1}", duration=t / 100, manifest_index=i))
            batch_x.append(x)
            if len(batch_m) == 256 or i == n - 1:
                w.append(batch_m, batch_x)
                batch_m, batch_x = [], []
        w.finalize()
    return path


def _peaks(device: str) -> dict:
    import torch

    rss = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    rss /= 1024 ** 2  # KiB -> GiB (largest single process; worker processes share the store copy-on-write)
    cuda = torch.cuda.max_memory_allocated() / 1024 ** 3 if device.startswith("cuda") else None
    return {"peak_rss_gib": round(rss, 2), "peak_cuda_gib": None if cuda is None else round(cuda, 2)}


def run_one(store: str, head: str, epochs: int, run_epochs: int, device: str, threads: int, workers: int = 1) -> dict:
    """One ser-train 5-fold CV (in this process)."""
    import torch

    torch.set_num_threads(threads)
    from train.config import schedule_config
    from train.inputs import load_inputs
    from train.protocol import cross_validate
    from train.jobs import resolve_device

    device = resolve_device(device)
    t0 = time.perf_counter()
    inputs = load_inputs(store)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    inputs.audio.stats()
    if device != "cpu":
        inputs.audio.frames_on(device)
    t_stats = time.perf_counter() - t0
    cfg = schedule_config("paper", epochs=run_epochs)
    if run_epochs != epochs:  # warm up (first-call kernel set-up) so that the extrapolated epochs are not skewed
        from train.jobs import Job
        from train.trainer import predict_proba, train_frame

        warm = inputs.labelled[:64]
        predict_proba(train_frame(inputs, head, schedule_config("paper", epochs=1), Job(warm, 0), device),
                      inputs, warm, device)
    r = cross_validate(inputs, head, cfg, seeds=(0,), device=device, workers=workers)
    scale = epochs / run_epochs
    total = t_load + t_stats + r.fit_seconds * scale + r.eval_seconds
    return {"head": head, "run_epochs": run_epochs, "epochs": epochs, "extrapolated": run_epochs != epochs,
            "load_s": round(t_load, 1), "stats_s": round(t_stats, 1), "fit_s_measured": round(r.fit_seconds, 1),
            "fit_s": round(r.fit_seconds * scale, 1), "eval_s": round(r.eval_seconds, 1), "total_s": round(total, 1),
            "ua": round(r.summary["ua_mean"], 4), "device": device, **_peaks(device)}


def run_naive(store: str, epochs: int, steps: int, device: str, threads: int, batch: int = 16) -> dict:
    """The naive loop: per-step HDF5 reads of each utterance, frame-level mean head, no precompute."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    from ser_common.folds import fold_splits
    from ser_common.store import FeatureStore
    from train.config import TrainConfig
    from train.data import encode_labels
    from train.heads import build_head
    from train.jobs import resolve_device

    device = resolve_device(device)
    fs = FeatureStore(store)
    y_all = encode_labels(fs.labels, CLASSES)
    _, train, _ = fold_splits(fs.sessions)[0]
    n_train_total = sum(len(tr) for _, tr, _ in fold_splits(fs.sessions))
    # the naive loop still needs normalisation statistics: one pass over the training frames
    t0 = time.perf_counter()
    s = np.zeros(fs.dims)
    ss = np.zeros(fs.dims)
    cnt = 0
    for i in train:
        x = fs.frames(int(i)).astype(np.float64)
        s += x.sum(0)
        ss += (x * x).sum(0)
        cnt += len(x)
    mu = torch.tensor(s / cnt, dtype=torch.float32, device=device)
    sd = torch.tensor(np.sqrt(np.maximum(ss / cnt - (s / cnt) ** 2, 1e-12)), dtype=torch.float32, device=device)
    t_stats = time.perf_counter() - t0
    torch.manual_seed(0)
    head = build_head("mean", fs.dims, 4, TrainConfig()).to(device)
    opt = torch.optim.Adam(head.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    perm = rng.permutation(train)
    t0 = time.perf_counter()
    for step in range(steps):
        rows = perm[(step * batch) % len(perm):][:batch]
        xs = [torch.from_numpy(fs.frames(int(i)).astype(np.float32)) for i in rows]
        x = torch.nn.utils.rnn.pad_sequence(xs, batch_first=True).to(device)
        lengths = torch.tensor([len(v) for v in xs], device=device)
        mask = torch.arange(x.shape[1], device=device)[None, :] < lengths[:, None]
        x = (x - mu) / sd
        loss = F.cross_entropy(head(x, mask), torch.from_numpy(y_all[rows]).to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device != "cpu":
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - t0) / steps
    total_steps = sum(math.ceil(len(tr) / batch) for _, tr, _ in fold_splits(fs.sessions)) * epochs
    total = per_step * total_steps + t_stats * n_train_total / len(train)
    return {"head": "mean (naive)", "run_epochs": None, "epochs": epochs, "extrapolated": True,
            "measured_steps": steps, "ms_per_step": round(1000 * per_step, 2), "stats_s": round(t_stats, 1),
            "total_s": round(total, 1), "device": device, **_peaks(device)}


def _sub(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _fmt(v) -> str:
    return "—" if v is None else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, help="where the synthetic store is written/reused (default: a temp dir)")
    ap.add_argument("--n", type=int, default=5531)
    ap.add_argument("--dims", type=int, default=512)
    ap.add_argument("--min-frames", type=int, default=200)
    ap.add_argument("--max-frames", type=int, default=500)
    ap.add_argument("--heads", default="mean,meanmax,attention,mlp")
    ap.add_argument("--epochs", type=int, default=100, help="the schedule's epochs (paper: 100)")
    ap.add_argument("--frame-epochs", type=int, default=1,
                    help="epochs actually run for attention/mlp (training time extrapolated to --epochs)")
    ap.add_argument("--naive-steps", type=int, default=100, help="steps of the naive loop to time (0: skip)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (ser-train's default is 1)")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes fitting the folds of attention/mlp in parallel (ser-train's default: one per "
                         "CPU); their start-up is paid per run, so use it with --frame-epochs >= 5")
    ap.add_argument("--json", type=Path,
                    help="where the figures go (default: results/bench/bench_train-n<N>-<heads>-<device>.json)")
    ap.add_argument("--_one", help=argparse.SUPPRESS)
    ap.add_argument("--_naive", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_store", help=argparse.SUPPRESS)
    ap.add_argument("--_run_epochs", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._one:
        print(json.dumps(run_one(a._store, a._one, a.epochs, a._run_epochs, a.device, a.threads, a.workers)))
        return
    if a._naive:
        print(json.dumps(run_naive(a._store, a.epochs, a.naive_steps, a.device, a.threads)))
        return

    tmp = None
    if a.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_train-")
        a.workdir = Path(tmp.name)
    a.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store = make_store(a.workdir, a.n, a.dims, a.min_frames, a.max_frames)
    t_make = time.perf_counter() - t0
    common = ["--_store", str(store), "--epochs", str(a.epochs), "--device", a.device, "--threads", str(a.threads),
              "--workers", str(a.workers)]
    results = []
    for head in a.heads.split(","):
        run_epochs = a.epochs if head in ("mean", "meanmax") else min(a.frame_epochs, a.epochs)
        print(f"… {head} ({run_epochs} epochs)", file=sys.stderr, flush=True)
        results.append(_sub(["--_one", head, "--_run_epochs", str(run_epochs), *common]))
    if a.naive_steps > 0:
        print(f"… naive mean ({a.naive_steps} steps)", file=sys.stderr, flush=True)
        results.append(_sub(["--_naive", "--naive-steps", str(a.naive_steps), *common]))

    import torch

    size_gib = store.stat().st_size / 1024 ** 3
    lines = ["## Training benchmark (`benchmarks/bench_train.py`)", "",
             f"- command: `python benchmarks/bench_train.py {' '.join(sys.argv[1:])}`".rstrip(),
             f"- machine: {_cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
             f"{a.threads} torch thread(s), {a.workers} worker process(es) for attention/mlp; "
             f"device {results[0]['device']}",
             f"- store: {a.n} utterances × {a.min_frames}-{a.max_frames} frames × {a.dims} dims float16 "
             f"({size_gib:.2f} GiB; written in {t_make:.0f} s, or reused)",
             f"- protocol: 5-fold leave-one-session-out CV, one seed, paper schedule ({a.epochs} epochs, lr 1e-4, "
             f"batch 16); total = load + per-utterance stats + training + evaluation", "",
             "| head | epochs run | total 5-fold wall (s) | load (s) | stats (s) | train (s) | eval (s) | "
             "peak RSS (GiB) | peak CUDA (GiB) | UA |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        if r["head"].endswith("(naive)"):
            lines.append(f"| {r['head']} | {r['measured_steps']} steps ({r['ms_per_step']} ms/step), "
                         f"extrapolated | **{r['total_s']}** | per step | {r['stats_s']} (1 fold) | — | — | "
                         f"{r['peak_rss_gib']} | {_fmt(r['peak_cuda_gib'])} | — |")
            continue
        ep = f"{r['run_epochs']}" + (f" → extrapolated to {r['epochs']}" if r["extrapolated"] else "")
        lines.append(f"| {r['head']} | {ep} | **{r['total_s']}** | {r['load_s']} | {r['stats_s']} | {r['fit_s']} | "
                     f"{r['eval_s']} | {r['peak_rss_gib']} | {_fmt(r['peak_cuda_gib'])} | {r['ua']} |")
    print("\n".join(lines))
    from bench_json import bench_json_path, write_bench_json

    device = results[0]["device"] if results else a.device
    path = a.json or bench_json_path("bench_train", f"n{a.n}", a.heads.replace(",", "+"), device.split(":")[0])
    write_bench_json(path, {
        "benchmark": "bench_train", "command": "python " + " ".join(sys.argv),
        "machine": {"cpu": _cpu_model(), "cpus": os.cpu_count(), "torch": torch.__version__, "threads": a.threads,
                    "workers": a.workers, "device": device,
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "store": {"n": a.n, "frames": [a.min_frames, a.max_frames], "dims": a.dims, "gib": round(size_gib, 3)},
        "schedule": {"epochs": a.epochs, "frame_epochs": a.frame_epochs}, "results": results})
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
