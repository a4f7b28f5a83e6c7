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
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from ser_common.listing import shorten
from ser_common.manifest import ManifestError, ManifestRecord, manifest_sha256, read_manifest, validate_records
from ser_common.provenance import package_versions
from ser_common.store import UtteranceMeta

from .batching import expected_seconds, length_batches, worker_batches
from .config import ExtractConfig, ExtractReport
from .feature_set import SAMPLE_RATE, FeatureSet
from .outputs import OutputStores, plan_outputs
from .registry import build
from .runtime import resolve_compute_dtype, resolve_device
from .shards import select_shard
from .workers import WorkerDied, _decode_batch, _in_order, use_in_process

__all__ = ["ExtractConfig", "ExtractReport", "ExtractionError", "WorkerDied", "extract_feature", "extract_all"]


class ExtractionError(RuntimeError):
    """The run stopped on a bad utterance (``on_error='fail'``); finished batches stay in the partial store."""


def _meta(rec: ManifestRecord, pos: int) -> UtteranceMeta:
    return UtteranceMeta(utt_id=rec.utt_id, label=rec.label, speaker=rec.speaker, session=rec.session,
                         duration=float(rec.duration) if rec.duration is not None else float("nan"),
                         manifest_index=pos, transcript=rec.transcript)


# ---- the run --------------------------------------------------------------------------------------------------
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
    spec_str = spec if isinstance(spec, str) else fs.spec or fs.name
    device = resolve_device(cfg.device)
    compute_dtype = "float32" if fs.runs_in_workers else resolve_compute_dtype(cfg.compute_dtype, device)
    base_prov = {
        "spec": spec_str, "crop_s": cfg.crop_s, "sample_rate": SAMPLE_RATE, "manifest": str(manifest),
        "manifest_sha256": manifest_hash or manifest_sha256(manifest), "n_manifest": len(records),
        "compute_dtype": compute_dtype, "device_type": device.split(":")[0],
        "shard": None if cfg.shard is None else f"{cfg.shard[0]}/{cfg.shard[1]}",
        "package_versions": package_versions(),
    }
    plans, final = plan_outputs(fs, out_dir, cfg, base_prov)
    if not plans:
        return ExtractReport(fs.name, [str(p) for p in final], "up to date")

    stores = OutputStores(fs, plans, cfg)
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


def _bad(stores: OutputStores, cfg: ExtractConfig, utt_id: str, reason: str, bar: tqdm | None,
         source: str | None = None) -> None:
    if cfg.on_error == "fail":
        raise ExtractionError(f"{utt_id}: {reason}\n(finished batches are kept; rerun with --on-error skip to "
                              f"leave such utterances out, or fix the input and rerun to resume)")
    stores.skip(utt_id, reason, source)
    msg = f"skipped {utt_id}: {reason}"
    if bar is not None:
        bar.write(msg)


def _append(stores: OutputStores, metas: list[UtteranceMeta], outputs: dict[str, list[np.ndarray]],
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


def _run_audio(fs: FeatureSet, records: list[ManifestRecord], positions: list[int], stores: OutputStores,
               cfg: ExtractConfig, device: str, compute_dtype: str, report: ExtractReport) -> None:
    in_workers = fs.runs_in_workers
    lengths = {p: expected_seconds(records[p], cfg.crop_s) * SAMPLE_RATE for p in positions}
    if in_workers:
        batches = worker_batches(positions, lengths, cfg.workers)
    else:
        fs.to(device, compute_dtype)
        budget = cfg.batch_samples or fs.max_batch_samples
        batches = length_batches(positions, lengths, budget, max_items=int(fs.max_batch_items))
    items = [[(p, records[p].audio, records[p].start, records[p].end) for p in b] for b in batches]
    args = (cfg.crop_s, fs.min_samples, fs.spec or fs.name if in_workers else None)
    if in_workers and cfg.workers <= 0:
        use_in_process(args[2], fs)
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
        names = shorten([f"{r.utt_id} ({r.audio})" for r in pending], 4, more=" and {n} more")
        raise ExtractionError(
            f"{fs.name}: a decoding worker died ({e or 'killed or out of memory'}) while decoding one of {names}"
            f". The {report.n_written} utterances written in this run are committed: rerun the same command "
            f"to resume (with --workers 0 a crashing file shows up as a normal error)") from None
    finally:
        bar.close()


def _run_text(fs: FeatureSet, records: list[ManifestRecord], positions: list[int], stores: OutputStores,
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
    cfg = cfg or ExtractConfig()
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
