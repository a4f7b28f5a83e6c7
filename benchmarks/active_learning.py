"""Active-learning simulation: does labelling what the model is unsure of beat labelling at random?

Protocol (speaker-independent, from a store alone): in each of the 5 leave-one-group-out folds the training
groups are the unlabelled pool and the held-out group is the test set. Start from ``--start`` labelled
utterances per class drawn at random from the pool; then, each round, fit the head on the labelled set,
score the test set (UA) and the rest of the pool, and "label" the ``--step`` pool utterances the strategy
ranks first (``entropy``, ``margin``, ``random``; ``--balanced`` takes them round-robin over predicted
classes, as ``ser-train suggest --balanced`` does). Repeated for ``--seeds``; the curve is UA against the
labelled-set size, mean ± std over folds × seeds, per strategy.

    python benchmarks/active_learning.py --store stores/ravdess/hf-whisper-base-encoder-l4.h5 \\
        --out results/ravdess/active_learning

Writes ``curve.csv`` (strategy, seed, fold, n_labelled, ua), ``summary.csv``, ``active_learning.png`` and
``run.json`` (config, store provenance, package versions) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ser_common.provenance import host_info, package_versions  # noqa: E402
from train.bundle import uncertainty  # noqa: E402
from train.config import schedule_config  # noqa: E402
from train.data import load_inputs  # noqa: E402
from train.metrics import classification_scores  # noqa: E402
from train.protocol import speaker_independent_folds  # noqa: E402
from train.trainer import Job, fit_jobs, predict_proba  # noqa: E402


def pick(scores: np.ndarray, pred: np.ndarray, n: int, balanced: bool, n_classes: int) -> np.ndarray:
    """Indices (into ``scores``) of the ``n`` utterances to label next, best first."""
    order = np.argsort(-scores, kind="stable")
    if not balanced:
        return order[:n]
    queues = [list(order[pred[order] == c]) for c in range(n_classes)]
    out: list[int] = []
    while len(out) < min(n, len(order)):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return np.array(out, dtype=np.int64)


def simulate(inputs, head: str, cfg, strategy: str, seed: int, start: int, step: int, budget: int,
             balanced: bool) -> list[dict]:
    """One strategy and seed over every fold; the folds of a round are fitted together (one batched model)."""
    folds, _ = speaker_independent_folds(inputs)
    rng = np.random.default_rng(seed)
    labelled = []
    for f in folds:
        y = inputs.y[f.train]
        init = np.concatenate([rng.choice(f.train[y == c], size=min(start, int((y == c).sum())), replace=False)
                               for c in range(len(inputs.classes))])
        labelled.append(set(init.tolist()))
    rows = []
    n_round = 0
    while True:
        jobs = [Job(train=np.array(sorted(lab), dtype=np.int64), seed=seed, stream=i)
                for i, lab in enumerate(labelled)]
        models = fit_jobs(inputs, head, cfg, jobs)
        done = True
        for i, (f, model) in enumerate(zip(folds, models)):
            pred = predict_proba(model, inputs, f.test).argmax(1)
            rows.append({"strategy": strategy + ("-balanced" if balanced and strategy != "random" else ""),
                         "seed": seed, "fold": f.name, "round": n_round, "n_labelled": len(labelled[i]),
                         "ua": classification_scores(inputs.y[f.test], pred, len(inputs.classes))["ua"]})
            pool = np.array(sorted(set(f.train.tolist()) - labelled[i]), dtype=np.int64)
            if len(labelled[i]) >= budget or len(pool) == 0:
                continue
            done = False
            proba = predict_proba(model, inputs, pool)
            scores = uncertainty(proba, strategy, seed=seed * 1000 + n_round * 10 + i)
            take = pick(scores, proba.argmax(1), min(step, budget - len(labelled[i])), balanced,
                        len(inputs.classes))
            labelled[i].update(pool[take].tolist())
        n_round += 1
        if done:
            return rows


def plot(summary: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for strat in sorted({r["strategy"] for r in summary}):
        pts = sorted((r["n_labelled"], r["ua_mean"], r["ua_std"]) for r in summary if r["strategy"] == strat)
        n, m, s = (np.array(v) for v in zip(*pts))
        ax.plot(n, 100 * m, marker="o", ms=3, label=strat, ls="--" if strat == "random" else "-")
        ax.fill_between(n, 100 * (m - s), 100 * (m + s), alpha=0.12)
    ax.set_xlabel("labelled training utterances")
    ax.set_ylabel("UA on held-out speakers (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--head", default="mean")
    ap.add_argument("--schedule", default="converged")
    ap.add_argument("--strategies", default="entropy,margin,random")
    ap.add_argument("--balanced", action="store_true", help="also run entropy/margin with balanced selection")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--start", type=int, default=10, help="initial labelled utterances per class")
    ap.add_argument("--step", type=int, default=20, help="utterances labelled per round")
    ap.add_argument("--budget", type=int, default=240, help="stop at this many labelled utterances")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    inputs = load_inputs(a.store)
    cfg = schedule_config(a.schedule)
    seeds = [int(s) for s in a.seeds.split(",")]
    runs = [(s, False) for s in a.strategies.split(",")]
    if a.balanced:
        runs += [(s, True) for s in a.strategies.split(",") if s != "random"]
    rows = []
    for strategy, balanced in runs:
        for seed in seeds:
            rows.extend(simulate(inputs, a.head, cfg, strategy, seed, a.start, a.step, a.budget, balanced))
            print(f"{strategy}{' balanced' if balanced else ''} seed {seed}: "
                  f"final UA {np.mean([r['ua'] for r in rows[-5:]]):.3f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    keys = ["strategy", "seed", "fold", "round", "n_labelled", "ua"]
    (a.out / "curve.csv").write_text("\n".join([",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows]) + "\n")
    summary = []
    for strat in sorted({r["strategy"] for r in rows}):
        for rnd in sorted({r["round"] for r in rows if r["strategy"] == strat}):
            sel = [r for r in rows if r["strategy"] == strat and r["round"] == rnd]
            # per seed: the fold-mean UA (as the paper reports); then mean/std over seeds
            per_seed = [np.mean([r["ua"] for r in sel if r["seed"] == s]) for s in seeds]
            summary.append({"strategy": strat, "round": rnd,
                            "n_labelled": int(round(np.mean([r["n_labelled"] for r in sel]))),
                            "ua_mean": float(np.mean(per_seed)), "ua_std": float(np.std(per_seed))})
    (a.out / "summary.csv").write_text("strategy,round,n_labelled,ua_mean,ua_std\n" + "".join(
        f"{r['strategy']},{r['round']},{r['n_labelled']},{r['ua_mean']:.4f},{r['ua_std']:.4f}\n" for r in summary))
    name = inputs.audio.provenance.get("feature", a.store.stem)
    plot(summary, a.out / "active_learning.png",
         f"{name} · {a.head} head · start {a.start}/class, +{a.step} per round · {len(seeds)} seeds × 5 folds")
    (a.out / "run.json").write_text(json.dumps({
        "argv": sys.argv, "config": vars(a) | {"store": str(a.store), "out": str(a.out)},
        "train_config": cfg.to_dict() if hasattr(cfg, "to_dict") else str(cfg),
        "store_provenance": inputs.audio.provenance, "versions": package_versions(), "host": host_info(),
        "wall_s": time.perf_counter() - t0}, indent=1, default=str))
    print("\n| labelled | " + " | ".join(sorted({r["strategy"] for r in summary})) + " |")
    strats = sorted({r["strategy"] for r in summary})
    print("|---:|" + "---:|" * len(strats))
    for rnd in sorted({r["round"] for r in summary}):
        cells = []
        n = None
        for s in strats:
            r = next((x for x in summary if x["strategy"] == s and x["round"] == rnd), None)
            n = n or (r and r["n_labelled"])
            cells.append(f"{100 * r['ua_mean']:.1f} ± {100 * r['ua_std']:.1f}" if r else "")
        print(f"| {n} | " + " | ".join(cells) + " |")
    print(f"\nwrote {a.out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
