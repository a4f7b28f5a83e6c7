"""Fitting the runs of ``ser-train tables``: one worker pool per run, one pool shared by all runs with the
training step of the release before, and with this release's, side by side in one run.

The runs are the frame-level runs of the tables on one stores folder (``--stores``, as ``ser-train tables``
finds them): ``attention`` and ``mlp`` on the pre-trained store and on the LLDs, the ``mlp`` learning-curve
points (k = 25, 50 per class) on both, and ``bimodal`` (pre-trained + text) — the pooled heads train in
seconds and are left out. Every mode fits the same runs with the same seeds and ``--epochs`` (fewer than the
paper's 100 keeps the benchmark short; the time per epoch does not depend on the count), on ``--workers``
processes:

* ``per-run``: each run's folds in a pool of their own, one run after another (``cross_validate`` per run,
  the code before the shared pool);
* ``shared pool, step before``: every run's folds in one pool, costliest first (``cross_validate_many``),
  with the training step of the release before this one: each batch converted and standardised on its
  own, ``torch.optim.Adam(foreach=True)``, stride pooling by ``.sum`` over each window;
* ``shared pool``: the same with this release's step (a store standardised once per fit,
  :mod:`train.adam`'s flat Adam, pairs added straight into the output).

All must give bit-identical predictions (checked). With ``--repeats N`` the three modes take turns N times
(this machine's speed drifts by 10-20 % within minutes) and the median of each is reported. Figures go to
``results/bench/bench_pool-<stores>-e<epochs>-w<workers>.json``.

    python benchmarks/bench_pool.py --stores stores/emodb --audio hf-whisper-base-encoder-l4 --epochs 10
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from bench_json import bench_json_path, write_bench_json
from ser_common.cpus import available_cpus


def _stride_pool_before(x: torch.Tensor, mask: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``train.pooling.stride_pool`` of the release before (a ``.sum`` over each window, then a concatenation)."""
    from train.pooling import zero_padding

    if stride <= 1:
        return x, mask
    b, t, d = x.shape
    x = zero_padding(x, mask)
    full = t - t % stride
    total = x[:, :full].reshape(b, full // stride, stride, d).sum(2)
    count = mask[:, :full].reshape(b, full // stride, stride).sum(2)
    if full < t:
        total = torch.cat([total, x[:, full:].sum(1, keepdim=True)], 1)
        count = torch.cat([count, mask[:, full:].sum(1, keepdim=True)], 1)
    return total / count.clamp(min=1)[..., None].to(x.dtype), count > 0


@contextmanager
def step_before():
    """The training step of the release before, for the runs inside (forked workers inherit it)."""
    import train.batching as batching
    import train.heads as heads
    import train.trainer as trainer
    from train.adam import TorchAdam

    saved = batching.STANDARDIZE_ONCE_MAX_BYTES, trainer.FlatAdam, heads.stride_pool
    batching.STANDARDIZE_ONCE_MAX_BYTES, trainer.FlatAdam, heads.stride_pool = 0, TorchAdam, _stride_pool_before
    try:
        yield
    finally:
        batching.STANDARDIZE_ONCE_MAX_BYTES, trainer.FlatAdam, heads.stride_pool = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stores", type=Path, required=True)
    ap.add_argument("--audio", help="pre-trained store name when the folder has several")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="rounds; the modes take turns in each")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()

    from train.config import schedule_config
    from train.data import load_store, make_inputs
    from train.protocol import cross_validate, cross_validate_many, plan_cv
    from train.store_folder import identify_stores

    torch.set_num_threads(1)
    found = identify_stores(a.stores, audio=a.audio)
    cfg = schedule_config("paper", epochs=a.epochs)

    def load() -> list:
        """Freshly loaded inputs and the runs: (inputs, head, k)."""
        pre_store = load_store(found.pretrained)
        pre = make_inputs(pre_store)
        lld = make_inputs(load_store(found.lld), classes=pre.classes) if found.lld else None
        bim = make_inputs(pre_store, load_store(found.text), classes=pre.classes) if found.text else None
        runs = [(x, h, k) for x in (pre, lld) if x is not None for h, k in
                (("attention", None), ("mlp", None), ("mlp", 50), ("mlp", 25))]
        return runs + ([(bim, "bimodal", None)] if bim is not None else [])

    def per_run() -> list:
        return [cross_validate(x, h, cfg, k=k, workers=a.workers) for x, h, k in load()]

    def shared() -> list:
        return cross_validate_many([plan_cv(x, h, cfg, k) for x, h, k in load()], workers=a.workers)

    def shared_step_before() -> list:
        with step_before():
            return shared()

    modes = (("per-run", per_run), ("shared pool, step before", shared_step_before), ("shared pool", shared))
    walls: dict[str, list[float]] = {name: [] for name, _ in modes}
    rows, probas = [], []
    for rep in range(a.repeats):          # the modes take turns, so a drift of the machine hits each alike
        for name, fn in modes:
            t0 = time.perf_counter()
            results = fn()
            wall = time.perf_counter() - t0
            walls[name].append(round(wall, 1))
            probas.append([r.predictions["proba"] for r in results])
            if rep == 0:
                rows.append({"mode": name, "runs": len(results), "fits": sum(len(r.folds) for r in results)})
            print(f"{name:<24} {wall:7.1f} s  ({len(results)} runs, round {rep + 1})", flush=True)
    identical = all(np.array_equal(p, q) for other in probas[1:] for p, q in zip(probas[0], other))
    for r in rows:
        r["wall_s_each"] = walls[r["mode"]]
        r["wall_s"] = float(np.median(walls[r["mode"]]))
    base = rows[0]["wall_s"]
    for r in rows:
        r["speedup"] = round(base / r["wall_s"], 2)
    print("\n| mode | wall time (s), median | each round | speed-up |\n|---|---:|---|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['wall_s']} | {' / '.join(map(str, r['wall_s_each']))} | {r['speedup']}x |")
    print(f"\npredictions bit-identical across modes: {identical}")
    path = a.json or bench_json_path("bench_pool", a.stores, f"e{a.epochs}", f"w{a.workers}")
    write_bench_json(path, {"benchmark": "bench_pool", "command": "python " + " ".join(sys.argv),
                            "machine": {"platform": platform.platform(), "cpus": available_cpus()},
                            "stores": {"pretrained": str(found.pretrained), "lld": str(found.lld),
                                       "text": str(found.text)},
                            "epochs": a.epochs, "workers": a.workers, "repeats": a.repeats, "rows": rows,
                            "predictions_identical": identical})
    if not identical:
        sys.exit("the modes gave different predictions")


if __name__ == "__main__":
    main()
