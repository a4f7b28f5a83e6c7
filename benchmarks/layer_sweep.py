"""Layer sweep: speaker-independent 5-fold UA of the mean-pooling head on every layer store of an encoder,
and beside it the learned layer sum over all of them (``ser-train cv --layer-sum``, :mod:`train.layers`).

The stores come from one ``ser-extract --feature hf:MODEL@all`` pass (``hf-<model>-l<k>.h5``); the head is
mean pooling + linear, trained to convergence (``--schedule converged``) and on the paper's schedule. Each
cell is the fold-mean UA ± std over seeds, with the pooled UA (all held-out predictions) in brackets; the
layer-sum row also gives its learned softmax weights per layer (mean over folds and seeds).

    python benchmarks/layer_sweep.py --stores stores/ravdess --out results/ravdess/layer_sweep.md
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train.config import schedule_config  # noqa: E402
from train.data import load_inputs  # noqa: E402
from train.protocol import cross_validate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stores", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="Markdown table (a .json with the numbers beside it)")
    ap.add_argument("--pattern", default=r"^hf-.*-l(\d+)\.h5$")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--head", default="mean")
    ap.add_argument("--workers", type=int, default=2, help="processes fitting the layer-sum folds in parallel")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    seeds = [int(s) for s in a.seeds.split(",")]
    stores = sorted((int(m[1]), p) for p in a.stores.glob("*.h5") if (m := re.match(a.pattern, p.name)))
    if not stores:
        sys.exit(f"{a.stores}: no store matches {a.pattern}")
    rows = []
    t0 = time.perf_counter()
    for layer, path in stores:
        inputs = load_inputs(path)
        row = {"layer": layer, "store": path.name}
        for sched in ("converged", "paper"):
            res = cross_validate(inputs, a.head, schedule_config(sched), k=None, seeds=seeds)
            s = res.summary
            row[sched] = (100 * s["ua_mean"], 100 * s["ua_std"])
            row[f"{sched}_pooled"] = 100 * res.pooled["ua"]
        rows.append(row)
        print(f"layer {layer}: converged {row['converged'][0]:.1f}  paper {row['paper'][0]:.1f}  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    from dataclasses import replace

    inputs = load_inputs(stores[0][1], layer_sum=True)
    layer_ids = list(inputs.audio.provenance["layer_sum"])
    n_layers = len(layer_ids)
    row = {"layer": "sum", "store": f"{inputs.audio.name} (--layer-sum)"}
    for sched in ("converged", "paper"):
        cfg = replace(schedule_config(sched), layer_sum=n_layers)
        res = cross_validate(inputs, a.head, cfg, k=None, seeds=seeds, workers=a.workers)
        row[sched] = (100 * res.summary["ua_mean"], 100 * res.summary["ua_std"])
        row[f"{sched}_pooled"] = 100 * res.pooled["ua"]
        row[f"{sched}_weights"] = res.summary["layer_weights"]
    print(f"layer sum: converged {row['converged'][0]:.1f}  paper {row['paper'][0]:.1f}  "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    single = list(rows)
    rows.append(row)
    best = max(single, key=lambda r: r["converged"][0])
    lines = [f"Layer sweep on `{a.stores}`: `{a.head}` head, all training data, speaker-independent 5-fold UA (%), "
             f"mean ± std over seeds {a.seeds}.", "",
             "| layer | store | UA, converged (lr 1e-3, ≥3000 steps) [pooled] | UA, paper (100 epochs, lr 1e-4) [pooled] |",
             "|---:|---|---:|---:|"]
    for r in rows:
        mark = " **(best layer)**" if r is best else ""
        lines.append(f"| {r['layer']} | {r['store']} | {r['converged'][0]:.1f} ± {r['converged'][1]:.1f} "
                     f"[{r['converged_pooled']:.1f}]{mark} | {r['paper'][0]:.1f} ± {r['paper'][1]:.1f} "
                     f"[{r['paper_pooled']:.1f}] |")
    lines += ["", "Learned layer weights (softmax, mean over folds and seeds): " + "; ".join(
        f"{sched}: " + ", ".join(f"l{i} {w:.2f}" for i, w in zip(layer_ids, row[f"{sched}_weights"]))
        for sched in ("converged", "paper")) + "."]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    a.out.with_suffix(".json").write_text(json.dumps({"argv": sys.argv, "rows": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
