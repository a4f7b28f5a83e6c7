"""``ser-train``: train and evaluate heads on feature stores (reads stores only, never audio)."""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from .config import schedule_config


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


def _flag(f: Any) -> str | None:
    """The option name of TrainConfig field ``f`` (``mlp_hidden`` -> ``--mlp-hidden``; ``None``: no flag)."""
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def training_options(f: Any = None, *, schedule: str = "paper") -> Any:
    """One option per :class:`train.config.TrainConfig` field, generated from the fields (name, type,
    choices, help), shared by every command that trains. Not given = the schedule's value. ``schedule``: the
    default of ``--schedule`` (``@training_options(schedule="converged")``)."""
    if f is None:
        return lambda g: training_options(g, schedule=schedule)
    from dataclasses import MISSING, fields

    from .config import TrainConfig

    defaults = TrainConfig()
    opts = []
    for fld in fields(TrainConfig):
        flag = _flag(fld)
        if flag is None:
            continue
        meta, default = fld.metadata, getattr(defaults, fld.name)
        if fld.name == "schedule":
            opts.append(click.option(flag, type=click.Choice(meta["choices"]), default=schedule, show_default=True,
                                     help=meta["help"]))
            continue
        help_text = f"{meta['help']} Default: the schedule's ({default})."
        if isinstance(default, bool):
            opts.append(click.option(f"{flag}/--no-{flag[2:]}", default=None, help=help_text))
        elif "choices" in meta:
            opts.append(click.option(flag, type=click.Choice(meta["choices"]), help=help_text))
        else:
            kind = float if isinstance(default, float) else int
            opts.append(click.option(flag, type=kind, help=help_text))
        assert fld.default is not MISSING
    for opt in reversed(opts):
        f = opt(f)
    return f


def _overrides(kw: dict[str, Any]) -> dict[str, Any]:
    """The training options given on the command line, popped from ``kw`` (config field -> value)."""
    from dataclasses import fields

    from .config import TrainConfig

    out = {}
    for fld in fields(TrainConfig):
        if fld.name != "schedule" and _flag(fld) is not None:
            value = kw.pop(fld.name)
            if value is not None:
                out[fld.name] = value
    return out


def _schedules(kw: dict[str, Any], also_converged: bool) -> tuple[list[str], dict[str, Any]]:
    """``--schedule`` (+ ``converged`` with ``--also-converged``) and the options given, popped from ``kw``;
    every schedule's config is made once here, so bad values (``--lr nan``) fail before any work."""
    from .config import run_schedules

    schedules = run_schedules(kw.pop("schedule"), also_converged)
    overrides = _overrides(kw)
    for s in schedules:
        schedule_config(s, **overrides)
    return schedules, overrides


def _audio_only(head: str, what: str) -> None:
    """Refuse a bimodal head where ``what`` (a command) trains on one audio store."""
    from .heads import head_class

    if head_class(head).bimodal:
        raise click.BadParameter(f"{what} takes an audio-only head, not {head!r}", param_hint="--head")


def _config(kw: dict[str, Any]):
    """The run's TrainConfig: the ``--schedule`` with the options given (popped from ``kw``)."""
    schedule = kw.pop("schedule")
    return schedule_config(schedule, **_overrides(kw))


def _device(device: str) -> str:
    from .jobs import resolve_device

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


def _load(store: str | tuple[str, ...], text: str | tuple[str, ...] | None, intersect: bool = False,
          layer_sum: bool = False):
    """Inputs from one store, or several of one feature set (one per corpus; see ``data.combine_stores``);
    with ``layer_sum`` each --store names the layer stores of one @all extraction (``train.layer_stores``)."""
    from .inputs import load_inputs

    return load_inputs(store, text or None, intersect=intersect, layer_sum=layer_sum)


def _store_list(paths: tuple[str, ...], layer_sum: bool = False) -> list:
    """The StoreData of each --store (with ``layer_sum``: each one's layer stores, stacked)."""
    from .data import load_store

    if not layer_sum:
        return [load_store(p) for p in paths]
    from .layer_stores import expand_layer_paths, stack_layers

    return [stack_layers([load_store(q) for q in expand_layer_paths(p)]) for p in paths]


def _stores(paths: tuple[str, ...], layer_sum: bool = False):
    """One StoreData from one --store, or several joined (one per corpus)."""
    from .data import combine_stores

    return combine_stores(_store_list(paths, layer_sum)) if paths else None


def _distinct_corpora(paths: tuple[str, ...], option: str) -> None:
    """Refuse (before any loading) a store given twice, or two stores extracted from one manifest (the same
    corpus: a cross-corpus score on the training utterances would be no test). Reads only the stores'
    metadata; ``option`` names the options in the message."""
    from ser_common.store import FeatureStore

    seen: dict[str, str] = {}
    for p in paths:
        with FeatureStore(p) as fs:
            key = fs.provenance.get("manifest_sha256") or str(Path(p).resolve())
        if key in seen:
            raise click.UsageError(f"{p} and {seen[key]} hold the same corpus (the same file, or stores extracted "
                                   f"from one manifest): {option} take one store per corpus; to test within a "
                                   f"corpus use `ser-train cv` without --test-store")
        seen[key] = p


def _with_layer_sum(cfg: Any, inputs: Any, layer_sum: bool) -> Any:
    """``cfg`` with ``layer_sum`` = the number of layers stacked in the audio store (1 without --layer-sum)."""
    from dataclasses import replace

    from .layer_stores import n_stacked_layers

    return replace(cfg, layer_sum=n_stacked_layers(inputs.audio)) if layer_sum else cfg


LAYER_SUM_HELP = ("Every layer at once: each --store names the layer stores of one `ser-extract --feature "
                  "hf:MODEL@all` extraction (a glob such as 'stores/x/hf-whisper-base-encoder-l*.h5', or one of "
                  "them), stacked and combined by learned softmax weights before the head (reported per run).")


STORE_HELP = ("Feature store (.h5). Repeat it to use stores of one feature set from several corpora together "
              "(each utterance keeps its corpus as a <corpus>/ prefix of its id, speaker and session).")
TEXT_HELP = "Text store (for --head bimodal); with several --store, one --text per --store, in the same order."


def _head(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--head`` checked against the registry before any store is read."""
    from .heads import head_class

    try:
        head_class(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


HEAD_HELP = ("Head: mean, meanmax, attention, mlp, bimodal or bimodal-xu (the bimodal heads need --text; "
             "bimodal-xu is Xu et al.'s configuration: additive alignment, every audio frame, no projection).")
TEST_STORE_HELP = ("Cross-corpus test: train on every labelled utterance of the --store corpora and test on this "
                   "store's, with the training classes (other labels are reported, not scored). Repeatable: each "
                   "test corpus is scored on its own and all together ('pooled'). Its features must match.")

SUGGEST_STRATEGIES = ("entropy", "margin", "random", "kcenter", "diverse-entropy")
"""``train.suggest.STRATEGIES``, spelled here so that ``--help`` does not import torch (a test keeps them equal)."""


def _check_workers(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--workers`` checked by the one rule of ``ser_common.cpus`` (kept as given: ``auto`` depends on the
    device, resolved by :func:`_workers`)."""
    from ser_common.cpus import parse_workers

    try:
        parse_workers(value)
    except ValueError as e:
        raise click.BadParameter(str(e).removeprefix("--workers ")) from None
    return value


def _workers(device: str, value: str) -> int:
    """--workers resolved: auto = one process per available CPU (max 4) on CPU, 1 on a GPU."""
    from .parallel import auto_workers

    return auto_workers(device, n_jobs=1 << 30) if value == "auto" else int(value)


def DEVICE_OPT(f: Any) -> Any:
    """--device and --threads."""
    f = click.option("--threads", default=1, show_default=True, type=int, callback=_set_threads, expose_value=False,
                     help="PyTorch CPU threads. 1 is the robust default: on a busy machine OpenMP barriers made "
                          "2 threads 25-70x slower for these small heads; raise it on an idle many-core machine.")(f)
    return click.option("--device", default="auto", show_default=True,
                        help="auto (cuda when available), cpu or cuda.")(f)


def WORKERS_OPT(f: Any) -> Any:
    """--workers, for the commands that fit models."""
    return click.option("--workers", default="auto", show_default=True, callback=_check_workers,
                        help="Processes that fit the folds of frame-level heads (attention/mlp/bimodal) in "
                             "parallel on CPU; auto = one per available CPU (max 4), 1 on a GPU.")(f)


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
      ser-train cv      --store A.h5 --store B.h5 --test-store C.h5 --head mean   train on A+B, test on C
      ser-train loco    --store A.h5 --store B.h5 --store C.h5 --out D   leave one corpus out (loco.md)
      ser-train curve   --store S.h5 --head mlp --ks 25,50,125,all --out D  learning curve + forecast
      ser-train tables  --stores DIR --out results/CORPUS                  the paper's tables and figure
      ser-train fit     --store S.h5 --head mlp -o model.pt               fit one model on all labels
      ser-train predict --model model.pt --store S.h5 -o predictions.csv
      ser-train suggest --model model.pt --store POOL.h5 --n 100 -o suggest.csv   what to label next
      ser-train forecast --curve curve.csv --target-ua 0.7 [--backtest]  data needed for a target UA
      ser-train cv      --store 'stores/x/hf-MODEL-l*.h5' --layer-sum --head mean   every layer at once
      ser-train sweep   --store 'stores/x/hf-MODEL-l*.h5' --out D        UA per layer, and the layer sum
      ser-train simulate --store S.h5 --out D --balanced               does active learning beat random?
    """


@main.command()
@click.option("--store", required=True, multiple=True, type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option("--text", multiple=True, type=click.Path(dir_okay=False), help=TEXT_HELP)
@click.option("--head", required=True, callback=_head, help=HEAD_HELP)
@click.option("--k", "k", help="Training utterances per class, drawn from the training folds (default: all).")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds.")
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False), help="Folder for the run folder.")
@click.option("--intersect", is_flag=True, help="Join audio and text stores on their shared utterance ids only.")
@click.option("--frame-level", is_flag=True, help="Train pooled heads on frames (no pooled precompute; slower, same maths).")
@click.option("--test-store", multiple=True, type=click.Path(dir_okay=False), help=TEST_STORE_HELP)
@click.option("--test-text", multiple=True, type=click.Path(dir_okay=False),
              help="Text store of each --test-store (bimodal head; with --text), in the same order.")
@click.option("--layer-sum", is_flag=True, help=LAYER_SUM_HELP)
@WORKERS_OPT
@DEVICE_OPT
@training_options
def cv(store: tuple[str, ...], text: tuple[str, ...], head: str, k: str | None, seeds: str, out: str, intersect: bool,
       frame_level: bool, test_store: tuple[str, ...], test_text: tuple[str, ...], layer_sum: bool, device: str, workers: str,
       **kw: Any) -> None:
    """Speaker-independent cross-validation of one head; prints UA/WA/F1 per fold and mean ± std.

    With --test-store: a cross-corpus test instead (train on every labelled utterance of the --store
    corpora, score on the test corpora; "fold" is then the test corpus)."""
    from tqdm import tqdm

    from .experiment import run_experiments
    from .protocol import cross_corpus, plan_cv
    from .reports import format_cv_summary
    from .runs import write_run

    cfg = _config(kw)
    dev = _device(device)
    seed_list = _seeds(seeds)
    _writable_folder(out, "the output folder (--out)")
    if test_text and len(test_text) != len(test_store):
        raise click.UsageError(f"{len(test_store)} --test-store but {len(test_text)} --test-text: give one text "
                               f"store per test store, in the same order")
    if test_store and not layer_sum:
        _distinct_corpora(store + test_store, "--store and --test-store")
    inputs = _load(store, text, intersect, layer_sum)
    cfg = _with_layer_sum(cfg, inputs, layer_sum)
    if test_store:
        from .inputs import load_inputs

        test = load_inputs(test_store, test_text or None, classes=inputs.classes, intersect=intersect,
                           layer_sum=layer_sum)
        with tqdm(total=len(seed_list), desc=f"{head} models", unit="model", leave=False, disable=None) as bar:
            result = cross_corpus(inputs, test, head, cfg, k=_k(k), seeds=seed_list, device=dev,
                                  precompute=not frame_level, on_job_done=bar.update, workers=_workers(dev, workers))
        write_run(result, inputs, out)
        click.echo(format_cv_summary(result))
        return
    plan = plan_cv(inputs, head, cfg, _k(k), seed_list)
    with tqdm(total=len(plan.jobs), desc=f"{head} folds", unit="fold", leave=False, disable=None) as bar:
        (result,) = run_experiments([plan], out, dev, _workers(dev, workers), precompute=not frame_level,
                                    on_job_done=bar.update)
    click.echo(format_cv_summary(result))


@main.command()
@click.option("--store", required=True, multiple=True, type=click.Path(dir_okay=False),
              help="Feature store of one corpus (.h5); repeat it, at least twice, with stores of one feature set.")
@click.option("--text", multiple=True, type=click.Path(dir_okay=False), help=TEXT_HELP)
@click.option("--head", default="mean", show_default=True, callback=_head, help=HEAD_HELP)
@click.option("--k", "k", help="Training utterances per class, drawn from the training corpora (default: all).")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: loco.md, loco.json and runs/ (one run folder per held-out corpus).")
@click.option("--in-corpus", is_flag=True,
              help="Also cross-validate inside each held-out corpus (speaker-independent), for the last column.")
@click.option("--intersect", is_flag=True, help="Join audio and text stores on their shared utterance ids only.")
@click.option("--frame-level", is_flag=True, help="Train pooled heads on frames (no pooled precompute; slower, same maths).")
@WORKERS_OPT
@DEVICE_OPT
@training_options
def loco(store: tuple[str, ...], text: tuple[str, ...], head: str, k: str | None, seeds: str, out: str,
         in_corpus: bool, intersect: bool, frame_level: bool, device: str, workers: str, **kw: Any) -> None:
    """Leave one corpus out: for each --store, train on the other corpora and test on it (loco.md, loco.json)."""
    import json

    from tqdm import tqdm

    from .data import load_store, make_inputs
    from .protocol import cross_validate, leave_one_corpus_out
    from .markdown import loco_markdown
    from .reports import format_cv_summary, loco_rows
    from .runs import command_line, write_run

    if len(store) < 2:
        raise click.UsageError(f"loco needs at least two --store (one per corpus), got {len(store)}; with one "
                               f"corpus use `ser-train cv`")
    if text and len(text) != len(store):
        raise click.UsageError(f"{len(store)} --store but {len(text)} --text: give one text store per --store, "
                               f"in the same order")
    cfg = _config(kw)
    dev = _device(device)
    seed_list, k_value = _seeds(seeds), _k(k)
    out_dir = _writable_folder(out, "the output folder (--out)")
    _distinct_corpora(store, "loco's --store")
    audio = [load_store(p) for p in store]
    texts = [load_store(p) for p in text] if text else None
    opts = dict(k=k_value, seeds=seed_list, device=dev, precompute=not frame_level, workers=_workers(dev, workers))
    summaries, in_cv = [], {}
    with tqdm(total=len(store) * len(seed_list), desc=f"{head} loco", unit="model", leave=False,
              disable=None) as bar:
        def done(result, train) -> None:
            write_run(result, train, out_dir / "runs", extra={"schedule": cfg.schedule, "loco": list(store)})
            summaries.append(format_cv_summary(result))
        results = leave_one_corpus_out(audio, texts, head, cfg, intersect=intersect, on_result=done,
                                       on_job_done=bar.update, **opts)
    if in_corpus:
        for i, r in enumerate(results):
            name = "+".join(r.test_corpora)
            try:
                inputs = make_inputs(audio[i], texts[i] if texts else None, intersect=intersect)
                cv_result = cross_validate(inputs, head, cfg, **opts)
            except ValueError as e:     # e.g. a corpus with one session: no speaker-independent folds
                in_cv[name] = f"no in-corpus cv: {e}"
                continue
            write_run(cv_result, inputs, out_dir / "runs", extra={"schedule": cfg.schedule, "loco_in_corpus": name})
            in_cv[name] = cv_result
            summaries.append(format_cv_summary(cv_result))
    rows = loco_rows(results, in_cv)
    table = loco_markdown(rows, several_seeds=len(seed_list) > 1)
    title = (f"Leave one corpus out: head {head}, schedule {cfg.schedule}, seeds {','.join(map(str, seed_list))}, "
             f"{'all training data' if k_value is None else f'k={k_value} per class'}; features {audio[0].name}")
    notes = [f"{row['held_out']}: {row['in_corpus_note']}" for row in rows if row["in_corpus_note"]]
    (out_dir / "loco.md").write_text(f"{title}\n\n{table}\n" + "".join(f"\nnote: {n}" for n in notes)
                                     + ("\n" if notes else ""))
    (out_dir / "loco.json").write_text(json.dumps(
        {"head": head, "schedule": cfg.schedule, "seeds": seed_list, "k": k_value, "stores": list(store),
         "text_stores": list(text), "features": audio[0].name, "in_corpus": in_corpus, "command": command_line(),
         "rows": rows}, indent=2) + "\n")
    for text_block in summaries:
        click.echo(text_block + "\n")
    click.echo(f"{title}\n\n{table}")
    for n in notes:
        click.echo(f"note: {n}")
    click.echo(f"wrote {out_dir / 'loco.md'}, {out_dir / 'loco.json'} and run folders in {out_dir / 'runs'}")


FORECAST_METRIC_CHOICES = ("ua_pooled", "ua")
FORECAST_METRIC_HELP = ("UA the forecast fits: ua_pooled (all held-out predictions of a run together; honest also "
                        "when a fold lacks a class) or ua (the mean of the per-fold UAs). Curves written before "
                        "pooled scores were recorded fall back to ua, with a note.")


def _curve_lines(stores: tuple[str, ...], texts: tuple[str, ...]) -> list[Any]:
    """The lines of ``ser-train curve``: one Inputs per feature set among the --store paths.

    Stores are grouped by feature identity (:class:`ser_common.identity.FeatureIdentity` in the ``features``
    scope, the check :func:`train.data.combine_stores` makes), in order of first appearance: the stores of
    one group (one feature set from several corpora) are joined into one line named after the corpora
    (``<store>+<corpus>+<corpus>``); stores of other feature sets are lines of their own. ``texts``: none,
    one text store for every line (a line of one store each), or one per --store in the same order.
    """
    from ser_common.identity import FeatureIdentity

    from .data import combine_stores, load_store, make_inputs

    if texts and len(texts) not in (1, len(stores)):
        raise click.UsageError(f"{len(stores)} --store but {len(texts)} --text: give one text store for every "
                               f"line, or one per --store in the same order")
    seen: dict[Path, str] = {}
    for p in stores:
        if Path(p).resolve() in seen:
            raise click.UsageError(f"{p}: given twice as --store (as {seen[Path(p).resolve()]}); give each store once")
        seen[Path(p).resolve()] = p
    audio = [load_store(p) for p in stores]
    ids = [FeatureIdentity.from_provenance(a.provenance) for a in audio]
    groups: list[list[int]] = []
    for i, ident in enumerate(ids):
        group = next((g for g in groups if not ids[g[0]].diff(ident, scope="features")), None)
        if group is None:
            groups.append([i])
        else:
            group.append(i)
    text = [load_store(p) for p in texts]
    lines = []
    for g in groups:
        if len(text) == len(audio) and len(texts) > 0:
            t = combine_stores([text[i] for i in g])
        elif text:
            if len(g) > 1:
                raise click.UsageError(f"{', '.join(stores[i] for i in g)} are one feature set from several "
                                       f"corpora, joined into one line: give one --text per --store, in the same order")
            t = text[0]
        else:
            t = None
        lines.append(make_inputs(combine_stores([audio[i] for i in g]), t))
    return lines


@main.command()
@click.option("--store", "stores", required=True, multiple=True, type=click.Path(dir_okay=False),
              help="Feature store (.h5); repeatable: one line per feature set, stores of one feature set from "
                   "several corpora are joined into one line.")
@click.option("--text", multiple=True, type=click.Path(dir_okay=False),
              help="Text store (for --head bimodal): one for every line, or one per --store in the same order.")
@click.option("--head", default="mlp", show_default=True, callback=_head, help=HEAD_HELP)
@click.option("--ks", default="25,50,125,250,500,all", show_default=True, help="k per class; 'all' = full data.")
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (curve.csv, curve.png, runs/).")
@click.option("--target-ua", "targets", multiple=True, type=float, help="Forecast the data needed for this UA (fraction; repeatable).")
@click.option("--metric", type=click.Choice(FORECAST_METRIC_CHOICES), default="ua_pooled", show_default=True,
              help=FORECAST_METRIC_HELP)
@WORKERS_OPT
@DEVICE_OPT
@training_options
def curve(stores: tuple[str, ...], text: tuple[str, ...], head: str, ks: str, seeds: str, out: str,
          targets: tuple[float, ...], metric: str, device: str, workers: str, **kw: Any) -> None:
    """Learning curve: UA against training-set size (k per class), curve.csv + curve.png (+ forecasts).

    One line per feature set: stores of one feature set from several corpora are joined into one line
    (named after the corpora); stores of other feature sets are separate lines."""
    from tqdm import tqdm

    from .experiment import RunCache
    from .protocol import CurveResult, resolve_ks
    from .reports import (curve_ks, curve_series, describe_metric, format_forecasts, forecasts, plot_curve,
                          write_curve_csv)

    cfg = _config(kw)
    dev = _device(device)
    seed_list, k_list = _seeds(seeds), _ks(ks)
    for t in targets:
        if not 0 < t < 1:
            raise click.BadParameter(f"target UA must be a fraction in (0, 1), got {t}", param_hint="--target-ua")
    out_dir = _writable_folder(out, "the output folder (--out)")
    loaded = _curve_lines(stores, text)
    for x in loaded:
        if len(x.audio.provenance.get("corpora") or []) > 1:
            click.echo(f"note: line {x.name} joins one feature set from {len(x.audio.provenance['corpora'])} "
                       f"corpora ({', '.join(x.audio.provenance['combined_from'])})")
    cache = RunCache(out_dir, seed_list, dev, workers=_workers(dev, workers))
    kept = {x.name: resolve_ks(x, k_list) for x in loaded}
    experiments = [(x, head, k, cfg) for x in loaded for k in kept[x.name][0]]
    with tqdm(total=sum(cache.n_jobs(e[0]) for e in experiments), desc="curve", unit="fit", disable=None) as bar:
        cache.progress = bar
        cache.run_many(experiments)
    rows, notes, warnings = [], [], []
    for x in loaded:
        c = CurveResult(head, x.name, [cache.run(x, head, k, cfg) for k in kept[x.name][0]], kept[x.name][1])
        rows.extend({**r, "schedule": cfg.schedule} for r in c.rows())
        notes.extend(f"{x.name}: {n}" for n in c.notes)
        warnings.extend(f"{x.name}: {w}" for r in c.results for w in r.warnings)
    write_curve_csv(rows, out_dir / "curve.csv")
    plot_curve(rows, out_dir / "curve.png", title=f"{head} head, schedule {cfg.schedule}")
    from .reports import curve_points

    width = max([28] + [len(x.name) + 2 for x in loaded])
    click.echo(f"{'store':<{width}}{'k':>6}{'n_train':>9}{'UA % (fold mean)':>18}{'pooled UA %':>13}")
    pooled = curve_points(rows, "ua_pooled")
    for store, pts in curve_points(rows).items():
        for (k, n, mu, sd), (_, _, pmu, _) in zip(pts, pooled[store]):
            click.echo(f"{store:<{width}}{k:>6}{n:>9.0f}{100 * mu:>12.1f} ± {100 * sd:<4.1f}{100 * pmu:>12.1f}")
    for n in notes:
        click.echo(f"note: {n}")
    for w in dict.fromkeys(warnings):
        click.echo(f"warning: {w}")
    if targets:
        series, series_notes = curve_series(rows, metric)
        click.echo(f"forecasts {describe_metric(metric, series)}:")
        for n in series_notes:
            click.echo(f"note: {n}")
        click.echo(format_forecasts(forecasts(rows, targets, metric), curve_ks(rows)))
    click.echo(f"wrote {out_dir / 'curve.csv'}, {out_dir / 'curve.png'} and run folders in {out_dir / 'runs'}")


@main.command()
@click.option("--stores", "stores_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="Folder of stores: lld.h5, a pre-trained audio store, a text store.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder, e.g. results/iemocap.")
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--k", "k", default="125", show_default=True, help="Training utterances per class in table 1 ('all': every one).")
@click.option("--ks", default="25,50,125,250,500,all", show_default=True, help="k values of the learning curve.")
@click.option("--also-converged", is_flag=True, help="Add the converged schedule's numbers beside the main schedule's.")
@click.option("--audio", help="Pre-trained audio store to use when the folder has several: its path, file name or stem.")
@click.option("--text", "text", help="Text store to use when the folder has several: its path, file name or stem.")
@click.option("--table2-head", default="best", show_default=True, help="Acoustic head of table 2: 'best' (by table 1) or a head name.")
@click.option("--intersect", is_flag=True, help="Join audio and text stores on their shared utterance ids only.")
@DEVICE_OPT
@WORKERS_OPT
@training_options
def tables(stores_dir: str, out: str, seeds: str, k: str, ks: str, also_converged: bool, audio: str | None,
           text: str | None, table2_head: str, intersect: bool, device: str, workers: str, **kw: Any) -> None:
    """The paper's table 1 (heads × LLD vs pre-trained at k/class), figure 2 (learning curve) and table 2
    (full data: best acoustic head and bimodal) from a folder of stores."""
    from tqdm import tqdm

    from .tables import run_tables

    schedules, overrides = _schedules(kw, also_converged)
    schedule = schedules[0]
    dev = _device(device)
    seed_list = _seeds(seeds)
    out_dir = _writable_folder(out, "the output folder (--out)")
    res = run_tables(stores_dir, out, seeds=seed_list, k=_k(k), schedule=schedule, also_converged=also_converged,
                     device=dev, workers=_workers(dev, workers), ks=_ks(ks), audio=audio, text=text, table2_head=table2_head,
                     overrides=overrides, intersect=intersect, progress=tqdm)
    for line in res["skipped_stores"]:
        click.echo(f"warning: {line}", err=True)
    click.echo((out_dir / "table1.md").read_text())
    click.echo((out_dir / "table2.md").read_text())
    click.echo(f"wrote table1.md, table2.md, {', '.join(res['figures'])}, curve.csv, results.json, summary.md "
               f"and {len(res['runs'])} run folders in {out_dir} ({res['seconds']:.0f} s)")


@main.command()
@click.option("--store", required=True, type=click.Path(dir_okay=False), help="Feature store (.h5) of a labelled corpus.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: curve.csv, summary.csv, summary.md, active_learning.png, run.json.")
@click.option("--head", default="mean", show_default=True, callback=_head, help=HEAD_HELP)
@click.option("--strategies", default=",".join(SUGGEST_STRATEGIES), show_default=True,
              help="Comma-separated strategies to compare (random is the reference of the gain).")
@click.option("--balanced", is_flag=True, help="Also run entropy and margin with balanced selection.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated seeds.")
@click.option("--start", default=10, show_default=True, type=click.IntRange(min=1),
              help="Labelled utterances per class at the start.")
@click.option("--step", default=20, show_default=True, type=click.IntRange(min=1), help="Utterances labelled per round.")
@click.option("--budget", default=240, show_default=True, type=click.IntRange(min=1),
              help="Stop at this many labelled utterances (per fold).")
@DEVICE_OPT
@training_options(schedule="converged")
def simulate(store: str, out: str, head: str, strategies: str, balanced: bool, seeds: str, start: int, step: int,
             budget: int, device: str, **kw: Any) -> None:
    """Active-learning simulation on a labelled corpus: in every speaker-independent fold, grow the labelled
    set round by round with each strategy and score held-out speakers; UA and the gain over random against
    the labelled-set size (summary.md, active_learning.png)."""
    from .markdown import format_simulation
    from .simulate import run_simulation

    _audio_only(head, "the simulation")
    cfg = _config(kw)
    if _device(device) != "cpu":
        click.echo("note: the simulation fits on the CPU (small pooled heads; rounds are sequential)", err=True)
    names = [x for x in strategies.split(",") if x]
    unknown = [x for x in names if x not in SUGGEST_STRATEGIES]
    if unknown:
        raise click.BadParameter(f"unknown strategies {unknown}; choose from {', '.join(SUGGEST_STRATEGIES)}",
                                 param_hint="--strategies")
    out_dir = _writable_folder(out, "the output folder (--out)")
    res = run_simulation(store, out_dir, cfg, head=head, strategies=names, balanced=balanced, seeds=_seeds(seeds),
                         start=start, step=step, budget=budget, on_progress=lambda m: click.echo(m, err=True))
    click.echo(format_simulation(res["summary"]))
    click.echo(f"wrote {out_dir} in {res['wall_s']:.0f} s (per strategy, all seeds: "
               + ", ".join(f"{k} {v:.0f} s" for k, v in res["strategy_wall_s"].items()) + ")")


@main.command()
@click.option("--store", required=True,
              help="The layer stores of one `ser-extract --feature hf:MODEL@all` extraction: a glob such as "
                   "'stores/x/hf-whisper-base-encoder-l*.h5', or one of them (its …-l<N>.h5 siblings are found).")
@click.option("--head", default="mean", show_default=True, callback=_head, help=HEAD_HELP)
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated seeds.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: sweep.md, sweep.json and runs/ (e.g. results/ravdess/layer_sweep).")
@click.option("--also-converged", is_flag=True, help="Add the converged schedule's column beside the main schedule's.")
@DEVICE_OPT
@WORKERS_OPT
@training_options
def sweep(store: str, head: str, seeds: str, out: str, also_converged: bool, device: str, workers: str,
          **kw: Any) -> None:
    """Layer sweep: the head on every layer store of an @all extraction, and the learned layer sum beside
    them (sweep.md: UA per layer and schedule, pooled UA, the sum's layer weights)."""
    from tqdm import tqdm

    from .sweep import run_sweep

    _audio_only(head, "the sweep")
    schedules, overrides = _schedules(kw, also_converged)
    dev = _device(device)
    out_dir = _writable_folder(out, "the output folder (--out)")
    res = run_sweep(store, out_dir, head=head, seeds=_seeds(seeds), schedules=schedules, overrides=overrides,
                    device=dev, workers=_workers(dev, workers), progress=tqdm)
    click.echo((out_dir / "sweep.md").read_text())
    click.echo(f"wrote sweep.md, sweep.json and {len(res['rows']) * len(schedules)} run "
               f"folders in {out_dir} ({res['seconds']:.0f} s)")


@main.command()
@click.option("--store", required=True, multiple=True, type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option("--text", multiple=True, type=click.Path(dir_okay=False), help=TEXT_HELP)
@click.option("--head", required=True, callback=_head, help=HEAD_HELP)
@click.option("--k", "k", help="Fit on k utterances per class (default: every labelled utterance).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Bundle file to write (e.g. model.pt).")
@click.option("--intersect", is_flag=True)
@click.option("--calibrate/--no-calibrate", default=True, show_default=True,
              help="Fit a softmax temperature on held-out predictions of a speaker-independent CV of the same "
                   "head on the same rows (one more fit per session; predict/suggest then give calibrated "
                   "probabilities). By default skipped with a warning when the rows allow no such CV (e.g. one "
                   "session); an explicit --calibrate then fails instead.")
@click.option("--layer-sum", is_flag=True, help=LAYER_SUM_HELP)
@WORKERS_OPT
@DEVICE_OPT
@training_options
def fit(store: tuple[str, ...], text: tuple[str, ...], head: str, k: str | None, seed: int, output: str, intersect: bool,
        calibrate: bool, layer_sum: bool, device: str, workers: str, **kw: Any) -> None:
    """Fit one model on a store's labelled utterances and save it as a bundle for predict/suggest (with a
    softmax temperature fitted by cross-validation unless --no-calibrate)."""
    from click.core import ParameterSource

    from .bundle import fit_bundle, save_bundle
    from .data import check_classes

    cfg = _config(kw)
    dev = _device(device)
    _writable_file(output, "-o/--output")
    inputs = _load(store, text, intersect, layer_sum)
    cfg = _with_layer_sum(cfg, inputs, layer_sum)
    check_classes(inputs, "fit a model")
    explicit = click.get_current_context().get_parameter_source("calibrate") == ParameterSource.COMMANDLINE

    def not_calibrated(why: Exception) -> None:
        if explicit:
            raise click.ClickException(f"cannot calibrate: {why}; pass --no-calibrate to save an uncalibrated "
                                       f"model") from None
        click.echo(f"warning: not calibrated ({why}); the model's probabilities are uncalibrated (T = 1)",
                   err=True)

    if calibrate:
        from .protocol import speaker_independent_folds

        try:
            speaker_independent_folds(inputs)   # cheap check before any fit
        except ValueError as e:
            not_calibrated(e)
            calibrate = False
    b = fit_bundle(inputs, head, cfg, k=_k(k), seed=seed, device=dev)
    click.echo(f"fitted {head} on {b.meta['n_train']} utterances of {inputs.name} "
               f"({b.meta['epochs']} epochs, {b.meta['steps']} steps; classes {', '.join(b.classes)})")
    if calibrate:
        from tqdm import tqdm

        from .calibration import calibrate_bundle, describe

        with tqdm(desc=f"calibrating ({head} CV)", unit="fold", leave=False, disable=None) as bar:
            try:
                calibrate_bundle(b, inputs, dev, _workers(dev, workers), on_job_done=bar.update)
            except ValueError as e:
                not_calibrated(e)
        for w in (b.calibration or {}).get("warnings", []):
            click.echo(f"warning (calibration CV): {w}", err=True)
        if b.calibration:
            click.echo(describe(b))
    save_bundle(b, output)
    click.echo(f"wrote {output}")


def _names(items: Any, limit: int = 8) -> str:
    """``"a, b, c"`` (at most ``limit`` names, then ``…``)."""
    from ser_common.listing import shorten

    return shorten(items, limit, more=", …")


def _probability(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """--abstain-below: ``None`` or a probability strictly between 0 and 1 (``nan`` refused)."""
    if value is not None and not 0 < value < 1:
        raise click.BadParameter(f"must be a probability in (0, 1), got {value}; e.g. 0.6 leaves the rows whose "
                                 f"top calibrated probability is below 0.6 to a person")
    return value


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
@click.option("--metrics", "metrics_file", type=click.Path(dir_okay=False),
              help="Scores file to write for labelled rows (default: <output stem>.metrics.json, with "
                   "<output stem>.confusion.csv, when any row is labelled with one of the model's classes). "
                   "Given explicitly, a store without such rows is refused.")
@click.option("--abstain-below", type=float, callback=_probability,
              help="Mark rows whose top (calibrated) probability is below P (in (0, 1), e.g. 0.6) for a person: "
                   "an abstain column true/false; pred keeps the model's guess. Prints the coverage and the "
                   "accuracy of the kept labelled rows.")
@DEVICE_OPT
def predict(model: str, store: tuple[str, ...], text: tuple[str, ...], output: str, intersect: bool,
            metrics_file: str | None, abstain_below: float | None, device: str) -> None:
    """Predict every utterance of a store (columns utt_id, label, pred, p_<class>…). Refuses a store whose
    features differ from the training store's (names the differing provenance keys). Rows labelled with
    one of the model's classes are scored: UA/WA/F1, the confusion matrix and what was not scored go to
    <output stem>.metrics.json and <output stem>.confusion.csv (or --metrics)."""
    import numpy as np

    from .bundle import bundle_inputs, load_bundle
    from .bundle import predict as predict_bundle
    from .metrics import classification_scores
    from .runs import command_line, metrics_paths, prediction_metrics, store_files, write_prediction_metrics

    dev = _device(device)
    _writable_file(output, "-o/--output")
    m_paths = metrics_paths(output, metrics_file)
    _writable_file(m_paths[0], "--metrics")
    b = load_bundle(model)
    _check_bundle_finite(b, model)
    inputs = bundle_inputs(b, _stores(store, b.config.layer_sum > 1), _stores(text), intersect=intersect)
    if metrics_file and not (inputs.y >= 0).any():
        raise click.ClickException(f"{metrics_file}: nothing to score: no utterance of {_names(store)} is labelled "
                                   f"with one of the model's classes ({_names(b.classes)}); drop --metrics to "
                                   f"only predict")
    pr = predict_bundle(b, inputs, dev)
    if not np.isfinite(pr.proba).all():
        raise RuntimeError(f"{model}: the model's predictions on {store} are NaN/Inf; nothing was written: "
                           f"refit the model (ser-train fit) or check the store")
    if abstain_below is not None:
        from .calibration import abstention

        pr.abstain = abstention(pr.proba, abstain_below)
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
    if known.any():
        scores = prediction_metrics(b.classes, labels, inputs.y, pr.pred, model=str(Path(model).resolve()),
                                    head=b.head, stores=[f for s in inputs.stores for f in store_files(s)],
                                    predictions=str(Path(output).resolve()), command=command_line())
        write_prediction_metrics(scores, m_paths)
        msg += f"; scores in {m_paths[0]} and {m_paths[1]}"
    click.echo(msg)
    from .calibration import abstention_summary, describe

    click.echo(describe(b))
    if pr.abstain is not None:
        click.echo(abstention_summary(pr.abstain, inputs.y, pr.pred, abstain_below, len(b.classes)))


@main.command()
@click.option("--model", required=True, type=click.Path(dir_okay=False), help="Bundle from `ser-train fit`.")
@click.option("--store", required=True, multiple=True, type=click.Path(dir_okay=False),
              help="Pool store to rank (repeatable: stores of one feature set from several corpora).")
@click.option("--text", multiple=True, type=click.Path(dir_okay=False), help=TEXT_HELP)
@click.option("--n", default=100, show_default=True, type=click.IntRange(min=1), help="How many utterances to suggest.")
@click.option("--strategy", type=click.Choice(SUGGEST_STRATEGIES),
              default="entropy", show_default=True,
              help="entropy/margin: most uncertain first; random; kcenter: farthest (standardised pooled features) "
                   "from everything labelled or picked; diverse-entropy: most uncertain of each k-means cluster.")
@click.option("--balanced", is_flag=True, help="Round-robin across predicted classes (entropy, margin, random).")
@click.option("--max-per-speaker", type=click.IntRange(min=1), default=None,
              help="At most this many suggestions per speaker (the store's speakers).")
@click.option("--exclude", type=click.Path(dir_okay=False, exists=True),
              help="Already labelled ids: .jsonl (utt_id), .csv (utt_id column) or one id a line.")
@click.option("--include-labelled", is_flag=True, help="Also rank rows that already carry a label.")
@click.option("--manifest", "manifests", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Manifest giving the audio paths (one per --store, in order); default: the manifest each "
                   "store's provenance names, when it is found.")
@click.option("--format", "fmt", type=click.Choice(["csv", "label-studio"]), default="csv", show_default=True,
              help="csv: suggest.csv; label-studio: a tasks .json to import (plus its labelling config .xml).")
@click.option("--ls-document-root", type=click.Path(exists=True, file_okay=False),
              help="--format label-studio: the folder Label Studio serves the audio from "
                   "(LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); audio paths are made relative to it.")
@click.option("--ls-url-prefix", help="--format label-studio: audio URLs become URL/<path relative to "
                                      "--ls-document-root> instead of Label Studio's local-files URLs.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random and diverse-entropy strategies.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="suggest.csv (or tasks .json for --format label-studio) to write.")
@DEVICE_OPT
def suggest(model: str, store: tuple[str, ...], text: tuple[str, ...], n: int, strategy: str, balanced: bool,
            max_per_speaker: int | None, exclude: str | None, include_labelled: bool, manifests: tuple[str, ...],
            fmt: str, ls_document_root: str | None, ls_url_prefix: str | None, seed: int, output: str,
            device: str) -> None:
    """Rank pool utterances for labelling: rank, utt_id, score, pred, speaker, audio, p_<class>…

    Candidates are the rows without a label (not in --exclude). The audio column (absolute paths) is read
    from the manifest each store was extracted from (its provenance), or from --manifest.
    """
    from .audio_paths import audio_paths
    from .bundle import bundle_inputs, load_bundle
    from .data import combine_stores
    from .suggest import DIVERSITY_STRATEGIES, exclude_note, read_id_list, shortfall_note, write_suggestions
    from .suggest import suggest as suggest_rows

    if balanced and strategy in DIVERSITY_STRATEGIES:
        raise click.UsageError(f"--balanced (round-robin over predicted classes) applies to entropy, margin and "
                               f"random; {strategy} spreads its picks over the feature space already: drop --balanced")
    if manifests and len(manifests) != len(store):
        raise click.UsageError(f"{len(manifests)} --manifest for {len(store)} --store: give one manifest per "
                               f"--store, in the same order")
    if fmt == "label-studio" and ls_document_root is None:
        raise click.UsageError("--format label-studio needs --ls-document-root DIR (the folder Label Studio "
                               "serves the audio from: its LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)")
    if fmt == "csv" and (ls_document_root or ls_url_prefix):
        raise click.UsageError(f"{'--ls-document-root' if ls_document_root else '--ls-url-prefix'} only applies "
                               f"to --format label-studio")
    dev = _device(device)
    _writable_file(output, "-o/--output")
    b = load_bundle(model)
    _check_bundle_finite(b, model)
    loaded = _store_list(store, b.config.layer_sum > 1)
    audio_store = combine_stores(loaded)
    inputs = bundle_inputs(b, audio_store, _stores(text))
    excl = read_id_list(exclude) if exclude else None
    paths, notes = audio_paths(loaded, list(manifests) or None,
                               audio_store.provenance.get("corpora") if len(loaded) > 1 else None)
    rows = suggest_rows(b, inputs, n=n, strategy=strategy, balanced=balanced, exclude=excl,
                        include_labelled=include_labelled, seed=seed, device=dev, max_per_speaker=max_per_speaker,
                        audio=paths)
    for note in notes if rows else []:  # where the audio column comes from (or why it is empty)
        click.echo(f"note: {note}", err=True)
    how = strategy + (", balanced" if balanced else "") + (f", ≤{max_per_speaker}/speaker" if max_per_speaker else "")
    if fmt == "label-studio":
        from .label_studio import label_config_path, write_label_config, write_label_studio_tasks

        if not rows:
            raise click.ClickException(f"{output}: no suggestion to write: "
                                       f"{shortfall_note(inputs, n, 0, excl, include_labelled, max_per_speaker)}")
        try:
            write_label_studio_tasks(rows, b.classes, output, document_root=ls_document_root,
                                     url_prefix=ls_url_prefix, model_version=Path(model).name)
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        config = write_label_config(b.classes, label_config_path(output))
        click.echo(f"wrote {len(rows)} Label Studio tasks ({how}) to {output}; labelling config: {config}")
    else:
        write_suggestions(rows, b.classes, output)
        click.echo(f"wrote {len(rows)} suggestions ({how}) to {output}")
    for note in [exclude_note(inputs, excl or set()),
                 shortfall_note(inputs, n, len(rows), excl, include_labelled, max_per_speaker)]:
        if note:
            click.echo(f"note: {note}", err=True)


@main.command()
@click.option("--curve", "curve_csv", required=True, type=click.Path(dir_okay=False), help="curve.csv from curve/tables.")
@click.option("--target-ua", "targets", multiple=True, type=float,
              help="Target UA as a fraction (repeatable; needed unless --backtest).")
@click.option("--store", "store_filter", help="Only this store's line of the curve.")
@click.option("--schedule", "schedule", help="Only this schedule's points (default: the file's first schedule).")
@click.option("--metric", type=click.Choice(FORECAST_METRIC_CHOICES), default="ua_pooled", show_default=True,
              help=FORECAST_METRIC_HELP)
@click.option("--backtest", is_flag=True,
              help="Check the forecast on the curve itself: per line, fit on the smaller sizes, forecast the largest "
                   "measured size and print the error (UA points, size ratio).")
def forecast(curve_csv: str, targets: tuple[float, ...], store_filter: str | None, schedule: str | None, metric: str,
             backtest: bool) -> None:
    """Training-set size needed for a target UA, from a log-linear fit of a learning curve (with interval).

    Forecasts beyond 3x the largest measured size are refused with the size to measure next (a log-linear
    curve does not saturate); --backtest checks the fit against the curve's own largest size."""
    from .forecast import MAX_EXTRAPOLATION
    from .reports import (backtests, curve_ks, curve_series, describe_metric, fill_pooled_from_runs, format_backtests,
                          format_forecasts, forecasts, read_curve_csv)

    if not targets and not backtest:
        raise click.UsageError("give at least one --target-ua, or --backtest")
    for t in targets:
        if not 0 < t < 1:
            raise click.BadParameter(f"target UA must be a fraction in (0, 1), got {t}", param_hint="--target-ua")
    rows = read_curve_csv(curve_csv)
    schedules = list(dict.fromkeys(r.get("schedule") or "" for r in rows))
    if schedule is not None:
        rows = [r for r in rows if (r.get("schedule") or "") == schedule]
        if not rows:
            raise click.BadParameter(f"no rows of schedule {schedule!r} in {curve_csv} (it has "
                                     f"{', '.join(repr(x) for x in schedules)})", param_hint="--schedule")
    elif len(schedules) > 1:
        rows = [r for r in rows if (r.get("schedule") or "") == schedules[0]]
        click.echo(f"(using the {schedules[0]} schedule's points; --schedule to choose)")
    if store_filter:
        rows = [r for r in rows if r["store"] == store_filter]
        if not rows:
            raise click.BadParameter(f"no rows for store {store_filter!r} in {curve_csv}", param_hint="--store")
    what = " and ".join(x for x in ("forecasts" if targets else "", "backtest" if backtest else "") if x)
    filled = fill_pooled_from_runs(rows, Path(curve_csv).parent) if metric == "ua_pooled" else 0
    if filled:
        click.echo(f"note: {curve_csv} has no pooled UA columns (written before they were recorded): the pooled "
                   f"UA of the {filled} rows used was recomputed from their run folders' predictions.csv")
    series, notes = curve_series(rows, metric)
    click.echo(f"{what} {describe_metric(metric, series)}"
               + (f"; forecasts reach at most {MAX_EXTRAPOLATION:g}x the largest measured size" if targets else "")
               + ":")
    for n in notes:
        click.echo(f"note: {n}")
    if targets:
        click.echo(format_forecasts(forecasts(rows, targets, metric), curve_ks(rows)))
    if backtest:
        click.echo(format_backtests(backtests(rows, metric)))


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
