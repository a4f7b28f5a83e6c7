"""Active-learning simulation (``ser-train simulate``): does labelling what the model is unsure of beat
labelling at random?

Protocol (speaker-independent, from a store alone): in each leave-one-group-out fold the training groups are
the unlabelled pool and the held-out group is the test set. Start from ``start`` labelled utterances per
class drawn at random from the pool; then, each round, fit the head on the labelled set, score the test set
(UA) and the rest of the pool, and "label" the ``step`` pool utterances the strategy picks
(:func:`train.suggest.rank_pool`, exactly as ``ser-train suggest`` does: ``entropy``, ``margin``, ``random``,
``kcenter`` (greedy k-center over the standardised pooled features, starting from the labelled set),
``diverse-entropy`` (the most uncertain utterance of each k-means cluster); ``balanced`` also runs
entropy/margin round-robin over predicted classes). Repeated for every seed; the curve is UA against the
labelled-set size, mean ± std over seeds of the fold-mean UA, per strategy. Every strategy of a seed starts
from the same labelled set, so its gain over random is a paired difference: per seed, its fold-mean UA minus
random's at the same round; mean ± std over seeds.

Outputs (:func:`run_simulation`): ``curve.csv`` (strategy, seed, fold, round, n_labelled, ua),
``summary.csv`` (strategy, round, n_labelled, ua_mean, ua_std, gain_mean, gain_std: the gain over random in
UA, as fractions), ``active_learning.png`` (UA and gain over random against the labelled-set size),
``summary.md`` (the UA and gain tables) and ``run.json`` (config, store provenance, package versions).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ser_common.provenance import host_info, package_versions

from .config import TrainConfig
from .data import Inputs
from .inputs import load_inputs
from .fitting import fit_jobs
from .jobs import Job
from .markdown import format_simulation
from .metrics import classification_scores
from .protocol import speaker_independent_folds
from .runs import command_line
from .suggest import DIVERSITY_STRATEGIES, STRATEGIES, pooled_features, rank_pool
from .trainer import predict_proba

BALANCED_STRATEGIES = ("entropy", "margin")
"""Strategies that also run with balanced (round-robin over predicted classes) selection."""


def simulate(inputs: Inputs, head: str, cfg: TrainConfig, strategy: str, seed: int, start: int, step: int,
             budget: int, balanced: bool) -> list[dict]:
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


def run_simulation(store: str | os.PathLike, out: str | os.PathLike, cfg: TrainConfig, head: str = "mean",
                   strategies: Sequence[str] = STRATEGIES, balanced: bool = False, seeds: Sequence[int] = (0, 1, 2),
                   start: int = 10, step: int = 20, budget: int = 240,
                   on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every strategy (and its balanced variant) for every seed; writes the outputs into ``out`` and returns
    the ``run.json`` content (with ``summary``, the rows of ``summary.csv``)."""
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        raise ValueError(f"unknown strategies {bad}; choose from {', '.join(STRATEGIES)}")
    t0 = time.perf_counter()
    inputs = load_inputs(store)
    first = start * len(inputs.classes)
    if budget <= first:
        raise ValueError(f"--budget {budget} leaves nothing to select: the starting set is already --start {start} "
                         f"× {len(inputs.classes)} classes = {first} utterances; raise --budget above {first} "
                         f"(or lower --start)")
    runs = [(s, False) for s in strategies] + [(s, True) for s in strategies if balanced and s in BALANCED_STRATEGIES]
    rows: list[dict] = []
    wall: dict[str, float] = {}
    for strategy, bal in runs:
        t1 = time.perf_counter()
        for seed in seeds:
            rows.extend(simulate(inputs, head, cfg, strategy, seed, start, step, budget, bal))
            if on_progress:
                on_progress(f"{strategy}{' balanced' if bal else ''} seed {seed}: final UA "
                            f"{np.mean([r['ua'] for r in rows[-len(speaker_independent_folds(inputs)[0]):]]):.3f} "
                            f"({time.perf_counter() - t0:.0f} s)")
        wall[strategy + ("-balanced" if bal else "")] = round(time.perf_counter() - t1, 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys = ["strategy", "seed", "fold", "round", "n_labelled", "ua"]
    (out / "curve.csv").write_text("\n".join([",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows]) + "\n")
    summary = summarise(rows, list(seeds))
    write_summary(summary, out / "summary.csv")
    name = inputs.audio.provenance.get("feature", Path(store).stem)
    n_folds = len(speaker_independent_folds(inputs)[0])
    plot(summary, out / "active_learning.png",
         f"{name} · {head} head · start {start}/class, +{step} per round · {len(seeds)} seeds × {n_folds} folds")
    (out / "summary.md").write_text(format_simulation(summary) + "\n")
    result = {"command": command_line(), "store": str(store), "head": head, "strategies": list(strategies),
              "balanced": balanced, "seeds": list(seeds), "start": start, "step": step, "budget": budget,
              "train_config": cfg.to_dict(), "store_provenance": inputs.audio.provenance,
              "versions": package_versions(), "host": host_info(), "strategy_wall_s": wall,
              "wall_s": round(time.perf_counter() - t0, 1)}
    (out / "run.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    return {**result, "summary": summary}
