"""Fitting heads: a generic frame-level loop, and a batched trainer for pooled heads.

One *job* is one model to fit: a set of training rows plus a seed (and a stream number, the fold index, so
the folds of one seed draw different batches). A job's randomness is fixed by ``(seed, stream)``: the
head's initialisation and dropout come from ``torch.manual_seed(job.torch_seed)``, the batch order from
``numpy.random.default_rng([seed, stream])``.

Two engines:

* :func:`train_frame` — any head. Batches of padded frames (bucketed by length for frame-level heads),
  standardised with the job's training-set statistics (once per fit where the store allows,
  :func:`train.batching.standardized_once`), Adam (on CPU over one flat buffer, :mod:`train.adam`: the
  steps of ``torch.optim.Adam`` to the bit), cross-entropy.
* :func:`train_pooled` — ``mean``/``meanmax``. Each utterance is pooled once (from the store's cached
  per-utterance statistics; standardisation commutes with mean and max), and all jobs (the 5 folds × seeds)
  train at once as one stacked linear model: weights [F × P × C] with ``torch.bmm``, a hand-written
  forward/backward of dropout -> linear -> softmax cross-entropy, and Adam applied elementwise (Adam is
  elementwise, so one update over the stacked parameters equals F separate optimisers; every running job
  has taken the same number of steps, so the bias corrections are shared). Jobs are ordered longest plan
  first; a job whose plan has ended drops out of the running prefix and stops updating. With ``dropout = 0`` this reproduces
  :func:`train_frame` on the same jobs to float rounding; with dropout the masks come from another
  random stream (same distribution).

Both engines weight the cross-entropy per class when ``cfg.class_weight == "balanced"``
(:func:`class_weights`, from each job's own training rows) with the same semantics, PyTorch's weighted
mean over a batch ``Σ w_yi · CE_i / Σ w_yi``; with ``none`` the loss is the plain batch mean (unchanged
numbers).

Both engines refuse to return a model whose training went non-finite (:class:`TrainingDiverged`, a
one-line message naming the head, the job's fold and seed, the epoch and step, and the fix): the frame
loop records every step's loss on the device and checks the losses and the weights once per epoch (one
synchronisation per epoch); the pooled trainer records, per job, the first step whose gradient (hence
loss) was non-finite, and checks every weight at the end. The checks only read values, so a healthy run's
numbers are unchanged.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .adam import FlatAdam, TorchAdam
from .batching import eval_batches, gather_padded, standardized_once, training_plan
from .config import TrainConfig
from .data import Inputs
from .dropout import keep_mask
from .heads import Head, LayerSumHead, build_head, head_class
from .jobs import FittedModel, Job, TrainingDiverged, head_in_dims
from .layers import training_view
from .normalization import Standardizer, fit_standardizer

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def _fit_standardizers(inputs: Inputs, head_name: str, rows: np.ndarray, cfg: TrainConfig) -> tuple[Standardizer, ...]:
    stds = [fit_standardizer(inputs.audio, rows, cfg.normalize)]
    if head_class(head_name).bimodal:
        stds.append(fit_standardizer(inputs.text, rows, cfg.normalize))
    return tuple(stds)


def _check_rows(inputs: Inputs, rows: np.ndarray, job: Job | None = None) -> None:
    where = f" ({job.describe()})" if job is not None else ""
    if len(rows) == 0:
        raise ValueError(f"{inputs.audio.path}: a training job{where} has no utterance")
    if (inputs.y[rows] < 0).any():
        raise ValueError(f"{inputs.audio.path}: a training job{where} includes unlabelled rows")
    present = np.unique(inputs.y[rows])
    if len(present) < 2:
        raise ValueError(f"{inputs.audio.path}: a training job{where} holds only class "
                         f"{inputs.classes[int(present[0])]!r} ({len(rows)} utterances): a classifier needs "
                         f"at least two classes; label utterances of another class")


def class_weights(y: np.ndarray, rows: np.ndarray, n_classes: int, mode: str) -> np.ndarray | None:
    """Per-class loss weights float32 [C] for training rows ``rows`` (``None`` for ``mode == "none"``).

    ``balanced``: ``w_c = n / (C × count_c)`` with ``n = len(rows)`` and ``count_c`` the rows of class c (so
    a balanced set gets 1 everywhere); a class with no training row gets 0 (it never occurs as a target).
    ``y``: int64 class index per store row (all of ``rows`` labelled).
    """
    if mode == "none":
        return None
    if mode != "balanced":
        raise ValueError(f"unknown class weight {mode!r}; choose none or balanced")
    counts = np.bincount(y[rows], minlength=n_classes).astype(np.float64)
    w = np.divide(len(rows), n_classes * counts, out=np.zeros(n_classes), where=counts > 0)
    return w.astype(np.float32)


def _diverged(head_name: str, job: Job, cfg: TrainConfig, what: str, step: int, n_steps: int,
              steps_per_epoch: int) -> TrainingDiverged:
    """The error of a job whose ``what`` ("the loss became nan") happened at 0-based ``step``."""
    epoch = step // steps_per_epoch + 1
    return TrainingDiverged(
        f"training diverged: head {head_name!r}, {job.describe()}: {what} at epoch {epoch}, step {step + 1} "
        f"of {n_steps}; no score is reported: lower the learning rate (--lr, now {cfg.lr:g}; the paper's "
        f"schedule uses 1e-4) or check the store's features")


def _nonfinite_param(head: Head) -> str | None:
    """The name of the first parameter of ``head`` holding NaN/Inf (``None`` when all are finite)."""
    flags = torch.stack([torch.isfinite(p).all() for p in head.parameters()])
    if bool(flags.all()):
        return None
    return [n for n, _ in head.named_parameters()][int(torch.nonzero(~flags)[0])]


def _forward(head: Head, inputs: Inputs, rows_t: torch.Tensor, device: str,
             stds: Sequence[Standardizer | None], bimodal: bool) -> torch.Tensor:
    """Logits [B × C] of ``head`` on store rows ``rows_t``: gather, pad, standardise (audio [and text];
    ``None``: that store is standardised already), forward."""
    x, mask = gather_padded(inputs.audio, rows_t, device, stds[0])
    if bimodal:
        t, tmask = gather_padded(inputs.text, rows_t, device, stds[1])
        return head(x, mask, t, tmask)
    return head(x, mask)


def train_frame(inputs: Inputs, head_name: str, cfg: TrainConfig, job: Job, device: str = "cpu") -> FittedModel:
    """Fit one head on padded frame batches (any head; the reference path for pooled heads too).

    Raises :class:`TrainingDiverged` when a step's loss or, at an epoch's end, a weight is NaN/Inf.
    """
    start = time.perf_counter()
    _check_rows(inputs, job.train, job)
    cls = head_class(head_name)
    in_dims = head_in_dims(head_name, inputs)
    stds = _fit_standardizers(inputs, head_name, job.train, cfg)
    # batches come from stores standardised once for this fit where that fits in memory (same numbers)
    audio, audio_std = standardized_once(inputs.audio, stds[0].to(device), device)
    text, text_std = (standardized_once(inputs.text, stds[1].to(device), device) if cls.bimodal
                      else (inputs.text, None))
    batch_inputs, batch_stds = replace(inputs, audio=audio, text=text), (audio_std, text_std)
    torch.manual_seed(job.torch_seed)
    head = build_head(head_name, in_dims, len(inputs.classes), cfg).to(device)
    # on CPU, Adam over one flat buffer (train.adam): the same steps to the bit as torch.optim.Adam without
    # its per-tensor cost; on a GPU, torch's multi-tensor Adam (its default there)
    adam = FlatAdam if torch.device(device).type == "cpu" else TorchAdam
    opt = adam(head.parameters(), cfg.lr, ADAM_BETAS, ADAM_EPS)
    epochs = cfg.epochs_for(len(job.train))
    plan = training_plan(job.train, epochs, cfg.batch_size, job.rng(), inputs.audio.lengths,
                         bucket=cfg.bucket and not cls.pooled)
    y = torch.from_numpy(inputs.y).to(device)
    cw = class_weights(inputs.y, job.train, len(inputs.classes), cfg.class_weight)
    cw_t = torch.from_numpy(cw).to(device) if cw is not None else None
    per_epoch = max(1, math.ceil(len(job.train) / cfg.batch_size))   # plan = epochs × per_epoch batches
    losses = torch.zeros(len(plan), device=device)                  # every step's loss, checked per epoch
    checked = 0
    head.train()
    for s, rows in enumerate(plan):
        rows_t = torch.from_numpy(rows).to(device)
        logits = _forward(head, batch_inputs, rows_t, device, batch_stds, cls.bimodal)
        loss = F.cross_entropy(logits, y[rows_t], weight=cw_t)
        losses[s] = loss.detach()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (s + 1) % per_epoch == 0 or s + 1 == len(plan):
            bad = ~torch.isfinite(losses[checked:s + 1])
            if bool(bad.any()):
                first = checked + int(torch.nonzero(bad)[0])
                raise _diverged(head_name, job, cfg, f"the loss became {float(losses[first])}", first,
                                len(plan), per_epoch)
            name = _nonfinite_param(head)
            if name is not None:
                raise _diverged(head_name, job, cfg, f"the weights ({name}) became NaN/Inf", s, len(plan),
                                per_epoch)
            checked = s + 1
    opt.unflatten()
    head.eval()
    return FittedModel(head_name, head, stds, inputs.classes, epochs, len(plan),
                       seconds=time.perf_counter() - start)


def _pooled_stats(std: Standardizer, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    return std.mean.repeat(width), std.std.repeat(width)


def train_pooled(inputs: Inputs, head_name: str, cfg: TrainConfig, jobs: Sequence[Job],
                 device: str = "cpu") -> list[FittedModel]:
    """Fit a pooled head (``mean``/``meanmax``) for every job at once on pooled vectors; see module doc.

    Raises :class:`TrainingDiverged` (naming the first diverged job in job order) when a job's gradient
    went NaN/Inf at some step, or a weight is NaN/Inf at the end.
    """
    cls = head_class(head_name)
    if not cls.pooled or cfg.layer_sum > 1:
        raise ValueError(f"head {head_name!r}{' with a layer sum' if cls.pooled else ''} is not a pooled head; "
                         f"use train_frame")
    if not jobs:
        return []
    start = time.perf_counter()
    for job in jobs:
        _check_rows(inputs, job.train, job)
    store = inputs.audio
    z_all = torch.from_numpy(np.ascontiguousarray(cls.pool_from_stats(store.stats()), dtype=np.float32)).to(device)
    n_classes = len(inputs.classes)
    onehot = F.one_hot(torch.from_numpy(np.maximum(inputs.y, 0)), n_classes).float().to(device)  # N × C

    stds, heads, plans, epochs = [], [], [], []
    for job in jobs:
        stds.append(fit_standardizer(store, job.train, cfg.normalize))
        torch.manual_seed(job.torch_seed)
        heads.append(build_head(head_name, store.dims, n_classes, cfg))
        e = cfg.epochs_for(len(job.train))
        epochs.append(e)
        plans.append(training_plan(job.train, e, cfg.batch_size, job.rng()))
    n_steps = np.array([len(p) for p in plans])
    order = np.argsort(-n_steps, kind="stable")        # longest plan first: the active jobs are a prefix
    n_jobs, s_max, bs = len(jobs), int(n_steps.max()), cfg.batch_size

    plan = np.zeros((n_jobs, s_max, bs), dtype=np.int64)
    weight = np.zeros((n_jobs, s_max, bs), dtype=np.float32)   # per-entry share of the batch loss, 0 on padding
    for slot, j in enumerate(order):
        cw = class_weights(inputs.y, jobs[j].train, n_classes, cfg.class_weight)
        for s, rows in enumerate(plans[j]):
            plan[slot, s, :len(rows)] = rows
            if cw is None:
                weight[slot, s, :len(rows)] = 1.0 / len(rows)          # plain mean
            else:
                w_y = cw[inputs.y[rows]].astype(np.float64)          # weighted mean: w_y / Σ_batch w_y
                weight[slot, s, :len(rows)] = w_y / w_y.sum()
    active = np.array([(n_steps > s).sum() for s in range(s_max)])
    plan_t = torch.from_numpy(plan).to(device)
    weight_t = torch.from_numpy(weight).to(device)

    width = cls.width
    mu = torch.stack([_pooled_stats(stds[j], width)[0] for j in order]).to(device)[:, None, :]   # F × 1 × P
    inv_sd = torch.stack([1.0 / _pooled_stats(stds[j], width)[1] for j in order]).to(device)[:, None, :]
    w = torch.stack([heads[j].classifier.weight.detach().T for j in order]).contiguous().to(device)  # F × P × C
    b = torch.stack([heads[j].classifier.bias.detach() for j in order]).to(device)                   # F × C
    params = (w, b)
    m1 = [torch.zeros_like(p) for p in params]
    m2 = [torch.zeros_like(p) for p in params]
    b1, b2 = ADAM_BETAS
    p_drop = cfg.dropout
    gen = torch.Generator(device=device)
    gen.manual_seed(jobs[0].torch_seed)
    bad_step = torch.full((n_jobs,), -1, dtype=torch.int64, device=device)   # per slot: first non-finite step
    with torch.no_grad():
        for s in range(s_max):
            a = int(active[s])                                         # jobs still running: a prefix
            idx = plan_t[:a, s]                                        # a × B
            z = (z_all[idx] - mu[:a]) * inv_sd[:a]                     # a × B × P
            if p_drop > 0:
                keep, scale = keep_mask(z.shape, p_drop, device, gen)
                z.mul_(keep.to(z.dtype).mul_(scale))
            prob = torch.baddbmm(b[:a, None, :], z, w[:a]).softmax(-1)  # a × B × C
            g = (prob - onehot[idx]) * weight_t[:a, s, :, None]        # d loss / d logits
            grads = (torch.bmm(z.transpose(1, 2), g), g.sum(1))
            # a NaN/Inf logit anywhere in a job's batch makes its bias gradient non-finite (no sync here)
            bs_a = bad_step[:a]
            bs_a.masked_fill_(~torch.isfinite(grads[1]).all(1) & (bs_a < 0), s)
            # every running job has taken s + 1 steps: the bias corrections are shared scalars
            bc1 = 1 - b1 ** (s + 1)
            bc2_sqrt = math.sqrt(1 - b2 ** (s + 1))
            for p, g_p, m, v in zip(params, grads, m1, m2):
                pa, ma, va = p[:a], m[:a], v[:a]
                ma.mul_(b1).add_(g_p, alpha=1 - b1)
                va.mul_(b2).addcmul_(g_p, g_p, value=1 - b2)
                pa.addcdiv_(ma, (va.sqrt() / bc2_sqrt).add_(ADAM_EPS), value=-cfg.lr / bc1)
        finite = torch.isfinite(w).flatten(1).all(1) & torch.isfinite(b).all(1)
    if not bool(finite.all()) or bool((bad_step >= 0).any()):
        bad_slots = set(torch.nonzero((bad_step >= 0) | ~finite).squeeze(1).tolist())
        slot = min(bad_slots, key=lambda sl: order[sl])        # the first diverged job in job order
        j = int(order[slot])
        step = int(bad_step[slot])
        per_epoch = max(1, math.ceil(len(jobs[j].train) / cfg.batch_size))
        if step >= 0:
            raise _diverged(head_name, jobs[j], cfg, "the loss became NaN/Inf (non-finite gradient)", step,
                            int(n_steps[j]), per_epoch)
        raise _diverged(head_name, jobs[j], cfg, "the weights became NaN/Inf", int(n_steps[j]) - 1,
                        int(n_steps[j]), per_epoch)
    fitted: list[FittedModel | None] = [None] * n_jobs
    for slot, j in enumerate(order):
        head = heads[j]
        with torch.no_grad():
            head.classifier.weight.copy_(w[slot].T.cpu())
            head.classifier.bias.copy_(b[slot].cpu())
        head.eval()
        fitted[j] = FittedModel(head_name, head.to(device), (stds[j],), inputs.classes, epochs[j], int(n_steps[j]))
    share = (time.perf_counter() - start) / n_jobs
    for m in fitted:
        m.seconds = share  # type: ignore[union-attr]
    return fitted  # type: ignore[return-value]


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / temperature`` (``logits`` itself at T = 1, so uncalibrated numbers stay bit-identical)."""
    return logits if temperature == 1.0 else logits / temperature


def predict_proba(model: FittedModel, inputs: Inputs, rows: np.ndarray, device: str = "cpu",
                  precompute: bool = True, eval_batch: int = 64, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities float32 [len(rows) × C] of ``model`` on ``inputs`` rows (in the order given).

    ``temperature``: ``softmax(logits / T)`` (a calibrated bundle's T, :mod:`train.calibration`); the
    default 1 leaves the logits untouched.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cls = head_class(model.head_name)
    head = model.head.to(device).eval()
    if len(rows) == 0:
        return np.zeros((0, len(model.classes)), np.float32)
    uniq, inverse = np.unique(rows, return_inverse=True)
    if isinstance(head, LayerSumHead):
        inputs = training_view(inputs, model.head_name, head.layer_sum.n_layers)
    with torch.no_grad():
        if cls.pooled and precompute and not isinstance(head, LayerSumHead):
            z = torch.from_numpy(np.ascontiguousarray(cls.pool_from_stats(inputs.audio.stats())[uniq],
                                                      dtype=np.float32)).to(device)
            mu, sd = _pooled_stats(model.standardizers[0], cls.width)
            logits = head.classifier((z - mu.to(device)) / sd.to(device))
            out = _scaled(logits, temperature).softmax(-1).cpu().numpy()
            return out[inverse]
        stds = [s.to(device) for s in model.standardizers]
        out = np.zeros((len(uniq), len(model.classes)), np.float32)
        lengths = inputs.audio.lengths
        if cls.bimodal:  # padded cost grows with both sides
            lengths = lengths + inputs.text.lengths
        for batch in eval_batches(uniq, lengths, max_batch=eval_batch):
            rows_t = torch.from_numpy(batch).to(device)
            logits = _forward(head, inputs, rows_t, device, stds, cls.bimodal)
            out[np.searchsorted(uniq, batch)] = _scaled(logits, temperature).softmax(-1).float().cpu().numpy()
        return out[inverse]
