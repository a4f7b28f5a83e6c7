import numpy as np
import pytest

from train.config import CONVERGED_MIN_STEPS, TrainConfig, schedule_config
from train.inputs import load_inputs
from train.protocol import cross_validate, speaker_independent_folds
from train.parallel import can_fork
from train.fitting import fit_jobs
from train.jobs import Job
from train.trainer import predict_proba, train_frame, train_pooled


def test_schedules():
    paper = schedule_config("paper")
    assert (paper.epochs, paper.lr, paper.batch_size, paper.min_steps) == (100, 1e-4, 16, None)
    assert paper.epochs_for(100) == 100
    conv = schedule_config("converged")
    assert conv.lr == 1e-3
    assert conv.epochs_for(100) * 7 >= CONVERGED_MIN_STEPS  # 100 examples = 7 steps per epoch
    assert conv.epochs_for(10 ** 6) == 100 and conv.epochs_for(1) == conv.max_epochs
    assert schedule_config("converged", epochs=5).epochs_for(100) == 5  # explicit epochs are literal
    assert TrainConfig.from_dict(conv.to_dict()) == conv
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule_config("fast")
    with pytest.raises(ValueError, match=r"learning rate \(--lr\) must be a positive finite number, got nan"):
        schedule_config("paper", lr=float("nan"))  # once accepted: NaN predictions and a UA of 28


@pytest.mark.parametrize("head", ["mean", "meanmax"])
def test_pooled_precompute_and_batched_folds_equal_frame_level_per_fold_training(head, toy_store):
    inputs = load_inputs(toy_store)
    cfg = TrainConfig(epochs=6, lr=3e-3, dropout=0.0)
    folds, _ = speaker_independent_folds(inputs)
    jobs = [Job(f.train[: 60 + 5 * f.index], seed=s, stream=f.index) for s in (0, 1) for f in folds]  # unequal sizes
    batched = train_pooled(inputs, head, cfg, jobs)
    for job, f, fast in zip(jobs, folds * 2, batched):
        slow = train_frame(inputs, head, cfg, job)          # frames, autograd, torch.optim.Adam
        single = train_pooled(inputs, head, cfg, [job])[0]  # pooled, one job
        assert fast.steps == slow.steps == single.steps
        ref = predict_proba(slow, inputs, f.test, precompute=False)
        np.testing.assert_allclose(predict_proba(fast, inputs, f.test), ref, atol=2e-4)
        np.testing.assert_allclose(predict_proba(fast, inputs, f.test, precompute=False), ref, atol=2e-4)
        np.testing.assert_allclose(predict_proba(single, inputs, f.test), ref, atol=2e-4)
        w_fast = fast.head.classifier.weight.detach().numpy()
        np.testing.assert_allclose(w_fast, slow.head.classifier.weight.detach().numpy(), atol=2e-4)


def test_cv_with_and_without_precompute_agree(toy_store):
    inputs = load_inputs(toy_store)
    cfg = TrainConfig(epochs=4, lr=3e-3, dropout=0.0)
    a = cross_validate(inputs, "mean", cfg, k=8, seeds=(0, 1))
    b = cross_validate(inputs, "mean", cfg, k=8, seeds=(0, 1), precompute=False)
    np.testing.assert_allclose(a.predictions["proba"], b.predictions["proba"], atol=2e-4)
    assert a.summary["ua_mean"] == pytest.approx(b.summary["ua_mean"], abs=0.02)


@pytest.mark.parametrize("head", ["meanmax", "attention"])
def test_runs_are_repeatable_for_a_seed_and_differ_across_seeds(head, toy_store):
    inputs = load_inputs(toy_store)
    cfg = TrainConfig(epochs=3, lr=3e-3, dropout=0.3)
    rows = inputs.labelled[:70]
    p = [predict_proba(fit_jobs(inputs, head, cfg, [Job(rows, s)])[0], inputs, rows) for s in (0, 0, 1)]
    np.testing.assert_array_equal(p[0], p[1])
    assert not np.allclose(p[0], p[2])


def test_normalisation_flag_matters_for_wildly_scaled_features(toy_dir):
    inputs = load_inputs(toy_dir / "lld.h5")
    on = cross_validate(inputs, "mean", TrainConfig(epochs=10, lr=1e-2))
    off = cross_validate(inputs, "mean", TrainConfig(epochs=10, lr=1e-2, normalize=False))
    assert on.summary["ua_mean"] > off.summary["ua_mean"]


def test_unlabelled_rows_cannot_be_trained_on(toy_store):
    inputs = load_inputs(toy_store)
    with pytest.raises(ValueError, match="unlabelled"):
        train_frame(inputs, "mean", TrainConfig(epochs=1), Job(np.arange(inputs.n), 0))


@pytest.mark.parametrize("head", ["mlp", "bimodal"])
def test_parallel_workers_give_the_same_models_as_serial_fitting(head, toy_store, toy_text):
    inputs = load_inputs(toy_store, toy_text)
    cfg = TrainConfig(epochs=2, lr=3e-3, mlp_hidden=8, lstm_hidden=8)
    folds, _ = speaker_independent_folds(inputs)
    jobs = [Job(f.train, seed=0, stream=f.index) for f in folds[:3]]
    serial = fit_jobs(inputs, head, cfg, jobs)
    assert can_fork("cpu")  # the parallel path is really taken
    done = []
    parallel = fit_jobs(inputs, head, cfg, jobs, workers=2, on_done=done.append)
    assert sum(done) == 3
    for a, b, f in zip(serial, parallel, folds):
        np.testing.assert_array_equal(predict_proba(a, inputs, f.test), predict_proba(b, inputs, f.test))
