"""Layer sweep (``ser-train sweep``): one head on every layer store of an encoder's ``@all`` extraction, and
the learned layer sum over all of them beside it (:mod:`train.layers`).

Every cell is a speaker-independent CV on all labelled data, run through :class:`train.experiment.RunCache`
(one run folder each under ``out/runs``; the runs of all layers and schedules share one worker pool). The
table gives, per layer and schedule, the fold-mean UA ± std (over seeds, or over folds with one seed) and
the pooled UA of all held-out predictions in brackets; the best single layer of the first schedule is
marked; the layer-sum row also reports its learned softmax weights per layer (mean over folds and seeds).

Outputs in ``out``: ``sweep.md`` (the table), ``sweep.json`` (every number with its run folder, the
configs, the command), ``runs/``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from .config import schedule_config
from .data import Inputs, make_inputs
from .experiment import RunCache
from .inputs import load_inputs
from .layer_stores import expand_layer_paths, stack_layers
from .markdown import format_sweep
from .protocol import CVResult, dedupe_seeds
from .runs import command_line

def _cell(r: CVResult, out: Path) -> dict[str, Any]:
    """UA (%), its std, the pooled UA and the run folder (relative to ``out``) of one cell."""
    return {"ua": 100 * r.summary["ua_mean"], "ua_std": 100 * r.summary["ua_std"], "ua_pooled": 100 * r.pooled["ua"],
            "run_dir": os.path.relpath(r.run_dir, out)}


def run_sweep(pattern: str | os.PathLike, out: str | os.PathLike, head: str = "mean", seeds: Sequence[int] = (0,),
              schedules: Sequence[str] = ("paper",), overrides: dict[str, Any] | None = None, device: str = "cpu",
              workers: int = 1, progress: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Run the sweep over the layer stores ``pattern`` names (:func:`train.layer_stores.expand_layer_paths`) and
    write ``sweep.md``/``sweep.json`` into ``out``; returns the ``sweep.json`` content."""
    start = time.perf_counter()
    seeds, _ = dedupe_seeds(seeds)
    cfgs = {s: schedule_config(s, **(overrides or {})) for s in schedules}   # bad values fail before any work
    paths = expand_layer_paths(pattern)
    layers: list[tuple[int, Path, Inputs]] = []
    for p in paths:
        x = load_inputs(p)
        layers.append((x.audio.provenance.get("layer"), p, x))
    stacked = make_inputs(stack_layers([x.audio for _, _, x in layers]))   # the stores already read, stacked
    n_layers = len(paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = RunCache(out, seeds, device, workers=workers)
    experiments = [(x, head, None, cfg) for _, _, x in layers for cfg in cfgs.values()]
    experiments += [(stacked, head, None, replace(cfg, layer_sum=n_layers)) for cfg in cfgs.values()]
    bar = progress(total=sum(cache.n_jobs(e[0]) for e in experiments), desc="ser-train sweep", unit="fit") \
        if progress else None
    cache.progress = bar
    cache.run_many(experiments)
    if bar is not None:
        bar.close()

    rows = []
    for layer, path, x in layers:
        rows.append({"layer": layer, "store": path.name,
                     **{s: _cell(cache.run(x, head, None, cfg), out) for s, cfg in cfgs.items()}})
    sum_row: dict[str, Any] = {"layer": "sum", "store": f"{stacked.audio.name} (--layer-sum)"}
    for s, cfg in cfgs.items():
        r = cache.run(stacked, head, None, replace(cfg, layer_sum=n_layers))
        sum_row[s] = {**_cell(r, out), "layer_weights": r.summary["layer_weights"]}
    rows.append(sum_row)
    first = schedules[0]
    best = max(rows[:-1], key=lambda r: r[first]["ua"])
    result = {"stores": [str(p) for p in paths], "head": head, "seeds": list(seeds), "schedules": list(schedules),
              "train_configs": {s: c.to_dict() for s, c in cfgs.items()}, "layer_ids": [r["layer"] for r in rows[:-1]],
              "best_layer": best["layer"], "rows": rows, "device": device, "workers": workers,
              "command": command_line(), "seconds": round(time.perf_counter() - start, 1)}
    (out / "sweep.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "sweep.md").write_text(format_sweep(result, Path(paths[0]).parent) + "\n")
    return result
