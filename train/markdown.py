"""Every Markdown table the toolkit writes, from the results it was given (never from runs):

* the paper's tables: ``table1.md``, ``table2.md``, ``summary.md`` from ``results.json``
  (:func:`train.tables.run_tables`), every UA with its pooled companion;
* ``loco.md`` (``ser-train loco``), ``sweep.md`` (``ser-train sweep``), the active-learning ``summary.md``
  (``ser-train simulate``);
* the cells they share: percentages (:func:`pct`), mean ± std (:func:`pm`), :func:`md_table`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import schedule_config
from .protocol import METRICS

ACOUSTIC_HEADS = ("mean", "meanmax", "attention", "mlp")
"""The heads of table 1, in its row order."""
PAPER_TABLE1 = "Boigne et al. (2020), IEMOCAP, 4 classes: LLD UA 49.7-51.6 %, wav2vec UA 54.9-58.5 % across the four heads"
PAPER_TABLE2 = "Boigne et al. (2020), IEMOCAP, 4 classes, full data: wav2vec + mlp 64.3 %, wav2vec + BERT (bimodal) 73.9 %"


def _encoder_line(info: dict[str, Any]) -> str:
    layer = f", layer {info['layer']}" if info.get("layer") is not None else ""
    sha = f", weights sha256 {str(info['weights_sha256'])[:12]}…" if info.get("weights_sha256") else ""
    return f"`{info['file']}`: {info.get('encoder')}{layer}{sha} ({info.get('dims')} dims)"


def format_table1(res: dict[str, Any]) -> str:
    scheds = res["schedules"]
    header = ["head"]
    for s in scheds:
        tag = "" if s == scheds[0] else f" ({s})"
        header += [f"LLD UA %{tag}", f"pre-trained UA %{tag}", f"improvement (points){tag}"]
    header.append("runs")
    rows = []
    for i, h in enumerate(ACOUSTIC_HEADS):
        cells, links = [h], []
        for s in scheds:
            r = res["table1"][s][i]
            lld, pre = r["lld"], r["pretrained"]
            cells += [_with_pooled(lld) if lld else "—", _with_pooled(pre),
                      f"{r['improvement_points']:+.1f}" if r["improvement_points"] is not None else "—"]
            tag = "" if s == scheds[0] else f"-{s}"
            if lld:
                links.append(f"[lld{tag}]({lld['run_dir']})")
            links.append(f"[pre{tag}]({pre['run_dir']})")
        rows.append(cells + [" · ".join(links)])
    pre = res["stores"]["pretrained"]["file"]
    lld = res["stores"].get("lld", {}).get("file", "—")
    k = res["k"]
    amount = "all training utterances" if k is None else f"{k} training utterances per class"
    lines = [f"# Table 1: acoustic heads with {amount} ({res['corpus']})", "",
             f"LLD store `{lld}`, pre-trained store `{pre}`; speaker-independent leave-one-session-out CV; "
             f"UA mean ± std over {res['std_over']} (seeds {','.join(map(str, res['seeds']))}), and in "
             f"brackets the pooled UA of all held-out predictions together (summed confusion matrix; "
             f"mean over seeds); schedule {scheds[0]}" + (f" (and {scheds[1]})" if len(scheds) > 1 else "") + ".",
             "", md_table(header, rows), "", f"Paper reference: {PAPER_TABLE1}."]
    lines += [f"Note: {n}" for n in res["notes"] if "table 1" in n or "LLD" in n]
    lines += [f"Warning: {w}" for w in res.get("warnings", [])]
    return "\n".join(lines)


def _with_pooled(e: dict[str, Any]) -> str:
    """``"55.2 ± 0.4 (pooled 56.0)"``; the bare mean ± std for entries without pooled scores."""
    cell = pm(e["ua"], e["ua_std"])
    return cell + (f" (pooled {pct(e['ua_pooled'])})" if e.get("ua_pooled") is not None else "")


def format_table2(res: dict[str, Any]) -> str:
    rows = []
    for s in res["schedules"]:
        for r in res["table2"][s]:
            name = r["model"] + ("" if s == res["schedules"][0] else f" ({s})")
            rows.append([name, pm(r["ua"], r["ua_std"]), pm(r["wa"], r["wa_std"]), pm(r["f1"], r["f1_std"]),
                         *[pct(r[f"{m}_pooled"]) if r.get(f"{m}_pooled") is not None else "—"
                           for m in ("ua", "wa", "f1")],
                         f"[run]({r['run_dir']})"])
    lines = [f"# Table 2: full training data ({res['corpus']})", "",
             f"Speaker-independent CV on all labelled utterances ({res['n_labelled']}); mean ± std over "
             f"{res['std_over']} of the fold scores, and pooled: the scores of all held-out predictions together "
             f"(summed confusion matrix; mean over seeds); the acoustic head is the best of table 1 on the "
             f"pre-trained store.", "",
             md_table(["model", "UA %", "WA %", "macro F1 %", "pooled UA %", "pooled WA %", "pooled F1 %", "run"],
                      rows), "", f"Paper reference: {PAPER_TABLE2}."]
    lines += [f"Note: {n}" for n in res["notes"] if "bimodal" in n]
    if any(r.get("head", "").startswith("bimodal") for rs in res["table2"].values() for r in rs):
        crop = res["stores"].get("pretrained", {}).get("crop_s")
        audio = f"the first {crop:g} s of each utterance" if crop else "whole utterances"
        lines.append(f"Note: bimodal rows: the text store holds the tokens of the whole transcript, the audio "
                     f"store {audio} (without word time stamps the text cannot follow the audio crop).")
    lines += [f"Warning: {w}" for w in res.get("warnings", [])]
    return "\n".join(lines)


def format_summary(res: dict[str, Any]) -> str:
    s0 = res["schedules"][0]
    cfg = res["train_configs"][s0]
    best = res["table2"][s0][0]
    lines = [f"## Results on {res['corpus']}", "",
             f"- classes: {', '.join(res['classes'])} ({res['n_labelled']} labelled utterances)",
             "- stores: " + "; ".join(_encoder_line(i) + f" [{role}]" for role, i in res["stores"].items()),
             f"- schedule: {s0} ({cfg['epochs']} epochs, lr {cfg['lr']:g}, batch {cfg['batch_size']}, dropout "
             f"{cfg['dropout']:g})" + (f"; also {', '.join(res['schedules'][1:])}" if len(res['schedules']) > 1 else ""),
             f"- seeds: {','.join(map(str, res['seeds']))}; device {res['device']}; {res['seconds']:.0f} s in all",
             f"- best acoustic result (full data): {best['model']} UA {pct(best['ua'])} % "
             f"(pooled {pct(best['ua_pooled'])} %)"]
    if len(res["table2"][s0]) > 1:
        bi = res["table2"][s0][1]
        lines.append(f"- bimodal (full data): UA {pct(bi['ua'])} % (pooled {pct(bi['ua_pooled'])} %)")
    lines += ["", format_table1(res).replace("# Table 1", "### Table 1"), "",
              format_table2(res).replace("# Table 2", "### Table 2"), "",
              "![learning curve](figure2.png)", "", "Run folders (config, provenance, metrics, predictions): "
              + ", ".join(f"`{r}`" for r in res["runs"])]
    other = [n for n in res["notes"] if "table 1" not in n and "bimodal" not in n and "LLD" not in n]
    lines += [f"\nNote: {n}" for n in other]
    return "\n".join(lines)


def pct(x: float) -> str:
    """``0.552`` -> ``"55.2"`` (a fraction shown in percent, one decimal)."""
    return f"{100 * x:.1f}"


def pm(mean: float, std: float) -> str:
    """``"55.2 ± 0.4"`` (percent)."""
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table: ``header`` then one row per item of ``rows`` (cells shown with ``str``)."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


LOCO_HEADER = ("held-out corpus", "train corpora", "n_train", "n_test", "UA %", "WA %", "F1 %", "in-corpus cv UA %")
"""loco.md's columns: n_train is per model (mean over seeds), n_test the scored utterances of the held-out
corpus; UA/WA/F1 are pooled over them (± std over seeds with several); the last column is the pooled UA of
speaker-independent cv inside the held-out corpus (``--in-corpus``), for comparison."""


def loco_markdown(rows: Sequence[dict[str, Any]], several_seeds: bool) -> str:
    """``loco.md``: :data:`LOCO_HEADER` per held-out corpus, then the unweighted mean over held-out corpora."""
    def cell(r: dict[str, Any], m: str) -> str:
        return pm(r[m], r[f"{m}_std"]) if several_seeds else pct(r[m])

    body = [[r["held_out"], " + ".join(r["train_corpora"]), f"{r['n_train']:.0f}", str(r["n_test"]),
             *[cell(r, m) for m in METRICS],
             pct(r["in_corpus_ua"]) if r["in_corpus_ua"] is not None else "—"] for r in rows]
    ins = [r["in_corpus_ua"] for r in rows if r["in_corpus_ua"] is not None]
    body.append(["mean over held-out corpora", "", "", str(sum(r["n_test"] for r in rows)),
                 *[pct(float(np.mean([r[m] for r in rows]))) for m in METRICS],
                 pct(float(np.mean(ins))) if len(ins) == len(rows) else "—"])
    return md_table(LOCO_HEADER, body)


SCHEDULE_LABELS = {"paper": "paper (100 epochs, lr 1e-4)", "converged": "converged (lr 1e-3, ≥3000 steps)"}


def format_sweep(res: dict[str, Any], folder: Path | str) -> str:
    """The Markdown table of a sweep (``sweep.json`` content)."""
    schedules = res["schedules"]
    over = "seeds" if len(res["seeds"]) > 1 else "folds"
    custom = any(res["train_configs"][s] != schedule_config(s).to_dict() for s in schedules)
    label = {s: (f"{s} (custom, see sweep.json)" if custom else SCHEDULE_LABELS.get(s, s)) for s in schedules}
    lines = [f"Layer sweep on `{folder}`: `{res['head']}` head, all training data, speaker-independent CV UA (%), "
             f"mean ± std over {over} (seeds {','.join(map(str, res['seeds']))}).", "",
             "| layer | store | " + " | ".join(f"UA, {label[s]} [pooled]" for s in schedules) + " |",
             "|---:|---|" + "---:|" * len(schedules)]
    for r in res["rows"]:
        cells = []
        for i, s in enumerate(schedules):
            c = r[s]
            mark = " **(best layer)**" if i == 0 and r["layer"] == res["best_layer"] else ""
            cells.append(f"{c['ua']:.1f} ± {c['ua_std']:.1f} [{c['ua_pooled']:.1f}]{mark}")
        lines.append(f"| {r['layer']} | {r['store']} | " + " | ".join(cells) + " |")
    total = res["rows"][-1]
    lines += ["", "Learned layer weights (softmax, mean over folds and seeds): " + "; ".join(
        f"{s}: " + ", ".join(f"l{i} {w:.2f}" for i, w in zip(res["layer_ids"], total[s]["layer_weights"]))
        for s in schedules) + "."]
    return "\n".join(lines)


def format_simulation(summary: list[dict]) -> str:
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
