"""Suggestions -> Label Studio tasks: the shape a real Label Studio server accepted, URLs, and bad input.

tests/fixtures/label_studio/ holds what a real Label Studio (version in expected_labels.json) accepted and
produced in ``scripts/label_studio_roundtrip.py``: the task file it imported, the labelling config the
project was created with, the pool manifest and the project's JSON export.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ser_common.labels import FOUR_CLASSES
from train.label_studio import (AUDIO_NAME, CHOICES_NAME, audio_url, label_config_path, label_config_xml,
                                label_studio_tasks, write_label_config, write_label_studio_tasks)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "label_studio"


def fixture_rows() -> tuple[list[dict], str]:
    """Suggestion rows that produced the fixture task file, rebuilt from it and the pool manifest."""
    tasks = json.loads((FIXTURES / "tasks.json").read_text())
    audio = {}
    for line in (FIXTURES / "pool.jsonl").read_text().splitlines():
        rec = json.loads(line)
        audio[rec["utt_id"]] = rec["audio"]
    rows = []
    for t in tasks:
        pred = t["predictions"][0]["result"][0]["value"]["choices"][0]
        p = t["predictions"][0]["score"]
        rest = (1 - p) / (len(FOUR_CLASSES) - 1)
        rows.append({"rank": t["data"]["rank"], "utt_id": t["data"]["utt_id"], "score": t["data"]["score"],
                     "pred": pred, **{f"p_{c}": (p if c == pred else rest) for c in FOUR_CLASSES},
                     "audio": audio[t["data"]["utt_id"]]})
    root = str(Path(next(iter(audio.values()))).parents[2])  # <docroot>/pool/<speaker>/<file>
    return rows, root


def row(utt_id: str = "spk1/a", audio: str = "/data/pool/spk1/a.wav", pred: str = "happy") -> dict:
    return {"rank": 1, "utt_id": utt_id, "score": 1.25, "pred": pred,
            **{f"p_{c}": (0.7 if c == pred else 0.1) for c in FOUR_CLASSES}, "audio": audio}


def test_writer_reproduces_the_task_file_the_real_server_accepted(tmp_path):
    rows, root = fixture_rows()
    out = write_label_studio_tasks(rows, FOUR_CLASSES, tmp_path / "tasks.json", document_root=root,
                                   model_version="toy-model")
    assert json.loads(out.read_text()) == json.loads((FIXTURES / "tasks.json").read_text())


def test_config_is_the_one_the_real_server_accepted_and_matches_the_tasks(tmp_path):
    assert label_config_xml(FOUR_CLASSES) == (FIXTURES / "label_config.xml").read_text()
    view = ET.fromstring(label_config_xml(FOUR_CLASSES))
    audio, choices = view.find("Audio"), view.find("Choices")
    assert audio.get("name") == AUDIO_NAME and audio.get("value") == f"${AUDIO_NAME}"
    assert choices.get("name") == CHOICES_NAME and choices.get("toName") == AUDIO_NAME
    assert [c.get("value") for c in choices.findall("Choice")] == list(FOUR_CLASSES)
    for task in json.loads((FIXTURES / "tasks.json").read_text()):
        result = task["predictions"][0]["result"][0]
        assert (result["from_name"], result["to_name"], result["type"]) == (CHOICES_NAME, AUDIO_NAME, "choices")
        assert set(task["data"]) == {AUDIO_NAME, "utt_id", "rank", "score"}
    path = write_label_config(FOUR_CLASSES, label_config_path(tmp_path / "tasks.json"))
    assert path.name == "tasks.label_config.xml" and path.read_text() == label_config_xml(FOUR_CLASSES)


def test_prediction_is_the_models_guess_with_its_probability():
    task, = label_studio_tasks([row(pred="sad")], FOUR_CLASSES, document_root="/data/pool", model_version="m.pt")
    pred, = task["predictions"]
    assert pred["model_version"] == "m.pt" and pred["score"] == 0.7
    assert pred["result"][0]["value"] == {"choices": ["sad"]}
    assert task["data"] == {"audio": "/data/local-files/?d=spk1/a.wav", "utt_id": "spk1/a", "rank": 1,
                            "score": 1.25}


def test_urls_are_relative_to_the_document_root_and_quoted():
    assert audio_url("/data/pool/a b/c#1?.wav", "/data") == "/data/local-files/?d=pool/a%20b/c%231%3F.wav"
    assert audio_url("/data/pool/x.wav", "/data/", "http://files.lab:8000/audio/") == \
        "http://files.lab:8000/audio/pool/x.wav"
    assert audio_url("/data/pool/x.wav", "/data", "/static") == "/static/pool/x.wav"
    assert audio_url("/data/pool/../pool/x.wav", "/data/pool") == "/data/local-files/?d=x.wav"


@pytest.mark.parametrize("audio", ["/elsewhere/x.wav", "/data/poolside/x.wav", "/data/pool"])
def test_audio_outside_the_document_root_is_refused(audio, tmp_path):
    with pytest.raises(ValueError, match=r"tasks\.json: 1 audio file\(s\) outside the document root /data/pool "
                                         r".*give a document root that holds all the audio"):
        write_label_studio_tasks([row(audio=audio)], FOUR_CLASSES, tmp_path / "tasks.json",
                                 document_root="/data/pool")
    assert not (tmp_path / "tasks.json").exists()


def test_rows_without_audio_are_refused_and_listed(tmp_path):
    rows = [row("u1", audio=""), row("u2"), row("u3", audio=None)]
    del rows[2]["audio"]
    with pytest.raises(ValueError, match=r"tasks\.json: 2 suggestion\(s\) without an audio path \(u1, u3\); "
                                         r"Label Studio needs the audio"):
        write_label_studio_tasks(rows, FOUR_CLASSES, tmp_path / "tasks.json", document_root="/data")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("prefix", ["ftp://host/x", "files.lab/audio", "http://h/a?x=1", "http:///nohost"])
def test_bad_url_prefix_is_refused(prefix):
    with pytest.raises(ValueError, match="url prefix .* e.g. http://files.lab:8000/audio"):
        label_studio_tasks([row()], FOUR_CLASSES, document_root="/data", url_prefix=prefix)


def test_empty_rows_and_unknown_predictions_are_refused():
    with pytest.raises(ValueError, match="no suggestions to write"):
        label_studio_tasks([], FOUR_CLASSES, document_root="/data")
    with pytest.raises(ValueError, match="predicted class 'bored' is not one of the classes"):
        label_studio_tasks([row(pred="bored")], FOUR_CLASSES, document_root="/data")


def test_config_escapes_class_names_and_refuses_bad_class_lists():
    view = ET.fromstring(label_config_xml(["a&b", 'say "hi"', "<x>"]))
    assert [c.get("value") for c in view.iter("Choice")] == ["a&b", 'say "hi"', "<x>"]
    for bad in ([], ["happy", "happy"], ["happy", " "]):
        with pytest.raises(ValueError, match="class"):
            label_config_xml(bad)


def test_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"cannot write .* choose another output path"):
        write_label_studio_tasks([row()], FOUR_CLASSES, blocker / "tasks.json", document_root="/data")
