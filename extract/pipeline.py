"""The extraction pipeline: manifest -> decoded, cropped 16 kHz audio -> feature set -> HDF5 store(s).

For each feature set the pipeline

1. compares each output's requested :class:`~ser_common.identity.FeatureIdentity` with what is on disk: a
   complete store of the same identity is left alone (stages are idempotent), one of another identity is
   refused naming the differing fields (``overwrite`` writes a replacement beside it, renamed over it only
   when complete); a ``.partial`` one of the same identity resumes after its last committed batch; skipped
   utterances whose audio file changed since (or all of them, ``retry_skipped``) are retried;
2. sorts the utterances still to do by (cropped) length and groups them into batches whose padded size fits
   the feature set's budget (:attr:`FeatureSet.max_batch_samples`), so padding stays small;
3. decodes the batches in worker processes (soundfile + soxr), ``prefetch`` batches ahead, so the encoder
   never waits on decoding; feature sets with :attr:`runs_in_workers` (the LLDs) are computed in the
   workers too;
4. encodes each batch (GPU or CPU, under ``torch.inference_mode`` and optional autocast), and appends it
   to the store(s): the batch is validated first and committed as a whole, so an interrupted run leaves
   only whole batches behind;
5. finalises the store atomically (``.partial`` -> ``.h5``).

Bad utterances (missing, unreadable, empty, NaN or too-short audio; a missing transcript for a text feature
set; non-finite features) are reported by file and skipped (recorded in the store's ``skipped_json``) or
stop the run, per ``on_error``. ``shard=(i, n)`` processes utterances whose manifest position is ``i`` mod
``n`` into ``<name>.shard-<i>-of-<n>.h5``; ``ser-extract merge`` joins them.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from ser_common.manifest import ManifestError, ManifestRecord, manifest_sha256, read_manifest, validate_records
from ser_common.provenance import package_versions
from ser_common.identity import format_diff
from ser_common.store import FeatureStore, StoreError, StoreWriter, UtteranceMeta, changed_skips, store_path, store_identity

from .audio import TARGET_SR, AudioError, load_audio
from .feature_set import FeatureSet, check_compute_dtype
from .registry import build


class ExtractionError(RuntimeError):
    """The run stopped on a bad utterance (``on_error='fail'``); finished batches stay in the partial store."""


class WorkerDied(RuntimeError):
    """A decoding worker process ended abruptly (killed, out of memory, a crash in a decoder library)."""


@dataclass
class ExtractConfig:
    """Settings of one extraction run (recorded in each store's provenance where they change the numbers).

    Attributes:
        crop_s: keep the first ``crop_s`` seconds of each utterance (the paper: 5.0); ``None`` = all.
        device: ``auto`` (cuda when available), ``cpu``, ``cuda`` or ``cuda:N``.
        compute_dtype: ``auto`` (bfloat16 on a GPU that supports it, else float32), ``float32``,
            ``bfloat16`` or ``float16`` (autocast; CPU always computes in float32).
        store_dtype: ``float16`` (default) or ``float32`` on disk.
        workers: decoding processes; 0 decodes in the main process.
        prefetch: batches decoded ahead of the encoder, per worker.
        on_error: ``skip`` (report and leave the utterance out) or ``fail`` (stop the run).
        shard: ``(i, n)``: process only manifest positions ``p`` with ``p % n == i``.
        overwrite: recompute a complete store (its replacement is renamed over it only once complete) and
            discard a partial one of other settings.
        retry_skipped: retry every skipped utterance (without it, only those whose audio file changed).
        batch_samples: override the feature set's padded-samples-per-batch budget.
        progress: show tqdm bars.
    """

    crop_s: float | None = 5.0
    device: str = "auto"
    compute_dtype: str = "auto"
    store_dtype: str = "float16"
    workers: int = 2
    prefetch: int = 4
    on_error: str = "skip"
    shard: tuple[int, int] | None = None
    overwrite: bool = False
    retry_skipped: bool = False
    batch_samples: int | None = None
    progress: bool = True
    whisper_window: str = "padded"


@dataclass
class ExtractReport:
    """What one feature set's run did (``status``: ``done`` or ``up to date``). Seconds are wall clock."""

    feature: str
    stores: list[str]
    status: str
    n_written: int = 0
    n_skipped: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def realtime_factor(self) -> float:
        """Seconds of (cropped) audio processed per second of wall time."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "realtime_factor": self.realtime_factor}


# ---------------------------------------------------------------------------------------------------------
def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` if a GPU is visible, else ``cpu``. Under torchrun, ``cuda:N`` with
    ``N = LOCAL_RANK mod (visible GPUs)``: one process per GPU, or several processes sharing the GPUs
    (``--nproc-per-node 2`` on a one-GPU machine puts both on ``cuda:0``)."""
    import torch

    if device == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        local = os.environ.get("LOCAL_RANK")
        if local is None or not local.isdigit():
            return "cuda"
        return f"cuda:{int(local) % max(1, torch.cuda.device_count())}"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for but no CUDA GPU is visible (use --device cpu)")
    return device


def resolve_compute_dtype(compute_dtype: str, device: str) -> str:
    """``auto`` -> ``bfloat16`` on a bf16-capable GPU, ``float16`` on an older GPU, ``float32`` on CPU;
    any other value as :func:`~extract.feature_set.check_compute_dtype` says (CPU always computes in float32)."""
    if compute_dtype != "auto":
        return check_compute_dtype(device, compute_dtype)
    if not device.startswith("cuda"):
        return "float32"
    import torch

    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def shard_output_name(name: str, shard: tuple[int, int] | None) -> str:
    """Store name of ``name`` for a shard: ``wav2vec.shard-0-of-4`` (plain ``name`` without sharding)."""
    return name if shard is None else f"{name}.shard-{shard[0]}-of-{shard[1]}"


def select_shard(records: Sequence[ManifestRecord], shard: tuple[int, int] | None) -> list[int]:
    """Manifest positions of the records this shard processes (deterministic: position mod n)."""
    if shard is None:
        return list(range(len(records)))
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"shard {i}/{n}: need 0 <= i < n")
    return [p for p in range(len(records)) if p % n == i]


def _meta(rec: ManifestRecord, pos: int) -> UtteranceMeta:
    return UtteranceMeta(utt_id=rec.utt_id, label=rec.label, speaker=rec.speaker, session=rec.session,
                         duration=float(rec.duration) if rec.duration is not None else float("nan"),
                         manifest_index=pos, transcript=rec.transcript)


# ---- worker side --------------------------------------------------------------------------------------------
_WORKER_FS: dict[str, FeatureSet] = {}


def _decode_batch(items: list[tuple[int, str, float | None, float | None]], crop_s: float | None,
                  min_samples: int, worker_spec: str | None) -> list[tuple[int, Any, str | None, float]]:
    """Decode (and, for worker feature sets, encode) a batch. Returns (pos, wave|features|None, error, seconds)."""
    fs = None
    if worker_spec is not None:
        fs = _WORKER_FS.get(worker_spec)
        if fs is None:
            fs = _WORKER_FS[worker_spec] = build(worker_spec)
    out = []
    for pos, audio, start, end in items:
        try:
            wave = load_audio(audio, TARGET_SR, crop_s=crop_s, start=start, end=end, min_samples=min_samples)
        except AudioError as e:
            out.append((pos, None, str(e), 0.0))
            continue
        seconds = wave.shape[0] / TARGET_SR
        if fs is not None:
            try:
                out.append((pos, fs.encode([wave])[0], None, seconds))
            except Exception as e:  # noqa: BLE001 - reported per utterance, the run goes on or stops per flag
                out.append((pos, None, f"{audio}: {fs.name} failed ({type(e).__name__}: {e})", seconds))
        else:
            out.append((pos, wave, None, seconds))
    return out


def _in_order(batches: list[list], fn, args: tuple, workers: int, prefetch: int) -> Iterator[list]:
    """Run ``fn(batch, *args)`` for each batch, in worker processes, yielding results in order."""
    if workers <= 0:
        for b in batches:
            yield fn(b, *args)
        return
    # spawn: safe with CUDA and OpenMP state in the parent; workers import only numpy/soundfile/soxr (+ pyAA)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending: deque[Future] = deque()
        it = iter(batches)
        for b in it:
            pending.append(pool.submit(fn, b, *args))
            if len(pending) >= workers * prefetch:
                break
        while pending:
            try:
                result = pending.popleft().result()
            except BrokenProcessPool as e:
                raise WorkerDied(str(e)) from None
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(fn, nxt, *args))
            yield result


# ---- batching -------------------------------------------------------------------------------------------------
def length_batches(positions: list[int], lengths: dict[int, float], budget: float, max_items: int = 256) -> list[list[int]]:
    """Group positions sorted by length so that ``len(batch) * max_length <= budget`` (at least one each)."""
    order = sorted(positions, key=lambda p: (lengths[p], p))
    batches: list[list[int]] = []
    cur: list[int] = []
    for p in order:
        if cur and ((len(cur) + 1) * lengths[p] > budget or len(cur) >= max_items):
            batches.append(cur)
            cur = []
        cur.append(p)
    if cur:
        batches.append(cur)
    return batches


def _expected_seconds(rec: ManifestRecord, crop_s: float | None) -> float:
    d = rec.duration
    if d is None or not np.isfinite(d):
        d = crop_s or 10.0
    if rec.start is not None or rec.end is not None:
        d = (rec.end if rec.end is not None else d) - (rec.start or 0.0)
    return max(0.0, min(d, crop_s) if crop_s else d)


# ---- the run --------------------------------------------------------------------------------------------------
class _Stores:
    """The writers of the outputs of one feature set that need work, moved together.

    ``plans`` maps an output name to its store path, provenance and how to open it (``reopen``: a complete
    store of the same identity with skips to retry). Outputs that are up to date are not opened at all.
    """

    def __init__(self, fs: FeatureSet, plans: dict[str, "_Plan"], cfg: ExtractConfig):
        self.writers: dict[str, StoreWriter] = {}
        try:
            for name, plan in plans.items():
                self.writers[name] = StoreWriter(plan.path, dims=fs.dims, provenance=plan.provenance,
                                                 dtype=cfg.store_dtype, text=fs.modality == "text",
                                                 overwrite=cfg.overwrite, reopen=plan.reopen)
        except BaseException:
            self.close()
            raise
        for w in self.writers.values():
            retry = _skips_to_retry(w.skipped, w.skip_sources, cfg)
            if retry:
                w.unskip(retry)
        first = next(iter(self.writers.values()))
        # an utterance is done only when every output has it (outputs are written together, so they agree)
        self.done = set.intersection(*(w.done_ids for w in self.writers.values()))
        self.skipped = dict(first.skipped)
        self.resumed = first.resumed

    def skip(self, utt_id: str, reason: str, source: str | None = None) -> None:
        for w in self.writers.values():
            w.skip(utt_id, reason, source)
        self.skipped[utt_id] = reason

    def finalize(self) -> list[str]:
        return [str(w.finalize()) for w in self.writers.values()]

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


def _skips_to_retry(skipped: dict[str, str], sources: dict[str, Any], cfg: ExtractConfig) -> list[str]:
    """Skipped utterances to try again: all with ``retry_skipped``, else those whose audio file changed."""
    return sorted(skipped) if cfg.retry_skipped else changed_skips(sources)


@dataclass
class _Plan:
    """What to do with one output store: write it (new, resume, overwrite) or ``reopen`` it to retry skips."""

    path: Path
    provenance: dict[str, Any]
    reopen: bool = False


def _plan_outputs(fs: FeatureSet, out_dir: Path, cfg: ExtractConfig, base_prov: dict[str, Any]
                  ) -> tuple[dict[str, _Plan], list[Path]]:
    """Decide per output: up to date (left out of the plan), refuse (another identity), or write/reopen.

    Returns the plans of the outputs that need work and the paths of every output (for the report).
    """
    plans: dict[str, _Plan] = {}
    paths = []
    for name in fs.output_names():
        prov = {**fs.output_provenance(name), **base_prov}
        if fs.modality == "text":
            prov["crop_s"] = None  # the transcript of the whole utterance
        path = store_path(out_dir, shard_output_name(name, cfg.shard))
        paths.append(path)
        if cfg.overwrite or not path.exists():
            plans[name] = _Plan(path, prov)
            continue
        want = store_identity(prov, fs.dims, cfg.store_dtype)
        try:
            with FeatureStore(path) as have:
                diff = have.identity.diff(want)
                retry = _skips_to_retry(have.skipped, have.skip_sources, cfg)
        except StoreError as e:
            raise StoreError(f"{e}\n(this extraction would reuse it: pass --overwrite to rebuild it; the old file "
                             f"stays until the new store is complete)") from None
        if diff:
            raise StoreError(
                f"{path}: a complete store of other features is already there "
                f"({format_diff(diff, 'on disk', 'requested')}); pass --overwrite to replace it (it stays until the "
                f"new store is complete) or choose another --out")
        if retry:
            plans[name] = _Plan(path, prov, reopen=True)
    return plans, paths


def extract_feature(manifest: str | os.PathLike, spec: str | FeatureSet, out_dir: str | os.PathLike,
                    cfg: ExtractConfig | None = None, records: list[ManifestRecord] | None = None,
                    manifest_hash: str | None = None) -> ExtractReport:
    """Extract one feature set (all its outputs) for a manifest into ``out_dir``. See the module docstring."""
    cfg = cfg or ExtractConfig()
    out_dir = Path(out_dir)
    if cfg.on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' or 'fail', got {cfg.on_error!r}")
    fs = build(spec, whisper_window=cfg.whisper_window) if isinstance(spec, str) else spec
    records = records if records is not None else read_manifest(manifest, check_audio=fs.modality != "text")
    spec_str = spec if isinstance(spec, str) else getattr(fs, "spec", fs.name)
    device = resolve_device(cfg.device)
    compute_dtype = "float32" if fs.runs_in_workers else resolve_compute_dtype(cfg.compute_dtype, device)
    base_prov = {
        "spec": spec_str, "crop_s": cfg.crop_s, "sample_rate": TARGET_SR, "manifest": str(manifest),
        "manifest_sha256": manifest_hash or manifest_sha256(manifest), "n_manifest": len(records),
        "compute_dtype": compute_dtype, "device_type": device.split(":")[0],
        "shard": None if cfg.shard is None else f"{cfg.shard[0]}/{cfg.shard[1]}",
        "package_versions": package_versions(),
    }
    plans, final = _plan_outputs(fs, out_dir, cfg, base_prov)
    if not plans:
        return ExtractReport(fs.name, [str(p) for p in final], "up to date")

    stores = _Stores(fs, plans, cfg)
    t0 = time.perf_counter()
    report = ExtractReport(fs.name, [str(p) for p in final], "done")
    try:
        positions = [p for p in select_shard(records, cfg.shard)
                     if records[p].utt_id not in stores.done and records[p].utt_id not in stores.skipped]
        if fs.modality == "text":
            _run_text(fs, records, positions, stores, cfg, device, compute_dtype, report)
        else:
            _run_audio(fs, records, positions, stores, cfg, device, compute_dtype, report)
        stores.finalize()
    finally:
        stores.close()
    report.wall_s = time.perf_counter() - t0
    report.skipped = dict(stores.skipped)
    report.n_skipped = len(stores.skipped)
    return report


def _bad(stores: _Stores, cfg: ExtractConfig, utt_id: str, reason: str, bar: tqdm | None,
         source: str | None = None) -> None:
    if cfg.on_error == "fail":
        raise ExtractionError(f"{utt_id}: {reason}\n(finished batches are kept; rerun with --on-error skip to "
                              f"leave such utterances out, or fix the input and rerun to resume)")
    stores.skip(utt_id, reason, source)
    msg = f"skipped {utt_id}: {reason}"
    if bar is not None:
        bar.write(msg)


def _append(stores: _Stores, metas: list[UtteranceMeta], outputs: dict[str, list[np.ndarray]],
            tokens: list[list[str]] | None, cfg: ExtractConfig, bar: tqdm | None) -> list[int]:
    """Append a batch to every output; non-finite or empty features skip that utterance. Returns kept rows."""
    keep = []
    for j, m in enumerate(metas):
        bad = None
        for name in stores.writers:
            x = np.asarray(outputs[name][j])
            if x.ndim != 2 or x.shape[0] == 0:
                bad = f"{name} produced no frames (shape {x.shape})"
            elif not np.isfinite(x).all():
                bad = f"{name} features contain NaN or Inf"
            if bad:
                break
        if bad is None:
            keep.append(j)
        else:
            _bad(stores, cfg, m.utt_id, bad, bar)
    if keep:
        for name, w in stores.writers.items():  # only the outputs that need work have writers
            w.append([metas[j] for j in keep], [outputs[name][j] for j in keep],
                     [tokens[j] for j in keep] if tokens is not None else None)
    return keep


def _run_audio(fs: FeatureSet, records: list[ManifestRecord], positions: list[int], stores: _Stores,
               cfg: ExtractConfig, device: str, compute_dtype: str, report: ExtractReport) -> None:
    in_workers = bool(getattr(fs, "runs_in_workers", False))
    lengths = {p: _expected_seconds(records[p], cfg.crop_s) * TARGET_SR for p in positions}
    if in_workers:
        # CPU feature sets: small batches spread over the workers (each utterance is encoded on its own)
        per = max(1, min(16, len(positions) // max(1, 4 * max(cfg.workers, 1))))
        order = sorted(positions, key=lambda p: (lengths[p], p))
        batches = [order[i:i + per] for i in range(0, len(order), per)]
    else:
        fs.to(device, compute_dtype)
        budget = cfg.batch_samples or fs.max_batch_samples
        batches = length_batches(positions, lengths, budget, max_items=int(fs.max_batch_items))
    items = [[(p, records[p].audio, records[p].start, records[p].end) for p in b] for b in batches]
    args = (cfg.crop_s, fs.min_samples, getattr(fs, "spec", fs.name) if in_workers else None)
    if in_workers and cfg.workers <= 0:
        _WORKER_FS[args[2]] = fs
    bar = tqdm(total=len(positions), desc=f"extract {fs.name}", unit="utt", disable=not cfg.progress,
               dynamic_ncols=True)
    t0 = time.perf_counter()
    done_batches = 0
    try:
        for decoded in _in_order(items, _decode_batch, args, cfg.workers, cfg.prefetch):
            done_batches += 1
            good = []
            for pos, value, err, _secs in decoded:
                if err is not None:
                    _bad(stores, cfg, records[pos].utt_id, err, bar, source=records[pos].audio)
                else:
                    good.append((pos, value))
            if good:
                metas = [_meta(records[p], p) for p, _ in good]
                if in_workers:
                    outputs = {fs.name: [v for _, v in good]}
                else:
                    try:
                        outputs = fs.encode_outputs([v for _, v in good])
                    except Exception as e:
                        ids = ", ".join(m.utt_id for m in metas[:5])
                        raise ExtractionError(f"{fs.name}: encoding failed on a batch with {ids}…: {e}") from e
                kept = _append(stores, metas, outputs, None, cfg, bar)
                report.n_written += len(kept)
                report.audio_s += sum(_secs for (_p, _v, _e, _secs) in decoded if _e is None)
            bar.update(len(decoded))
            el = time.perf_counter() - t0
            bar.set_postfix(rtf=f"{report.audio_s / el:.0f}x" if el > 0 else "-", skipped=len(stores.skipped))
    except WorkerDied as e:
        pending = [records[p] for b in batches[done_batches:done_batches + max(1, cfg.workers * cfg.prefetch)]
                   for p in b]
        names = ", ".join(f"{r.utt_id} ({r.audio})" for r in pending[:4])
        more = f" and {len(pending) - 4} more" if len(pending) > 4 else ""
        raise ExtractionError(
            f"{fs.name}: a decoding worker died ({e or 'killed or out of memory'}) while decoding one of {names}"
            f"{more}. The {report.n_written} utterances written in this run are committed: rerun the same command "
            f"to resume (with --workers 0 a crashing file shows up as a normal error)") from None
    finally:
        bar.close()


def _run_text(fs: FeatureSet, records: list[ManifestRecord], positions: list[int], stores: _Stores,
              cfg: ExtractConfig, device: str, compute_dtype: str, report: ExtractReport) -> None:
    fs.to(device, compute_dtype)
    bar = tqdm(total=len(positions), desc=f"extract {fs.name}", unit="utt", disable=not cfg.progress,
               dynamic_ncols=True)
    try:
        todo = []
        for p in positions:
            text = (records[p].transcript or "").strip()
            if not text:
                _bad(stores, cfg, records[p].utt_id, "no transcript for a text feature set", bar)
                bar.update(1)
            else:
                todo.append(p)
        todo.sort(key=lambda p: (len(records[p].transcript or ""), p))
        size = 64
        for i in range(0, len(todo), size):
            batch = todo[i:i + size]
            encoded = fs.encode_text([records[p].transcript.strip() for p in batch])
            metas = [_meta(records[p], p) for p in batch]
            kept = _append(stores, metas, {fs.name: [e[1] for e in encoded]}, [e[0] for e in encoded], cfg, bar)
            report.n_written += len(kept)
            bar.update(len(batch))
    finally:
        bar.close()


def extract_all(manifest: str | os.PathLike, specs: Sequence[str], out_dir: str | os.PathLike,
                cfg: ExtractConfig | None = None) -> list[ExtractReport]:
    """Extract several feature sets for one manifest (read, validated and hashed once), one after another.

    Every feature set is built first, so two specs that would write the same store name (``wav2vec:a.pt``
    and ``wav2vec:b.pt`` both write ``wav2vec.h5``) are refused before anything runs. A manifest of
    text-only records (no ``audio``, e.g. from ``ser-manifest csv``) is valid when every feature set is a
    text one (``bert:``); with an audio feature set every record needs an existing audio file.
    """
    records = read_manifest(manifest, check_audio=False)
    specs = list(dict.fromkeys(specs))  # the same spec twice is one feature set
    sets = [build(spec, whisper_window=cfg.whisper_window) for spec in specs]
    audio_sets = [fs.spec for fs in sets if fs.modality != "text"]
    if audio_sets:
        try:
            validate_records(records, str(manifest), check_audio=True)
        except ManifestError as e:
            raise ManifestError(f"{e}\n(audio feature sets {', '.join(audio_sets)} need an audio file for every "
                                f"record; text-only records can only give text features such as bert:)") from None
    owners: dict[str, str] = {}
    for spec, fs in zip(specs, sets):
        for name in fs.output_names():
            if name in owners and owners[name] != spec:
                raise ValueError(f"--feature {owners[name]} and --feature {spec} would both write {name}.h5 in "
                                 f"{out_dir}; extract them into different --out folders")
            owners[name] = spec
    digest = manifest_sha256(manifest)
    return [extract_feature(manifest, fs, out_dir, cfg, records=records, manifest_hash=digest) for fs in sets]
