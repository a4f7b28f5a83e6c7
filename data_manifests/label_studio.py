"""A Label Studio JSON export -> the pool manifest's records, labelled as the labellers chose.

The loop: ``ser-train suggest --format label-studio`` writes tasks (``data.utt_id``, ``data.audio``, the
model's guess as a prediction), a team labels them in Label Studio, exports the project as **JSON** (Export →
JSON, or ``GET /api/projects/<id>/export?exportType=JSON``), and :func:`build_label_studio` matches every
task to the pool manifest by ``data.utt_id`` and returns the records that received a label.

The export is a list of tasks; each has ``data``, ``annotations`` (what people submitted: ``result`` holds
``{"type": "choices", "value": {"choices": ["happy"]}}``, ``was_cancelled`` is true for a skipped task) and
``predictions`` (the model's pre-annotations, never read as labels).

Per utterance:

* no annotation, or only cancelled (skipped) ones, or annotations submitted without a choice: left out of
  the output and counted in the summary (still to label);
* several non-cancelled annotations that agree: that label;
* several that disagree (several labellers, or one who relabelled in a new annotation): ``on_disagreement``
  decides. ``latest`` (default): the most recently updated annotation wins (``updated_at``, then
  ``created_at``, then the annotation id), and every disagreement is listed in the summary; ``skip``: the
  utterance is left unlabelled (counted); ``fail``: an error listing them. The same utterance imported
  twice (two tasks with one ``utt_id``) pools the annotations of both tasks.

Labels are normalised and mapped like every brought corpus (:mod:`.label_names`: stripped, lower-cased,
then ``--label-map``), and must then be one of ``classes`` (default: the toolkit's four). Problems (a task
without ``data.utt_id``, an id absent from the manifest, a label outside ``classes`` or absent from the
map, an annotation with several choices) are collected and reported together: an error, or with
``skip_invalid`` a warning and those utterances left out.

The output records are the manifest's own (audio, speaker, session … unchanged) with ``label`` set and
``extra["label_studio"]`` = ``{"task": id, "annotation": id, "annotator": user id}`` of the annotation kept.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ser_common.labels import FOUR_CLASSES, class_order
from ser_common.listing import indented, shorten
from ser_common.manifest import ManifestError, ManifestRecord, read_manifest

from .label_names import LabelNames, NotInLabelMap, label_names_from, normalise_label
from .problems import CorpusError, CorpusWarning

DISAGREEMENT_POLICIES = ("latest", "skip", "fail")
"""What to do when an utterance's non-cancelled annotations choose different labels."""

SKIP_HINT = ("Fix them in Label Studio and export again, or pass skip_invalid=True (CLI: --skip-invalid) to "
             "leave those utterances out with a warning.")


@dataclass
class LabelStudioSummary:
    """What an import did: counts per class and what was left out, and why."""

    tasks: int = 0
    labelled: Counter = field(default_factory=Counter)
    not_annotated: int = 0
    """Utterances whose tasks have no annotation at all."""
    cancelled: int = 0
    """Utterances whose every annotation was cancelled (skipped in Label Studio)."""
    no_choice: int = 0
    """Utterances annotated, but without a choice (submitted empty)."""
    disagreements: list[str] = field(default_factory=list)
    """One line per utterance whose annotations disagree (with what was done)."""
    disagreement_policy: str = "latest"
    left_out: list[str] = field(default_factory=list)
    """Problems skipped with ``skip_invalid``, one line each."""
    relabelled: list[str] = field(default_factory=list)
    """Utterances whose manifest label differed from the Label Studio label (which was kept)."""

    def lines(self) -> list[str]:
        """The summary as printed by ``ser-manifest label-studio``."""
        n = sum(self.labelled.values())
        per_class = ", ".join(f"{c} {self.labelled[c]}" for c in class_order(list(self.labelled)))
        out = [f"{self.tasks} task(s) in the export; labelled: {n}" + (f" ({per_class})" if n else "")]
        unlabelled = [(self.not_annotated, "without annotation"), (self.cancelled, "only cancelled (skipped)"),
                      (self.no_choice, "annotated without a choice")]
        if self.disagreement_policy == "skip":
            unlabelled.append((len(self.disagreements), "annotations disagree"))
        shown = [f"{k} {why}" for k, why in unlabelled if k]
        if shown:
            out.append(f"left unlabelled: {sum(k for k, _ in unlabelled)} ({'; '.join(shown)})")
        if self.disagreements:
            what = {"latest": "the latest annotation kept", "skip": "left unlabelled"}[self.disagreement_policy]
            out.append(f"{len(self.disagreements)} utterance(s) with disagreeing annotations ({what}):"
                       + indented(self.disagreements))
        if self.left_out:
            out.append(f"left out ({len(self.left_out)} problem(s), --skip-invalid):" + indented(self.left_out))
        if self.relabelled:
            out.append(f"{len(self.relabelled)} label(s) differ from the manifest's (Label Studio's kept):"
                       + indented(self.relabelled))
        return out


def read_export(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The task list of a Label Studio JSON export; :class:`CorpusError` naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: Label Studio export not found")
    try:
        tasks = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not UTF-8 text (byte {e.start}); export the project again as JSON") from None
    except json.JSONDecodeError as e:
        raise CorpusError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); export the "
                          "project again (Export -> JSON) and do not edit the file by hand") from None
    if isinstance(tasks, dict) and "data" in tasks:
        tasks = [tasks]  # one task on its own
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise CorpusError(f"{path}: not a Label Studio JSON export (expected a list of task objects); export the "
                          "project as JSON (Export -> JSON)")
    if tasks and not any("annotations" in t for t in tasks):
        raise CorpusError(f"{path}: the tasks have no 'annotations' field: this is not Label Studio's JSON export "
                          "(JSON-MIN, CSV and the task file written for import carry no annotations); export the "
                          "project as JSON (Export -> JSON)")
    bad = [f"task {i}" for i, t in enumerate(tasks, 1) if not isinstance(t.get("data"), dict)
           or not isinstance(t.get("annotations", []), list)]
    if bad:
        raise CorpusError(f"{path}: {len(bad)} task(s) without a 'data' object or an 'annotations' list: "
                          f"{', '.join(bad[:5])}; export the project again as JSON")
    return tasks


@dataclass(frozen=True)
class _Choice:
    label: str
    when: tuple[str, str, int]
    task: Any
    annotation: Any
    annotator: Any


def _annotation_choices(ann: dict[str, Any]) -> list[str] | str:
    """The choices of one annotation's result (a list of raw names), or a problem description."""
    results = [r for r in ann.get("result") or [] if isinstance(r, dict) and r.get("type") == "choices"]
    names = {r.get("from_name") for r in results}
    if len(names) > 1:
        results = [r for r in results if r.get("from_name") == "emotion"]
        if not results:
            return f"several choice questions ({', '.join(sorted(map(str, names)))}) and none named 'emotion'"
    chosen: list[str] = []
    for r in results:
        value = r.get("value")
        choices = value.get("choices") if isinstance(value, dict) else None
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            return "a choices result without a list of choice names"
        chosen.extend(choices)
    return chosen


def _when(ann: dict[str, Any]) -> tuple[str, str, int]:
    ident = ann.get("id")
    return (str(ann.get("updated_at") or ""), str(ann.get("created_at") or ""),
            ident if isinstance(ident, int) else -1)


def build_label_studio(export: str | os.PathLike, manifest: str | os.PathLike, *,
                       label_map: str | Mapping[str, str] | None = None, keep_label_case: bool = False,
                       classes: Sequence[str] = FOUR_CLASSES, on_disagreement: str = "latest",
                       skip_invalid: bool = False) -> tuple[list[ManifestRecord], LabelStudioSummary]:
    """The ``manifest`` records labelled in ``export``, in the manifest's order, and a summary.

    Args:
        export: a Label Studio JSON export (a list of tasks with ``annotations``).
        manifest: the pool manifest the tasks were made from (matched by ``data.utt_id``; audio not checked).
        label_map: ``"joy=happy,…"`` or a dict, applied after normalisation (a name it lacks is a problem).
        keep_label_case: do not lower-case the labels.
        classes: the label set; a label outside it (after mapping) is a problem.
        on_disagreement: one of :data:`DISAGREEMENT_POLICIES` (see the module docstring).
        skip_invalid: warn about problems and leave those utterances out instead of failing.

    Raises:
        CorpusError: an unreadable export or manifest, problems (without ``skip_invalid``), disagreements
            (``on_disagreement="fail"``), or no task matching the manifest at all.
    """
    if on_disagreement not in DISAGREEMENT_POLICIES:
        raise ValueError(f"unknown disagreement policy {on_disagreement!r}; choose one of {DISAGREEMENT_POLICIES}")
    export = Path(export)
    tasks = read_export(export)
    try:
        pool = read_manifest(manifest, check_audio=False)
    except ManifestError as e:
        raise CorpusError(str(e)) from None
    by_id = {r.utt_id: r for r in pool}
    names = label_names_from(label_map, keep_label_case)
    allowed = list(dict.fromkeys(normalise_label(c, keep_label_case) for c in classes))
    summary = LabelStudioSummary(tasks=len(tasks), disagreement_policy=on_disagreement)

    problems: dict[str, list[str]] = defaultdict(list)   # kind -> lines
    per_utt: dict[str, list[dict[str, Any]]] = defaultdict(list)
    task_ids: dict[str, list[Any]] = defaultdict(list)
    unknown: list[str] = []
    for i, task in enumerate(tasks, 1):
        tid = task.get("id", f"#{i}")
        uid = task["data"].get("utt_id")
        if not isinstance(uid, str) or not uid:
            problems["no_id"].append(f"task {tid}: no data.utt_id")
            continue
        if uid not in by_id:
            unknown.append(f"task {tid}: {uid}")
            continue
        task_ids[uid].append(tid)
        per_utt[uid].extend(dict(a, _task=tid) for a in task["annotations"] if isinstance(a, dict))
    if unknown and not task_ids:
        raise CorpusError(f"{export}: none of the {len(tasks)} task(s) has a data.utt_id of {manifest} (e.g. "
                          f"{unknown[0]}); give the manifest the suggestions were made from (ser-train suggest "
                          "--store was extracted from it)")
    problems["unknown"] = unknown

    outside: dict[str, list[str]] = defaultdict(list)
    absent: dict[str, list[str]] = defaultdict(list)
    labels: dict[str, _Choice] = {}
    disagreeing: list[str] = []
    for uid in task_ids:
        anns = per_utt[uid]
        if not anns:
            summary.not_annotated += 1
            continue
        live = [a for a in anns if not a.get("was_cancelled")]
        if not live:
            summary.cancelled += 1
            continue
        choices: list[_Choice] = []
        bad = False
        for a in live:
            got = _annotation_choices(a)
            if isinstance(got, str) or len(got) > 1:
                what = got if isinstance(got, str) else f"several choices {got} in one annotation (single choice " \
                                                        "expected)"
                problems["choice"].append(f"{uid} (task {a['_task']}, annotation {a.get('id')}): {what}")
                bad = True
                continue
            if not got:
                continue
            try:
                label = names(got[0])
            except NotInLabelMap as e:
                absent[e.name].append(uid)
                bad = True
                continue
            if label not in allowed:
                outside[label].append(uid)
                bad = True
                continue
            choices.append(_Choice(label, _when(a), a["_task"], a.get("id"), a.get("completed_by")))
        if bad:
            continue
        if not choices:
            summary.no_choice += 1
            continue
        latest = max(choices, key=lambda c: c.when)
        distinct = sorted({c.label for c in choices})
        if len(distinct) > 1:
            votes = ", ".join(f"{c.label} (annotation {c.annotation}, {c.when[0] or c.when[1] or '?'})"
                              for c in sorted(choices, key=lambda c: c.when))
            kept = f" -> {latest.label}" if on_disagreement == "latest" else ""
            disagreeing.append(f"{uid}: {votes}{kept}")
            if on_disagreement != "latest":
                continue
        labels[uid] = latest

    for name, uids in sorted(absent.items()):
        problems["absent"].append(f"label {name!r} is not in --label-map ({len(uids)}: "
                                  f"{shorten(uids, 5, more=' …')})")
    for name, uids in sorted(outside.items()):
        problems["outside"].append(f"label {name!r} is not one of the classes {', '.join(allowed)} ({len(uids)}: "
                                   f"{shorten(uids, 5, more=' …')})")
    summary.disagreements = disagreeing
    if disagreeing and on_disagreement == "fail":
        raise CorpusError(f"{export}: {len(disagreeing)} utterance(s) whose annotations disagree:"
                          + indented(disagreeing) + "\nresolve them in Label Studio (delete or update the wrong "
                          "annotation) and export again, or choose a policy: --on-disagreement latest (the most "
                          "recent annotation wins) or skip (leave them unlabelled)")
    flat = [p for kind in ("no_id", "unknown", "choice", "absent", "outside") for p in problems[kind]]
    if flat:
        hint = _fix_hint(problems, names, sorted(absent), sorted(outside), allowed, manifest)
        head = f"{export}: {len(flat)} problem(s)"
        if not skip_invalid:
            raise CorpusError(f"{head}:" + indented(flat) + f"\n{hint}")
        warnings.warn(f"{head}, left out:" + indented(flat), CorpusWarning, stacklevel=2)
        summary.left_out = flat

    records: list[ManifestRecord] = []
    for r in pool:
        c = labels.get(r.utt_id)
        if c is None:
            continue
        if r.label is not None and r.label != c.label:
            summary.relabelled.append(f"{r.utt_id}: {r.label} -> {c.label}")
        meta = {"task": c.task, "annotation": c.annotation, "annotator": c.annotator}
        records.append(dataclasses.replace(r, label=c.label, extra={**r.extra, "label_studio": meta}))
        summary.labelled[c.label] += 1
    if not records:
        raise CorpusError(f"{export}: no utterance labelled yet (" + "; ".join(summary.lines()).replace("\n", " ")
                          + "); label some tasks in Label Studio (Submit) and export again")
    return records, summary


def _fix_hint(problems: dict[str, list[str]], names: LabelNames, absent: list[str], outside: list[str],
              allowed: list[str], manifest: str | os.PathLike) -> str:
    """How to fix each kind of problem found, one sentence each."""
    out = []
    if problems["no_id"]:
        out.append("Tasks without data.utt_id were not made by `ser-train suggest --format label-studio`: import "
                   "its task file, or add utt_id to the tasks' data.")
    if problems["unknown"]:
        out.append(f"Ids absent from {manifest}: give the manifest the suggestions were made from.")
    if problems["choice"]:
        out.append("Create the project with the labelling config written next to the task file (single choice).")
    if absent:
        out.append(names.missing_fix(absent, "utterances"))
    if outside:
        out.append(f"Labels outside the classes: map them onto a class with --label-map (e.g. {outside[0]}=<class>), "
                   f"or allow them with --classes {','.join([*allowed, *outside])}.")
    if not absent:  # missing_fix already says that --skip-invalid leaves them out
        out.append(SKIP_HINT)
    return " ".join(out)
