"""Fitting many jobs with the fastest exact engine, for one experiment or for several at once.

* Pooled heads (``mean``/``meanmax``, no layer sum): every job of an experiment trains at once as one
  stacked model on pooled vectors (:func:`train.trainer.train_pooled`; ``cfg.batched_folds = False``: one
  job at a time on pooled vectors).
* Frame-level heads (or ``precompute=False``): :func:`train.trainer.train_frame` per job, serially or in
  ``workers`` forked processes (:mod:`train.parallel`). :func:`fit_groups` puts the frame-level jobs of
  *all* its experiments into one pool, started longest first by an estimated cost, so two workers stay busy
  to the end instead of one waiting for each run's last fold. The parent does its own share meanwhile: it
  fits the pooled heads once the pool has started, and hands each experiment on (``on_group``: scoring,
  writing its run folder) as soon as its last job is fitted, so no core waits for that serial work.

Which engine, which process and which order never change a job's numbers: a job's randomness depends only
on its own seed and stream (:class:`train.jobs.Job`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from .config import TrainConfig
from .data import Inputs
from .heads import head_class
from .jobs import FittedModel, Job, head_in_dims
from .layers import training_view
from .parallel import FitTask, can_fork, fit_parallel
from .trainer import train_frame, train_pooled

Progress = Callable[[int], None]


@dataclass(eq=False)
class JobGroup:
    """The jobs of one experiment: ``jobs`` of head ``head_name`` with ``cfg`` on ``inputs``."""

    inputs: Inputs
    head_name: str
    cfg: TrainConfig
    jobs: Sequence[Job]

    def pooled_engine(self, precompute: bool) -> bool:
        return head_class(self.head_name).pooled and precompute and self.cfg.layer_sum == 1


def estimated_cost(task: FitTask) -> float:
    """A job's relative training cost: epochs × training frames × (dims + 256) × the head's ``fit_cost``
    (the 256 stands for the per-frame overhead that dominates low-dimensional stores). Used only to order
    a pool's jobs."""
    rows = task.job.train
    frames = float(task.inputs.audio.lengths[rows].sum())
    dims = task.inputs.audio.dims
    if task.inputs.text is not None and head_class(task.head_name).bimodal:
        frames += float(task.inputs.text.lengths[rows].sum())
    return task.cfg.epochs_for(len(rows)) * frames * (dims + 256) * head_class(task.head_name).fit_cost


def fit_groups(groups: Sequence[JobGroup], device: str = "cpu", precompute: bool = True,
               on_done: Progress | None = None, workers: int = 1,
               on_group: Callable[[int, list[FittedModel]], None] | None = None) -> list[list[FittedModel]]:
    """Fit every job of every group; one list of models per group, in job order.

    ``on_done(n)`` is called as ``n`` more jobs finish; ``on_group(g, models)`` as soon as every job of
    group ``g`` is fitted (with a worker pool, in this process while the workers go on: the pooled groups
    train here after the pool has started, so neither core waits for the other). Errors
    (:class:`train.jobs.TrainingDiverged`, a job without two classes, a missing text store, or one raised by
    ``on_group``) are raised as they would be for the group alone.
    """
    for g in groups:
        head_in_dims(g.head_name, g.inputs)   # fails early when a bimodal head has no text store
    out: list[list[FittedModel | None]] = [[None] * len(g.jobs) for g in groups]
    left = [len(g.jobs) for g in groups]
    tasks: list[tuple[int, int, FitTask]] = []
    pooled: list[int] = []
    for gi, g in enumerate(groups):
        if g.pooled_engine(precompute):
            pooled.append(gi)
        else:
            view = training_view(g.inputs, g.head_name, g.cfg.layer_sum)
            tasks.extend((gi, j, FitTask(view, g.head_name, g.cfg, job)) for j, job in enumerate(g.jobs))

    if on_group is not None:
        for gi, g in enumerate(groups):
            if not g.jobs:
                on_group(gi, [])

    def fitted(gi: int, j: int, model: FittedModel) -> None:
        out[gi][j] = model
        left[gi] -= 1
        if left[gi] == 0 and on_group is not None:
            on_group(gi, out[gi])  # type: ignore[arg-type]

    def fit_pooled_groups() -> None:
        for gi in pooled:
            g = groups[gi]
            batches = [list(range(len(g.jobs)))] if g.cfg.batched_folds else [[j] for j in range(len(g.jobs))]
            for batch in batches:
                models = train_pooled(g.inputs, g.head_name, g.cfg, [g.jobs[j] for j in batch], device)
                if on_done:
                    on_done(len(batch))
                for j, m in zip(batch, models):
                    fitted(gi, j, m)

    if workers > 1 and len(tasks) > 1 and can_fork(device):
        order = sorted(range(len(tasks)), key=lambda i: -estimated_cost(tasks[i][2]))   # stable: ties keep order
        fit_parallel([tasks[i][2] for i in order], device, min(workers, len(tasks)), on_done,
                     meanwhile=fit_pooled_groups, on_fitted=lambda i, m: fitted(*tasks[order[i]][:2], m))
    else:
        fit_pooled_groups()
        for gi, j, t in tasks:
            m = train_frame(t.inputs, t.head_name, t.cfg, t.job, device)
            if on_done:
                on_done(1)
            fitted(gi, j, m)
    return out  # type: ignore[return-value]


def fit_jobs(inputs: Inputs, head_name: str, cfg: TrainConfig, jobs: Sequence[Job], device: str = "cpu",
             precompute: bool = True, on_done: Progress | None = None, workers: int = 1) -> list[FittedModel]:
    """Fit the jobs of one experiment (:func:`fit_groups` with one group); models in job order."""
    return fit_groups([JobGroup(inputs, head_name, cfg, jobs)], device, precompute, on_done, workers)[0]
