"""``ser-manifest label-studio``: a real Label Studio JSON export back into labelled manifest records.

tests/fixtures/label_studio/export.json was exported by a real Label Studio server
(scripts/label_studio_roundtrip.py; version in expected_labels.json) after annotations were posted through its
REST API: 6 labelled (one relabelled by a later annotation: the two disagree), 1 cancelled (skipped), 1 left
alone. The bad-input cases are edits of that export.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from data_manifests.cli import main
from data_manifests.label_studio import build_label_studio
from data_manifests.problems import CorpusError, CorpusWarning
from ser_common.manifest import read_manifest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "label_studio"
POOL = FIXTURES / "pool.jsonl"
EXPECTED = json.loads((FIXTURES / "expected_labels.json").read_text())["labels"]
RELABELLED = "spk4/spk4_a"   # sad, then angry in a later annotation
CANCELLED = "spk3/spk3_a"
UNTOUCHED = "spk3/spk3_b"


def export_tasks() -> list[dict]:
    return json.loads((FIXTURES / "export.json").read_text())


def task_of(tasks: list[dict], utt_id: str) -> dict:
    return next(t for t in tasks if t["data"]["utt_id"] == utt_id)


def write(tmp_path: Path, tasks, name: str = "export.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(tasks) if not isinstance(tasks, str) else tasks)
    return path


def set_choice(task: dict, label: str) -> None:
    for ann in task["annotations"]:
        ann["result"][0]["value"]["choices"] = [label]


def test_real_export_gives_back_exactly_the_labels_posted():
    records, summary = build_label_studio(FIXTURES / "export.json", POOL)
    assert {r.utt_id: r.label for r in records} == EXPECTED
    assert summary.tasks == 8 and sum(summary.labelled.values()) == 6
    assert (summary.not_annotated, summary.cancelled, summary.no_choice) == (1, 1, 0)
    assert len(summary.disagreements) == 1 and summary.disagreements[0].startswith(f"{RELABELLED}: sad")
    assert summary.disagreements[0].endswith("-> angry")
    # the manifest's fields are kept, the annotation kept is recorded
    pool = {json.loads(line)["utt_id"]: json.loads(line) for line in POOL.read_text().splitlines()}
    rec = next(r for r in records if r.utt_id == RELABELLED)
    assert rec.audio == pool[RELABELLED]["audio"] and rec.speaker == "spk4" and rec.session == "pool"
    later = max(task_of(export_tasks(), RELABELLED)["annotations"], key=lambda a: a["updated_at"])
    assert rec.extra["label_studio"] == {"task": later["task"], "annotation": later["id"], "annotator": 1}


def test_predictions_and_cancelled_annotations_are_never_labels(tmp_path):
    tasks = export_tasks()
    cancelled = task_of(tasks, CANCELLED)
    # the real export embeds the model's prediction (with its choice) in the cancelled annotation
    assert cancelled["annotations"][0]["was_cancelled"] and cancelled["annotations"][0]["prediction"]["result"]
    assert task_of(tasks, UNTOUCHED)["predictions"] and not task_of(tasks, UNTOUCHED)["annotations"]
    records, _ = build_label_studio(FIXTURES / "export.json", POOL)
    assert {CANCELLED, UNTOUCHED}.isdisjoint(r.utt_id for r in records)
    # a cancelled annotation next to a real one: the real one counts, however late the cancelled one is
    task = task_of(tasks, "spk2/spk2_a")
    skip = copy.deepcopy(cancelled["annotations"][0])
    skip.update(id=99, updated_at="2099-01-01T00:00:00Z")
    task["annotations"].append(skip)
    records, _ = build_label_studio(write(tmp_path, tasks), POOL)
    assert {r.utt_id: r.label for r in records}["spk2/spk2_a"] == "angry"


def test_disagreement_policies(tmp_path):
    records, summary = build_label_studio(FIXTURES / "export.json", POOL, on_disagreement="skip")
    assert RELABELLED not in {r.utt_id for r in records} and len(records) == 5
    assert any("annotations disagree" in line for line in summary.lines())
    with pytest.raises(CorpusError, match=rf"1 utterance\(s\) whose annotations disagree:\n  {RELABELLED}: sad .* "
                                          r"angry .*\n.*--on-disagreement latest"):
        build_label_studio(FIXTURES / "export.json", POOL, on_disagreement="fail")
    # latest is by update time, not by position: put the earlier annotation last and make it the latest
    tasks = export_tasks()
    anns = task_of(tasks, RELABELLED)["annotations"]
    first = min(anns, key=lambda a: a["updated_at"])
    first["updated_at"] = "2099-01-01T00:00:00Z"
    records, _ = build_label_studio(write(tmp_path, tasks), POOL)
    assert {r.utt_id: r.label for r in records}[RELABELLED] == "sad"


def test_agreeing_annotations_and_duplicate_tasks_pool_their_annotations(tmp_path):
    tasks = export_tasks()
    set_choice(task_of(tasks, RELABELLED), "angry")
    twin = copy.deepcopy(task_of(tasks, "spk1/spk1_a"))
    twin["id"] = 100
    set_choice(twin, "sad")
    for ann in twin["annotations"]:
        ann["updated_at"] = "2099-01-01T00:00:00Z"
    tasks.append(twin)
    records, summary = build_label_studio(write(tmp_path, tasks), POOL)
    labels = {r.utt_id: r.label for r in records}
    assert labels[RELABELLED] == "angry" and labels["spk1/spk1_a"] == "sad"
    assert [d.split(":")[0] for d in summary.disagreements] == ["spk1/spk1_a"]


def test_cli_writes_a_valid_manifest_and_prints_the_summary(tmp_path):
    out = tmp_path / "labelled.jsonl"
    res = CliRunner().invoke(main, ["label-studio", str(FIXTURES / "export.json"), "--manifest", str(POOL),
                                    "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert {r.utt_id: r.label for r in read_manifest(out, check_audio=False)} == EXPECTED
    assert "8 task(s) in the export; labelled: 6 (neutral 1, happy 2, sad 1, angry 2)" in res.output
    assert "left unlabelled: 2 (1 without annotation; 1 only cancelled (skipped))" in res.output
    assert "1 utterance(s) with disagreeing annotations (the latest annotation kept)" in res.output


def test_unknown_utt_ids_are_reported_or_skipped(tmp_path):
    tasks = export_tasks()
    task_of(tasks, "spk2/spk2_b")["data"]["utt_id"] = "nobody/x"
    path = write(tmp_path, tasks)
    with pytest.raises(CorpusError, match=r"export\.json: 1 problem\(s\):\n  task \d+: nobody/x\n.*give the "
                                          r"manifest the suggestions were made from"):
        build_label_studio(path, POOL)
    with pytest.warns(CorpusWarning, match="nobody/x"):
        records, summary = build_label_studio(path, POOL, skip_invalid=True)
    assert len(records) == 5 and summary.left_out == [f"task {task_of(tasks, 'nobody/x')['id']}: nobody/x"]
    for t in tasks:
        t["data"]["utt_id"] = "other/" + t["data"]["utt_id"]
    with pytest.raises(CorpusError, match="none of the 8 task.* give the manifest the suggestions were made from"):
        build_label_studio(write(tmp_path, tasks), POOL)


def test_labels_outside_the_classes_are_reported_with_the_fix(tmp_path):
    tasks = export_tasks()
    set_choice(task_of(tasks, "spk2/spk2_a"), "Surprised")
    path = write(tmp_path, tasks)
    with pytest.raises(CorpusError, match=r"label 'surprised' is not one of the classes neutral, happy, sad, angry "
                                          r"\(1: spk2/spk2_a\)\n.*--label-map \(e\.g\. surprised=<class>\).*"
                                          r"--classes neutral,happy,sad,angry,surprised"):
        build_label_studio(path, POOL)
    records, _ = build_label_studio(path, POOL, classes=("neutral", "happy", "sad", "angry", "surprised"))
    assert {r.utt_id: r.label for r in records}["spk2/spk2_a"] == "surprised"
    records, _ = build_label_studio(path, POOL, label_map="surprised=happy,neutral=neutral,happy=happy,sad=sad,"
                                                          "angry=angry")
    assert {r.utt_id: r.label for r in records}["spk2/spk2_a"] == "happy"
    with pytest.raises(CorpusError, match=r"(?s)label 'surprised' is not in --label-map .*Add the missing names"):
        build_label_studio(path, POOL, label_map="neutral=neutral,happy=happy,sad=sad,angry=angry")
    with pytest.warns(CorpusWarning, match="surprised"):
        records, _ = build_label_studio(path, POOL, skip_invalid=True)
    assert "spk2/spk2_a" not in {r.utt_id for r in records}


def test_label_case_and_label_map_through_the_cli(tmp_path):
    tasks = export_tasks()
    set_choice(task_of(tasks, "spk2/spk2_a"), " Joy ")
    out = tmp_path / "labelled.jsonl"
    res = CliRunner().invoke(main, ["label-studio", str(write(tmp_path, tasks)), "--manifest", str(POOL), "-o",
                                    str(out), "--label-map", "joy=happy,neutral=neutral,happy=happy,sad=sad,"
                                    "angry=angry"])
    assert res.exit_code == 0, res.output
    assert {r.utt_id: r.label for r in read_manifest(out, check_audio=False)}["spk2/spk2_a"] == "happy"


@pytest.mark.parametrize("text, message", [
    ('[{"id": 1, "data": {"utt_id": "a"}, "annotations": [', r"not valid JSON \(.* at line 1, column \d+\)"),
    ('{"tasks": []}', "not a Label Studio JSON export"),
    ('[{"audio": "x.wav", "utt_id": "a", "emotion": "happy"}]', "this is not Label Studio's JSON export"),
    (b"\xff\xfe[]", "not UTF-8"),
    ('[{"id": 1, "annotations": []}]', "without a 'data' object"),
])
def test_malformed_exports_name_the_file(tmp_path, text, message):
    path = tmp_path / "bad export.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(CorpusError, match=rf"bad export\.json: .*{message}"):
        build_label_studio(path, POOL)


def test_the_task_file_instead_of_the_export_is_refused():
    with pytest.raises(CorpusError, match=r"tasks\.json: the tasks have no 'annotations' field.*Export -> JSON"):
        build_label_studio(FIXTURES / "tasks.json", POOL)


def test_tasks_without_utt_id_and_several_choices_are_problems(tmp_path):
    tasks = export_tasks()
    del task_of(tasks, "spk2/spk2_b")["data"]["utt_id"]
    task_of(tasks, "spk2/spk2_a")["annotations"][0]["result"][0]["value"]["choices"] = ["happy", "sad"]
    with pytest.raises(CorpusError, match=r"2 problem\(s\):\n  task \d+: no data\.utt_id\n  spk2/spk2_a .*several "
                                          r"choices \['happy', 'sad'\]"):
        build_label_studio(write(tmp_path, tasks), POOL)


def test_nothing_labelled_yet_is_an_error_with_the_counts(tmp_path):
    tasks = export_tasks()
    for t in tasks:
        t["annotations"] = []
    with pytest.raises(CorpusError, match=r"no utterance labelled yet \(8 task\(s\) in the export; labelled: 0; "
                                          r"left unlabelled: 8 \(8 without annotation\)\)"):
        build_label_studio(write(tmp_path, tasks), POOL)


def test_submitted_without_a_choice_stays_unlabelled(tmp_path):
    tasks = export_tasks()
    task_of(tasks, "spk2/spk2_a")["annotations"][0]["result"] = []
    records, summary = build_label_studio(write(tmp_path, tasks), POOL)
    assert summary.no_choice == 1 and "spk2/spk2_a" not in {r.utt_id for r in records}


def test_manifest_label_that_differs_is_reported(tmp_path):
    lines = [json.loads(line) for line in POOL.read_text().splitlines()]
    for rec in lines:
        if rec["utt_id"] == "spk2/spk2_a":
            rec["label"] = "sad"
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in lines))
    records, summary = build_label_studio(FIXTURES / "export.json", pool)
    assert {r.utt_id: r.label for r in records}["spk2/spk2_a"] == "angry"
    assert summary.relabelled == ["spk2/spk2_a: sad -> angry"]
