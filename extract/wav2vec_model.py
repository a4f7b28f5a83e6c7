"""wav2vec 1.0 (Schneider et al., 2019) in plain PyTorch: fairseq's ``Wav2VecModel`` inference path.

fairseq 0.12.2 does not import on Python 3.11, so this module re-implements the parts of
``fairseq/models/wav2vec/wav2vec.py`` that turn a waveform into the latent features ``z`` and the
context vectors ``c``, with the module tree (and so the state-dict key names) of fairseq, and loads an
original checkpoint ``{'args': argparse.Namespace, 'model': state_dict, ...}`` strictly.

* Feature extractor (``feature_extractor.conv_layers.N``): per layer ``Conv1d(k, stride, bias=False)``,
  dropout (off at eval), ``GroupNorm(1 group)`` computed in float32, ReLU (or GELU); optional skip
  connections (``skip_connections_feat``); then ``log(|z| + 1)`` (``log_compression``).
  Samples -> frames: ``floor((n - receptive_field) / hop) + 1`` (0 when ``n < receptive_field``); for the
  released large model the receptive field is 465 samples (29 ms) and the hop 160 samples (10 ms, 100 Hz).
* Aggregator (``feature_aggregator.conv_layers.N``): per layer causal padding ``ReplicationPad1d((k - 1, 0))``
  (``ZeroPad1d`` when ``agg_zero_pad``), ``Conv1d(k, stride)`` (bias unless ``no_conv_bias``), dropout,
  ``GroupNorm(1)``, activation; skip connections (``skip_connections_agg``) with a 1x1 projection
  (``feature_aggregator.residual_proj.N``) where the width changes, each scaled by ``sqrt(residual_scale)``.
* The CPC prediction head (``wav2vec_predictions.project_to_steps``) and ``project_features`` are built
  only so that the checkpoint loads with strict key matching; they take no part in inference.

Padded batches: fairseq's GroupNorm pools its statistics over the whole (padded) time axis, so zero padding
changes every frame. Here the normalisation is *masked*: with ``lengths`` given, each layer's statistics use
only that utterance's valid frames (lengths follow each conv layer). The feature convolutions look only
forward and the aggregator only backward (its padding replicates frame 0, which is valid), so valid output
frames never see padding and a padded batch equals encoding each utterance alone.
"""

from __future__ import annotations

import argparse
import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ser_common.listing import shorten

from .checkpoints import CheckpointError, load_checkpoint
from .feature_set import SAMPLE_RATE

ConvSpec = tuple[int, int, int]
"""One conv layer as fairseq writes it: ``(out_channels, kernel_size, stride)``."""


# -- configuration ----------------------------------------------------------------------------------------

def parse_layers(expr: str | Sequence[Sequence[int]]) -> list[ConvSpec]:
    """Parse a fairseq layer list such as ``"[(512, 10, 5)] + [(512, 8, 4)] + [(512, 4, 2)] * 3"``.

    fairseq ``eval()``s these strings; this evaluates only list/tuple literals of ints, ``+`` (list
    concatenation) and ``* int`` (repetition), so a checkpoint's args cannot run code.
    """
    if not isinstance(expr, str):
        value: Any = expr
    else:
        try:
            value = _eval_layer_expr(ast.parse(expr.strip(), mode="eval").body)
        except (SyntaxError, ValueError, TypeError) as e:
            raise ValueError(f"cannot parse conv layer list {expr!r}: {e}") from None
    try:
        layers = [(int(d), int(k), int(s)) for d, k, s in value]
    except (TypeError, ValueError):
        raise ValueError(f"conv layer list must be [(dim, kernel, stride), ...], got {expr!r}") from None
    if not layers or any(d < 1 or k < 1 or s < 1 for d, k, s in layers):
        raise ValueError(f"conv layer list must be non-empty with positive entries, got {expr!r}")
    return layers


def _eval_layer_expr(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_eval_layer_expr(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _eval_layer_expr(node.left), _eval_layer_expr(node.right)
        if isinstance(node.op, ast.Add) and isinstance(left, list) and isinstance(right, list):
            return left + right
        if isinstance(node.op, ast.Mult) and isinstance(left, list) and isinstance(right, int):
            return left * right
        if isinstance(node.op, ast.Mult) and isinstance(left, int) and isinstance(right, list):
            return left * right
        raise ValueError("only list + list and list * int are allowed")
    raise ValueError(f"unsupported expression element {type(node).__name__}")


@dataclass
class Wav2VecConfig:
    """The architecture fields of a wav2vec checkpoint's args.

    Missing fields take the defaults of fairseq's ``base_wav2vec_architecture`` (the argparse-era
    architecture function that filled every released checkpoint's Namespace).
    """

    conv_feature_layers: list[ConvSpec] = field(
        default_factory=lambda: [(512, 10, 5), (512, 8, 4)] + [(512, 4, 2)] * 3)
    conv_aggregator_layers: list[ConvSpec] = field(default_factory=lambda: [(512, 3, 1)] * 9)
    prediction_steps: int = 12
    aggregator: str = "cnn"
    encoder: str = "cnn"
    skip_connections_feat: bool = False
    skip_connections_agg: bool = False
    residual_scale: float = 0.5
    no_conv_bias: bool = False
    agg_zero_pad: bool = False
    log_compression: bool = False
    project_features: str = "none"
    non_affine_group_norm: bool = False
    activation: str = "relu"
    vq_type: str | None = "none"

    @classmethod
    def from_args(cls, args: argparse.Namespace | Mapping[str, Any]) -> "Wav2VecConfig":
        """Read the architecture fields from a checkpoint's ``args`` Namespace (or a ``cfg['model']`` dict)."""
        get = args.get if isinstance(args, Mapping) else (lambda k, d=None: getattr(args, k, d))
        cfg = cls()
        for name in cls.__dataclass_fields__:
            value = get(name, None)
            if value is None:
                continue
            if name in ("conv_feature_layers", "conv_aggregator_layers"):
                value = parse_layers(value)
            elif name == "vq_type":
                value = str(value)
            else:
                default = getattr(cfg, name)
                value = type(default)(value)
            setattr(cfg, name, value)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Refuse what this port does not implement, with the reason."""
        if self.encoder != "cnn":
            raise NotImplementedError(f"wav2vec encoder {self.encoder!r}: only 'cnn' exists in fairseq")
        if self.aggregator != "cnn":
            raise NotImplementedError(f"wav2vec aggregator {self.aggregator!r} is not supported (only 'cnn', "
                                      "as in the released wav2vec large model)")
        if self.vq_type not in (None, "none", "None"):
            raise NotImplementedError(f"vq_type {self.vq_type!r} (vq-wav2vec) is not supported; this port covers "
                                      "wav2vec 1.0 without quantisation")
        if self.project_features not in ("none", "same", "new"):
            raise ValueError(f"unknown project_features {self.project_features!r}")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"unknown activation {self.activation!r}")

    @property
    def embed_dim(self) -> int:
        """Channels of ``z``."""
        return self.conv_feature_layers[-1][0]

    @property
    def output_dim(self) -> int:
        """Channels of ``c``."""
        return self.conv_aggregator_layers[-1][0]


# -- building blocks ----------------------------------------------------------------------------------------

def conv_output_length(lengths: torch.Tensor, kernel: int, stride: int, padding: int = 0) -> torch.Tensor:
    """Valid output frames of a conv layer for ``lengths`` valid input frames (0 where too short)."""
    out = torch.div(lengths + padding - kernel, stride, rounding_mode="floor") + 1
    return out.clamp(min=0)


def _time_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """Bool [B, 1, frames]: True on each utterance's valid frames."""
    return (torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]).unsqueeze(1)


class MaskedGroupNorm(nn.GroupNorm):
    """fairseq's ``Fp32GroupNorm(1, C)`` (statistics in float32) whose statistics skip padded frames.

    ``forward(x [B, C, T], mask [B, 1, T] bool or None)``: with a mask, mean and (biased) variance pool
    over channels x valid frames of each utterance only; padded frames come out as 0. Without one it is
    exactly ``F.group_norm`` over the whole tensor, as in fairseq. Parameters are ``weight``/``bias`` [C]
    (absent when not affine), as in fairseq's state dicts.
    """

    def __init__(self, num_channels: int, affine: bool = True, eps: float = 1e-5) -> None:
        super().__init__(1, num_channels, eps=eps, affine=affine)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        xf = x.float()
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        if mask is None:
            return F.group_norm(xf, 1, w, b, self.eps).type_as(x)
        count = (mask.sum(dim=(1, 2), keepdim=True) * x.shape[1]).clamp(min=1).float()
        xf = xf.masked_fill(~mask, 0.0)
        mean = xf.sum(dim=(1, 2), keepdim=True) / count
        centred = (xf - mean).masked_fill(~mask, 0.0)
        var = centred.pow(2).sum(dim=(1, 2), keepdim=True) / count
        y = centred * torch.rsqrt(var + self.eps)
        if w is not None:
            y = y * w[None, :, None] + b[None, :, None]
        return y.masked_fill(~mask, 0.0).type_as(x)


class ZeroPad1d(nn.Module):
    """fairseq's ``ZeroPad1d``: zeros before/after the time axis of [B, C, T]."""

    def __init__(self, pad_left: int, pad_right: int) -> None:
        super().__init__()
        self.pad_left, self.pad_right = pad_left, pad_right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (self.pad_left, self.pad_right))


def _activation(name: str) -> nn.Module:
    return nn.ReLU() if name == "relu" else nn.GELU()


class ConvFeatureExtractionModel(nn.Module):
    """Waveform [B, samples] -> z [B, C, frames] (fairseq's ``ConvFeatureExtractionModel``).

    ``conv_layers[i]`` = ``Sequential(Conv1d, Dropout, GroupNorm, activation)`` as in fairseq.
    """

    def __init__(self, cfg: Wav2VecConfig) -> None:
        super().__init__()
        self.specs = list(cfg.conv_feature_layers)
        self.conv_layers = nn.ModuleList()
        in_d = 1
        for dim, k, stride in self.specs:
            self.conv_layers.append(nn.Sequential(
                nn.Conv1d(in_d, dim, k, stride=stride, bias=False),
                nn.Dropout(p=0.0),
                MaskedGroupNorm(dim, affine=not cfg.non_affine_group_norm),
                _activation(cfg.activation),
            ))
            in_d = dim
        self.log_compression = cfg.log_compression
        self.skip_connections = cfg.skip_connections_feat
        self.residual_scale = math.sqrt(cfg.residual_scale)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames of ``z`` for ``lengths`` samples (int tensor [B])."""
        for _, k, s in self.specs:
            lengths = conv_output_length(lengths, k, s)
        return lengths

    def forward(self, wav: torch.Tensor,
                lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``wav`` [B, samples], ``lengths`` [B] valid samples or None -> (z [B, C, frames], frame lengths)."""
        x = wav.unsqueeze(1)
        for (_, k, s), block in zip(self.specs, self.conv_layers):
            residual, res_lengths = x, lengths
            x = block[0](x)
            x = block[1](x)
            mask = None
            if lengths is not None:
                lengths = conv_output_length(lengths, k, s)
                mask = _time_mask(lengths, x.shape[-1])
            x = block[2](x, mask)
            x = block[3](x)
            if self.skip_connections and x.shape[1] == residual.shape[1]:
                x = (x + self._subsample(residual, res_lengths, lengths, x.shape[-1])) * self.residual_scale
                if mask is not None:
                    x = x.masked_fill(~mask, 0.0)
        if self.log_compression:
            x = (x.float().abs() + 1).log().type_as(x)
        return x, lengths

    @staticmethod
    def _subsample(residual: torch.Tensor, r_len: torch.Tensor | None, t_len: torch.Tensor | None,
                   frames: int) -> torch.Tensor:
        """fairseq's ``residual[..., :: r_tsz // tsz][..., :tsz]``, with each utterance's own lengths."""
        if r_len is None or t_len is None:
            step = max(residual.shape[-1] // frames, 1)
            return residual[..., ::step][..., :frames]
        step = torch.div(r_len, t_len.clamp(min=1), rounding_mode="floor").clamp(min=1)  # [B]
        idx = torch.arange(frames, device=residual.device)[None, :] * step[:, None]
        idx = idx.clamp(max=residual.shape[-1] - 1)
        return residual.gather(2, idx[:, None, :].expand(-1, residual.shape[1], -1))


class ConvAggregator(nn.Module):
    """z [B, C, T] -> c [B, C', T] (fairseq's causal ``ConvAggegator``).

    ``conv_layers[i]`` = ``Sequential(pad, Conv1d, Dropout, GroupNorm, activation)``; ``residual_proj[i]``
    a bias-free 1x1 conv where the width changes (and skip connections are on), else absent.
    """

    def __init__(self, cfg: Wav2VecConfig) -> None:
        super().__init__()
        self.specs = list(cfg.conv_aggregator_layers)
        layers, projs = [], []
        in_d = cfg.embed_dim
        for dim, k, stride in self.specs:
            ka = k // 2
            kb = ka - 1 if k % 2 == 0 else ka
            pad = ZeroPad1d(ka + kb, 0) if cfg.agg_zero_pad else nn.ReplicationPad1d((ka + kb, 0))
            projs.append(nn.Conv1d(in_d, dim, 1, bias=False) if in_d != dim and cfg.skip_connections_agg else None)
            layers.append(nn.Sequential(
                pad,
                nn.Conv1d(in_d, dim, k, stride=stride, bias=not cfg.no_conv_bias),
                nn.Dropout(p=0.0),
                MaskedGroupNorm(dim, affine=not cfg.non_affine_group_norm),
                _activation(cfg.activation),
            ))
            in_d = dim
        self.conv_layers = nn.Sequential(*layers)
        self.residual_proj = nn.ModuleList(projs)
        self.skip_connections = cfg.skip_connections_agg
        self.residual_scale = math.sqrt(cfg.residual_scale)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames of ``c`` for ``lengths`` frames of ``z`` (equal for stride-1 layers)."""
        for _, k, s in self.specs:
            lengths = conv_output_length(lengths, k, s, padding=k - 1)
        return lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` z [B, C, T], ``lengths`` [B] valid frames or None -> (c [B, C', T'], frame lengths)."""
        for (_, k, s), rproj, block in zip(self.specs, self.residual_proj, self.conv_layers):
            residual = x
            x = block[2](block[1](block[0](x)))
            mask = None
            if lengths is not None:
                lengths = conv_output_length(lengths, k, s, padding=k - 1)
                mask = _time_mask(lengths, x.shape[-1])
            x = block[4](block[3](x, mask))
            if self.skip_connections:
                if rproj is not None:
                    residual = rproj(residual)
                x = (x + residual) * self.residual_scale
                if mask is not None:
                    x = x.masked_fill(~mask, 0.0)
        return x, lengths


class Wav2VecPredictionsModel(nn.Module):
    """Holds the CPC head's ``project_to_steps`` weights (loaded, never used at inference)."""

    def __init__(self, in_dim: int, out_dim: int, prediction_steps: int) -> None:
        super().__init__()
        self.project_to_steps = nn.ConvTranspose2d(in_dim, out_dim, (1, prediction_steps))


# -- checkpoint architecture ------------------------------------------------------------------------------

def _checkpoint_args(ckpt: Mapping[str, Any], path: Path) -> argparse.Namespace | Mapping[str, Any]:
    args = ckpt.get("args")
    if args is not None:
        return args
    cfg = ckpt.get("cfg")  # fairseq >= 0.10 saves an OmegaConf container instead of a Namespace
    if isinstance(cfg, Mapping) and isinstance(cfg.get("model"), Mapping):
        return cfg["model"]
    raise CheckpointError(f"{path} has neither 'args' nor cfg['model']: cannot tell its architecture")


# -- the model --------------------------------------------------------------------------------------------------

class Wav2VecModel(nn.Module):
    """wav2vec 1.0 encoder: 16 kHz waveform -> latent features z and context vectors c.

    Module names (and so state-dict keys) are fairseq's: ``feature_extractor``, ``feature_aggregator``,
    ``wav2vec_predictions`` and, when the checkpoint has one, ``project_features``.
    """

    def __init__(self, cfg: Wav2VecConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.feature_extractor = ConvFeatureExtractionModel(cfg)
        self.feature_aggregator = ConvAggregator(cfg)
        self.wav2vec_predictions = Wav2VecPredictionsModel(cfg.output_dim, cfg.embed_dim, cfg.prediction_steps)
        if cfg.project_features == "same":
            self.project_features: nn.Module | None = self.feature_aggregator
        elif cfg.project_features == "new":
            self.project_features = ConvAggregator(cfg)
        else:
            self.project_features = None

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "Wav2VecModel":
        """Build from an original fairseq checkpoint's args and load its weights with strict key matching.

        Returns the model in eval mode on the CPU, float32. Raises :class:`CheckpointError` when keys are
        missing or unexpected, or shapes differ, naming them.
        """
        path = Path(path)
        ckpt = load_checkpoint(path)
        cfg = Wav2VecConfig.from_args(_checkpoint_args(ckpt, path))
        model = cls(cfg)
        model.load_fairseq_state_dict(ckpt["model"], source=str(path))
        return model.eval()

    def load_fairseq_state_dict(self, state: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
        """Load fairseq weights; every key must match (no missing, no extra) with identical shapes."""
        expected = set(self.state_dict())
        given = set(state)
        missing, unexpected = sorted(expected - given), sorted(given - expected)
        if missing or unexpected:
            raise CheckpointError(
                f"{source} does not match the wav2vec architecture described by its args: "
                f"missing keys {_short(missing)}; unexpected keys {_short(unexpected)}")
        own = self.state_dict()
        wrong = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                 for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
        if wrong:
            raise CheckpointError(f"{source}: tensor shapes differ from its args' architecture: {_short(wrong)}")
        self.load_state_dict(dict(state), strict=True)

    # -- geometry -------------------------------------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        """Samples between consecutive frames (160 for the large model: 100 frames/s at 16 kHz)."""
        return math.prod(s for _, _, s in self.cfg.conv_feature_layers) * math.prod(
            s for _, _, s in self.cfg.conv_aggregator_layers)

    @property
    def receptive_field(self) -> int:
        """Samples seen by the first frame of z, which is the fewest samples that give one frame (465 for large)."""
        rf, jump = 1, 1
        for _, k, s in self.cfg.conv_feature_layers:
            rf += (k - 1) * jump
            jump *= s
        return rf

    @property
    def frame_rate_hz(self) -> float:
        """Frames of c per second of 16 kHz audio."""
        return SAMPLE_RATE / self.hop_length

    @property
    def output_dim(self) -> int:
        """Channels of c."""
        return self.cfg.output_dim

    def num_frames(self, samples: int) -> int:
        """Frames of c for ``samples`` input samples (0 when shorter than :attr:`receptive_field`)."""
        n = torch.tensor([int(samples)])
        return int(self.feature_aggregator.output_lengths(self.feature_extractor.output_lengths(n))[0])

    # -- inference --------------------------------------------------------------------------------------------------
    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``wav`` float32 [B, samples] at 16 kHz -> (z [B, embed, T], c [B, out, T]).

        ``lengths`` (int [B], valid samples of each zero-padded row) switches on masked normalisation, so
        each row's first ``num_frames(lengths[i])`` frames equal encoding that row alone; without it every
        row is taken as full length, exactly as fairseq does.
        """
        if wav.dim() != 2:
            raise ValueError(f"wav must be [batch, samples], got shape {tuple(wav.shape)}")
        if wav.shape[-1] < self.receptive_field:
            raise ValueError(f"{wav.shape[-1]} samples is shorter than the receptive field "
                             f"({self.receptive_field} samples): no frame to compute")
        if lengths is not None:
            lengths = lengths.to(device=wav.device, dtype=torch.long)
            if int(lengths.min()) < self.receptive_field:
                raise ValueError(f"an utterance of {int(lengths.min())} samples is shorter than the receptive "
                                 f"field ({self.receptive_field} samples)")
        z, frames = self.feature_extractor(wav, lengths)
        c, _ = self.feature_aggregator(z, frames)
        return z, c

    @torch.inference_mode()
    def encode_batch(self, waves: Sequence[np.ndarray], device: str | torch.device | None = None) -> list[np.ndarray]:
        """Encode utterances of any lengths in one zero-padded batch.

        ``waves[i]`` float [samples_i] at 16 kHz (at least :attr:`receptive_field` samples) -> float32
        numpy c [frames_i, out_dim] per utterance, ``frames_i = num_frames(samples_i)``, each equal to
        encoding that utterance alone. Run it under :func:`extract.runtime.autocast` to compute in
        bfloat16/float16 (as :class:`extract.wav2vec.Wav2VecFeatureSet` does).
        """
        if not waves:
            return []
        device = torch.device(device) if device is not None else next(self.parameters()).device
        lens = [int(np.asarray(w).shape[0]) for w in waves]
        for i, w in enumerate(waves):
            if np.asarray(w).ndim != 1:
                raise ValueError(f"waves[{i}] must be mono [samples], got shape {np.asarray(w).shape}")
        batch = np.zeros((len(waves), max(lens)), dtype=np.float32)
        for i, w in enumerate(waves):
            batch[i, : lens[i]] = w
        wav = torch.from_numpy(batch).to(device)
        lengths = torch.tensor(lens, dtype=torch.long, device=device)
        full = all(n == batch.shape[1] for n in lens)
        _, c = self(wav, None if full else lengths)
        c = c.float().transpose(1, 2).cpu().numpy()
        return [np.ascontiguousarray(c[i, : self.num_frames(n)]) for i, n in enumerate(lens)]


def _short(items: list[str], n: int = 8) -> str:
    return shorten(items, n, wrap=("[", "]")) if items else "none"
