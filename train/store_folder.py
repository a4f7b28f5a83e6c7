"""The stores of a folder, sorted into the roles of the paper's tables (``ser-train tables --stores DIR``).

Stores are recognised from their provenance: the LLD store (feature ``lld`` or file ``lld.h5``), the
pre-trained audio store (any other audio store; ``audio=NAME`` picks one when there are several: its path,
file name or stem) and the text store (modality ``text``; ``text=NAME`` when several). A store that cannot
be read (corrupt, incomplete, not a feature store) is reported with the reason and skipped
(``StoreSet.skipped``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ser_common.identity import FeatureIdentity
from ser_common.store import FeatureStore, StoreError, list_stores


@dataclass(frozen=True)
class StoreSet:
    """The stores ``tables`` uses (``lld`` and ``text`` may be absent)."""

    corpus: str
    pretrained: Path
    lld: Path | None
    text: Path | None
    skipped: tuple[str, ...] = ()
    """One line per store left out: ``<file>: <why>``."""


def _read_meta(path: Path) -> tuple[dict[str, Any], FeatureIdentity, bool]:
    """A store's provenance, its :class:`~ser_common.identity.FeatureIdentity`, and whether it holds tokens."""
    with FeatureStore(path) as fs:
        return dict(fs.provenance), fs.identity, bool(fs.is_text)


def reason(path: Path, e: BaseException) -> str:
    """``e``'s message without a leading ``<path>: `` (the caller names the file)."""
    msg = str(e) or type(e).__name__
    for prefix in (f"{path}: ", f"{path.name}: "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg if isinstance(e, StoreError) else f"{type(e).__name__}: {msg}"


def identify_stores(stores_dir: str | os.PathLike, audio: str | None = None, text: str | None = None) -> StoreSet:
    """Find the LLD, pre-trained audio and text stores of a stores folder (see module docstring).

    A store whose metadata cannot be read is left out and named in ``skipped`` with the reason.
    """
    d = Path(stores_dir)
    paths = list_stores(d)
    if not paths:
        raise StoreError(f"{d}: no complete store (*.h5) in this folder")
    lld, pre, txt = [], [], []
    skipped: list[str] = []
    corpus = None
    for p in paths:
        try:
            prov, ident, is_text = _read_meta(p)
        except Exception as e:  # noqa: BLE001 - any unreadable store is reported and skipped
            skipped.append(f"{p.name}: skipped, unreadable ({reason(p, e)})")
            continue
        corpus = corpus or prov.get("corpus") or (Path(prov["manifest"]).stem if prov.get("manifest") else None)
        if is_text or ident.modality == "text":
            txt.append(p)
        elif ident.kind == "lld" or p.stem == "lld":
            lld.append(p)
        else:
            pre.append(p)

    def pick(kind: str, found: list[Path], name: str | None, option: str) -> Path | None:
        if name is not None:
            as_path = Path(name).resolve() if Path(name).is_file() else None
            for p in found:
                if name in (p.name, p.stem) or p.resolve() == as_path:
                    return p
            raise StoreError(f"{d}: no {kind} store named {name!r} in this folder; {kind} stores: "
                             f"{[p.name for p in found]}")
        if len(found) > 1:
            raise StoreError(f"{d}: several {kind} stores {[p.name for p in found]}; choose one with {option} NAME")
        return found[0] if found else None

    pre_path = pick("pre-trained audio", pre, audio, "--audio")
    if pre_path is None:
        why = f"; skipped: {'; '.join(skipped)}" if skipped else ""
        raise StoreError(f"{d}: no pre-trained audio store (stores found: {[p.name for p in paths]}){why}")
    return StoreSet(corpus=str(corpus or d.name), pretrained=pre_path, lld=pick("LLD", lld, None, "--lld"),
                    text=pick("text", txt, text, "--text"), skipped=tuple(skipped))


def store_info(path: Path) -> dict[str, Any]:
    prov, ident, _ = _read_meta(path)
    identity = {k: v for k, v in ident.to_dict().items() if k != "settings"}
    return {"path": str(path), "file": path.name, "feature": prov.get("feature"), "spec": prov.get("spec"),
            "encoder": prov.get("encoder"), **identity}
