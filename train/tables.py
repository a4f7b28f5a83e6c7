"""The paper's tables and figure from a folder of stores (``ser-train tables``): which runs, in what order.

The stores' roles come from :mod:`train.store_folder`, the runs go through :class:`train.experiment.RunCache`
(all runs known up front share one worker pool), the Markdown from :mod:`train.markdown`. Outputs in
``out``:

``table1.md``   the four acoustic heads at k utterances per class: LLD UA, pre-trained UA, improvement
``figure2.png`` + ``curve.csv``  learning curve of the ``mlp`` head on LLD and on the pre-trained store
``table2.md``   full data: the best acoustic head on the pre-trained store, and ``bimodal`` (audio + text)
``results.json`` every number with its run folder; ``summary.md`` a README-ready summary
``runs/``       one run folder per cross-validation run (identical runs are done once and shared)

Every UA/WA/F1 is reported twice: the mean ± std of the fold scores (the paper's protocol) and the
*pooled* score of all held-out predictions together (:func:`train.protocol.pooled_scores`), which counts
every utterance once and every class even where a test fold lacks it.

A store of the folder that cannot be read (corrupt, incomplete, not a feature store) is reported, with the
reason, and skipped (``StoreSet.skipped``, ``results.json`` ``skipped_stores``); so is an LLD or text
store that cannot be loaded (e.g. NaN frames): the tables are made from the other stores.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ser_common.store import StoreError

from .config import TrainConfig, run_schedules, schedule_config
from .data import Inputs, check_classes, load_store, make_inputs
from .experiment import RunCache
from .protocol import DEFAULT_KS, CVResult, CurveResult, dedupe_seeds, largest_class, resolve_ks
from .reports import plot_curve, write_curve_csv
from .runs import command_line
from .store_folder import identify_stores, reason, store_info
from .markdown import ACOUSTIC_HEADS, format_summary, format_table1, format_table2

CURVE_HEAD = "mlp"


def _rel(path: Any, root: Path) -> str:
    try:
        return os.path.relpath(str(path), str(root))
    except ValueError:
        return str(path)


def run_tables(stores_dir: str | os.PathLike, out: str | os.PathLike, seeds: Sequence[int] = (0, 1, 2),
               k: int | None = 125, schedule: str = "paper", also_converged: bool = False, device: str = "cpu",
               workers: int = 1,
               ks: Sequence[int | None] = DEFAULT_KS, audio: str | None = None, text: str | None = None,
               table2_head: str = "best", overrides: dict[str, Any] | None = None, intersect: bool = False,
               progress: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Run every experiment of the tables and write the outputs; returns the ``results.json`` content.

    ``progress(total=N)`` (e.g. ``tqdm``) makes the progress bar over fits (fold × seed jobs); ``workers``
    processes fit the jobs of frame-level heads, of all runs together (:mod:`train.experiment`).
    """
    start = time.perf_counter()
    if table2_head not in ("best", *ACOUSTIC_HEADS):
        raise ValueError(f"table 2 head must be 'best' or one of {ACOUSTIC_HEADS}, got {table2_head!r}")
    schedules = run_schedules(schedule, also_converged)
    cfgs = {s: schedule_config(s, **(overrides or {})) for s in schedules}   # bad values fail before any work
    notes: list[str] = []
    seeds, seed_note = dedupe_seeds(seeds)
    if seed_note:
        notes.append(seed_note)
    out = Path(out)
    found = identify_stores(stores_dir, audio=audio, text=text)
    skipped_stores = list(found.skipped)
    pre_store = load_store(found.pretrained)
    pre = make_inputs(pre_store)
    check_classes(pre, "cross-validate")

    def optional(role: str, path: Path | None) -> Any:
        """The loaded store, or ``None`` (noted in ``skipped_stores``) when it cannot be loaded."""
        if path is None:
            return None
        try:
            return load_store(path)
        except StoreError as e:
            skipped_stores.append(f"{path.name}: skipped, the {role} store cannot be used ({reason(path, e)})")
            return None

    lld_store, text_store = optional("LLD", found.lld), optional("text", found.text)
    lld = make_inputs(lld_store, classes=pre.classes) if lld_store is not None else None
    bim = None
    if text_store is not None:
        bim = make_inputs(pre_store, text_store, classes=pre.classes, intersect=intersect)
    if bim is None:
        notes.append(("no text store" if found.text is None else f"the text store {found.text.name} is skipped")
                     + ": the bimodal row of table 2 is left out")
    if lld is None:
        notes.append(("no LLD store (feature 'lld')" if found.lld is None else
                      f"the LLD store {found.lld.name} is skipped") + ": the LLD column of table 1 and its curve "
                     "are left out")
    notes.extend(skipped_stores)
    acoustic = [x for x in (lld, pre) if x is not None]
    curve_ks = {x.name: resolve_ks(x, ks) for x in acoustic}
    for name, (_, skipped) in curve_ks.items():
        notes.extend(f"{name}: {s}" for s in skipped)
    k_largest = max(max(largest_class(x), 0) for x in acoustic)
    if k is not None and k >= k_largest:
        notes.append(f"k={k} per class is at least the largest class of a training fold ({k_largest}): "
                     f"table 1 then uses all training data")

    out.mkdir(parents=True, exist_ok=True)   # only once the stores are loaded and checked
    cache = RunCache(out, seeds, device, workers=workers)
    # every run known before any result: table 1, the curves and the bimodal row of every schedule; they
    # are fitted together (one worker pool). Table 2's acoustic row (the best head of table 1 on all data)
    # is known only after table 1 and runs afterwards unless table 1 already ran it.
    first: list[tuple[Inputs, str, int | None, TrainConfig]] = []
    for s, cfg in cfgs.items():
        for h in ACOUSTIC_HEADS:
            first += [(x, h, k, cfg) for x in (pre, lld) if x is not None]
        first += [(x, CURVE_HEAD, kk, cfg) for x in acoustic for kk in curve_ks[x.name][0]]
        if bim is not None:
            first.append((bim, "bimodal", None, cfg))
    planned = {cache.key(*e): cache.n_jobs(e[0]) for e in first}
    for cfg in cfgs.values():
        planned[(pre.name, "?table2", None, cfg.to_json())] = cache.n_jobs(pre)
    bar = progress(total=sum(planned.values()), desc="ser-train tables", unit="fit") if progress else None
    cache.progress = bar
    cache.run_many(first)

    table1: dict[str, list[dict[str, Any]]] = {}
    table2: dict[str, list[dict[str, Any]]] = {}
    curves: dict[str, list[CurveResult]] = {}
    for s, cfg in cfgs.items():
        rows = []
        for h in ACOUSTIC_HEADS:
            r_pre = cache.run(pre, h, k, cfg)
            r_lld = cache.run(lld, h, k, cfg) if lld is not None else None
            rows.append({"head": h, "pretrained": _entry(r_pre, out), "lld": _entry(r_lld, out) if r_lld else None,
                         "improvement_points": (100 * (r_pre.ua - r_lld.ua)) if r_lld else None})
        table1[s] = rows
        curves[s] = [CurveResult(CURVE_HEAD, x.name, [cache.run(x, CURVE_HEAD, kk, cfg) for kk in curve_ks[x.name][0]],
                                 curve_ks[x.name][1]) for x in acoustic]
        best = table2_head
        if best == "best":
            best = max(rows, key=lambda r: r["pretrained"]["ua"])["head"]
        if bar is not None and cache.has(pre, best, None, cfg):
            bar.total -= cache.n_jobs(pre)
            bar.refresh()
        t2 = [{"model": f"{best} on {pre.name}", "head": best, **_entry(cache.run(pre, best, None, cfg), out)}]
        if bim is not None:
            t2.append({"model": f"bimodal ({pre.name} + {bim.text.name})", "head": "bimodal",
                       **_entry(cache.run(bim, "bimodal", None, cfg), out)})
        table2[s] = t2
    if bar is not None:
        bar.close()

    curve_rows = []
    for s in schedules:
        for c in curves[s]:
            for r in c.rows():
                curve_rows.append({**r, "schedule": s, "run_dir": _rel(r["run_dir"], out)})
    write_curve_csv([r for r in curve_rows], out / "curve.csv")
    plot_curve([r for r in curve_rows if r["schedule"] == schedule], out / "figure2.png",
               title=f"{found.corpus}: {CURVE_HEAD} head, schedule {schedule}")
    figures = ["figure2.png"]
    if len(schedules) > 1:
        plot_curve([r for r in curve_rows if r["schedule"] == "converged"], out / "figure2-converged.png",
                   title=f"{found.corpus}: {CURVE_HEAD} head, schedule converged")
        figures.append("figure2-converged.png")

    used = (("pretrained", found.pretrained), ("lld", found.lld if lld is not None else None),
            ("text", found.text if bim is not None else None))
    stores_info = {role: store_info(p) for role, p in used if p is not None}
    warnings = list(dict.fromkeys(f"{r.store}: {w}" for r in cache.results.values() for w in r.warnings))
    results = {"corpus": found.corpus, "stores": stores_info, "schedules": schedules,
               "train_configs": {s: c.to_dict() for s, c in cfgs.items()}, "seeds": list(seeds), "k": k,
               "device": device, "workers": workers, "classes": list(pre.classes), "n_labelled": int(len(pre.labelled)),
               "table1": table1, "table2": table2, "curve": curve_rows, "figures": figures, "notes": notes,
               "warnings": warnings, "skipped_stores": skipped_stores,
               "std_over": "seeds" if len(seeds) > 1 else "folds", "command": command_line(),
               "seconds": round(time.perf_counter() - start, 1),
               "runs": sorted(_rel(r.run_dir, out) for r in cache.results.values())}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "table1.md").write_text(format_table1(results) + "\n")
    (out / "table2.md").write_text(format_table2(results) + "\n")
    (out / "summary.md").write_text(format_summary(results) + "\n")
    return results



def _entry(r: CVResult, out: Path) -> dict[str, Any]:
    """One number of a table: fold mean ± std (``ua``, ``ua_std``, …) and pooled (``ua_pooled``, …)."""
    s, p = r.summary, r.pooled
    return {"store": r.store, "head": r.head, "k": r.k, "ua": s["ua_mean"], "ua_std": s["ua_std"],
            "wa": s["wa_mean"], "wa_std": s["wa_std"], "f1": s["f1_mean"], "f1_std": s["f1_std"],
            **{f"{m}_pooled": p[m] for m in ("ua", "wa", "f1")},
            **{f"{m}_pooled_std": p[f"{m}_std"] for m in ("ua", "wa", "f1")},
            "per_seed_ua": s["per_seed"]["ua"], "per_seed_ua_pooled": p["per_seed"]["ua"],
            "n_train_mean": s["n_train_mean"], "warnings": list(r.warnings),
            "seconds": round(r.seconds, 1), "run_dir": _rel(r.run_dir, out)}


