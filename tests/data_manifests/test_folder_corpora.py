"""A corpus nobody here prepared, brought as a folder: a folder per emotion, speaker codes in the file names,
44.1 kHz audio. Labels from the folders (normalised, mapped), speakers from a regex, and the warning when
speakers and labels are confounded (checked against the fold groups actually written)."""

import dataclasses
import warnings
from collections import Counter

import pytest
from click.testing import CliRunner

from data_manifests import CorpusError, CorpusWarning, FoldWarning, build_folder
from data_manifests.cli import main
from data_manifests.fold_check import fold_problems
from data_manifests.label_names import parse_label_map
from ser_common.manifest import read_manifest

from tests.data_manifests.conftest import write_wav

EMOTION_FOLDERS = ("angry", "Joy", "NEUTRAL", "sad")
SPEAKERS = ("spk01", "spk02", "spk03", "spk04", "spk05")
REGEX = "^(?P<speaker>[^_]+)_"
MAP = "angry=angry,joy=happy,neutral=neutral,sad=sad"


def make_emotion_folders(root, folders=EMOTION_FOLDERS, speakers=SPEAKERS, takes=2, sr=44_100):
    """ROOT/<emotion>/<speaker>_take<N>.wav at 44.1 kHz: every speaker says every emotion ``takes`` times."""
    for i, folder in enumerate(folders):
        for j, spk in enumerate(speakers):
            for t in range(1, takes + 1):
                write_wav(root / folder / f"{spk}_take{t}.wav", 0.05, sr=sr, seed=i * 100 + j * 10 + t)
    return root


@pytest.fixture
def emotion_root(tmp_path):
    return make_emotion_folders(tmp_path / "my_corpus")


def refused_then_left_out(root, error, warning, **kw):
    """``build_folder(root, **kw)`` raises exactly ``error``; with ``skip_invalid`` it warns (``warning``: a
    regex) and returns the records left."""
    with pytest.raises(CorpusError) as e:
        build_folder(root, **kw)
    assert str(e.value) == error
    with pytest.warns(CorpusWarning, match=warning):
        return build_folder(root, skip_invalid=True, **kw)


def strict_build(root, **kw):
    """build_folder with every warning turned into an error: the call must warn about nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return build_folder(root, **kw)


def test_labels_from_folders_speakers_from_regex_and_the_map(emotion_root):
    recs = strict_build(emotion_root, label_from="folder", speaker_regex=REGEX, label_map=MAP)
    assert len(recs) == 40
    assert Counter(r.label for r in recs) == {"angry": 10, "happy": 10, "neutral": 10, "sad": 10}
    assert {r.speaker for r in recs} == set(SPEAKERS)
    r = next(r for r in recs if r.utt_id == "Joy/spk03_take2")
    assert (r.label, r.speaker, r.corpus) == ("happy", "spk03", "my_corpus")
    assert r.audio == str(emotion_root / "Joy" / "spk03_take2.wav")
    assert r.duration == pytest.approx(0.05)  # 2205 frames at 44.1 kHz, from the header
    # the real fold groups: one speaker per group, every group holds every class
    assert {r.speaker: r.session for r in recs} == {s: g for s, g in zip(SPEAKERS, ("g1", "g2", "g3", "g4", "g5"))}
    assert all(set(Counter(r.label for r in recs if r.session == g)) == {"angry", "happy", "neutral", "sad"}
               for g in ("g1", "g2", "g3", "g4", "g5"))


def test_labels_are_stripped_and_lower_cased_by_default(emotion_root):
    with pytest.warns(CorpusWarning) as caught:
        recs = build_folder(emotion_root, label_from="folder", speaker_regex=REGEX)
    assert {r.label for r in recs} == {"angry", "joy", "neutral", "sad"}
    assert [str(w.message) for w in caught] == [
        f"{emotion_root}: label(s) kept as classes of their own, not among the toolkit's neutral, happy, sad, "
        "angry: joy; if they mean one of those, map them with --label-map (e.g. joy=happy)"]
    with pytest.warns(CorpusWarning, match="of their own, not among .*: Joy, NEUTRAL; .* \\(e.g. Joy=happy\\)"):
        kept = build_folder(emotion_root, label_from="folder", speaker_regex=REGEX, keep_label_case=True)
    assert {r.label for r in kept} == {"angry", "Joy", "NEUTRAL", "sad"}


@pytest.mark.filterwarnings("ignore::data_manifests.problems.FoldWarning")  # 2 speakers, 1 clip each: no folds
def test_labels_csv_labels_are_normalised_and_mapped_too(tmp_path):
    root = make_emotion_folders(tmp_path / "c", folders=("clips",), speakers=("spk01", "spk02"), takes=1)
    csv = tmp_path / "labels.csv"
    csv.write_text("filename,label\nspk01_take1.wav, Joy \nspk02_take1.wav,ANGRY\n")
    recs = build_folder(root, labels_csv=csv, label_map="joy=happy,angry=angry", speaker_regex=REGEX)
    assert {r.speaker: r.label for r in recs} == {"spk01": "happy", "spk02": "angry"}
    csv.write_text("filename,label\nspk01_take1.wav,calm\nspk02_take1.wav,angry\n")
    with pytest.raises(CorpusError) as e:
        build_folder(root, labels_csv=csv, label_map="joy=happy,angry=angry", speaker_regex=REGEX)
    assert (f"{csv}: 1 invalid row(s):\n  line 2: label 'calm' is not in --label-map ('spk01_take1.wav'); "
            "add it to the map or remove the row") == str(e.value)


def test_a_label_absent_from_the_map_is_reported_or_left_out(emotion_root):
    recs = refused_then_left_out(
        emotion_root,
        f"{emotion_root}: 1 folder label(s) not in --label-map:\n"
        "  'joy': 10 file(s), e.g. Joy/spk01_take1.wav\n"
        "--label-map maps angry, neutral, sad. Add the missing names to it (e.g. joy=<label>; the toolkit's "
        "classes are neutral, happy, sad, angry), or remove those files (--skip-invalid leaves them out).",
        "1 folder label\\(s\\) not in --label-map, left out:\n  'joy': 10 file",
        label_from="folder", speaker_regex=REGEX, label_map="angry=angry,neutral=neutral,sad=sad")
    assert Counter(r.label for r in recs) == {"angry": 10, "neutral": 10, "sad": 10}


@pytest.mark.parametrize("spec,message", [
    ("joy", "'joy' has no '=' (write corpus_name=toolkit_name, e.g. joy=happy)"),
    ("joy=", "'joy=': both sides of '=' must be non-empty (e.g. joy=happy)"),
    ("joy=happy,JOY=sad", "'joy' is mapped twice, to 'happy' and to 'sad'"),
    (" , ", "the label map is empty"),
])
def test_label_map_syntax_errors(spec, message):
    with pytest.raises(ValueError) as e:
        parse_label_map(spec)
    assert message in str(e.value)
    assert parse_label_map(["Joy = Happy", "angry=angry"]) == {"joy": "happy", "angry": "angry"}


def test_confound_warning_when_the_folder_is_both_speaker_and_label(emotion_root):
    with pytest.warns(FoldWarning) as caught:
        recs = build_folder(emotion_root, label_from="folder", label_map=MAP)
    # the default speaker is the folder: speaker = emotion; 4 speakers cannot form 5 groups -> 'pool'
    assert {(r.speaker, r.label) for r in recs} == {("angry", "angry"), ("Joy", "happy"), ("NEUTRAL", "neutral"),
                                                   ("sad", "sad")}
    assert {r.session for r in recs} == {"pool"}
    assert [str(w.message) for w in caught] == [
        f"{emotion_root}: speakers and labels are confounded: speaker and label both come from the parent folder "
        "(--speaker-from folder, the default, with --label-from folder).\n"
        "  every one of the 4 speakers carries a single label (speaker -> label: Joy -> happy, NEUTRAL -> neutral, "
        "angry -> angry, sad -> sad)\n"
        "  4 speaker(s) are too few for 5 fold groups, so every record has session 'pool': there are no "
        "speaker-independent folds (ser-train needs at least 2 groups)\n"
        "speaker-independent folds then measure speakers, not emotions. Give each file its real speaker with "
        "--speaker-regex, e.g. --speaker-regex '^(?P<speaker>[^_]+)_' for names like spk03_take2.wav."]


def test_confound_warning_names_the_groups_that_lack_classes(emotion_root):
    with pytest.warns(FoldWarning) as caught:
        recs = build_folder(emotion_root, label_from="folder", label_map=MAP, n_groups=4)
    groups = {r.speaker: r.session for r in recs}
    assert groups == {"Joy": "g1", "NEUTRAL": "g2", "angry": "g3", "sad": "g4"}  # one emotion per fold group
    msg = str(caught[0].message)
    assert "every one of the 4 speakers carries a single label" in msg
    assert "\n  fold group g1 (speaker Joy) has no neutral, sad, angry\n" in msg
    assert "\n  fold group g4 (speaker sad) has no neutral, happy, angry\n" in msg
    assert "too few" not in msg
    assert msg.endswith("speaker-independent folds then measure speakers, not emotions. Give each file its real "
                        "speaker with --speaker-regex, e.g. --speaker-regex '^(?P<speaker>[^_]+)_' for names like "
                        "spk03_take2.wav.")


def test_a_group_lacking_a_class_is_reported_with_regex_speakers(emotion_root):
    for folder in ("Joy", "NEUTRAL", "sad"):
        for take in (1, 2):
            (emotion_root / folder / f"spk05_take{take}.wav").unlink()   # spk05 acted only 'angry'
    with pytest.warns(FoldWarning) as caught:
        recs = build_folder(emotion_root, label_from="folder", speaker_regex=REGEX, label_map=MAP)
    g5 = {r.session for r in recs if r.speaker == "spk05"}
    assert g5 == {"g5"}
    assert str(caught[0].message) == (
        f"{emotion_root}: speakers and labels are confounded:\n"
        "  fold group g5 (speaker spk05) has no neutral, happy, sad\n"
        "speaker-independent folds then measure speakers, not emotions. Check --speaker-regex: its group "
        "(?P<speaker>...) must capture who speaks (e.g. '^(?P<speaker>[^_]+)_' for names like spk03_take2.wav), "
        "and each speaker needs several classes.")


def test_fold_check_needs_two_classes_and_several_clips_per_speaker(emotion_root):
    recs = build_folder(emotion_root, speaker_regex=REGEX)             # unlabelled pool: nothing to check
    assert fold_problems(recs, 5) is None
    one_class = [dataclasses.replace(r, label="angry") for r in recs]
    assert fold_problems(one_class, 5) is None                         # one class cannot be trained anyway
    two = [dataclasses.replace(r, label="angry" if i % 2 else "sad") for i, r in enumerate(recs)]
    assert fold_problems(two, 5) is None                               # every speaker, every group: both classes
    # one labelled clip per speaker says nothing about confounding; the groups without labels are reported
    sparse = [dataclasses.replace(r, label={"angry/spk01_take1": "angry", "angry/spk02_take1": "sad"}.get(r.utt_id))
              for r in recs]
    msg = fold_problems(sparse, 5)
    assert "carries a single label" not in msg and "fold group g3 (speaker spk03) has no sad, angry" in msg


def test_cli_folder_per_emotion_warns_then_regex_fixes_it(emotion_root, tmp_path):
    out = tmp_path / "m.jsonl"
    res = CliRunner().invoke(main, ["folder", str(emotion_root), "-o", str(out), "--label-from", "folder",
                                    "--label-map", MAP])
    assert res.exit_code == 0, res.output
    assert f"warning: {emotion_root}: speakers and labels are confounded: speaker and label both come from the " \
           "parent folder" in res.stderr
    table, rest = res.stdout.split("40 utterances, 0.0 min of audio\n")
    assert table.splitlines()[2].split() == ["pool", "10", "10", "10", "10", "40", "4"]
    assert rest.startswith(f"WARNING: {emotion_root}: speakers and labels are confounded")
    assert "--speaker-regex '^(?P<speaker>[^_]+)_'" in rest and rest.endswith(f"wrote {out}\n")

    res = CliRunner().invoke(main, ["folder", str(emotion_root), "-o", str(out), "--label-from", "folder",
                                    "--speaker-regex", REGEX, "--label-map", MAP])
    assert res.exit_code == 0, res.output
    assert res.stderr == "" and "WARNING" not in res.stdout
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["session", "neutral", "happy", "sad", "angry", "total", "speakers"]
    assert lines[2].split() == ["g1", "2", "2", "2", "2", "8", "1"]
    recs = read_manifest(out)
    assert len(recs) == 40 and {r.speaker for r in recs} == set(SPEAKERS)


def test_file_names_the_regex_does_not_match_are_reported_with_the_fix(emotion_root):
    write_wav(emotion_root / "angry" / "take3.wav", 0.05, sr=44_100)
    write_wav(emotion_root / "Joy" / "_spk02.wav", 0.05, sr=44_100)
    recs = refused_then_left_out(
        emotion_root,
        f"{emotion_root}: 2 file name(s) not matched by --speaker-regex '^(?P<speaker>[^_]+)_':\n"
        "  Joy/_spk02.wav\n  angry/take3.wav\n"
        "A file's speaker is never guessed. Rename these files so that their names carry the speaker, or change "
        "the regex (it is searched in the file name with its suffix, e.g. 'spk03_take2.wav', not in the folders, "
        "and its group (?P<speaker>...) must match a non-empty code), or pass skip_invalid=True "
        "(CLI: --skip-invalid) to leave them out.",
        "2 file name\\(s\\) not matched by --speaker-regex .*, left out",
        label_from="folder", speaker_regex=REGEX, label_map=MAP)
    assert len(recs) == 40
    # a group that matches the empty string gives no speaker: every file is reported
    with pytest.raises(CorpusError, match="42 file name\\(s\\) not matched by --speaker-regex"):
        build_folder(emotion_root, label_from="folder", speaker_regex=r"^(?P<speaker>\d*)")


def test_cli_rejects_bad_regexes_and_contradictory_options(emotion_root, tmp_path):
    out = str(tmp_path / "m.jsonl")
    run = CliRunner().invoke
    res = run(main, ["folder", str(emotion_root), "-o", out, "--speaker-regex", "^([^_]+)_"])
    assert res.exit_code == 2
    assert ("Invalid value for '--speaker-regex': '^([^_]+)_' has no named group 'speaker'; write the speaker "
            "part as (?P<speaker>...), e.g. '^(?P<speaker>[^_]+)_' for names like spk03_take2.wav") in res.stderr
    res = run(main, ["folder", str(emotion_root), "-o", out, "--speaker-regex", "^(?P<speaker>[^_]+"])
    assert res.exit_code == 2 and "'^(?P<speaker>[^_]+' is not a valid regular expression (" in res.stderr
    res = run(main, ["folder", str(emotion_root), "-o", out, "--speaker-regex", REGEX, "--speaker-from", "folder"])
    assert res.exit_code == 2 and "--speaker-regex and --speaker-from are alternatives: give one" in res.stderr
    res = run(main, ["folder", str(emotion_root), "-o", out, "--label-map", MAP])
    assert res.exit_code == 2 and "--label-map needs labels: add --label-from folder or --labels-csv FILE" in res.stderr
    res = run(main, ["folder", str(emotion_root), "-o", out, "--label-from", "folder", "--label-map", "joy"])
    assert res.exit_code == 2
    assert "Invalid value for '--label-map': 'joy' has no '=' (write corpus_name=toolkit_name" in res.stderr
    res = run(main, ["folder", str(emotion_root), "-o", out, "--label-from", "csv"])
    assert res.exit_code == 2 and "--label-from csv needs --labels-csv FILE" in res.stderr


def test_label_from_folder_refuses_files_outside_a_label_folder(emotion_root):
    write_wav(emotion_root / "spk01_loose.wav", 0.05, sr=44_100)
    with pytest.raises(CorpusError) as e:
        build_folder(emotion_root, label_from="folder", speaker_regex=REGEX, label_map=MAP)
    assert str(e.value) == (
        f"{emotion_root}: 1 file(s) directly in the folder, outside a label folder:\n  spk01_loose.wav\n"
        "With --label-from folder a file's label is the name of the folder it is in (ROOT/angry/spk03_take2.wav -> "
        "angry): move these files into a folder named after their label, or pass skip_invalid=True "
        "(CLI: --skip-invalid) to leave them out.")
    with pytest.raises(ValueError, match="labels_csv \\(CLI: --labels-csv\\) goes with label_from='csv'"):
        build_folder(emotion_root, label_from="folder", labels_csv=emotion_root / "x.csv")
    with pytest.raises(ValueError, match="speaker_from and speaker_regex are alternatives"):
        build_folder(emotion_root, speaker_from="folder", speaker_regex=REGEX)
