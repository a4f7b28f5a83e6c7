"""Fitting frame-level jobs in parallel worker processes (CPU).

Frame-level heads (``attention``, ``mlp``, ``bimodal``) train one job (fold × seed) at a time and are
compute-bound on one core, so independent jobs go to forked worker processes, each with one PyTorch
thread (processes do not wait on each other the way OpenMP threads do on a busy machine). Children inherit
the loaded stores copy-on-write, so nothing is re-read or copied; each returns its state dict. A job's
randomness depends only on its own seed, so results are identical to fitting the jobs one by one.

The tasks of one pool may come from several experiments (different inputs, heads, configs: the runs of
``ser-train tables`` share one pool, :mod:`train.fitting`), so no worker idles while another run's last
fold finishes; the caller passes them in the order to start them (longest first balances best).

Fork is used only where it is available and safe enough: Linux/macOS ``fork`` start method, CPU device,
and a parent running one intra-op thread (GNU OpenMP is not fork-safe once it has started a thread pool).
Otherwise :func:`fit_parallel` is not used and jobs run serially.

Failures reach the caller as they would serially: an exception in a worker (e.g.
:class:`train.jobs.TrainingDiverged`, ``ValueError``) is sent back and re-raised in the parent with the
same type and message (the worker's traceback is attached as a note), and the other workers are stopped at
once. A worker that dies without an answer (killed, out of memory) gives a ``RuntimeError`` naming the job
instead of a hang.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import traceback
from dataclasses import dataclass
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Sequence

import torch

from ser_common.cpus import MAX_AUTO_WORKERS
from ser_common.cpus import auto_workers as cpu_workers

from .config import TrainConfig
from .data import Inputs
from .heads import build_head
from .jobs import FittedModel, Job, head_in_dims
from .normalization import Standardizer
from .trainer import train_frame

_STATE: tuple[Any, ...] | None = None


def auto_workers(device: str, n_jobs: int, cap: int = MAX_AUTO_WORKERS) -> int:
    """Worker processes to use: 1 on a GPU; else :func:`ser_common.cpus.auto_workers` (one per available
    CPU, at most ``cap``), and never more than ``n_jobs``."""
    if device != "cpu":
        return 1
    return max(1, min(cpu_workers(cap), n_jobs))


def can_fork(device: str) -> bool:
    return device == "cpu" and "fork" in mp.get_all_start_methods() and torch.get_num_threads() == 1


def _init_worker() -> None:
    torch.set_num_threads(1)


class _Failure:
    """An exception raised in a worker, made safe to send back (re-raised by the parent)."""

    def __init__(self, exc: BaseException):
        self.trace = traceback.format_exc()
        try:
            pickle.loads(pickle.dumps(exc))
            self.exc: BaseException = exc
        except Exception:  # noqa: BLE001 - an exception that does not pickle travels as its text
            self.exc = RuntimeError(f"{type(exc).__name__}: {exc}")

    def reraise(self) -> None:
        self.exc.add_note(f"raised in a worker process:\n{self.trace}")
        raise self.exc


@dataclass(eq=False)
class FitTask:
    """One frame-level fit: ``job`` of head ``head_name`` with ``cfg`` on ``inputs`` (its training view)."""

    inputs: Inputs
    head_name: str
    cfg: TrainConfig
    job: Job


def _fit_one(i: int) -> tuple[int, Any, list[dict[str, torch.Tensor]], int, int, float]:
    assert _STATE is not None
    tasks, device = _STATE
    t = tasks[i]
    try:
        m = train_frame(t.inputs, t.head_name, t.cfg, t.job, device)
    except Exception as e:  # noqa: BLE001 - sent back whole, re-raised by the parent
        return i, _Failure(e), [], 0, 0, 0.0
    state = {k: v.detach().clone() for k, v in m.head.state_dict().items()}
    return i, state, [s.state() for s in m.standardizers], m.epochs, m.steps, m.seconds


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: cancel queued jobs and terminate the workers (running jobs are abandoned)."""
    processes = list(getattr(pool, "_processes", {}).values())   # private, but stable since Python 3.8
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=5)


def fit_parallel(tasks: Sequence[FitTask], device: str, workers: int,
                 on_done: Callable[[int], None] | None = None,
                 meanwhile: Callable[[], None] | None = None,
                 on_fitted: Callable[[int, FittedModel], None] | None = None) -> list[FittedModel]:
    """:func:`train.trainer.train_frame` for every task in ``workers`` forked processes, started in the order
    given; results in task order.

    ``meanwhile()`` runs in this process once every task is submitted (work of the parent that would
    otherwise leave a core idle: the pooled heads' fits); ``on_fitted(i, model)`` is called here as task
    ``i``'s model arrives (scoring and writing a run whose last fit it was, while the workers go on).
    The first failing job's exception, or one raised by ``meanwhile``/``on_fitted``, is re-raised here
    (same type and message) and the workers are stopped; see the module docstring.
    """
    global _STATE
    tasks = list(tasks)
    _STATE = (tasks, device)
    out: list[Any] = [None] * len(tasks)
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_init_worker)
    finished = False
    try:
        pending = {pool.submit(_fit_one, i): i for i in range(len(tasks))}
        if meanwhile is not None:
            meanwhile()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                t = tasks[pending.pop(fut)]
                try:
                    i, state, stds, epochs, steps, seconds = fut.result()
                except BrokenProcessPool:
                    raise RuntimeError(
                        f"a worker process fitting head {t.head_name!r} ({t.job.describe()}) "
                        f"died without an answer (killed, or out of memory?); rerun with fewer --workers "
                        f"(--workers 1 fits the jobs one by one in this process)") from None
                if isinstance(state, _Failure):
                    state.reraise()
                head = build_head(t.head_name, head_in_dims(t.head_name, t.inputs), len(t.inputs.classes), t.cfg)
                head.load_state_dict(state)
                head.eval()
                out[i] = FittedModel(t.head_name, head.to(device),
                                     tuple(Standardizer(s["mean"], s["std"]) for s in stds),
                                     t.inputs.classes, epochs, steps, seconds=seconds)
                if on_done:
                    on_done(1)
                if on_fitted:
                    on_fitted(i, out[i])
        finished = True
    finally:
        _STATE = None
        if finished:
            pool.shutdown(wait=True)
        else:
            _stop(pool)
    return out
