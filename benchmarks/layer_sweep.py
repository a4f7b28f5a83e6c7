"""Layer sweep: speaker-independent 5-fold UA of the mean-pooling head on every layer store of an encoder.

The stores come from one ``ser-extract --feature hf:MODEL@all`` pass (``hf-<model>-l<k>.h5``); the head is
mean pooling + linear, trained to convergence (``--schedule converged``) and on the paper's schedule.

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
        rows.append(row)
        print(f"layer {layer}: converged {row['converged'][0]:.1f}  paper {row['paper'][0]:.1f}  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    best = max(rows, key=lambda r: r["converged"][0])
    lines = [f"Layer sweep on `{a.stores}`: `{a.head}` head, all training data, speaker-independent 5-fold UA (%), "
             f"mean ± std over seeds {a.seeds}.", "",
             "| layer | store | UA, converged (lr 1e-3, ≥3000 steps) | UA, paper (100 epochs, lr 1e-4) |",
             "|---:|---|---:|---:|"]
    for r in rows:
        mark = " **(best)**" if r is best else ""
        lines.append(f"| {r['layer']} | {r['store']} | {r['converged'][0]:.1f} ± {r['converged'][1]:.1f}{mark} "
                     f"| {r['paper'][0]:.1f} ± {r['paper'][1]:.1f} |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    a.out.with_suffix(".json").write_text(json.dumps({"argv": sys.argv, "rows": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
