import numpy as np
import pytest
import torch

from ser_common.store import StoreError
from train.batching import epoch_batches, eval_batches, gather_padded, standardized_once
from train.data import align_text, load_store, make_inputs
from train.inputs import load_inputs
from train.normalization import fit_standardizer

from .toy_stores import toy_rows, write_toy_store


def test_load_store_is_one_contiguous_tensor_with_metadata(toy_store):
    s = load_store(toy_store)
    assert s.frames.is_contiguous() and s.frames.dtype == torch.float16 and s.frames.shape[0] == s.offsets[-1]
    assert s.n == 124 and s.dims == 8 and (s.lengths >= 5).all()
    inputs = make_inputs(s)
    assert inputs.classes == ("neutral", "happy", "sad", "angry")
    assert (inputs.y[s.labels == ""] == -1).all() and len(inputs.labelled) == 120


def test_stats_and_standardizer_match_numpy(toy_store):
    s = load_store(toy_store)
    rows = np.array([0, 3, 7, 50])
    frames = np.concatenate([s.frames[s.offsets[i]:s.offsets[i + 1]].float().numpy() for i in rows])
    st = s.stats()
    np.testing.assert_allclose(st.mean[3], frames[s.lengths[0]:s.lengths[0] + s.lengths[3]].mean(0), rtol=1e-5)
    std = fit_standardizer(s, rows)
    np.testing.assert_allclose(std.mean.numpy(), frames.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(std.std.numpy(), frames.std(0), rtol=1e-4)
    ident = fit_standardizer(s, rows, enabled=False)
    assert (ident.mean == 0).all() and (ident.std == 1).all()


def test_gather_padded_pads_and_masks(toy_store):
    s = load_store(toy_store)
    rows = np.array([4, 1, 9])
    x, mask = gather_padded(s, rows)
    assert x.shape == (3, s.lengths[rows].max(), 8) and x.dtype == torch.float32
    for b, r in enumerate(rows):
        n = s.lengths[r]
        assert mask[b].sum() == n
        torch.testing.assert_close(x[b, :n], s.frames[s.offsets[r]:s.offsets[r + 1]].float())
        assert (x[b, n:] == 0).all()


@pytest.mark.parametrize("name", ["lld.h5", "wav2vec-toy.h5"])    # float32 (scaled 0.01 to 1000), float16
def test_a_store_standardised_once_gives_every_batch_to_the_bit(toy_dir, name):
    s = load_store(toy_dir / name)
    before = s.frames.clone()
    std = fit_standardizer(s, np.arange(0, s.n, 2))
    once, left = standardized_once(s, std)
    assert left is None and once.frames.dtype == torch.float32
    assert once.n == s.n and np.array_equal(once.offsets, s.offsets) and once.path == s.path
    for rows in (np.array([4, 1, 9]), np.arange(s.n)):
        x, mask = gather_padded(s, rows, standardizer=std)
        y, mask_once = gather_padded(once, rows)
        assert torch.equal(x, y) and torch.equal(mask, mask_once)
    # a store above the size limit, or a batch for a GPU, keeps the per-batch standardisation
    assert standardized_once(s, std, max_bytes=s.frames.numel() * 4 - 1) == (s, std)
    assert standardized_once(s, std, device="cuda") == (s, std)
    assert torch.equal(s.frames, before) and s.frames.dtype == before.dtype     # the store is never written


def test_bucketed_batches_cover_every_row_once_per_epoch():
    rows = np.arange(100, 400)
    lengths = np.random.default_rng(0).integers(1, 500, 400)
    rng = np.random.default_rng(1)
    batches = epoch_batches(rows, 16, rng, lengths, bucket=True)
    assert sorted(np.concatenate(batches).tolist()) == rows.tolist()
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    plain = epoch_batches(rows, 16, np.random.default_rng(1))
    assert spread < 0.5 * np.mean([np.ptp(lengths[b]) for b in plain])
    ev = eval_batches(rows, lengths, max_batch=32, max_frames=2000)
    assert sorted(np.concatenate(ev).tolist()) == rows.tolist()
    assert all(len(b) * lengths[b].max() <= 2000 or len(b) == 1 for b in ev)


def test_text_join_reorders_and_refuses_mismatched_ids(tmp_path, toy_store, toy_text):
    inputs = load_inputs(toy_store, toy_text)
    np.testing.assert_array_equal(inputs.audio.utt_ids, inputs.text.utt_ids)
    # a text store in another order is aligned
    rows = toy_rows()[::-1]
    rev = write_toy_store(tmp_path / "rev.h5", dims=6, text=True, rows=rows)
    a, t = align_text(load_store(toy_store), load_store(rev))
    np.testing.assert_array_equal(a.utt_ids, t.utt_ids)
    # missing utterances are refused, or joined with intersect
    short = write_toy_store(tmp_path / "short.h5", dims=6, text=True, rows=toy_rows()[:-10])
    with pytest.raises(StoreError, match=r"hold different utterances: 10 only in the audio store"):
        load_inputs(toy_store, short)
    joined = load_inputs(toy_store, short, intersect=True)
    assert joined.n == 114 and joined.text.n == 114
    # an audio store passed as --text is refused
    with pytest.raises(StoreError, match="not a text store"):
        load_inputs(toy_store, toy_store)


def test_label_disagreement_is_refused(tmp_path, toy_store):
    rows = [(u, "angry" if i == 0 else lab, s, g, j) for i, (u, lab, s, g, j) in enumerate(toy_rows())]
    bad = write_toy_store(tmp_path / "bad.h5", dims=6, text=True, rows=rows)
    with pytest.raises(StoreError, match="disagree on the label"):
        load_inputs(toy_store, bad)
