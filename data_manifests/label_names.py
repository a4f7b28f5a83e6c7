"""Label names of a corpus nobody here prepared: normalised, and optionally mapped onto the toolkit's names.

A team's corpus may spell its classes ``Joy``, `` angry `` or ``NEUTRAL``. Every label read from a folder name,
a labels CSV or a transcript table goes through :class:`LabelNames`:

1. normalisation: surrounding whitespace stripped and lower-cased (``keep_case`` keeps the case);
2. with a label map (``--label-map angry=angry,joy=happy``), the normalised name is looked up in the map
   (whose keys and targets are normalised the same way); a name absent from a given map is an error, never
   passed through, so a typo or a forgotten class cannot become a class of its own.

The toolkit's own names are :data:`ser_common.labels.FOUR_CLASSES` (neutral, happy, sad, angry); other names are
kept as classes of their own (``--labels all`` style).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Iterable, Mapping

from ser_common.labels import FOUR_CLASSES, known_labels

from .problems import CorpusWarning


class NotInLabelMap(ValueError):
    """A label that a given label map does not list; ``name`` is the normalised label."""

    def __init__(self, name: str, option: str = "--label-map") -> None:
        super().__init__(f"label {name!r} is not in {option}")
        self.name = name


def normalise_label(raw: str, keep_case: bool = False) -> str:
    """``raw`` without surrounding whitespace, lower-cased unless ``keep_case``."""
    name = raw.strip()
    return name if keep_case else name.lower()


def parse_label_map(specs: str | Iterable[str], keep_case: bool = False) -> dict[str, str]:
    """``"angry=angry,joy=happy"`` (or several such strings) -> ``{"angry": "angry", "joy": "happy"}``.

    Keys and targets are normalised like labels (:func:`normalise_label`). Raises ``ValueError`` naming the
    entry for an entry without ``=``, an empty name or target, and a name mapped to two different targets.
    """
    if isinstance(specs, str):
        specs = [specs]
    out: dict[str, str] = {}
    problems: list[str] = []
    for spec in specs:
        for entry in spec.split(","):
            if not entry.strip():
                continue
            name, sep, target = entry.partition("=")
            name, target = normalise_label(name, keep_case), normalise_label(target, keep_case)
            if not sep:
                problems.append(f"{entry.strip()!r} has no '=' (write corpus_name=toolkit_name, e.g. joy=happy)")
            elif not name or not target:
                problems.append(f"{entry.strip()!r}: both sides of '=' must be non-empty (e.g. joy=happy)")
            elif out.get(name, target) != target:
                problems.append(f"{name!r} is mapped twice, to {out[name]!r} and to {target!r}")
            else:
                out[name] = target
    if problems:
        raise ValueError("; ".join(problems))
    if not out:
        raise ValueError("the label map is empty (write corpus_name=toolkit_name pairs, e.g. angry=angry,joy=happy)")
    return out


@dataclass(frozen=True)
class LabelNames:
    """How raw label strings become manifest labels: normalised, then mapped when a map is given."""

    label_map: dict[str, str] | None = None
    keep_case: bool = False
    option: str = "--label-map"
    """How the map is named in messages (the CLI option, or ``label_map=`` for library use)."""

    def __call__(self, raw: str) -> str:
        """The manifest label of ``raw`` (``""`` for an empty one); raises :class:`NotInLabelMap`."""
        name = normalise_label(raw, self.keep_case)
        if not name or self.label_map is None:
            return name
        if name not in self.label_map:
            raise NotInLabelMap(name, self.option)
        return self.label_map[name]

    def missing_fix(self, names: list[str], items: str = "files") -> str:
        """The hint for labels absent from the map: what the map holds and the entries to add."""
        if not self.label_map or not names:
            return ""
        entries = ",".join(f"{n}=<label>" for n in names)
        return (f"{self.option} maps {', '.join(sorted(self.label_map))}. Add the missing names to it (e.g. "
                f"{entries}; the toolkit's classes are {', '.join(FOUR_CLASSES)}), or remove those {items} "
                "(--skip-invalid leaves them out).")


def outside_toolkit_classes(labels: Iterable[str]) -> list[str]:
    """The labels that are not one of the toolkit's :data:`FOUR_CLASSES`, sorted."""
    return sorted(set(labels) - set(FOUR_CLASSES))


def label_names_from(label_map: str | Mapping[str, str] | None, keep_case: bool = False) -> LabelNames:
    """:class:`LabelNames` for a label map given as ``"joy=happy,…"``, a dict, or ``None`` (normalise only)."""
    if label_map is None:
        return LabelNames(keep_case=keep_case)
    if isinstance(label_map, str):
        return LabelNames(parse_label_map(label_map, keep_case), keep_case)
    return LabelNames({normalise_label(k, keep_case): normalise_label(v, keep_case) for k, v in label_map.items()},
                      keep_case)


def note_own_classes(where: str | os.PathLike, labels: list[str], names: LabelNames, corpus: str) -> None:
    """Warn when, without a label map, labels of an unknown corpus are not the toolkit's names."""
    own = outside_toolkit_classes(labels)
    if own and names.label_map is None and not known_labels(corpus):
        warnings.warn(f"{where}: label(s) kept as classes of their own, not among the toolkit's "
                      f"{', '.join(FOUR_CLASSES)}: {', '.join(own)}; if they mean one of those, map them with "
                      f"--label-map (e.g. {own[0]}=happy)", CorpusWarning, stacklevel=3)
