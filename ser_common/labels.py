"""Label sets: every corpus mapped onto the paper's four classes, or kept whole.

The paper's 4-class IEMOCAP set is neutral, happy (hap + exc merged), sad and angry. Each corpus module in
``data_manifests`` maps its raw codes to readable names through :data:`CORPUS_LABELS`; a manifest stores the
readable name, so training never needs to know a corpus' coding scheme.
"""

from __future__ import annotations

FOUR_CLASSES: tuple[str, ...] = ("neutral", "happy", "sad", "angry")
"""The paper's four classes, in the order used for every confusion matrix and probability column."""

# raw corpus code -> readable label name (all classes of the corpus)
CORPUS_LABELS: dict[str, dict[str, str]] = {
    "iemocap": {
        "neu": "neutral", "hap": "happy", "exc": "excited", "sad": "sad", "ang": "angry",
        "fru": "frustrated", "sur": "surprised", "fea": "fearful", "dis": "disgusted",
        "oth": "other", "xxx": "no_agreement",
    },
    "emodb": {
        "W": "angry", "L": "bored", "E": "disgusted", "A": "fearful", "F": "happy", "T": "sad", "N": "neutral",
    },
    "ravdess": {
        "01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
        "07": "disgusted", "08": "surprised",
    },
    "crema-d": {
        "ANG": "angry", "DIS": "disgusted", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad",
    },
}

# readable name -> one of FOUR_CLASSES, per corpus (names absent here are dropped in the 4-class scheme)
FOUR_CLASS_MAPS: dict[str, dict[str, str]] = {
    "iemocap": {"neutral": "neutral", "happy": "happy", "excited": "happy", "sad": "sad", "angry": "angry"},
    "emodb": {c: c for c in FOUR_CLASSES},
    "ravdess": {c: c for c in FOUR_CLASSES},
    "crema-d": {c: c for c in FOUR_CLASSES},
}

SCHEMES = ("4class", "all")
"""``4class``: the paper's neutral/happy/sad/angry; ``all``: every class of the corpus, under readable names."""


class UnknownLabelError(ValueError):
    """A label code or name that the corpus' label set does not know."""


def map_label(corpus: str, code: str, scheme: str = "4class") -> str | None:
    """Map a raw corpus code (e.g. IEMOCAP ``exc``, EmoDB ``F``) to a label under ``scheme``.

    Returns ``None`` for a known code that the scheme drops (e.g. ``fru`` in ``4class``); raises
    :class:`UnknownLabelError` for a code the corpus does not define.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown label scheme {scheme!r}; choose one of {SCHEMES}")
    codes = CORPUS_LABELS.get(corpus)
    if codes is None:
        raise ValueError(f"unknown corpus {corpus!r}; known: {sorted(CORPUS_LABELS)}")
    if code not in codes:
        raise UnknownLabelError(f"{corpus}: unknown label code {code!r}; known codes: {sorted(codes)}")
    name = codes[code]
    if scheme == "all":
        return name
    return FOUR_CLASS_MAPS[corpus].get(name)


def label_names(corpus: str | None, scheme: str = "4class") -> tuple[str, ...]:
    """The label names a manifest of ``corpus`` may hold under ``scheme`` (4class: :data:`FOUR_CLASSES`)."""
    if scheme == "4class" or corpus is None:
        return FOUR_CLASSES
    names = list(dict.fromkeys(CORPUS_LABELS[corpus].values()))
    return tuple(names)


def known_labels(corpus: str | None) -> frozenset[str]:
    """Every label name valid for ``corpus`` under any scheme (used to validate manifests).

    A corpus this module does not know (e.g. a user's own folder of audio) accepts any label.
    """
    if corpus is None or corpus not in CORPUS_LABELS:
        return frozenset()
    return frozenset(CORPUS_LABELS[corpus].values()) | frozenset(FOUR_CLASSES)


def class_order(labels: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A stable class order for a set of labels: the four classes first (paper order), then the rest sorted."""
    present = set(labels)
    head = [c for c in FOUR_CLASSES if c in present]
    tail = sorted(present - set(FOUR_CLASSES))
    return tuple(head + tail)
