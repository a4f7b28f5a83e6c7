"""The one path every cross-validation experiment takes: plan, fit (shared pool), score, write a run folder.

A :class:`RunCache` runs each distinct experiment ``(inputs, head, k, config)`` once per output folder and
writes its run folder (:func:`train.runs.write_run`); asking again returns the same result. ``run_many``
plans a list of experiments, fits the frame-level jobs of all new ones in one worker pool
(:func:`train.protocol.cross_validate_many`) and scores and writes each one's folder as soon as its last
fit is done, while the pool works on (its results come back in the order asked). ``ser-train
tables``, ``curve`` and ``sweep`` go through it; ``ser-train cv`` (one experiment, ``k`` taken literally)
goes through :func:`run_experiments`, the same fit-score-write path without the cache.

``k`` per class at or above the largest class of every training fold takes all the training data: such a run
is the same experiment as ``k = all`` (:meth:`RunCache.effective_k`), so it is run and written once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from .config import TrainConfig
from .data import Inputs
from .protocol import CVPlan, CVResult, cross_validate_many, largest_class, plan_cv, speaker_independent_folds
from .runs import command_line, write_run

Experiment = tuple[Inputs, str, "int | None", TrainConfig]
"""``(inputs, head, k per class or None, config)``."""


def run_experiments(plans: Sequence[CVPlan], runs_dir: str | Path, device: str = "cpu", workers: int = 1,
                    precompute: bool = True, on_job_done: Callable[[int], None] | None = None,
                    command: str | None = None, extra: dict[str, Any] | None = None) -> list[CVResult]:
    """The one path of every CV experiment: fit all ``plans`` together (one pool), score each, and write
    each one's run folder under ``runs_dir`` (``extra`` adds keys to its config.json) as soon as its last
    job is fitted, while the pool works on; results in order."""

    def write(i: int, r: CVResult) -> None:
        write_run(r, plans[i].inputs, runs_dir, command=command,
                  extra={"schedule": plans[i].cfg.schedule, **(extra or {})})

    return cross_validate_many(plans, device, precompute=precompute, on_job_done=on_job_done, workers=workers,
                               on_result=write)


class RunCache:
    """Runs each distinct (inputs, head, k, config) once, writes its run folder under ``out/runs``, and
    advances a progress bar by the jobs (fold × seed fits) that finish."""

    def __init__(self, out: Path, seeds: Sequence[int], device: str, progress: Any = None, workers: int = 1,
                 extra: dict[str, Any] | None = None):
        self.out, self.seeds, self.device, self.progress = Path(out), tuple(seeds), device, progress
        self.workers = workers
        self.extra = extra
        self.results: dict[tuple, CVResult] = {}
        self._largest: dict[str, int] = {}
        self._n_folds: dict[str, int] = {}
        self.command = command_line()

    def key(self, inputs: Inputs, head: str, k: int | None, cfg: TrainConfig) -> tuple:
        return (inputs.name, head, self.effective_k(inputs, k), cfg.to_json())

    def effective_k(self, inputs: Inputs, k: int | None) -> int | None:
        """``None`` when sampling ``k`` per class would take every training utterance (same run as all data)."""
        if k is None:
            return None
        if inputs.name not in self._largest:
            self._largest[inputs.name] = largest_class(inputs)
        return None if k >= self._largest[inputs.name] else k

    def n_jobs(self, inputs: Inputs) -> int:
        """Fits one run of ``inputs`` takes: folds × seeds (the folds counted once per inputs)."""
        if inputs.name not in self._n_folds:
            self._n_folds[inputs.name] = len(speaker_independent_folds(inputs)[0])
        return self._n_folds[inputs.name] * len(set(self.seeds))

    def has(self, inputs: Inputs, head: str, k: int | None, cfg: TrainConfig) -> bool:
        return self.key(inputs, head, k, cfg) in self.results

    def run(self, inputs: Inputs, head: str, k: int | None, cfg: TrainConfig) -> CVResult:
        return self.run_many([(inputs, head, k, cfg)])[0]

    def run_many(self, experiments: Sequence[Experiment]) -> list[CVResult]:
        """The result of every experiment, in order; the new ones are fitted together (one pool)."""
        new: dict[tuple, Experiment] = {}
        for inputs, head, k, cfg in experiments:
            key = self.key(inputs, head, k, cfg)
            if key not in self.results and key not in new:
                new[key] = (inputs, head, key[2], cfg)
        if new:
            if self.progress is not None:
                heads = sorted({e[1] for e in new.values()})
                self.progress.set_postfix_str(f"{len(new)} run(s): {', '.join(heads)}")
            plans = [plan_cv(inputs, head, cfg, k, self.seeds) for inputs, head, k, cfg in new.values()]
            results = run_experiments(plans, self.out / "runs", self.device, self.workers,
                                      on_job_done=self._advance, command=self.command, extra=self.extra)
            for key, r in zip(new, results):
                self.results[key] = r
        return [self.results[self.key(inputs, head, k, cfg)] for inputs, head, k, cfg in experiments]

    def _advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.update(n)
