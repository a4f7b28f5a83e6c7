"""Active-learning simulation: does labelling what the model is unsure of beat labelling at random?

Protocol (speaker-independent, from a store alone): in each of the 5 leave-one-group-out folds the training
groups are the unlabelled pool and the held-out group is the test set. Start from ``--start`` labelled
utterances per class drawn at random from the pool; then, each round, fit the head on the labelled set,
score the test set (UA) and the rest of the pool, and "label" the ``--step`` pool utterances the strategy
picks (:func:`train.suggest.rank_pool`, exactly as ``ser-train suggest`` does: ``entropy``, ``margin``,
``random``, ``kcenter`` (greedy k-center over the standardised pooled features, starting from the labelled
set), ``diverse-entropy`` (the most uncertain utterance of each k-means cluster); ``--balanced`` also runs
entropy/margin round-robin over predicted classes). Repeated for ``--seeds``; the curve is UA against the
labelled-set size, mean ± std over seeds of the fold-mean UA, per strategy. Every strategy of a seed starts
from the same labelled set, so its gain over random is a paired difference: per seed, its fold-mean UA minus
random's at the same round; mean ± std over seeds.

    python benchmarks/active_learning.py --store stores/ravdess/hf-whisper-base-encoder-l4.h5 \\
        --out results/ravdess/active_learning

Writes ``curve.csv`` (strategy, seed, fold, n_labelled, ua), ``summary.csv`` (strategy, round, n_labelled,
ua_mean, ua_std, gain_mean, gain_std: the gain over random in UA, as fractions), ``active_learning.png``
(UA and gain over random against the labelled-set size) and ``run.json`` (config, store provenance, package
versions) into ``--out``; prints the UA table and the gain table (UA points).
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
from train.config import schedule_config  # noqa: E402
from train.data import load_inputs  # noqa: E402
from train.metrics import classification_scores  # noqa: E402
from train.protocol import speaker_independent_folds  # noqa: E402
from train.suggest import DIVERSITY_STRATEGIES, STRATEGIES, pooled_features, rank_pool  # noqa: E402
from train.fitting import fit_jobs  # noqa: E402
from train.jobs import Job  # noqa: E402
from train.trainer import predict_proba  # noqa: E402


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
            features = centres = None
            if strategy in DIVERSITY_STRATEGIES:  # pooled vectors standardised as this fold's model does
                features = pooled_features(inputs.stores, model.standardizers, pool)
                known = np.array(sorted(labelled[i]), dtype=np.int64)
                centres = pooled_features(inputs.stores, model.standardizers, known)
            take, _ = rank_pool(strategy, proba, min(step, budget - len(labelled[i])), features=features,
                                centres=centres, balanced=balanced, seed=seed * 1000 + n_round * 10 + i)
            labelled[i].update(pool[take].tolist())
        n_round += 1
        if done:
            return rows


def summarise(rows: list[dict], seeds: list[int]) -> list[dict]:
    """Per strategy and round: UA mean/std over seeds of the fold-mean UA, and the paired gain over random
    (per seed: fold-mean UA minus random's at the same round; ``None`` without a random run)."""
    def per_seed(strat: str, rnd: int) -> np.ndarray | None:
        sel = [r for r in rows if r["strategy"] == strat and r["round"] == rnd]
        if not sel:
            return None
        return np.array([np.mean([r["ua"] for r in sel if r["seed"] == s]) for s in seeds])

    summary = []
    for strat in sorted({r["strategy"] for r in rows}):
        for rnd in sorted({r["round"] for r in rows if r["strategy"] == strat}):
            ua = per_seed(strat, rnd)
            ref = per_seed("random", rnd)
            gain = None if ref is None else ua - ref
            summary.append({"strategy": strat, "round": rnd,
                            "n_labelled": int(round(np.mean([r["n_labelled"] for r in rows
                                                             if r["strategy"] == strat and r["round"] == rnd]))),
                            "ua_mean": float(ua.mean()), "ua_std": float(ua.std()),
                            "gain_mean": None if gain is None else float(gain.mean()),
                            "gain_std": None if gain is None else float(gain.std())})
    return summary


def write_summary(summary: list[dict], path: Path) -> None:
    def num(v: float | None) -> str:
        return "" if v is None else f"{v:.4f}"

    path.write_text("strategy,round,n_labelled,ua_mean,ua_std,gain_mean,gain_std\n" + "".join(
        f"{r['strategy']},{r['round']},{r['n_labelled']},{num(r['ua_mean'])},{num(r['ua_std'])},"
        f"{num(r['gain_mean'])},{num(r['gain_std'])}\n" for r in summary))


def markdown_tables(summary: list[dict]) -> str:
    """The UA table and the gain-over-random table (UA points, mean ± std over seeds; last row: the mean
    over rounds after the first, i.e. the average gain across the labelled-set sizes)."""
    strats = sorted({r["strategy"] for r in summary})
    rounds = sorted({r["round"] for r in summary})
    at = {(r["strategy"], r["round"]): r for r in summary}

    def cell(r: dict | None, key: str) -> str:
        if r is None or r[key + "_mean"] is None:
            return ""
        sign = "+" if key == "gain" else ""
        return f"{100 * r[key + '_mean']:{sign}.1f} ± {100 * r[key + '_std']:.1f}"

    def table(key: str, cols: list[str], mean_row: bool) -> list[str]:
        out = ["| labelled | " + " | ".join(cols) + " |", "|---:|" + "---:|" * len(cols)]
        for rnd in rounds:
            n = next(at[(s, rnd)]["n_labelled"] for s in strats if (s, rnd) in at)
            cells = [cell(at.get((s, rnd)), key) for s in cols]
            out.append(f"| {n} | " + " | ".join(cells) + " |")
        if mean_row:
            cells = []
            for s in cols:
                g = [at[(s, rnd)]["gain_mean"] for rnd in rounds[1:] if (s, rnd) in at]
                cells.append(f"{100 * np.mean(g):+.1f}" if g else "")
            out.append("| mean (after round 0) | " + " | ".join(cells) + " |")
        return out

    lines = ["UA on held-out speakers (%), mean ± std over seeds:", "", *table("ua", strats, False)]
    if any(r["gain_mean"] is not None for r in summary):
        others = [s for s in strats if s != "random"]
        lines += ["", "gain over random (UA points; paired per seed), mean ± std over seeds:", "",
                  *table("gain", others, True)]
    return "\n".join(lines)


def plot(summary: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_gain = any(r["gain_mean"] is not None for r in summary)
    fig, axes = plt.subplots(1, 2 if has_gain else 1, figsize=(11.5 if has_gain else 6.4, 4.2), squeeze=False)
    ax, gx = axes[0][0], (axes[0][1] if has_gain else None)
    for strat in sorted({r["strategy"] for r in summary}):
        pts = sorted((r["n_labelled"], r["ua_mean"], r["ua_std"], r["gain_mean"], r["gain_std"])
                     for r in summary if r["strategy"] == strat)
        n, m, s = (np.array(v, dtype=float) for v in list(zip(*pts))[:3])
        line, = ax.plot(n, 100 * m, marker="o", ms=3, label=strat, ls="--" if strat == "random" else "-")
        ax.fill_between(n, 100 * (m - s), 100 * (m + s), alpha=0.12, color=line.get_color())
        if gx is not None:
            g, gs = (np.array(v, dtype=float) for v in list(zip(*pts))[3:])
            gx.plot(n, 100 * g, marker="o", ms=3, label=strat, color=line.get_color(),
                    ls="--" if strat == "random" else "-")
            if strat != "random":
                gx.fill_between(n, 100 * (g - gs), 100 * (g + gs), alpha=0.10, color=line.get_color())
    ax.set_xlabel("labelled training utterances")
    ax.set_ylabel("UA on held-out speakers (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if gx is not None:
        gx.set_xlabel("labelled training utterances")
        gx.set_ylabel("gain over random (UA points, paired per seed)")
        gx.set_title("gain over random selection (mean ± std over seeds)", fontsize=9)
        gx.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--head", default="mean")
    ap.add_argument("--schedule", default="converged")
    ap.add_argument("--strategies", default=",".join(STRATEGIES),
                    help=f"comma-separated, of {', '.join(STRATEGIES)} (default: all)")
    ap.add_argument("--balanced", action="store_true", help="also run entropy/margin with balanced selection")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--start", type=int, default=10, help="initial labelled utterances per class")
    ap.add_argument("--step", type=int, default=20, help="utterances labelled per round")
    ap.add_argument("--budget", type=int, default=240, help="stop at this many labelled utterances")
    a = ap.parse_args()
    strategies = [s for s in a.strategies.split(",") if s]
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        ap.error(f"unknown strategies {bad}; choose from {', '.join(STRATEGIES)}")

    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    inputs = load_inputs(a.store)
    cfg = schedule_config(a.schedule)
    seeds = [int(s) for s in a.seeds.split(",")]
    runs = [(s, False) for s in strategies]
    if a.balanced:
        runs += [(s, True) for s in strategies if s in ("entropy", "margin")]
    rows = []
    wall: dict[str, float] = {}
    for strategy, balanced in runs:
        t1 = time.perf_counter()
        for seed in seeds:
            rows.extend(simulate(inputs, a.head, cfg, strategy, seed, a.start, a.step, a.budget, balanced))
            print(f"{strategy}{' balanced' if balanced else ''} seed {seed}: "
                  f"final UA {np.mean([r['ua'] for r in rows[-5:]]):.3f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        wall[strategy + ("-balanced" if balanced else "")] = round(time.perf_counter() - t1, 1)
    a.out.mkdir(parents=True, exist_ok=True)
    keys = ["strategy", "seed", "fold", "round", "n_labelled", "ua"]
    (a.out / "curve.csv").write_text("\n".join([",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows]) + "\n")
    summary = summarise(rows, seeds)
    write_summary(summary, a.out / "summary.csv")
    name = inputs.audio.provenance.get("feature", a.store.stem)
    plot(summary, a.out / "active_learning.png",
         f"{name} · {a.head} head · start {a.start}/class, +{a.step} per round · {len(seeds)} seeds × 5 folds")
    (a.out / "run.json").write_text(json.dumps({
        "argv": sys.argv, "config": vars(a) | {"store": str(a.store), "out": str(a.out)},
        "train_config": cfg.to_dict() if hasattr(cfg, "to_dict") else str(cfg),
        "store_provenance": inputs.audio.provenance, "versions": package_versions(), "host": host_info(),
        "strategy_wall_s": wall, "wall_s": time.perf_counter() - t0}, indent=1, default=str))
    print("\n" + markdown_tables(summary))
    print(f"\nwrote {a.out} in {time.perf_counter() - t0:.0f} s (per strategy, all seeds: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in wall.items()) + ")")


if __name__ == "__main__":
    main()
