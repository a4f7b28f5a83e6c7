"""Classification heads on frozen frame features (Boigne et al. 2020, sec. 2.3-2.4), s3prl-style registry.

Every head maps frames ``x`` [B × T × D] with ``mask`` [B × T] (True on valid frames) to logits [B × C];
the softmax lives in the cross-entropy loss. Dropout follows every layer. Registered heads:

``mean``       masked mean over time -> dropout -> linear.
``meanmax``    [masked mean ; masked max] -> dropout -> linear.
``attention``  a logistic-regression scorer on each frame, softmax over the valid frames, weighted average
               -> dropout -> linear.
``mlp``        frame-wise MLP (``layers`` × (linear ``hidden`` -> ReLU -> dropout)) -> masked mean -> linear.
``bimodal``    Xu et al. (Interspeech 2019), "Learning alignment for multimodal emotion recognition from
               speech": Bi-LSTM over audio frames, Bi-LSTM over text tokens; each token attends over the
               valid audio frames (bilinear or additive scores) to get an aligned audio vector;
               [token state ; aligned audio] -> Bi-LSTM -> masked max over tokens -> dropout -> linear.
               Takes ``x, mask`` (audio) and ``t`` [B × L × Dt], ``tmask`` [B × L] (text). The fast variant:
               audio frames averaged in pairs (``audio_stride``), both modalities projected to ``input_proj``
               dims, bilinear alignment scores (``align``), all set by :class:`TrainConfig`.
``bimodal-xu`` the configuration of Xu et al. as published: additive (Bahdanau-style) alignment, every audio
               frame (stride 1), no input projection; the LSTM size and dropout still come from the config.

Pooled heads (``pooled = True``: ``mean``, ``meanmax``) are ``linear(dropout(pool(x, mask)))`` where
``pool`` commutes with a per-feature positive affine map (standardisation), so the trainer may pool each
utterance once and train on vectors.

Add a head::

    @register_head("myhead")
    class MyHead(Head):
        def __init__(self, in_dims: int, n_classes: int, cfg: TrainConfig): ...
        def forward(self, x, mask): ...
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable, ClassVar

import torch
from torch import nn

import numpy as np

from .config import TrainConfig
from .data import UttStats
from .dropout import Dropout
from .layers import LayerSum
from .pooling import masked_max, masked_mean, masked_softmax, stride_pool, weighted_mean, zero_padding
from .recurrent import BiLSTM

HEADS: dict[str, type["Head"]] = {}


def register_head(name: str) -> Callable[[type["Head"]], type["Head"]]:
    """Class decorator: make a :class:`Head` subclass buildable as ``name``."""

    def wrap(cls: type["Head"]) -> type["Head"]:
        if name in HEADS:
            raise ValueError(f"head {name!r} is already registered ({HEADS[name].__name__})")
        cls.name = name
        HEADS[name] = cls
        return cls

    return wrap


def head_names() -> list[str]:
    return list(HEADS)


def head_class(name: str) -> type["Head"]:
    try:
        return HEADS[name]
    except KeyError:
        raise ValueError(f"unknown head {name!r}; registered heads: {', '.join(HEADS)}") from None


def build_head(name: str, in_dims: int | tuple[int, int], n_classes: int, cfg: TrainConfig) -> "Head":
    """Instantiate head ``name``. ``in_dims``: feature dims, or ``(audio_dims, text_dims)`` for ``bimodal``."""
    cls = head_class(name)
    if cls.bimodal != isinstance(in_dims, tuple):
        need = "(audio_dims, text_dims)" if cls.bimodal else "one int"
        raise ValueError(f"head {name!r} takes in_dims as {need}, got {in_dims!r}")
    cfg = cls.config_for(cfg)
    if cfg.layer_sum == 1:
        return cls(in_dims, n_classes, cfg)
    audio = in_dims[0] if isinstance(in_dims, tuple) else in_dims
    if audio % cfg.layer_sum:
        raise ValueError(f"a layer sum of {cfg.layer_sum} layers needs audio dims divisible by it, got {audio}")
    dims = audio // cfg.layer_sum
    inner = cls((dims, in_dims[1]) if isinstance(in_dims, tuple) else dims, n_classes, cfg)
    return LayerSumHead(inner, cfg.layer_sum, dims)


class LayerSumHead(nn.Module):
    """:class:`train.layers.LayerSum` over the audio frames, then ``inner``: ``x`` [B × T × L·D] -> weighted
    layer sum [B × T × D] -> ``inner(x, mask[, t, tmask])``. Not a pooled head (its layer weights are trained
    with the head), so it always goes through the frame loop."""

    pooled = False

    def __init__(self, inner: "Head", n_layers: int, dims: int):
        super().__init__()
        self.layer_sum = LayerSum(n_layers, dims)
        self.inner = inner
        self.bimodal = inner.bimodal

    def forward(self, x: torch.Tensor, mask: torch.Tensor, *text: torch.Tensor) -> torch.Tensor:
        return self.inner(self.layer_sum(x), mask, *text)


def head_config(name: str, cfg: TrainConfig) -> TrainConfig:
    """The config head ``name`` trains with: ``cfg`` with the head's preset values (:attr:`Head.fixed`)."""
    return head_class(name).config_for(cfg)


class Head(nn.Module):
    """Base class. ``forward(x [B × T × D], mask [B × T]) -> logits [B × C]``."""

    name: ClassVar[str] = ""
    pooled: ClassVar[bool] = False
    """True when the head is ``classifier(dropout(pool(x, mask)))`` with a standardisation-commuting pool."""
    bimodal: ClassVar[bool] = False
    """True when ``forward`` also takes the text side ``(t, tmask)``."""
    fixed: ClassVar[dict[str, Any]] = {}
    """:class:`TrainConfig` values this head always uses, whatever the config says (a preset)."""
    fit_cost: ClassVar[float] = 1.0
    """Rough training cost per frame·dim relative to ``mlp`` (measured on CPU); it only orders the jobs
    of a shared worker pool (longest first, :mod:`train.fitting`), never what a job computes."""

    @classmethod
    def config_for(cls, cfg: TrainConfig) -> TrainConfig:
        """``cfg`` with the head's :attr:`fixed` values: the config a run of this head really trains with
        (what run folders and bundles record)."""
        return replace(cfg, **cls.fixed) if cls.fixed else cfg


class PooledHead(Head):
    """``linear(dropout(pool(x, mask)))``; subclasses define :meth:`pool` and :attr:`width` (pooled dims per D)."""

    pooled = True
    width: ClassVar[int] = 1

    def __init__(self, in_dims: int, n_classes: int, cfg: TrainConfig):
        super().__init__()
        self.dropout = Dropout(cfg.dropout)
        self.classifier = nn.Linear(self.width * in_dims, n_classes)

    @staticmethod
    def pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B × T × D], [B × T] -> [B × width·D]."""
        raise NotImplementedError

    @staticmethod
    def pool_from_stats(stats: UttStats) -> np.ndarray:
        """The unstandardised pooled vectors of every utterance, float32 [N × width·D], from cached stats."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(x, mask)))


@register_head("mean")
class MeanHead(PooledHead):
    """Masked mean over time -> dropout -> linear."""

    width = 1

    @staticmethod
    def pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(x, mask)

    @staticmethod
    def pool_from_stats(stats: UttStats) -> np.ndarray:
        return stats.mean


@register_head("meanmax")
class MeanMaxHead(PooledHead):
    """[masked mean ; masked max] over time -> dropout -> linear."""

    width = 2

    @staticmethod
    def pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([masked_mean(x, mask), masked_max(x, mask)], dim=-1)

    @staticmethod
    def pool_from_stats(stats: UttStats) -> np.ndarray:
        return np.concatenate([stats.mean, stats.max], axis=1)


@register_head("attention")
class AttentionHead(Head):
    """Frame scores from a linear scorer, softmax over valid frames, weighted average -> dropout -> linear."""

    fit_cost = 0.5

    def __init__(self, in_dims: int, n_classes: int, cfg: TrainConfig):
        super().__init__()
        self.scorer = nn.Linear(in_dims, 1)
        self.dropout = Dropout(cfg.dropout)
        self.classifier = nn.Linear(in_dims, n_classes)

    def attend(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled [B × D] and attention weights [B × T] (0 on padding)."""
        x = zero_padding(x, mask)
        weights = masked_softmax(self.scorer(x).squeeze(-1), mask)
        return torch.bmm(weights.unsqueeze(1), x).squeeze(1), weights

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled, _ = self.attend(x, mask)
        return self.classifier(self.dropout(pooled))


@register_head("mlp")
class MLPHead(Head):
    """Frame-wise MLP (``cfg.mlp_layers`` × [linear ``cfg.mlp_hidden`` -> ReLU -> dropout]) -> masked mean -> linear."""

    def __init__(self, in_dims: int, n_classes: int, cfg: TrainConfig):
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dims
        for _ in range(cfg.mlp_layers):
            layers += [nn.Linear(d, cfg.mlp_hidden), nn.ReLU(), Dropout(cfg.dropout)]
            d = cfg.mlp_hidden
        self.frame_mlp = nn.Sequential(*layers)
        self.classifier = nn.Linear(d, n_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # padded frames are zeroed first, so the MLP's outputs are finite everywhere and the masked mean can
        # be a matrix product (the padded frames get weight 0)
        return self.classifier(weighted_mean(self.frame_mlp(zero_padding(x, mask)), mask))


@register_head("bimodal")
class BimodalHead(Head):
    """Audio-text alignment head after Xu et al. (2019); see the module docstring.

    Shapes: audio ``x`` [B × T × Da], ``mask`` [B × T]; text ``t`` [B × L × Dt], ``tmask`` [B × L];
    LSTM states have ``2h`` dims (``h = cfg.lstm_hidden`` per direction). Audio frames are first averaged
    in windows of ``cfg.audio_stride`` frames (masked; 1 = off) to shorten the audio LSTM's sequence, and
    each modality goes through a frame-wise linear projection to ``cfg.input_proj`` dims (+ dropout) before
    its LSTM: a rank-``input_proj`` factorisation of the LSTM input weights, which keeps 512/768-dim
    encoder features cheap (0 = feed the features to the LSTMs directly, as Xu et al. did with MFCCs).
    """

    bimodal = True
    fit_cost = 3.0

    def __init__(self, in_dims: tuple[int, int], n_classes: int, cfg: TrainConfig):
        super().__init__()
        da, dt = in_dims
        h = cfg.lstm_hidden
        self.audio_stride = cfg.audio_stride
        self.dropout = Dropout(cfg.dropout)
        if cfg.input_proj:
            self.audio_proj = nn.Sequential(nn.Linear(da, cfg.input_proj), Dropout(cfg.dropout))
            self.text_proj = nn.Sequential(nn.Linear(dt, cfg.input_proj), Dropout(cfg.dropout))
            da = dt = cfg.input_proj
        else:
            self.audio_proj = self.text_proj = nn.Identity()
        self.audio_lstm = BiLSTM(da, h, cfg.lstm_impl)
        self.text_lstm = BiLSTM(dt, h, cfg.lstm_impl)
        self.align_kind = cfg.align
        if cfg.align == "bilinear":
            self.align = nn.Linear(2 * h, 2 * h, bias=False)
        else:
            self.align_text = nn.Linear(2 * h, h)
            self.align_audio = nn.Linear(2 * h, h, bias=False)
            self.align_v = nn.Linear(h, 1, bias=False)
        self.fuse_lstm = BiLSTM(4 * h, h, cfg.lstm_impl)
        self.classifier = nn.Linear(2 * h, n_classes)

    def alignment(self, ht: torch.Tensor, ha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention of each token over the valid audio frames: [B × L × T] (rows sum to 1 over valid frames)."""
        if self.align_kind == "bilinear":
            scores = torch.bmm(self.align(ht), ha.transpose(1, 2)) / math.sqrt(ha.shape[-1])
        else:
            e = torch.tanh(self.align_text(ht)[:, :, None, :] + self.align_audio(ha)[:, None, :, :])
            scores = self.align_v(e).squeeze(-1)
        return masked_softmax(scores, mask[:, None, :])

    def forward(self, x: torch.Tensor, mask: torch.Tensor, t: torch.Tensor, tmask: torch.Tensor) -> torch.Tensor:
        x, mask = stride_pool(x, mask, self.audio_stride)                # B × T/s × Da
        ha = self.dropout(self.audio_lstm(self.audio_proj(x), mask))     # B × T/s × 2h
        ht = self.dropout(self.text_lstm(self.text_proj(t), tmask))      # B × L × 2h
        aligned = torch.bmm(self.alignment(ht, ha, mask), ha)            # B × L × 2h
        fused = self.dropout(self.fuse_lstm(torch.cat([ht, aligned], -1), tmask))
        return self.classifier(self.dropout(masked_max(fused, tmask)))


@register_head("bimodal-xu")
class BimodalXuHead(BimodalHead):
    """:class:`BimodalHead` as Xu et al. (2019) published it: additive alignment
    ``v · tanh(W_t h_t + W_a h_a)``, every audio frame (``audio_stride = 1``), the features fed to the LSTMs
    directly (``input_proj = 0``). Slower than ``bimodal`` (about 2x the audio LSTM steps, full-width LSTM
    inputs, a [B × L × T × h] score tensor), the reference the fast variant is compared with.
    """

    fixed = {"align": "additive", "audio_stride": 1, "input_proj": 0}
    fit_cost = 9.0
