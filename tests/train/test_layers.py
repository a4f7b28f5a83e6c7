"""The learned layer sum (train/layers.py): stacking @all layer stores, the pooled view, training."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ser_common.labels import FOUR_CLASSES
from ser_common.store import StoreError, StoreWriter, UtteranceMeta
from train.config import TrainConfig
from train.data import load_store
from train.inputs import load_inputs
from train.heads import LayerSumHead, build_head
from train.layers import pooled_view, training_view
from train.layer_stores import expand_layer_paths, stack_layers
from train.protocol import speaker_independent_folds
from train.fitting import fit_jobs
from train.jobs import Job
from train.trainer import predict_proba

from .toy_stores import AUDIO_PROV, toy_rows

N_LAYERS, DIMS, SIGNAL_LAYER = 4, 6, 2


def write_layer_stores(d: Path, name: str = "hf-toy", signal_layer: int = SIGNAL_LAYER, **prov_changes) -> Path:
    """``<name>-l0.h5`` … ``-l3.h5`` as an @all extraction writes them: the same utterances and frame counts;
    only layer ``signal_layer`` carries the class (a mean shift of 2 on dim ``class``), the others noise."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = toy_rows()
    lengths = rng.integers(5, 30, len(rows))
    for layer in range(N_LAYERS):
        prov = {**AUDIO_PROV, "layer": layer, "feature": f"{name}-l{layer}", "spec": "hf:toy@all", **prov_changes}
        metas, frames = [], []
        for (utt, label, spk, sess, idx), n in zip(rows, lengths):
            x = rng.standard_normal((int(n), DIMS)).astype(np.float32)
            if label and layer == signal_layer:
                x[:, FOUR_CLASSES.index(label)] += 2.0
            metas.append(UtteranceMeta(utt_id=utt, label=label, speaker=spk, session=sess, duration=n / 50,
                                       manifest_index=idx, transcript=""))
            frames.append(x)
        with StoreWriter(d / f"{name}-l{layer}.h5", dims=DIMS, provenance=prov, dtype="float32") as w:
            w.append(metas, frames)
            w.finalize()
    return d


@pytest.fixture(scope="module")
def layer_dir(tmp_path_factory) -> Path:
    return write_layer_stores(tmp_path_factory.mktemp("layers"))


def test_one_layer_store_or_a_glob_names_every_layer_in_order(layer_dir):
    want = [layer_dir / f"hf-toy-l{i}.h5" for i in range(N_LAYERS)]
    assert expand_layer_paths(layer_dir / "hf-toy-l2.h5") == want
    assert expand_layer_paths(str(layer_dir / "hf-toy-l*.h5")) == want
    with pytest.raises(StoreError, match="at least two layer stores"):
        expand_layer_paths(str(layer_dir / "nothing-l*.h5"))
    with pytest.raises(StoreError, match=r"\.\.\.-l<N>\.h5|…-l<N>\.h5"):
        expand_layer_paths(layer_dir / "lld.h5")


def test_stack_puts_layers_side_by_side_and_records_them(layer_dir):
    parts = [load_store(p) for p in expand_layer_paths(layer_dir / "hf-toy-l0.h5")]
    st = stack_layers(parts)
    assert st.dims == N_LAYERS * DIMS and st.n == parts[0].n
    for layer, part in enumerate(parts):
        torch.testing.assert_close(st.frames[:, layer * DIMS:(layer + 1) * DIMS], part.frames)
    assert st.provenance["layer_sum"] == [0, 1, 2, 3] and st.provenance["layer"] is None
    assert st.path.name == "hf-toy-lsum-0-1-2-3.h5"


def test_stack_refuses_layers_of_another_extraction(layer_dir, tmp_path):
    other = write_layer_stores(tmp_path / "other", crop_s=2.0)
    a, b = load_store(layer_dir / "hf-toy-l0.h5"), load_store(other / "hf-toy-l1.h5")
    with pytest.raises(StoreError, match="crop_s.*not a layer of the same extraction|not a layer of the same extraction.*crop_s"):
        stack_layers([a, b])
    with pytest.raises(StoreError, match="layer 0 is given twice"):
        stack_layers([a, load_store(layer_dir / "hf-toy-l0.h5")])


def test_pooled_view_gives_the_mean_head_the_same_outputs_and_statistics(layer_dir):
    inputs = load_inputs(layer_dir / "hf-toy-l0.h5", layer_sum=True)
    view = training_view(inputs, "mean", N_LAYERS)
    assert view.audio.offsets[-1] == inputs.n and view.audio.dims == inputs.audio.dims
    np.testing.assert_array_equal(view.audio.stats().sum, inputs.audio.stats().sum)   # frame-level stats kept
    assert training_view(inputs, "mlp", N_LAYERS) is inputs
    cfg = TrainConfig(layer_sum=N_LAYERS, dropout=0.0)
    torch.manual_seed(0)
    head = build_head("mean", inputs.audio.dims, 4, cfg).eval()
    with torch.no_grad():
        head.layer_sum.logits.copy_(torch.tensor([0.3, -1.0, 2.0, 0.1]))
    from train.jobs import FittedModel
    from train.normalization import fit_standardizer

    rows = np.arange(inputs.n)
    std = fit_standardizer(inputs.audio, rows)
    model = FittedModel("mean", head, (std,), inputs.classes, 0, 0)
    on_frames = predict_proba(model, inputs, rows, precompute=False)     # LayerSumHead: frame loop on frames
    on_view = predict_proba(model, view, rows)
    np.testing.assert_allclose(on_view, on_frames, rtol=1e-4, atol=1e-5)
    assert pooled_view(inputs.audio).frames.shape == (inputs.n, N_LAYERS * DIMS)


@pytest.mark.parametrize("head", ["mean", "mlp"])
def test_a_layer_sum_learns_to_weight_the_layer_that_carries_the_emotion(layer_dir, head):
    inputs = load_inputs(layer_dir / "hf-toy-l1.h5", layer_sum=True)
    folds, _ = speaker_independent_folds(inputs)
    cfg = TrainConfig(layer_sum=N_LAYERS, epochs=40, lr=3e-2, dropout=0.0, mlp_hidden=16)
    model = fit_jobs(inputs, head, cfg, [Job(folds[0].train, seed=0)])[0]
    assert isinstance(model.head, LayerSumHead)
    w = model.head.layer_sum.weights().detach().numpy()
    assert w.argmax() == SIGNAL_LAYER and w[SIGNAL_LAYER] > 0.5, w
    proba = predict_proba(model, inputs, folds[0].test)
    assert (proba.argmax(1) == inputs.y[folds[0].test]).mean() > 0.8


def test_layer_sum_config_is_validated_and_dims_must_divide():
    with pytest.raises(ValueError, match="layer_sum must be an integer >= 1"):
        TrainConfig(layer_sum=0)
    with pytest.raises(ValueError, match="divisible"):
        build_head("mean", 10, 4, replace(TrainConfig(), layer_sum=3))


def test_cli_cv_fit_and_predict_with_a_layer_sum(layer_dir, tmp_path):
    import json

    from train.cli import run

    glob_ = str(layer_dir / "hf-toy-l*.h5")
    opts = ["--head", "mean", "--epochs", "30", "--lr", "0.03", "--seeds", "0"]
    assert run(["cv", "--store", glob_, "--layer-sum", *opts, "--out", str(tmp_path / "runs")]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    weights = metrics["summary"]["layer_weights"]
    assert len(weights) == N_LAYERS and int(np.argmax(weights)) == SIGNAL_LAYER
    assert all("layer_weights" in f for f in metrics["folds"])
    assert config["train_config"]["layer_sum"] == N_LAYERS
    model = tmp_path / "m.pt"
    assert run(["fit", "--store", glob_, "--layer-sum", *opts[:-2], "--no-calibrate", "-o", str(model)]) == 0
    out = tmp_path / "p.csv"
    # a layer-sum model reads the same stack: one layer store names them all
    assert run(["predict", "--model", str(model), "--store", str(layer_dir / "hf-toy-l3.h5"), "-o", str(out)]) == 0
    assert out.read_text().count("\n") == 1 + len(toy_rows())
    # a single-layer store is refused by identity
    from train.data import load_store as _load_one
    from train.bundle import bundle_inputs, load_bundle

    with pytest.raises(StoreError, match="layer"):
        bundle_inputs(load_bundle(model), _load_one(layer_dir / "hf-toy-l2.h5"))
