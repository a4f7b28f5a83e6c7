"""Fitting frame-level jobs in parallel worker processes (CPU).

Frame-level heads (``attention``, ``mlp``, ``bimodal``) train one job (fold × seed) at a time and are
compute-bound on one core, so independent jobs go to forked worker processes, each with one PyTorch
thread (processes do not wait on each other the way OpenMP threads do on a busy machine). Children inherit
the loaded stores copy-on-write, so nothing is re-read or copied; each returns its state dict. A job's
randomness depends only on its own seed, so results are identical to fitting the jobs one by one.

Fork is used only where it is available and safe enough: Linux/macOS ``fork`` start method, CPU device,
and a parent running one intra-op thread (GNU OpenMP is not fork-safe once it has started a thread pool).
Otherwise :func:`fit_parallel` is not used and jobs run serially.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Any, Callable, Sequence

import torch

from .config import TrainConfig
from .data import Inputs
from .heads import build_head
from .normalization import Standardizer

_STATE: tuple[Any, ...] | None = None


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_workers(device: str, n_jobs: int, cap: int = 4) -> int:
    """Worker processes to use: 1 on a GPU; else one per available CPU (at most ``cap`` and ``n_jobs``)."""
    if device != "cpu":
        return 1
    return max(1, min(cap, available_cpus(), n_jobs))


def can_fork(device: str) -> bool:
    return device == "cpu" and "fork" in mp.get_all_start_methods() and torch.get_num_threads() == 1


def _init_worker() -> None:
    torch.set_num_threads(1)


def _fit_one(i: int) -> tuple[int, dict[str, torch.Tensor], list[dict[str, torch.Tensor]], int, int]:
    from .trainer import train_frame

    assert _STATE is not None
    inputs, head_name, cfg, device, jobs = _STATE
    m = train_frame(inputs, head_name, cfg, jobs[i], device)
    state = {k: v.detach().clone() for k, v in m.head.state_dict().items()}
    return i, state, [s.state() for s in m.standardizers], m.epochs, m.steps


def fit_parallel(inputs: Inputs, head_name: str, cfg: TrainConfig, jobs: Sequence[Any], device: str, workers: int,
                 on_done: Callable[[int], None] | None = None) -> list[Any]:
    """:func:`train.trainer.train_frame` for every job in ``workers`` forked processes; results in job order."""
    from .trainer import FittedModel, head_in_dims

    global _STATE
    _STATE = (inputs, head_name, cfg, device, list(jobs))
    order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i].train))   # longest first: better balance
    out: list[Any] = [None] * len(jobs)
    try:
        with mp.get_context("fork").Pool(workers, initializer=_init_worker) as pool:
            for i, state, stds, epochs, steps in pool.imap_unordered(_fit_one, order):
                head = build_head(head_name, head_in_dims(head_name, inputs), len(inputs.classes), cfg)
                head.load_state_dict(state)
                head.eval()
                out[i] = FittedModel(head_name, head.to(device), tuple(Standardizer(s["mean"], s["std"]) for s in stds),
                                     inputs.classes, epochs, steps)
                if on_done:
                    on_done(1)
    finally:
        _STATE = None
    return out
