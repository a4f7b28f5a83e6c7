"""``ser-extract``: manifest -> feature stores (run), join shards (merge), feature sets (list), stores (info)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import click

from ser_common.manifest import ManifestError
from ser_common.store import FeatureStore, StoreError


class _DefaultRun(click.Group):
    """``ser-extract --manifest …`` means ``ser-extract run --manifest …``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """``i/N`` -> (i, N); ``auto`` -> from torchrun (RANK/WORLD_SIZE) or a Slurm array; ``None`` -> no sharding."""
    if value is None:
        return None
    if value == "auto":
        env = os.environ
        if "WORLD_SIZE" in env and "RANK" in env:
            return int(env["RANK"]), int(env["WORLD_SIZE"])
        if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
            first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            return int(env["SLURM_ARRAY_TASK_ID"]) - first, int(env["SLURM_ARRAY_TASK_COUNT"])
        raise click.BadParameter("--shard auto needs torchrun (RANK, WORLD_SIZE) or a Slurm array "
                                 "(SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT)")
    m = re.fullmatch(r"(\d+)/(\d+)", value)
    if not m or not int(m[1]) < int(m[2]):
        raise click.BadParameter(f"--shard must be i/N with 0 <= i < N (or 'auto'), got {value!r}")
    return int(m[1]), int(m[2])


def _workers(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """``--workers``: ``auto`` (:func:`ser_common.cpus.auto_workers`) or a count (0 = in the main process)."""
    from ser_common.cpus import parse_workers

    try:
        return parse_workers(value, minimum=0)
    except ValueError as e:
        raise click.BadParameter(str(e).removeprefix("--workers ")) from None


def _whisper_window(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--whisper-window`` checked at parse time (padded, native or seconds), kept as given."""
    from .hf import parse_whisper_window

    try:
        parse_whisper_window(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


@click.group(cls=_DefaultRun, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Extract frame-level features of a manifest's utterances into HDF5 feature stores.

    \b
    ser-extract --manifest emodb.jsonl --feature lld --feature hf:../shared/models/whisper-base-encoder@4 \\
                --feature bert:../shared/models/minilm-l6-v2 --out stores/emodb
    ser-extract --manifest iemocap.jsonl --feature wav2vec:wav2vec_large.pt --out stores/iemocap --device cuda
    ser-extract --manifest m.jsonl --feature wav2vec --out stores/x --shard 2/8     # one of 8 processes
    ser-extract merge stores/x                                                    # join the shards
    ser-extract list                                                              # feature specs
    ser-extract info stores/x                                                     # what a store holds

    A finished store is never recomputed (stages are idempotent); an interrupted one resumes.
    """


@main.command()
@click.option("--manifest", "-m", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="JSONL manifest from ser-manifest.")
@click.option("--feature", "-f", "features", multiple=True,
              help="Feature spec, repeatable: lld | wav2vec[:CKPT] | bert[:MODEL] | hf:MODEL[@LAYER[,LAYER…]|@all]. "
                   "Required without --like. With --like it only says where this machine keeps the model's "
                   "encoder (e.g. hf:/your/copy/whisper-base-encoder): it replaces the bundle's spec of the same "
                   "kind (hf, bert, wav2vec, lld), an hf one without @LAYER gets the model's layer, and it is "
                   "refused, naming the differing fields, unless its features equal the model's (weights by "
                   "sha256, layer, crop, dims, settings).")
@click.option("--like", "like", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="MODEL",
              help="Extract exactly the features the model bundle MODEL (from `ser-train fit`) was trained on: "
                   "every training store it records (audio, plus text for a bimodal model) with the spec, layer, "
                   "crop and store dtype read from the bundle (an explicit --crop/--no-crop/--store-dtype is used "
                   "as given). Each store's identity is checked against the bundle's before anything is "
                   "extracted; then the stores and the `ser-train predict` command to run next are printed. "
                   "A spec that cannot be loaded here (its model folder is elsewhere on this machine) is reported "
                   "with the weights sha256 the model needs: point --feature at your copy.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Stores folder: one <feature>.h5 per feature set (per layer for a layer sweep).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.")
@click.option("--crop", "crop_s", type=float, default=5.0, show_default=True,
              help="Keep the first CROP seconds of each utterance (the paper: 5 s; with --like: the model's).")
@click.option("--no-crop", is_flag=True, help="Keep whole utterances (with --like: only if the model did).")
@click.option("--workers", default="auto", show_default=True, callback=_workers,
              help="Decoding (and LLD) processes: auto = one per available CPU (at most 4); 0 = in the main process.")
@click.option("--on-error", type=click.Choice(["skip", "fail"]), default="skip", show_default=True,
              help="Bad audio or transcript: report and leave the utterance out, or stop the run.")
@click.option("--shard", default=None, help="i/N: process a deterministic 1/N of the manifest; 'auto' "
              "reads torchrun's RANK/WORLD_SIZE or a Slurm array.")
@click.option("--store-dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True,
              help="dtype on disk (with --like: the training store's unless given).")
@click.option("--compute-dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto",
              show_default=True, help="GPU autocast dtype (auto: bf16 where supported); CPU computes in fp32.")
@click.option("--batch-seconds", type=float, default=None,
              help="Padded seconds of audio per encoder batch (default: the feature set's own budget).")
@click.option("--overwrite", is_flag=True, help="Recompute complete stores (each old store stays until its "
              "replacement is complete) and discard partial ones of other settings.")
@click.option("--retry-skipped", is_flag=True, help="Retry every utterance skipped by an earlier run (without it, "
              "only those whose audio file changed since are retried).")
@click.option("--whisper-window", default="padded", show_default=True, callback=_whisper_window,
              help="Input window of Whisper encoders (hf: specs of Whisper models; other feature sets ignore it): "
                   "padded (30 s, as Whisper was trained), native (each clip its own length: fastest, other "
                   "features) or seconds (e.g. 10: in between). Recorded in the store's identity and name.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def run(manifest: Path, features: tuple[str, ...], like: Path | None, out: Path, device: str, crop_s: float,
        no_crop: bool, workers: int, on_error: str, shard: str | None, store_dtype: str, compute_dtype: str,
        batch_seconds: float | None, overwrite: bool, retry_skipped: bool, whisper_window: str, quiet: bool) -> None:
    """Extract feature sets of MANIFEST into OUT (the default command); with --like MODEL, the ones MODEL expects."""
    from .config import ExtractConfig
    from .feature_set import SAMPLE_RATE
    from .pipeline import ExtractionError, extract_all

    if not features and like is None:
        raise click.UsageError("give at least one --feature SPEC, or --like MODEL to extract what a fitted model "
                               "expects")
    cfg = ExtractConfig(crop_s=None if no_crop else crop_s, device=device, compute_dtype=compute_dtype,
                        store_dtype=store_dtype, workers=workers, on_error=on_error, shard=parse_shard(shard),
                        overwrite=overwrite, retry_skipped=retry_skipped, progress=not quiet,
                        whisper_window=whisper_window,
                        batch_samples=int(batch_seconds * SAMPLE_RATE) if batch_seconds else None)
    like_result = None
    try:
        if like is not None:
            from .like import extract_like

            from click.core import ParameterSource

            ctx = click.get_current_context()
            typed = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
            given = {opt for opt, params in (("crop_s", ("crop_s", "no_crop")), ("store_dtype", ("store_dtype",)),
                                             ("whisper_window", ("whisper_window",)))
                     if any(ctx.get_parameter_source(p) in typed for p in params)}
            like_result = extract_like(like, manifest, out, cfg, features=features, explicit=given)
            reports = like_result.reports
        else:
            reports = extract_all(manifest, list(features), out, cfg)
    except (ManifestError, StoreError, ExtractionError, ValueError, RuntimeError, OSError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"\n{'feature':<34} {'status':<10} {'written':>8} {'skipped':>8} {'audio s':>9} {'wall s':>8} {'x realtime':>10}")
    for r in reports:
        rtf = f"{r.realtime_factor:>10.1f}" if r.audio_s > 0 and r.wall_s > 0 else f"{'—':>10}"
        click.echo(f"{r.feature:<34} {r.status:<10} {r.n_written:>8} {r.n_skipped:>8} {r.audio_s:>9.1f} "
                   f"{r.wall_s:>8.1f} {rtf}")
        for utt, why in list(r.skipped.items())[:10]:
            click.echo(f"    skipped {utt}: {why}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "extract_log.jsonl", "a", encoding="utf-8") as f:
            for r in reports:
                f.write(json.dumps({"argv": sys.argv, **r.to_dict()}, default=str) + "\n")
    except OSError as e:
        click.echo(f"warning: could not append to {out / 'extract_log.jsonl'} ({e.strerror}); the stores are written",
                   err=True)
    if like_result is not None:
        _echo_like(like_result)


def _echo_like(result) -> None:
    """The stores ``--like`` wrote, and the ``ser-train predict`` command to run next (a ``next:`` line)."""
    n = len(result.stores)
    click.echo(f"\n--like {result.bundle.path} ({result.bundle.head} head): {n} store{'s' * (n > 1)} with the "
               f"features it was trained on")
    for s in result.stores:
        what = "written" if s.report.status == "done" else s.report.status
        click.echo(f"  {s.expected.modality:<5} {s.path}  ({what}; {s.spec})")
    if result.shard is not None:
        click.echo(f"next, once every shard is done: ser-extract merge {result.out}, then")
    click.echo(f"next: {result.predict_command()}")


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Merged store (when INPUTS are shard files); default: <name>.h5 beside the shards.")
@click.option("--keep-shards", is_flag=True, help="Do not delete the shard files after a successful merge.")
def merge(inputs: tuple[Path, ...], out: Path | None, keep_shards: bool) -> None:
    """Join shard stores (from --shard i/N) into one store, checking they share provenance.

    INPUTS is a stores folder (every complete set of <name>.shard-i-of-N.h5 is merged into <name>.h5) or
    a list of shard files with -o.
    """
    from ser_common.merge import merge_stores

    from .shards import find_shards

    if len(inputs) == 1 and inputs[0].is_dir():
        try:
            found = find_shards(inputs[0])
        except StoreError as e:
            raise click.ClickException(str(e)) from e
        groups = {str(inputs[0] / f"{name}.h5"): paths for name, paths in found.items()}
        if not groups:
            raise click.ClickException(f"{inputs[0]}: no shard stores (*.shard-i-of-N.h5) found")
    else:
        if out is None:
            raise click.ClickException("give -o OUT.h5 when merging a list of shard files")
        groups = {str(out): list(inputs)}
    for target, paths in groups.items():
        try:
            merged = merge_stores(paths, target)
        except StoreError as e:
            raise click.ClickException(str(e)) from e
        with FeatureStore(merged) as s:
            click.echo(f"{merged}: {len(s)} utterances from {len(paths)} shards")
        if not keep_shards:
            for p in paths:
                Path(p).unlink()


@main.command(name="list")
def list_features() -> None:
    """The feature specs this installation knows."""
    from .registry import describe

    for prefix, text in sorted(describe().items()):
        click.echo(f"{prefix:<10} {text}")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def info(paths: tuple[Path, ...]) -> None:
    """Summarise stores (a folder or .h5 files): utterances, frames, the feature identity and bookkeeping.

    A corrupt store is reported and the others are still listed (exit status 1 if any was unreadable)."""
    files = [f for p in paths for f in (sorted(p.glob("*.h5")) if p.is_dir() else [p])]
    failed = 0
    for f in files:
        try:
            with FeatureStore(f) as s:
                prov = s.provenance
                click.echo(f"{f}: {len(s)} utterances, {int(s.offsets[-1])} frames x {s.dims} ({prov.get('dtype')}), "
                           f"{len(s.skipped)} skipped")
                click.echo("  identity")
                for key, value in s.identity.to_dict().items():
                    if key == "settings":
                        for k, v in s.identity.settings_dict().items():
                            click.echo(f"    settings.{k:<19} {v}")
                    else:
                        click.echo(f"    {key:<28} {value}")
                click.echo("  bookkeeping")
                for key in ("feature", "spec", "encoder", "manifest", "shard", "device_type", "created_utc"):
                    value = prov.get(key, s.attrs.get(key))
                    if value not in (None, ""):
                        click.echo(f"    {key:<28} {value}")
        except StoreError as e:
            failed += 1
            click.echo(f"{f}: {e}")
    if failed:
        raise SystemExit(1)
