"""One pool for the jobs of several experiments."""

import numpy as np
import pytest
from train.config import TrainConfig
from train.inputs import load_inputs
from train.fitting import JobGroup, estimated_cost, fit_groups, fit_jobs
from train.jobs import Job
from train.parallel import FitTask, can_fork
from train.protocol import cross_validate, cross_validate_many, plan_cv, speaker_independent_folds
from train.trainer import predict_proba

CFG = TrainConfig(epochs=2, lr=3e-3, mlp_hidden=8, lstm_hidden=8)


def test_one_pool_for_several_experiments_gives_each_the_models_it_gets_alone(toy_store, toy_text):
    audio = load_inputs(toy_store)
    both = load_inputs(toy_store, toy_text)
    folds, _ = speaker_independent_folds(audio)
    jobs = [Job(f.train, seed=0, stream=f.index, fold=f.name) for f in folds[:2]]
    groups = [JobGroup(audio, "mlp", CFG, jobs), JobGroup(both, "bimodal", CFG, jobs),
              JobGroup(audio, "mean", CFG, jobs), JobGroup(audio, "attention", CFG, jobs[:1])]
    assert can_fork("cpu")
    done = []
    together = fit_groups(groups, workers=2, on_done=done.append)
    assert sum(done) == 7 and [len(m) for m in together] == [2, 2, 2, 1]
    for g, models in zip(groups, together):
        alone = fit_jobs(g.inputs, g.head_name, g.cfg, g.jobs)
        for a, b, f in zip(alone, models, folds):
            assert b.head_name == g.head_name and b.seconds > 0
            np.testing.assert_array_equal(predict_proba(a, g.inputs, f.test), predict_proba(b, g.inputs, f.test))


def test_cross_validate_many_scores_each_run_as_cross_validate_does(toy_store):
    inputs = load_inputs(toy_store)
    plans = [plan_cv(inputs, "mlp", CFG, k=6, seeds=(0,)), plan_cv(inputs, "attention", CFG, seeds=(0, 1))]
    many = cross_validate_many(plans, workers=2)
    for plan, r in zip(plans, many):
        alone = cross_validate(inputs, plan.head, CFG, k=plan.k, seeds=plan.seeds)
        np.testing.assert_array_equal(r.predictions["proba"], alone.predictions["proba"])
        assert r.summary == alone.summary and r.pooled == alone.pooled
        assert any("fitted together with 1 other run" in n for n in r.notes)
        assert r.fit_seconds > 0


def test_the_pool_starts_the_costliest_jobs_first(toy_store, toy_text):
    both = load_inputs(toy_store, toy_text)
    rows = both.labelled
    cost = {h: estimated_cost(FitTask(both, h, CFG, Job(rows, 0))) for h in ("attention", "mlp", "bimodal")}
    assert cost["attention"] < cost["mlp"] < cost["bimodal"]
    assert estimated_cost(FitTask(both, "mlp", CFG, Job(rows[:10], 0))) < cost["mlp"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_of_a_shared_pool_fails_as_it_would_alone(toy_store, workers):
    inputs = load_inputs(toy_store)
    folds, _ = speaker_independent_folds(inputs)
    good = [Job(f.train, 0, f.index, fold=f.name) for f in folds[:2]]
    one_class = folds[0].train[inputs.y[folds[0].train] == inputs.y[folds[0].train][0]]
    bad = [Job(one_class, 0, 0, fold=folds[0].name)]
    with pytest.raises(ValueError, match="holds only class"):
        fit_groups([JobGroup(inputs, "mlp", CFG, good), JobGroup(inputs, "attention", CFG, bad)], workers=workers)


@pytest.mark.parametrize("workers", [1, 2])
def test_each_group_is_handed_over_once_as_soon_as_its_last_job_is_fitted(toy_store, workers):
    inputs = load_inputs(toy_store)
    folds, _ = speaker_independent_folds(inputs)
    jobs = [Job(f.train, seed=0, stream=f.index, fold=f.name) for f in folds[:3]]
    groups = [JobGroup(inputs, "mlp", CFG, jobs), JobGroup(inputs, "mean", CFG, jobs),
              JobGroup(inputs, "attention", CFG, jobs[:1]), JobGroup(inputs, "mlp", CFG, [])]
    events: list = []
    out = fit_groups(groups, workers=workers, on_done=lambda n: events.append(("done", n)),
                     on_group=lambda g, models: events.append(("group", g, list(models))))
    handed = {e[1]: e[2] for e in events if e[0] == "group"}
    assert sorted(handed) == [0, 1, 2, 3] and len(events) == 4 + len([e for e in events if e[0] == "done"])
    for g, models in handed.items():   # every model of the group, as fit_groups returns them
        assert len(models) == len(groups[g].jobs) and all(a is b for a, b in zip(models, out[g]))
    if workers == 2:
        # the pooled group is fitted by the parent while the pool works: it is not the last one handed over
        order = [e[1] for e in events if e[0] == "group"]
        assert order.index(1) < order.index(0)


def test_an_error_in_the_parents_share_stops_the_pool_and_is_raised(toy_store):
    inputs = load_inputs(toy_store)
    folds, _ = speaker_independent_folds(inputs)
    jobs = [Job(f.train, seed=0, stream=f.index, fold=f.name) for f in folds[:2]]

    def fail(g, models):
        raise RuntimeError(f"scoring group {g} failed")

    with pytest.raises(RuntimeError, match="scoring group 1 failed"):   # the pooled group, scored meanwhile
        fit_groups([JobGroup(inputs, "mlp", CFG, jobs), JobGroup(inputs, "mean", CFG, jobs)], workers=2,
                   on_group=fail)
    with pytest.raises(RuntimeError, match="scoring group 0 failed"):   # a frame-level group, as it arrives
        fit_groups([JobGroup(inputs, "mlp", CFG, jobs)], workers=2, on_group=fail)
