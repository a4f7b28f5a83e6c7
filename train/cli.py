"""``ser-train``: train and evaluate heads on feature stores (reads stores only, never audio)."""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from .config import SCHEDULES, schedule_config


def _seeds(text: str) -> list[int]:
    """``--seeds`` parsed; a repeated seed runs once (first occurrence kept, order kept), and we say so."""
    from .protocol import dedupe_seeds

    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise click.BadParameter("at least one seed is needed")
    kept, note = dedupe_seeds(seeds)
    if note:
        click.echo(f"note: {note}", err=True)
    return list(kept)


def _os_error_message(e: OSError, path: Any = None, what: str = "the output folder") -> str:
    """One line for an operating-system error while writing outputs: ``path`` (else the error's file), why,
    the fix."""
    where = path if path is not None else e.filename
    if isinstance(e, PermissionError) or e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"{where}: cannot write in {what} ({e.strerror or 'permission denied'}); choose a writable "
                f"folder or fix its permissions")
    if e.errno == errno.ENOSPC:
        return f"{where}: no space left on the device; free some space or choose another folder"
    return f"{where}: {e.strerror or e}"


def _writable_folder(folder: str | os.PathLike, what: str = "the output folder (--out)") -> Path:
    """Check, before any work is done, that ``folder`` can be written (or created) and return it.

    Nothing is created: a file is test-written in ``folder`` or, when it does not exist yet, in its nearest
    existing ancestor (where it would be created). ``what`` names the folder in messages. Raises a one-line
    ``click.ClickException`` for a path that is a file, under a file, read-only or not permitted.
    """
    p = Path(folder)
    probe_dir = p
    while not probe_dir.exists() and probe_dir.parent != probe_dir:
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        if probe_dir == p:
            raise click.ClickException(f"{p}: {what} is a file, not a folder; choose another path")
        raise click.ClickException(f"{p}: cannot create {what}: {probe_dir} is a file; choose another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".ser-train-write-test-", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise click.ClickException(_os_error_message(e, p, what)) from None
    return p


def _writable_file(path: str | os.PathLike, option: str) -> Path:
    """Check the folder of output file ``path`` (``option``) is writable, creating it if needed."""
    p = Path(path)
    _writable_folder(p.parent, f"the folder of {option}")
    return p


def _ks(text: str) -> list[int | None]:
    from .protocol import parse_ks

    try:
        return parse_ks(text)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _k(value: str | None) -> int | None:
    if value is None or value.lower() in ("all", "none"):
        return None
    try:
        k = int(value)
    except ValueError:
        raise click.BadParameter(f"k must be a positive integer or 'all', got {value!r}") from None
    if k <= 0:
        raise click.BadParameter(f"k must be positive, got {k}")
    return k


def training_options(f: Any) -> Any:
    """The schedule and its overrides, shared by cv/curve/tables/fit."""
    opts = [
        click.option("--schedule", type=click.Choice(SCHEDULES), default="paper", show_default=True,
                     help="paper: 100 epochs at lr 1e-4 (Boigne et al.); converged: lr 1e-3 and >= 3000 steps."),
        click.option("--epochs", type=int, help="Override the schedule's epochs (taken literally)."),
        click.option("--lr", type=float, help="Override the learning rate."),
        click.option("--batch-size", type=int, help="Override the batch size (default 16)."),
        click.option("--dropout", type=float, help="Override the dropout probability (default 0.2)."),
        click.option("--hidden", type=int, help="mlp head: hidden width (default 128)."),
        click.option("--layers", type=int, help="mlp head: hidden layers (default 1)."),
        click.option("--lstm-hidden", type=int, help="bimodal head: LSTM size per direction (default 64)."),
        click.option("--audio-stride", type=int, help="bimodal head: average audio frames in windows of N (default 2)."),
        click.option("--no-normalize", is_flag=True, help="Do not standardise features per fold."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _config(kw: dict[str, Any]):
    return schedule_config(kw.pop("schedule"), epochs=kw.pop("epochs"), lr=kw.pop("lr"),
                           batch_size=kw.pop("batch_size"), dropout=kw.pop("dropout"), hidden=kw.pop("hidden"),
                           layers=kw.pop("layers"), lstm_hidden=kw.pop("lstm_hidden"),
                           audio_stride=kw.pop("audio_stride"),
                           normalize=False if kw.pop("no_normalize") else None)


def _overrides(kw: dict[str, Any]) -> dict[str, Any]:
    keys = ("epochs", "lr", "batch_size", "dropout", "hidden", "layers", "lstm_hidden", "audio_stride")
    out = {k: kw.pop(k) for k in keys}
    if kw.pop("no_normalize"):
        out["normalize"] = False
    return out


def _device(device: str) -> str:
    from .trainer import resolve_device

    try:
        return resolve_device(device)
    except (RuntimeError, ValueError) as e:
        raise click.BadParameter(str(e), param_hint="--device") from None


def _set_threads(ctx: click.Context, param: click.Parameter, value: int) -> int:
    import torch

    if value < 1:
        raise click.BadParameter("must be at least 1")
    torch.set_num_threads(value)
    return value


def _load(store: str | tuple[str, ...], text: str | tuple[str, ...] | None, intersect: bool = False):
    """Inputs from one store, or several of one feature set (one per corpus; see ``data.combine_stores``)."""
    from .data import load_inputs

    return load_inputs(store, text or None, intersect=intersect)


def _stores(paths: tuple[str, ...]):
    """One StoreData from one --store, or several joined (one per corpus)."""
    from .data import combine_stores, load_store

    return combine_stores([load_store(p) for p in paths]) if paths else None


STORE_HELP = ("Feature store (.h5). Repeat it to use stores of one feature set from several corpora together "
              "(each utterance keeps its corpus as a <corpus>/ prefix of its id, speaker and session).")
TEXT_HELP = "Text store (for --head bimodal); with several --store, one --text per --store, in the same order."


HEAD_HELP = "Head: mean, meanmax, attention, mlp, or bimodal (needs --text)."

_WORKERS: dict[str, str] = {"value": "auto"}


def _set_workers(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value != "auto" and (not value.isdigit() or int(value) < 1):
        raise click.BadParameter("must be 'auto' or a positive integer")
    _WORKERS["value"] = value
    return value


def _workers(device: str) -> int:
    """--workers resolved: auto = one process per available CPU (max 4) on CPU, 1 on a GPU."""
    from .parallel import auto_workers

    value = _WORKERS["value"]
    return auto_workers(device, n_jobs=1 << 30) if value == "auto" else int(value)


def DEVICE_OPT(f: Any) -> Any:
    """--device, --threads and --workers."""
    f = click.option("--workers", default="auto", show_default=True, callback=_set_workers, expose_value=False,
                     help="Processes that fit the folds of frame-level heads (attention/mlp/bimodal) in "
                          "parallel on CPU; auto = one per available CPU (max 4), 1 on a GPU.")(f)
    f = click.option("--threads", default=1, show_default=True, type=int, callback=_set_threads, expose_value=False,
                     help="PyTorch CPU threads. 1 is the robust default: on a busy machine OpenMP barriers made "
                          "2 threads 25-70x slower for these small heads; raise it on an idle many-core machine.")(f)
    return click.option("--device", default="auto", show_default=True,
                        help="auto (cuda when available), cpu or cuda.")(f)


class _Group(click.Group):
    """Turns the toolkit's expected failures (bad store, mismatched provenance, bad option values, diverged
    training, unwritable outputs) into a one-line ``Error: …`` instead of a traceback (set
    SER_TRAIN_DEBUG=1 for the traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        from ser_common.store import StoreError

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (StoreError, ValueError, FileNotFoundError, RuntimeError) as e:
            if os.environ.get("SER_TRAIN_DEBUG"):
                raise
            raise click.ClickException(str(e)) from e
        except OSError as e:  # e.g. an output folder that became read-only or full during the run
            if os.environ.get("SER_TRAIN_DEBUG"):
                raise
            raise click.ClickException(_os_error_message(e)) from e


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train small emotion-recognition heads on frozen feature stores (after Boigne et al., 2020).

    Reads only HDF5 feature stores written by ser-extract (never audio). Every evaluation is
    speaker-independent cross-validation (leave one session out) and writes a run folder with its
    configuration, provenance, metrics and predictions.

    \b
      ser-train cv      --store S.h5 --head mlp [--k 125] [--seeds 0,1,2]   one CV run, printed summary
      ser-train curve   --store S.h5 --head mlp --ks 25,50,125,all --out D  learning curve + forecast
      ser-train tables  --stores DIR --out results/CORPUS                  the paper's tables and figure
      ser-train fit     --store S.h5 --head mlp --out model.pt            fit one model on all labels
      ser-train predict --model model.pt --store S.h5 -o predictions.csv
      ser-train suggest --model model.pt --store POOL.h5 --n 100 -o suggest.csv   what to label next
      ser-train forecast --curve curve.csv --target-ua 0.7              data needed for a target UA
    """


@main.command()
@click.option("--store", required=True, multiple=True, type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option("--text", multiple=True, type=click.Path(dir_okay=False), help=TEXT_HELP)
@click.option("--head", required=True, help=HEAD_HELP)
@click.option("--k", "k", help="Training utterances per class, drawn from the training folds (default: all).")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds.")
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False), help="Folder for the run folder.")
@click.option("--intersect", is_flag=True, help="Join audio and text stores on their shared utterance ids only.")
@click.option("--frame-level", is_flag=True, help="Train pooled heads on frames (no pooled precompute; slower, same maths).")
@DEVICE_OPT
@training_options
def cv(store: tuple[str, ...], text: tuple[str, ...], head: str, k: str | None, seeds: str, out: str, intersect: bool,
       frame_level: bool, device: str, **kw: Any) -> None:
    """Speaker-independent cross-validation of one head; prints UA/WA/F1 per fold and mean ± std."""
    from tqdm import tqdm

    from .heads import head_class
    from .protocol import cross_validate
    from .reports import format_cv_summary
    from .runs import write_run

    try:
        head_class(head)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--head") from None
    cfg = _config(kw)
    dev = _device(device)
    seed_list = _seeds(seeds)
    _writable_folder(out, "the output folder (--out)")
    inputs = _load(store, text, intersect)
    n_folds = len(set(inputs.audio.sessions[inputs.labelled]))
    with tqdm(total=n_folds * len(seed_list), desc=f"{head} folds", unit="fold", leave=False,
              disable=None) as bar:
        result = cross_validate(inputs, head, cfg, k=_k(k), seeds=seed_list, device=dev,
                                precompute=not frame_level, on_job_done=bar.update, workers=_workers(dev))
    write_run(result, inputs, out)
    click.echo(format_cv_summary(result))


@main.command()
@click.option("--store", "stores", required=True, multiple=True, type=click.Path(dir_okay=False),
              help="Feature store (.h5); repeat for one line per store.")
@click.option("--text", type=click.Path(dir_okay=False), help="Text store (for --head bimodal).")
@click.option("--head", default="mlp", show_default=True, help=HEAD_HELP)
@click.option("--ks", default="25,50,125,250,500,all", show_default=True, help="k per class; 'all' = full data.")
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (curve.csv, curve.png, runs/).")
@click.option("--target-ua", "targets", multiple=True, type=float, help="Forecast the data needed for this UA (fraction; repeatable).")
@DEVICE_OPT
@training_options
def curve(stores: tuple[str, ...], text: str | None, head: str, ks: str, seeds: str, out: str,
          targets: tuple[float, ...], device: str, **kw: Any) -> None:
    """Learning curve: UA against training-set size (k per class), curve.csv + curve.png (+ forecasts)."""
    from tqdm import tqdm

    from .protocol import cross_validate, learning_curve, resolve_ks
    from .reports import format_forecasts, forecasts, plot_curve, write_curve_csv
    from .runs import write_run

    cfg = _config(kw)
    dev = _device(device)
    seed_list, k_list = _seeds(seeds), _ks(ks)
    out_dir = _writable_folder(out, "the output folder (--out)")
    loaded = [_load(s, text) for s in stores]
    total = sum(len(resolve_ks(x, k_list)[0]) for x in loaded)
    rows, notes, warnings = [], [], []
    with tqdm(total=total, desc="curve", unit="run", disable=None) as bar:
        for inputs in loaded:
            def run(k: int | None, inputs=inputs):
                bar.set_postfix_str(f"{inputs.name} k={'all' if k is None else k}")
                r = cross_validate(inputs, head, cfg, k=k, seeds=seed_list, device=dev, workers=_workers(dev))
                write_run(r, inputs, out_dir / "runs", extra={"schedule": cfg.schedule})
                warnings.extend(f"{inputs.name}: {w}" for w in r.warnings)
                bar.update(1)
                return r
            c = learning_curve(inputs, head, cfg, k_list, seed_list, dev, run=run)
            rows.extend({**r, "schedule": cfg.schedule} for r in c.rows())
            notes.extend(f"{inputs.name}: {n}" for n in c.notes)
    write_curve_csv(rows, out_dir / "curve.csv")
    plot_curve(rows, out_dir / "curve.png", title=f"{head} head, schedule {cfg.schedule}")
    click.echo(f"{'store':<28}{'k':>6}{'n_train':>9}{'UA % (fold mean)':>18}{'pooled UA %':>13}")
    from .reports import curve_points

    pooled = curve_points(rows, "ua_pooled")
    for store, pts in curve_points(rows).items():
        for (k, n, mu, sd), (_, _, pmu, _) in zip(pts, pooled[store]):
            click.echo(f"{store:<28}{k:>6}{n:>9.0f}{100 * mu:>12.1f} ± {100 * sd:<4.1f}{100 * pmu:>12.1f}")
    for n in notes:
        click.echo(f"note: {n}")
    for w in dict.fromkeys(warnings):
        click.echo(f"warning: {w}")
    if targets:
        click.echo(format_forecasts(forecasts(rows, targets)))
    click.echo(f"wrote {out_dir / 'curve.csv'}, {out_dir / 'curve.png'} and run folders in {out_dir / 'runs'}")


@main.command()
@click.option("--stores", "stores_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="Folder of stores: lld.h5, a pre-trained audio store, a text store.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder, e.g. results/iemocap.")
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--k", "k", default=125, show_default=True, type=int, help="Utterances per class in table 1.")
@click.option("--ks", default="25,50,125,250,500,all", show_default=True, help="k values of the learning curve.")
@click.option("--also-converged", is_flag=True, help="Add the converged schedule's numbers beside the main schedule's.")
@click.option("--audio", help="Pre-trained audio store to use when the folder has several (file name or stem).")
@click.option("--text", "text_name", help="Text store to use when the folder has several.")
@click.option("--table2-head", default="best", show_default=True, help="Acoustic head of table 2: 'best' (by table 1) or a head name.")
@click.option("--intersect", is_flag=True, help="Join audio and text stores on their shared utterance ids only.")
@DEVICE_OPT
@training_options
def tables(stores_dir: str, out: str, seeds: str, k: int, ks: str, also_converged: bool, audio: str | None,
           text_name: str | None, table2_head: str, intersect: bool, device: str, **kw: Any) -> None:
    """The paper's table 1 (heads × LLD vs pre-trained at k/class), figure 2 (learning curve) and table 2
    (full data: best acoustic head and bimodal) from a folder of stores."""
    from tqdm import tqdm

    from .tables import run_tables

    schedule = kw.pop("schedule")
    overrides = _overrides(kw)
    for s in [schedule] + (["converged"] if also_converged else []):
        schedule_config(s, **overrides)          # refuses bad values (e.g. --lr nan) before any work
    dev = _device(device)
    seed_list = _seeds(seeds)
    out_dir = _writable_folder(out, "the output folder (--out)")
    res = run_tables(stores_dir, out, seeds=seed_list, k=k, schedule=schedule, also_converged=also_converged,
                     device=dev, workers=_workers(dev), ks=_ks(ks), audio=audio, text=text_name, table2_head=table2_head,
                     overrides=overrides, intersect=intersect, progress=tqdm)
    for line in res["skipped_stores"]:
        click.echo(f"warning: {line}", err=True)
    click.echo((out_dir / "table1.md").read_text())
    click.echo((out_dir / "table2.md").read_text())
    click.echo(f"wrote table1.md, table2.md, {', '.join(res['figures'])}, curve.csv, results.json, summary.md "
               f"and {len(res['runs'])} run folders in {out_dir} ({res['seconds']:.0f} s)")


@main.command()
@click.option("--store", required=True, multiple=True, type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option("--text", multiple=True, type=click.Path(dir_okay=False), help=TEXT_HELP)
@click.option("--head", required=True, help=HEAD_HELP)
@click.option("--k", "k", help="Fit on k utterances per class (default: every labelled utterance).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Bundle file to write (e.g. model.pt).")
@click.option("--intersect", is_flag=True)
@DEVICE_OPT
@training_options
def fit(store: tuple[str, ...], text: tuple[str, ...], head: str, k: str | None, seed: int, out: str, intersect: bool, device: str,
        **kw: Any) -> None:
    """Fit one model on a store's labelled utterances and save it as a bundle for predict/suggest."""
    from .bundle import fit_bundle, save_bundle
    from .data import check_classes

    cfg = _config(kw)
    dev = _device(device)
    _writable_file(out, "--out")
    inputs = _load(store, text, intersect)
    check_classes(inputs, "fit a model")
    b = fit_bundle(inputs, head, cfg, k=_k(k), seed=seed, device=dev)
    save_bundle(b, out)
    click.echo(f"fitted {head} on {b.meta['n_train']} utterances of {inputs.name} "
               f"({b.meta['epochs']} epochs, {b.meta['steps']} steps; classes {', '.join(b.classes)}) -> {out}")


def _names(items: Any, limit: int = 8) -> str:
    """``"a, b, c"`` (at most ``limit`` names, then ``…``)."""
    items = [str(x) for x in items]
    return ", ".join(items[:limit]) + (", …" if len(items) > limit else "")


def _check_bundle_finite(b: Any, model: str) -> None:
    """Refuse a bundle whose weights or normalisation statistics hold NaN/Inf (a diverged fit)."""
    import torch

    tensors = {**{f"weights {k}": v for k, v in b.state_dict.items()},
               **{f"normalisation {i}": t for i, s in enumerate(b.standardizers) for t in (s.mean, s.std)}}
    bad = [k for k, v in tensors.items() if torch.is_floating_point(v) and not bool(torch.isfinite(v).all())]
    if bad:
        raise RuntimeError(f"{model}: the model holds NaN/Inf values ({_names(bad, 3)}): it was saved from a "
                           f"diverged fit; refit it (ser-train fit), e.g. with a lower --lr")


@main.command()
@click.option("--model", required=True, type=click.Path(dir_okay=False), help="Bundle from `ser-train fit`.")
@click.option("--store", required=True, multiple=True, type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option("--text", multiple=True, type=click.Path(dir_okay=False), help=TEXT_HELP)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="predictions.csv to write.")
@click.option("--intersect", is_flag=True)
@DEVICE_OPT
def predict(model: str, store: tuple[str, ...], text: tuple[str, ...], output: str, intersect: bool, device: str) -> None:
    """Predict every utterance of a store (columns utt_id, label, pred, p_<class>…). Refuses a store whose
    features differ from the training store's (names the differing provenance keys)."""
    import numpy as np

    from .bundle import bundle_inputs, load_bundle
    from .bundle import predict as predict_bundle
    from .metrics import classification_scores

    dev = _device(device)
    _writable_file(output, "-o/--output")
    b = load_bundle(model)
    _check_bundle_finite(b, model)
    inputs = bundle_inputs(b, _stores(store), _stores(text), intersect=intersect)
    pr = predict_bundle(b, inputs, dev)
    if not np.isfinite(pr.proba).all():
        raise RuntimeError(f"{model}: the model's predictions on {store} are NaN/Inf; nothing was written: "
                           f"refit the model (ser-train fit) or check the store")
    pr.write_csv(output)
    msg = f"wrote {len(pr.utt_ids)} predictions to {output}"
    known = inputs.y >= 0
    labels = inputs.audio.labels
    outside = sorted({str(x) for x in labels[~known] if x})
    n_outside = int(sum(1 for x in labels[~known] if x))
    if known.any():
        s = classification_scores(inputs.y[known], pr.pred[known], len(b.classes))
        msg += (f" (labelled rows: UA {100 * s['ua']:.1f} WA {100 * s['wa']:.1f} F1 {100 * s['f1']:.1f} "
                f"over the {int(known.sum())} rows whose label is among the model's classes")
        if outside:
            msg += f"; {n_outside} rows labelled {_names(outside)} are not among them and not scored"
        msg += ")"
    elif outside:
        msg += (f" (none of the store's labels ({_names(outside)}) are among the model's classes "
                f"({_names(b.classes)}): predictions written, no scores)")
    click.echo(msg)


@main.command()
@click.option("--model", required=True, type=click.Path(dir_okay=False), help="Bundle from `ser-train fit`.")
@click.option("--store", required=True, multiple=True, type=click.Path(dir_okay=False),
              help="Pool store to rank (repeatable: stores of one feature set from several corpora).")
@click.option("--text", multiple=True, type=click.Path(dir_okay=False), help=TEXT_HELP)
@click.option("--n", default=100, show_default=True, type=int, help="How many utterances to suggest.")
@click.option("--strategy", type=click.Choice(["entropy", "margin", "random"]), default="entropy", show_default=True)
@click.option("--balanced", is_flag=True, help="Round-robin across predicted classes.")
@click.option("--exclude", type=click.Path(dir_okay=False, exists=True),
              help="Already labelled ids: .jsonl (utt_id), .csv (utt_id column) or one id a line.")
@click.option("--include-labelled", is_flag=True, help="Also rank rows that already carry a label.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random strategy.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="suggest.csv to write.")
@DEVICE_OPT
def suggest(model: str, store: tuple[str, ...], text: tuple[str, ...], n: int, strategy: str, balanced: bool, exclude: str | None,
            include_labelled: bool, seed: int, output: str, device: str) -> None:
    """Rank unlabelled pool utterances for labelling (most uncertain first): rank, utt_id, score, pred, p_<class>…"""
    from .bundle import bundle_inputs, load_bundle, read_id_list, write_suggestions
    from .bundle import suggest as suggest_rows

    dev = _device(device)
    _writable_file(output, "-o/--output")
    b = load_bundle(model)
    _check_bundle_finite(b, model)
    inputs = bundle_inputs(b, _stores(store), _stores(text))
    rows = suggest_rows(b, inputs, n=n, strategy=strategy, balanced=balanced,
                        exclude=read_id_list(exclude) if exclude else None, include_labelled=include_labelled,
                        seed=seed, device=dev)
    write_suggestions(rows, b.classes, output)
    click.echo(f"wrote {len(rows)} suggestions ({strategy}{', balanced' if balanced else ''}) to {output}")


@main.command()
@click.option("--curve", "curve_csv", required=True, type=click.Path(dir_okay=False), help="curve.csv from curve/tables.")
@click.option("--target-ua", "targets", required=True, multiple=True, type=float, help="Target UA as a fraction (repeatable).")
@click.option("--store", "store_filter", help="Only this store's line of the curve.")
def forecast(curve_csv: str, targets: tuple[float, ...], store_filter: str | None) -> None:
    """Training-set size needed for a target UA, from a log-linear fit of a learning curve (with interval)."""
    from .reports import format_forecasts, forecasts, read_curve_csv

    rows = read_curve_csv(curve_csv)
    if "schedule" in rows[0] and len({r["schedule"] for r in rows}) > 1:
        first = rows[0]["schedule"]
        rows = [r for r in rows if r["schedule"] == first]
        click.echo(f"(using the {first} schedule's points)")
    if store_filter:
        rows = [r for r in rows if r["store"] == store_filter]
        if not rows:
            raise click.BadParameter(f"no rows for store {store_filter!r} in {curve_csv}", param_hint="--store")
    for t in targets:
        if not 0 < t < 1:
            raise click.BadParameter(f"target UA must be a fraction in (0, 1), got {t}", param_hint="--target-ua")
    click.echo(format_forecasts(forecasts(rows, targets)))


def run(argv: list[str] | None = None) -> int:
    """Call the CLI in-process (tests): returns the exit code instead of exiting."""
    try:
        main.main(args=argv, prog_name="ser-train", standalone_mode=False)
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.ClickException as e:
        e.show()
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
