"""Tiny generated corpus trees in the exact layouts of IEMOCAP, EmoDB, RAVDESS and CREMA-D."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from tests.conftest import make_tone

# (utt_id, code, start s, end s, transcript or None for "no transcription line")
IEMOCAP_DIALOGS: dict[str, dict[str, list[tuple[str, str, float, float, str | None]]]] = {
    "Session1": {
        "Ses01F_impro01": [
            ("Ses01F_impro01_F000", "neu", 6.2901, 8.2357, "Excuse me."),
            ("Ses01F_impro01_M000", "fru", 10.01, 11.3925, "Do you have your forms?"),
            ("Ses01F_impro01_F001", "hap", 14.8872, 18.0175, "Yeah."),
            ("Ses01F_impro01_M001", "xxx", 19.29, 20.7875, "Let me see them."),
        ],
        "Ses01F_script01_1": [
            ("Ses01F_script01_1_F000", "exc", 0.5, 2.25, "What's he going to say?"),
            ("Ses01F_script01_1_M000", "ang", 3.0, 4.5, "Well, I don't know."),
            ("Ses01F_script01_1_F001", "sad", 5.0, 6.125, "Maybe we should tell him."),
        ],
    },
    "Session2": {
        "Ses02M_impro02": [
            ("Ses02M_impro02_F000", "sad", 1.0, 2.0, "I got the letter."),
            ("Ses02M_impro02_M000", "exc", 2.5, 3.5, "That's great!"),
            ("Ses02M_impro02_M001", "neu", 4.0, 5.0, None),
            ("Ses02M_impro02_F001", "sur", 5.5, 6.5, "Really?"),
        ],
    },
    "Session3": {
        "Ses03F_script02_2": [
            ("Ses03F_script02_2_F000", "ang", 0.0, 1.5, "Leave me alone."),
            ("Ses03F_script02_2_M000", "neu", 2.0, 3.0, "Fine."),
        ],
    },
}
"""4class: Session1 5 (F000 neu, F001 hap, script F000 exc, M000 ang, F001 sad), Session2 3, Session3 2 = 10;
all: 7 + 4 + 2 = 13."""


def write_wav(path: Path, seconds: float = 0.05, sr: int = 16_000, channels: int = 1, seed: int = 0,
              subtype: str | None = None) -> Path:
    """A tiny tone written with soundfile (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), make_tone(seconds, sr, seed=seed, channels=channels), sr, subtype=subtype)
    return path


def wav_seconds(start: float, end: float) -> float:
    """The generated IEMOCAP wav length: a tenth of the segment, so the test tree stays tiny."""
    return round((end - start) / 10, 4)


def make_iemocap_tree(root: Path, dialogs=IEMOCAP_DIALOGS, write_audio: bool = True) -> Path:
    """An ``IEMOCAP_full_release`` tree: label files with annotator lines, transcripts with stray lines, wavs."""
    for session, by_dialog in dialogs.items():
        ses = root / session
        for dialog, utts in by_dialog.items():
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            text = []
            for utt, code, start, end, transcript in utts:
                lines += [f"[{start:.4f} - {end:.4f}]\t{utt}\t{code}\t[2.5000, 2.5000, 2.5000]",
                          "C-E2:\tNeutral;\t()", "C-E3:\tFrustration;\t(a bit)", "C-F1:\tNeutral;\t()",
                          "A-E3:\tval 3; act 2; dom  2;\t()", "A-F1:\tval 2; act 3; dom  3;\t()", ""]
                if transcript is not None:
                    text.append(f"{utt} [{start:08.4f}-{end:08.4f}]: {transcript}")
                if write_audio:
                    write_wav(ses / "sentences" / "wav" / dialog / f"{utt}.wav", wav_seconds(start, end))
            text.insert(1, "M: breathing")
            text.append(f"{dialog}_MXX0 [100.0000-101.0000]: Next in line.")
            eval_dir = ses / "dialog" / "EmoEvaluation"
            (eval_dir / "Categorical").mkdir(parents=True, exist_ok=True)
            (eval_dir / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
            # the per-annotator files in sub-folders are not label files
            (eval_dir / "Categorical" / f"{dialog}_e2_cat.txt").write_text(f"{utts[0][0]} :Neutral state; ()\n")
            (eval_dir / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
            tr = ses / "dialog" / "transcriptions"
            tr.mkdir(parents=True, exist_ok=True)
            (tr / f"{dialog}.txt").write_text("\n".join(text) + "\n")
    return root


@pytest.fixture
def iemocap_root(tmp_path) -> Path:
    return make_iemocap_tree(tmp_path / "IEMOCAP_full_release")


# CREMA-D: 6 actors × (sentence, emotion, intensity); every actor has ANG HAP NEU SAD DIS FEA once
CREMA_ACTORS = ("1001", "1002", "1003", "1004", "1005", "1006")
CREMA_CLIPS = (("DFA", "ANG", "XX"), ("IEO", "HAP", "HI"), ("TIE", "NEU", "XX"), ("IOM", "SAD", "LO"),
               ("WSI", "DIS", "MD"), ("ITS", "FEA", "XX"))


def make_crema_tree(root: Path, actors=CREMA_ACTORS, clips=CREMA_CLIPS) -> Path:
    """``ROOT/AudioWAV/<actor>_<sentence>_<emotion>_<intensity>.wav``; 4class keeps 4 clips per actor."""
    for i, actor in enumerate(actors):
        for j, (sentence, emotion, intensity) in enumerate(clips):
            write_wav(root / "AudioWAV" / f"{actor}_{sentence}_{emotion}_{intensity}.wav", 0.02 + 0.01 * i, seed=j)
    return root


@pytest.fixture
def crema_root(tmp_path) -> Path:
    return make_crema_tree(tmp_path / "CREMA-D")
