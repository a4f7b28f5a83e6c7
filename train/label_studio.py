"""Suggestions as Label Studio tasks: what to label next, imported into the labelling tool teams run.

:func:`write_label_studio_tasks` writes the rows of :func:`train.suggest.suggest` as a JSON task file that
Label Studio imports as is (Project → Import, or ``POST /api/projects/<id>/import``), one task per row::

    {"data": {"audio": "/data/local-files/?d=calls/c001.wav", "utt_id": "calls/c001", "rank": 1,
              "score": 1.38},
     "predictions": [{"model_version": "model.pt", "score": 0.41,
                      "result": [{"from_name": "emotion", "to_name": "audio", "type": "choices",
                                  "value": {"choices": ["happy"]}}]}]}

``data.score`` is the suggestion's uncertainty score (higher = asked first); ``predictions[0].score`` is the
model's probability of its predicted class, so Label Studio can sort by confidence. The prediction is a
pre-annotation: the labeller sees the model's guess selected and confirms or changes it.

:func:`label_config_xml` is the labelling config the tasks fit (``<Audio name="audio" value="$audio"/>`` and
a single-choice ``<Choices name="emotion">`` over exactly the model's classes): create the project with it.

How audio becomes a URL Label Studio's browser player can fetch (``document_root`` is the folder the audio
paths are made relative to):

* local-files serving (default): ``/data/local-files/?d=<path relative to document_root>``. Label Studio
  serves these when started with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
  ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<document_root>``, and the project has a Local Files storage
  whose path holds the audio (Settings → Cloud Storage → Add Source Storage → Local Files; no sync needed).
* ``url_prefix``: ``<url_prefix>/<path relative to document_root>``, for audio served by any web server
  whose root is ``document_root`` (e.g. ``http://files.lab:8000``).

Path components are percent-encoded (``/`` kept), so spaces and ``#`` or ``?`` in file names survive.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePath
from typing import Any, Sequence
from urllib.parse import quote, urlsplit
from xml.sax.saxutils import quoteattr

from ser_common.listing import shorten

AUDIO_NAME = "audio"
"""Name of the ``<Audio>`` tag and key of the audio URL in each task's ``data``."""
CHOICES_NAME = "emotion"
"""Name of the ``<Choices>`` tag: the ``from_name`` of predictions and annotations."""
LOCAL_FILES_URL = "/data/local-files/?d="
"""Label Studio's local-files serving URL; the path relative to its document root follows."""


def label_config_xml(classes: Sequence[str]) -> str:
    """The labelling config for audio emotion classification over ``classes`` (one choice per task).

    The utterance id is shown as a header above the player. Raises ``ValueError`` for no classes, an empty
    class name or a class given twice.
    """
    names = [str(c) for c in classes]
    if not names:
        raise ValueError("no classes: the labelling config needs at least one class to choose")
    bad = [n for n in names if not n.strip()]
    dups = sorted({n for n in names if names.count(n) > 1})
    if bad or dups:
        raise ValueError(f"classes must be distinct non-empty names, got {names}")
    choices = "\n".join(f"    <Choice value={quoteattr(n)}/>" for n in names)
    return (f"<View>\n"
            f"  <Header value=\"$utt_id\"/>\n"
            f"  <Audio name=\"{AUDIO_NAME}\" value=\"${AUDIO_NAME}\"/>\n"
            f"  <Choices name=\"{CHOICES_NAME}\" toName=\"{AUDIO_NAME}\" choice=\"single-radio\" "
            f"showInline=\"true\">\n{choices}\n  </Choices>\n</View>\n")


def label_config_path(tasks_path: str | os.PathLike) -> Path:
    """Where the labelling config goes next to a task file: ``tasks.json`` -> ``tasks.label_config.xml``."""
    p = Path(tasks_path)
    return p.with_name(f"{p.stem}.label_config.xml")


def write_label_config(classes: Sequence[str], path: str | os.PathLike) -> Path:
    """Write :func:`label_config_xml` of ``classes`` to ``path``. Returns the path."""
    return _write_text(Path(path), label_config_xml(classes))


def audio_url(audio: str, document_root: str | os.PathLike, url_prefix: str | None = None) -> str:
    """The URL Label Studio plays ``audio`` (an absolute path under ``document_root``) from.

    Raises ``ValueError`` when ``audio`` is not inside ``document_root``.
    """
    root = os.path.abspath(document_root)
    path = os.path.abspath(audio)
    rel = os.path.relpath(path, root) if os.path.splitdrive(path)[0] == os.path.splitdrive(root)[0] else ".."
    if rel == os.curdir or rel.split(os.sep)[0] == os.pardir:
        raise ValueError(f"{audio} is not inside the document root {root}")
    rel_url = quote(PurePath(rel).as_posix(), safe="/")
    if url_prefix is None:
        return LOCAL_FILES_URL + rel_url
    return url_prefix.rstrip("/") + "/" + rel_url


def _check_url_prefix(url_prefix: str) -> None:
    parts = urlsplit(url_prefix)
    if not ((parts.scheme in ("http", "https") and parts.netloc) or url_prefix.startswith("/")):
        raise ValueError(f"url prefix {url_prefix!r} is not an http(s) URL or an absolute path on the Label "
                         "Studio host; give e.g. http://files.lab:8000/audio")
    if parts.query or parts.fragment:
        raise ValueError(f"url prefix {url_prefix!r} has a query or fragment, but the audio path is appended to "
                         "it: give the URL of the folder, e.g. http://files.lab:8000/audio")


def label_studio_tasks(rows: Sequence[dict[str, Any]], classes: Sequence[str], *,
                       document_root: str | os.PathLike, url_prefix: str | None = None,
                       model_version: str = "ser-train", source: str = "suggestions") -> list[dict[str, Any]]:
    """The task list of :func:`write_label_studio_tasks` (see there); ``source`` names the rows in errors."""
    if not rows:
        raise ValueError(f"{source}: no suggestions to write (the pool has no unlabelled utterance left?)")
    if url_prefix is not None:
        try:
            _check_url_prefix(url_prefix)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None
    root = os.path.abspath(document_root)
    known = {str(c) for c in classes}
    no_audio: list[str] = []
    outside: list[str] = []
    tasks: list[dict[str, Any]] = []
    for i, row in enumerate(rows, 1):
        utt_id = str(row.get("utt_id", ""))
        audio = row.get("audio") or ""
        if not audio:
            no_audio.append(utt_id or f"row {i}")
            continue
        try:
            url = audio_url(str(audio), root, url_prefix)
        except ValueError:
            outside.append(str(audio))
            continue
        pred = str(row["pred"])
        if pred not in known:
            raise ValueError(f"{source}: {utt_id}: predicted class {pred!r} is not one of the classes {sorted(known)}")
        data: dict[str, Any] = {AUDIO_NAME: url, "utt_id": utt_id}
        for key, cast in (("rank", int), ("score", float)):
            if row.get(key) is not None:
                data[key] = cast(row[key])
        prediction: dict[str, Any] = {"model_version": model_version}
        if row.get(f"p_{pred}") is not None:
            prediction["score"] = round(float(row[f"p_{pred}"]), 6)
        prediction["result"] = [{"from_name": CHOICES_NAME, "to_name": AUDIO_NAME, "type": "choices",
                                 "value": {"choices": [pred]}}]
        tasks.append({"data": data, "predictions": [prediction]})
    if no_audio:
        shown = shorten(no_audio, 5, more=" and {n} more")
        raise ValueError(f"{source}: {len(no_audio)} suggestion(s) without an audio path ({shown}); Label Studio "
                         "needs the audio to play: extract the pool store from a manifest with audio paths "
                         "(ser-manifest folder ...), or keep the CSV format")
    if outside:
        common = os.path.commonpath([os.path.abspath(a) for a in outside] + [root])
        raise ValueError(f"{source}: {len(outside)} audio file(s) outside the document root {root} (e.g. "
                         f"{outside[0]}); give a document root that holds all the audio (e.g. {common})"
                         + (" and start Label Studio with LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to it"
                            if url_prefix is None else " and served at the URL prefix"))
    return tasks


def write_label_studio_tasks(rows: Sequence[dict[str, Any]], classes: Sequence[str], path: str | os.PathLike, *,
                             document_root: str | os.PathLike, url_prefix: str | None = None,
                             model_version: str = "ser-train") -> Path:
    """Write suggestion rows as a Label Studio JSON task file (a list of tasks). Returns the path.

    Args:
        rows: dicts of :func:`train.suggest.suggest`: ``rank``, ``utt_id``, ``score``, ``pred``,
            ``p_<class>`` … and ``audio``, the absolute audio path (``""`` when unknown).
        classes: the model's classes (``pred`` must be one of them); the project's labelling config must
            offer the same (:func:`label_config_xml`).
        path: the ``.json`` file to write (atomically: a temporary file renamed into place).
        document_root: the folder audio paths are made relative to; for local-files serving, Label
            Studio's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``.
        url_prefix: ``None`` for local-files URLs, else the URL serving ``document_root``.
        model_version: shown by Label Studio with each prediction (e.g. the bundle's file name).

    Raises:
        ValueError: no rows; rows without audio (all listed: Label Studio cannot play them); audio outside
            ``document_root``; a ``url_prefix`` that is not an http(s) URL or absolute path; a prediction
            that is not one of ``classes``. The message names ``path`` and the fix.
    """
    path = Path(path)
    tasks = label_studio_tasks(rows, classes, document_root=document_root, url_prefix=url_prefix,
                               model_version=model_version, source=str(path))
    return _write_text(path, json.dumps(tasks, ensure_ascii=False, indent=1) + "\n")


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise ValueError(f"{path}: cannot write ({e.strerror}); choose another output path") from None
    return path
