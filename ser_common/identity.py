"""What a feature store's numbers ARE: one typed, comparable record, kept apart from bookkeeping.

Every place that asks "are these the same features?" compares :class:`FeatureIdentity` records: reusing a
complete store, resuming a partial one, merging shards, matching a fitted model's training stores to the
store it predicts on, ``ser-train tables`` and ``ser-extract info``. Nothing compares raw provenance keys.

A store's provenance (``provenance_json``) holds two kinds of keys:

* **identity** — what changes the numbers: the feature kind (``lld``, ``wav2vec``, ``bert``, ``hf``), the
  encoder class, the sha256 of its weights, the layer, the crop (seconds), the sample rate (Hz), the frame
  rate (frames per second), the dims, the encoder's input window (seconds; Whisper's 30 s), the compute
  and storage dtypes, the manifest's sha256 (the utterances, their labels, speakers and sessions), and the
  feature set's own number-changing settings (LLD window/step, BERT max length and casing, …);
* **bookkeeping** — how the numbers were made: paths (``encoder``, ``manifest``, ``tokenizer``), the store
  name, the spec string, timestamps, the shard, device, package versions, the other layers of a sweep, and
  what ``train`` records of stores it joined in memory (``combined_from``/``corpora`` for several corpora,
  ``stacked_from`` for a layer sum).

:data:`BOOKKEEPING_KEYS` is the one list of bookkeeping keys; every other provenance key a feature set
records lands in :attr:`FeatureIdentity.settings`. A new, unknown key is therefore identity: a store is
refused rather than silently reused when in doubt.

Three comparisons, each a set of fields (:data:`STORE_FIELDS` ⊃ :data:`FEATURE_FIELDS`):

* ``store`` — reuse, resume, merge: every field;
* ``features`` — a fitted model on another store: everything but the manifest and the two dtypes (a model
  fitted on bf16 GPU features of one corpus predicts on fp32 CPU features of another; the weights are
  matched by sha256, never by the path they were read from).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from .listing import shorten

BOOKKEEPING_KEYS = frozenset({
    "feature", "spec", "encoder", "tokenizer", "manifest", "n_manifest", "device_type", "shard", "merged_from",
    "package_versions", "created_utc", "finalized_utc", "format_version", "layers", "layer_desc", "corpus",
    "identity", "combined_from", "corpora", "stacked_from",
})
"""Provenance keys that describe how a store was made, not what its numbers are."""


def _canon(value: Any) -> Any:
    """JSON-normalised value (tuples -> lists, numpy scalars -> Python), for stable comparison."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _opt_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def _opt_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)


def _kind(prov: Mapping[str, Any]) -> str:
    spec = prov.get("spec")
    if isinstance(spec, str) and spec:
        return spec.partition(":")[0]
    return str(prov.get("kind") or prov.get("feature") or "")


@dataclass(frozen=True)
class FeatureIdentity:
    """The identity of one feature store (see the module docstring).

    Attributes:
        kind: feature set family, the spec prefix: ``lld``, ``wav2vec``, ``bert``, ``hf``.
        modality: ``audio`` or ``text``.
        encoder_class: the encoder's architecture (``WhisperModel``, ``fairseq wav2vec 1.0``, …).
        weights_sha256: sha256 of the weights file(s); ``None`` for weight-free (LLD) or random encoders.
        layer: hidden-state index the frames come from; ``None`` where not applicable.
        dims: columns of every frame row.
        frame_rate_hz: frames per second of audio; ``None`` for text (one row per token).
        sample_rate: Hz of the waveform the encoder saw; ``None`` for text.
        crop_s: seconds kept from the start of each utterance; ``None`` = whole utterances / transcripts.
        encoder_window_s: seconds of input the encoder is fed per clip (Whisper: 30 s padded); ``None``.
        compute_dtype: dtype the encoder computed in (``float32``, ``bfloat16``, ``float16``).
        store_dtype: dtype on disk (``float16`` or ``float32``).
        manifest_sha256: sha256 of the manifest file the utterances and labels came from.
        settings: canonical JSON of the feature set's other number-changing settings (sorted keys).
    """

    kind: str
    modality: str
    encoder_class: str | None
    weights_sha256: str | None
    layer: int | None
    dims: int | None
    frame_rate_hz: float | None
    sample_rate: int | None
    crop_s: float | None
    encoder_window_s: float | None
    compute_dtype: str | None
    store_dtype: str | None
    manifest_sha256: str | None
    settings: str = "{}"

    @classmethod
    def from_provenance(cls, prov: Mapping[str, Any]) -> "FeatureIdentity":
        """The identity recorded in a provenance dict (a store's, a bundle's, or one about to be written)."""
        if not isinstance(prov, Mapping):
            raise TypeError(f"provenance must be a JSON object, got {type(prov).__name__}")
        window = prov.get("encoder_window_s")
        if window is None and prov.get("model_type") == "whisper":
            window = prov.get("window_s")        # stores written before the field had its own name
        typed = {f.name for f in fields(cls)} | {"dtype", "window_s" if prov.get("model_type") == "whisper" else ""}
        settings = {k: v for k, v in prov.items() if k not in typed and k not in BOOKKEEPING_KEYS}
        return cls(
            kind=_kind(prov), modality=str(prov.get("modality") or "audio"),
            encoder_class=None if prov.get("encoder_class") is None else str(prov["encoder_class"]),
            weights_sha256=prov.get("weights_sha256") or None, layer=_opt_int(prov.get("layer")),
            dims=_opt_int(prov.get("dims")), frame_rate_hz=_opt_float(prov.get("frame_rate_hz")),
            sample_rate=_opt_int(prov.get("sample_rate")), crop_s=_opt_float(prov.get("crop_s")),
            encoder_window_s=_opt_float(window), compute_dtype=prov.get("compute_dtype") or None,
            store_dtype=prov.get("store_dtype") or prov.get("dtype") or None,
            manifest_sha256=prov.get("manifest_sha256") or None,
            settings=json.dumps(_canon(settings), sort_keys=True),
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FeatureIdentity":
        """Inverse of :meth:`to_dict` (refuses unknown or missing fields)."""
        names = [f.name for f in fields(cls)]
        if not isinstance(d, Mapping) or set(d) != set(names):
            got = sorted(d) if isinstance(d, Mapping) else type(d).__name__
            raise ValueError(f"a feature identity needs exactly the fields {names}, got {got}")
        return cls(**{k: d[k] for k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def settings_dict(self) -> dict[str, Any]:
        return json.loads(self.settings)

    def diff(self, other: "FeatureIdentity", scope: str = "store") -> dict[str, tuple[Any, Any]]:
        """``{field: (self's value, other's value)}`` for the fields of ``scope`` that differ.

        ``scope``: ``store`` (:data:`STORE_FIELDS`) or ``features`` (:data:`FEATURE_FIELDS`). Settings are
        compared key by key (``settings.<key>``) so the message names the setting.
        """
        names = SCOPES[scope]
        out: dict[str, tuple[Any, Any]] = {}
        for name in names:
            a, b = getattr(self, name), getattr(other, name)
            if name == "settings":
                sa, sb = self.settings_dict(), other.settings_dict()
                for k in sorted(set(sa) | set(sb)):
                    if _canon(sa.get(k)) != _canon(sb.get(k)):
                        out[f"settings.{k}"] = (sa.get(k), sb.get(k))
            elif _canon(a) != _canon(b):
                out[name] = (a, b)
        return out


STORE_FIELDS = tuple(f.name for f in fields(FeatureIdentity))
"""Fields compared when a store is reused, resumed or merged: all of them."""

FEATURE_FIELDS = tuple(n for n in STORE_FIELDS if n not in ("manifest_sha256", "compute_dtype", "store_dtype"))
"""Fields compared when a fitted model meets a store: what the encoder computes, not which data or dtype."""

SCOPES = {"store": STORE_FIELDS, "features": FEATURE_FIELDS}


def format_diff(diff: Mapping[str, tuple[Any, Any]], left: str, right: str, limit: int = 6) -> str:
    """``crop_s: 5.0 (left) vs 2.0 (right); …`` — at most ``limit`` fields, then ``… and N more``."""
    items = [f"{k}: {_short(a)} ({left}) vs {_short(b)} ({right})" for k, (a, b) in diff.items()]
    return shorten(items, limit, sep="; ", more="; … and {n} more")


def _short(value: Any) -> str:
    text = repr(value)
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return repr(value[:12] + "…")   # a sha256
    return text if len(text) <= 80 else text[:77] + "…"
