"""``ser-extract --like MODEL``: extract exactly the features a fitted model bundle was trained on.

A bundle written by ``ser-train fit`` (format ``ser-train-bundle``, version 2) records, per training store
(audio, then text for the bimodal head), the store's :class:`~ser_common.identity.FeatureIdentity`, the
feature spec it was extracted with and its name. This module reads that record with
``torch.load(weights_only=True)`` — without importing ``train`` (``extract`` and ``train`` stay independent
in both directions) — and for each training store

1. derives what to extract: the spec (for ``hf`` the layer is pinned to the store's own, so a store of a
   ``@all`` sweep is re-extracted as that one layer), the crop (``crop_s``; ``None`` = whole utterances)
   and the storage dtype; a ``--feature`` given beside ``--like`` replaces the spec of the training store
   of the same kind (``hf``, ``bert``, ``wav2vec``, ``lld``): the user's copy of the encoder, at another path;
2. builds the feature set and compares the identity its store will have with the bundle's in the
   ``features`` scope (weights by sha256, never by path; layer, crop, dims, frame and sample rate, encoder
   window, settings); any difference is refused before anything is extracted, naming the fields;
3. extracts (with :func:`extract.pipeline.extract_feature`: idempotent, resumable) and checks the written
   store's identity against the bundle's once more.

A spec the bundle recorded that cannot be built here (its model folder is at another path on this machine,
a hub id offline) is reported with the sha256 of the weights the model needs and how to point
``--feature`` at a local copy.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ser_common.identity import FeatureIdentity, format_diff
from ser_common.manifest import manifest_sha256, read_manifest
from ser_common.store import FeatureStore, StoreError, store_identity

from .config import ExtractConfig, ExtractReport
from .feature_set import SAMPLE_RATE
from .outputs import store_provenance
from .pipeline import extract_feature
from .shards import merged_path, shard_output_name

BUNDLE_FORMAT = "ser-train-bundle"
"""The ``format`` key of a ``ser-train fit`` bundle (kept in step with ``train.bundle`` by a test)."""
BUNDLE_VERSION = 2
"""The bundle version whose stores carry a full feature identity."""
LIKE_OPTIONS = ("crop_s", "store_dtype", "whisper_window")
"""Extraction settings --like takes from the bundle unless given on the command line."""


class LikeError(ValueError):
    """The bundle cannot be read, or the features it expects cannot be (or were not) extracted here."""


@dataclass(frozen=True)
class ExpectedStore:
    """One training store of a bundle: what ``--like`` extracts for it.

    Attributes:
        index: position in the bundle (0 = audio, 1 = text of a bimodal model).
        feature: the training store's name (bookkeeping; the new store's name may differ).
        spec: the spec recorded in the bundle (``None`` when the training store recorded none).
        identity: the training store's identity; the new store must equal it in the ``features`` scope.
    """

    index: int
    feature: str | None
    spec: str | None
    identity: FeatureIdentity

    @property
    def kind(self) -> str:
        return self.identity.kind

    @property
    def modality(self) -> str:
        return self.identity.modality


@dataclass(frozen=True)
class ModelBundleInfo:
    """What ``--like`` needs of a bundle: its path, head, classes and the stores it was trained on."""

    path: Path
    head: str
    classes: tuple[str, ...]
    stores: tuple[ExpectedStore, ...]


@dataclass
class LikeStore:
    """One store written (or found up to date) for one of the bundle's training stores."""

    expected: ExpectedStore
    spec: str
    path: Path
    report: ExtractReport


@dataclass
class LikeResult:
    """The outcome of :func:`extract_like`: a store per training store of the bundle, in bundle order."""

    bundle: ModelBundleInfo
    stores: list[LikeStore]
    out: Path
    shard: tuple[int, int] | None = None

    @property
    def reports(self) -> list[ExtractReport]:
        return [s.report for s in self.stores]

    def merged_paths(self) -> list[Path]:
        """The store paths ``ser-train predict`` reads (the merged names when extraction was sharded)."""
        if self.shard is None:
            return [s.path for s in self.stores]
        return [merged_path(s.path) for s in self.stores]

    def predict_command(self, output: str | os.PathLike | None = None) -> str:
        """The ``ser-train predict`` command for these stores (shell-quoted), ``-o`` ``output`` (default:
        ``predictions.csv`` beside the stores folder)."""
        paths = self.merged_paths()
        output = Path(output) if output is not None else self.out.parent / "predictions.csv"
        args = ["ser-train", "predict", "--model", str(self.bundle.path), "--store", str(paths[0])]
        if len(paths) > 1:
            args += ["--text", str(paths[1])]
        args += ["-o", str(output)]
        return " ".join(shlex.quote(a) for a in args)


# ---- reading the bundle ----------------------------------------------------------------------------------
def read_bundle(path: str | os.PathLike) -> ModelBundleInfo:
    """The training stores a ``ser-train fit`` bundle expects (see the module docstring).

    Raises :class:`LikeError`: no such file, not a bundle, a version-1 bundle (it kept only part of the
    provenance: refit it, or give ``--feature`` by hand), another version, or a damaged store record.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise LikeError(f"{path}: no such model bundle (make one with `ser-train fit`)")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise LikeError(f"{path}: not a ser-train model bundle ({type(e).__name__}: {str(e).splitlines()[0]})"
                        ) from None
    if not isinstance(d, dict) or d.get("format") != BUNDLE_FORMAT:
        raise LikeError(f"{path}: not a ser-train model bundle (no format {BUNDLE_FORMAT!r})")
    version = d.get("version")
    if version == 1:
        raise LikeError(
            f"{path}: a version-1 model bundle: it records only part of its training features' provenance, not "
            f"their identity, so --like cannot tell what to extract. Refit it with `ser-train fit` (the new "
            f"bundle records it), or give the features by hand: ser-extract --manifest … --feature SPEC (the "
            f"spec the training store was extracted with) and the same --crop")
    if version != BUNDLE_VERSION:
        raise LikeError(f"{path}: bundle version {version!r} is not {BUNDLE_VERSION}; refit it with `ser-train fit` "
                        f"or use the ser-extract that came with it")
    try:
        entries = d["stores"]
        if not isinstance(entries, list) or not 1 <= len(entries) <= 2:
            raise ValueError(f"expected one or two training stores, got {entries!r:.80}")
        stores = []
        for i, e in enumerate(entries):
            spec = e.get("spec")
            if spec is not None and not isinstance(spec, str):
                raise ValueError(f"store {i}: spec {spec!r} is not a string")
            stores.append(ExpectedStore(i, e.get("feature"), spec or None, FeatureIdentity.from_dict(e["identity"])))
        head = str(d.get("head"))
        classes = tuple(str(c) for c in d.get("classes") or ())
        stacked = [e for e in stores if "layer_sum" in e.identity.settings_dict()]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise LikeError(f"{path}: damaged ser-train model bundle ({type(e).__name__}: {e}); refit it with "
                        f"`ser-train fit`") from None
    if stacked:
        e = stacked[0]
        layers = e.identity.settings_dict()["layer_sum"]
        raise LikeError(
            f"{path}: a layer-sum model (ser-train --layer-sum): it was trained on layers {layers} of "
            f"{e.spec or e.feature} together, which --like does not extract yet. Extract every layer with "
            f"ser-extract --manifest … --feature {e.spec or 'hf:MODEL@all'} --crop {e.identity.crop_s} (the "
            f"same encoder weights, sha256 {e.identity.weights_sha256}), then predict with ser-train predict "
            f"--model {path} --store 'STORES/<name>-l*.h5'")
    return ModelBundleInfo(path, head, classes, tuple(stores))


# ---- what to extract ---------------------------------------------------------------------------------------
def _whisper_window(identity: FeatureIdentity) -> str:
    """The ``--whisper-window`` a training store was extracted with: its ``whisper_window`` setting, else
    ``padded`` (stores of the padded default record none)."""
    return str(identity.settings_dict().get("whisper_window") or "padded")


def _hf_parts(spec: str) -> tuple[str, str | None]:
    from .hf import parse_hf_arg

    return parse_hf_arg(spec.partition(":")[2])


def pinned_spec(spec: str, identity: FeatureIdentity) -> str:
    """``spec`` with an ``hf`` layer selection replaced by the identity's own layer (``@all`` -> ``@4``);
    an ``hf`` spec without a layer gets it too. Other specs are returned as they are."""
    if spec.partition(":")[0] != "hf" or identity.layer is None:
        return spec
    model, _ = _hf_parts(spec)
    return f"hf:{model}@{identity.layer}"


def _encoder_of(spec: str) -> str:
    arg = spec.partition(":")[2]
    if spec.startswith("hf:"):
        arg = _hf_parts(spec)[0]
    return arg or spec


def _hint(expected: ExpectedStore) -> str:
    """An example ``--feature`` pointing at a local copy of the encoder the bundle expects."""
    kind, ident = expected.kind, expected.identity
    if kind == "lld":
        return "lld"
    base = {"bert": "bert-base-uncased", "wav2vec": "wav2vec_large.pt"}.get(kind, "model")
    if expected.spec and ":" in expected.spec:
        try:
            base = _encoder_of(expected.spec).rstrip("/\\").replace("\\", "/").split("/")[-1] or base
        except ValueError:
            pass
    layer = f"@{ident.layer}" if kind == "hf" and ident.layer is not None else ""
    return f"{kind}:/path/to/{base}{layer}"


def _needs(expected: ExpectedStore) -> str:
    sha = expected.identity.weights_sha256
    what = f"{expected.kind} features ({expected.modality}"
    if expected.identity.layer is not None:
        what += f", layer {expected.identity.layer}"
    what += ")"
    return f"{what} from weights with sha256 {sha}" if sha else what


def assign_features(bundle: ModelBundleInfo, features: Sequence[str]) -> list[tuple[str, bool]]:
    """Per training store: (spec to build, whether the user gave it). A ``--feature`` replaces the bundle's
    spec of the store of the same kind; an ``hf`` one without a layer gets the store's layer."""
    given: dict[int, str] = {}
    for spec in dict.fromkeys(features):
        kind = spec.partition(":")[0]
        matches = [e for e in bundle.stores if e.kind == kind]
        if not matches:
            kinds = " and ".join(f"{e.kind} ({e.modality})" for e in bundle.stores)
            raise LikeError(f"--feature {spec}: {bundle.path} was trained on {kinds} features, not {kind}: with "
                            f"--like, --feature can only point at another copy of the model's own encoder (e.g. "
                            f"--feature {_hint(bundle.stores[0])}); leave it out, or extract other features "
                            f"without --like")
        target = next((e for e in matches if e.index not in given), None)
        if target is None:
            raise LikeError(f"--feature {spec}: {bundle.path} has {len(matches)} {kind} store(s), already given by "
                            f"--feature {given[matches[0].index]}")
        if kind == "hf":
            try:
                model, layers = _hf_parts(spec)
            except ValueError as err:
                raise LikeError(f"--feature {spec}: {err}") from None
            if layers is None and target.identity.layer is not None:
                spec = f"hf:{model}@{target.identity.layer}"
        given[target.index] = spec
    out = []
    for e in bundle.stores:
        if e.index in given:
            out.append((given[e.index], True))
        elif e.spec is None:
            raise LikeError(f"{bundle.path}: its training store {e.feature or e.index} records no feature spec, so "
                            f"--like cannot tell how it was extracted; give it with --feature (e.g. "
                            f"--feature {_hint(e)}); it is checked against the model's {_needs(e)}")
        else:
            try:
                out.append((pinned_spec(e.spec, e.identity), False))
            except ValueError as err:
                raise LikeError(f"{bundle.path}: its training store {e.feature or e.index} records the feature "
                                f"spec {e.spec!r}, which is not valid here ({err}); give it with --feature "
                                f"(e.g. --feature {_hint(e)})") from None
    return out


def planned_identity(fs: Any, output: str, crop_s: float | None, store_dtype: str) -> FeatureIdentity:
    """The identity the pipeline will give output ``output`` of feature set ``fs`` (see
    :func:`extract.outputs.plan_outputs`), up to the manifest and compute dtype, which the ``features`` scope
    does not compare."""
    prov = store_provenance(fs, output, {"spec": fs.spec or fs.name, "crop_s": crop_s, "sample_rate": SAMPLE_RATE})
    return store_identity(prov, fs.dims, store_dtype)


def _crop_flag(crop_s: float | None) -> str:
    return "--no-crop" if crop_s is None else f"--crop {crop_s:g}"


def _fields(diff: dict) -> str:
    return ", ".join(diff)


def _mismatch(bundle: ModelBundleInfo, e: ExpectedStore, spec: str, given: bool, diff: dict,
              explicit: frozenset[str]) -> LikeError:
    detail = format_diff(diff, "model", "this extraction")
    fixes = []
    if "weights_sha256" in diff:
        fixes.append(f"the model needs the weights with sha256 {e.identity.weights_sha256}: point --feature at a "
                     f"copy of them (e.g. --feature {_hint(e)})")
    if "crop_s" in diff and "crop_s" in explicit:
        fixes.append(f"leave out --crop/--no-crop: --like then uses the model's ({_crop_flag(e.identity.crop_s)})")
    if "layer" in diff and given:
        fixes.append(f"give the model's layer (@{e.identity.layer}) or none")
    fix = "; ".join(fixes) or "extract with the encoder the model was trained on, or refit the model on these features"
    source = f"--feature {spec}" if given else f"{bundle.path}: {spec} (the spec it records)"
    how = f" with {_crop_flag(diff['crop_s'][1])}" if "crop_s" in explicit and "crop_s" in diff else ""
    return LikeError(f"{source}{how} would give other features than the model was trained on "
                     f"({_fields(diff)}): {detail}; {fix}")


def extract_like(bundle_path: str | os.PathLike, manifest: str | os.PathLike, out: str | os.PathLike,
                 cfg: ExtractConfig, features: Sequence[str] = (), explicit: Sequence[str] = ()) -> LikeResult:
    """Extract the features the bundle at ``bundle_path`` expects for ``manifest`` into ``out``.

    Args:
        cfg: the run's settings; its ``crop_s`` and ``store_dtype`` are replaced by the bundle's (per training
            store) unless named in ``explicit``.
        features: ``--feature`` overrides (see :func:`assign_features`).
        explicit: which of :data:`LIKE_OPTIONS` the user gave on the command line (then they are used as
            given, and refused if the features then differ from the model's).

    Raises :class:`LikeError` (bundle unreadable, features that cannot be built here or differ from the
    model's), and what :func:`~extract.pipeline.extract_feature` raises.
    """
    from .registry import build

    explicit = frozenset(explicit)
    bundle = read_bundle(bundle_path)
    specs = assign_features(bundle, features)
    records = read_manifest(manifest)          # before any model is loaded: a bad manifest fails at once
    out = Path(out)
    plans = []
    owners: dict[str, str] = {}
    for e, (spec, given) in zip(bundle.stores, specs):
        try:
            window = cfg.whisper_window if "whisper_window" in explicit else _whisper_window(e.identity)
            fs = build(spec, whisper_window=window)
        except Exception as err:  # noqa: BLE001 - whatever the loader raises, say what the model needs
            why = str(err).splitlines()[0] if str(err) else type(err).__name__
            if given:
                raise LikeError(f"--feature {spec}: cannot build it ({why}); the model needs {_needs(e)}") from None
            raise LikeError(
                f"{bundle.path}: its {e.modality} features were extracted with {e.spec!r}, which cannot be loaded "
                f"on this machine ({why}). The model needs {_needs(e)}: point --feature at your copy, e.g. "
                f"ser-extract --like {bundle.path} --feature {_hint(e)} --manifest … --out … "
                f"(checked against the model's features)") from None
        crop = cfg.crop_s if "crop_s" in explicit else e.identity.crop_s   # text stores: None, unused
        store_dtype = cfg.store_dtype if "store_dtype" in explicit else (e.identity.store_dtype or cfg.store_dtype)
        run_cfg = dataclasses.replace(cfg, crop_s=crop, store_dtype=store_dtype)
        outputs = fs.output_names()
        if len(outputs) != 1:
            hint = f" (the model's: @{e.identity.layer})" if e.identity.layer is not None else ""
            raise LikeError(f"--feature {spec}: writes {len(outputs)} stores; with --like give one layer{hint}")
        diff = e.identity.diff(planned_identity(fs, outputs[0], crop, store_dtype), scope="features")
        if diff:
            raise _mismatch(bundle, e, spec, given, diff, explicit)
        name = outputs[0]
        if name in owners:
            raise LikeError(f"{bundle.path}: two of its training stores would both be written to {name}.h5 "
                            f"({owners[name]} and {spec}); extract them into different --out folders by hand")
        owners[name] = spec
        plans.append((e, spec, fs, run_cfg, name))

    digest = manifest_sha256(manifest)
    written = []
    for e, spec, fs, run_cfg, name in plans:
        report = extract_feature(manifest, fs, out, run_cfg, records=records, manifest_hash=digest)
        path = out / f"{shard_output_name(name, run_cfg.shard)}.h5"
        try:
            with FeatureStore(path) as s:
                diff = e.identity.diff(s.identity, scope="features")
        except StoreError as err:
            raise LikeError(f"{path}: the store written for {bundle.path} cannot be read back ({err})") from None
        if diff:
            raise LikeError(f"{path}: the store written differs from the features {bundle.path} was trained on "
                            f"({_fields(diff)}): {format_diff(diff, 'model', 'store')}; this is a bug: please "
                            f"report it with `ser-extract info {path}`")
        written.append(LikeStore(e, spec, path, report))
    return LikeResult(bundle, written, out, cfg.shard)
