"""Audio feature set ``hf:model[@layer]``: one hidden layer (or several) of a transformers speech encoder.

Families (by ``config.model_type``): ``wav2vec2``, ``hubert``, ``wavlm``, ``data2vec-audio`` (raw waveform
in, a conv feature encoder with stride 320 -> 50 frames/s) and ``whisper`` (the encoder only; log-mel in,
50 frames/s).

Layers: ``@k`` selects ``hidden_states[k]`` as transformers returns it: ``0`` is the input of the first
transformer layer (conv features + positional embedding), ``k`` the output of layer ``k``, and ``N``
(= number of layers, the default) the last. For Whisper ``hidden_states[N]`` is the encoder output after its
final LayerNorm; for wav2vec2-style models it is the last layer's output (stable-layer-norm models, such as
the large lv60 ones, apply their final encoder LayerNorm only in ``last_hidden_state``). ``@2,4,6`` or
``@all`` sweeps layers in one forward pass and writes one store per layer (:meth:`output_names`).
Negative layers count from the end (``@-1`` = ``@N``).

Padding (batched results equal one-at-a-time results):

* ``feat_extract_norm == "layer"`` (wav2vec2-large-lv60, HuBERT/WavLM large): padded batches with an
  ``attention_mask`` (transformers zeroes padded frames before the single positional convolution and masks
  them in attention, so real frames are exactly those of the unpadded utterance).
* data2vec-audio (layer norm, but a stack of 5 positional convolutions: padded frames leak through the
  second and later ones into the last ~0.7 s of real frames, mask or not): treated like group norm below.
* ``feat_extract_norm == "group"`` (wav2vec2-base, HuBERT/WavLM base): the first conv's GroupNorm
  normalises over time, so padding changes every frame and these models were never trained with an
  attention mask. They (and data2vec-audio) are never given padded batches: utterances of equal length
  are batched together (common with ``crop_s``), the others run one at a time.
* Whisper: every input is padded to the 30 s window the encoder requires anyway; only the frames of the
  real audio are kept: ``ceil(n_samples / 320)``. Clips longer than 30 s are cut into consecutive,
  non-overlapping 30 s windows, encoded separately (no attention across windows) and their frames
  concatenated, so the count is still ``ceil(n_samples / 320)``.

Waveform normalisation: the model's ``preprocessor_config.json`` (``AutoFeatureExtractor``) when present;
otherwise the fairseq convention: zero-mean/unit-variance per utterance exactly for layer-norm models
(``do_normalize = feat_extract_norm == "layer"``).
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .feature_set import SAMPLE_RATE, FeatureSet
from .hub import load_pretrained, quiet_transformers
from .naming import model_basename
from .registry import register
from .runtime import autocast, hidden_states
from .weights import weights_sha256

SSL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")
WHISPER_TYPES = ("whisper",)
SUPPORTED_TYPES = SSL_TYPES + WHISPER_TYPES
UNPADDED_TYPES = ("data2vec-audio",)
"""Layer-norm models that still must not get padded batches: data2vec-audio's stack of positional convolutions
carries padded frames into the last real ones even with an attention mask (only its first conv sees zeros)."""
_LAYERS_RE = re.compile(r"^\s*(all|-?\d+(\s*,\s*-?\d+)*)\s*$")


# ---- spec parsing -------------------------------------------------------------------------------------------
def parse_hf_arg(arg: str | None) -> tuple[str, str | None]:
    """``"path@4"`` -> ``("path", "4")``; ``"owner/name"`` -> ``("owner/name", None)``; ``@2,4`` / ``@all`` kept."""
    if not arg or not arg.strip():
        raise ValueError("hf needs a model: hf:<hub id or path>[@layer], layer an int, a comma list or 'all' "
                         "(e.g. hf:../shared/models/whisper-base-encoder@4)")
    model, sep, layer = arg.rpartition("@")
    if not sep or Path(arg).expanduser().is_dir():
        return arg, None
    if not model:
        raise ValueError(f"hf:{arg}: no model before '@'")
    if not _LAYERS_RE.match(layer):
        raise ValueError(f"hf:{arg}: bad layer {layer!r}; expected an int, a comma list (2,4,6) or 'all'")
    return model, layer.strip()


def resolve_layers(layers: str | int | list[int] | None, num_layers: int) -> list[int]:
    """Layer selection -> sorted, distinct indices into ``hidden_states`` (0 … ``num_layers``).

    ``None`` -> ``[num_layers]`` (the last); ``"all"`` -> every one; negatives count from the end.
    """
    n_states = num_layers + 1
    if layers is None:
        return [num_layers]
    if isinstance(layers, str):
        if layers.strip() == "all":
            return list(range(n_states))
        layers = [int(x) for x in layers.split(",")]
    elif isinstance(layers, int):
        layers = [layers]
    out = set()
    for k in layers:
        if not -n_states <= k < n_states:
            raise ValueError(f"layer {k} out of range: this encoder has {num_layers} layers, so hidden_states "
                             f"indices 0..{num_layers} (0 = input of the first layer, {num_layers} = last)")
        out.add(k % n_states)
    return sorted(out)


# ---- base class --------------------------------------------------------------------------------------------
class HFSpeechFeatureSet(FeatureSet):
    """Common part: layer selection, names, provenance, device/dtype and the output plumbing.

    Subclasses implement :meth:`_forward` (waves -> {layer: [frames_i, dims] per utterance}).
    """

    modality = "audio"
    frame_rate_hz: float = 50.0

    def __init__(self, model: Any, feature_extractor: Any, *, num_layers: int, dims: int,
                 layers: str | int | list[int] | None = None, encoder: str = "random",
                 basename: str | None = None, weights: str | None = None) -> None:
        self.model = model.eval()
        self.fe = feature_extractor
        self.encoder = str(encoder)
        self.num_layers = int(num_layers)
        self.dims = int(dims)
        self.layers = resolve_layers(layers, self.num_layers)
        self.basename = basename or (model_basename(self.encoder) if self.encoder != "random" else "random")
        self._weights = weights if weights is not None else weights_sha256(model)
        self.name = self._name()

    # ---- names and provenance -------------------------------------------------------------------------
    def _name(self) -> str:
        """The feature set's name from :attr:`basename` and the layers: ``hf-<basename>-l4``, ``-lall``,
        ``-l2_4``."""
        if len(self.layers) == 1:
            return self.layer_name(self.layers[0])
        if self.layers == list(range(self.num_layers + 1)):
            return f"hf-{self.basename}-lall"
        return f"hf-{self.basename}-l" + "_".join(map(str, self.layers))

    def layer_name(self, layer: int) -> str:
        """Store name of one layer: ``hf-<basename>-l<layer>``."""
        return f"hf-{self.basename}-l{layer}"

    def output_names(self) -> list[str]:
        """One store per selected layer, e.g. ``hf-whisper-base-encoder-l0`` … ``-l6`` for ``@all``."""
        return [self.layer_name(k) for k in self.layers]

    def _extra_provenance(self) -> dict[str, Any]:
        return {}

    def provenance(self) -> dict[str, Any]:
        cfg = self.model.config
        single = len(self.layers) == 1
        return {
            "feature": self.name, "spec": self.spec or self.name, "modality": self.modality,
            "encoder": self.encoder, "encoder_class": type(self.model).__name__,
            "model_type": cfg.model_type, "weights_sha256": self._weights,
            "layer": self.layers[0] if single else None,
            "layer_desc": f"hidden_states[{self.layers[0]}]" if single else None,
            "layers": list(self.layers), "num_layers": self.num_layers,
            "frame_rate_hz": self.frame_rate_hz, "dims": self.dims, "sample_rate": SAMPLE_RATE,
            "min_samples": self.min_samples, **self._extra_provenance(),
        }

    def output_provenance(self, output: str) -> dict[str, Any]:
        """Provenance of one layer's store (``feature`` = that store's name, ``layer`` = its index)."""
        names = self.output_names()
        if output not in names:
            raise KeyError(f"{output!r} is not an output of {self.name} (outputs: {', '.join(names)})")
        k = self.layers[names.index(output)]
        return {**self.provenance(), "feature": output, "layer": k, "layer_desc": f"hidden_states[{k}]"}

    # ---- compute ---------------------------------------------------------------------------------------
    def _move_model(self, device: str) -> None:
        self.model.to(device)

    def _check_waves(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for i, w in enumerate(waves):
            w = np.asarray(w, dtype=np.float32)
            if w.ndim != 1:
                raise ValueError(f"{self.name}: waveform {i} has shape {w.shape}; expected mono float32 [samples]")
            if w.shape[0] < self.min_samples:
                raise ValueError(f"{self.name}: waveform {i} has {w.shape[0]} samples; needs at least "
                                 f"{self.min_samples} ({self.min_samples / SAMPLE_RATE * 1000:.0f} ms) for one frame")
            if not np.isfinite(w).all():
                raise ValueError(f"{self.name}: waveform {i} contains NaN or Inf")
            out.append(w)
        return out

    def _forward(self, waves: list[np.ndarray]) -> dict[int, list[np.ndarray]]:
        raise NotImplementedError

    def encode_outputs(self, waves: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        """Waveforms (float32 [samples] at 16 kHz) -> {output name: per-utterance float32 [frames_i, dims]},
        all layers from one forward pass."""
        if not waves:
            return {name: [] for name in self.output_names()}
        per_layer = self._forward(self._check_waves(waves))
        return {self.layer_name(k): per_layer[k] for k in self.layers}

    def encode(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Single-layer feature sets: float32 [frames_i, dims] per waveform (multi-layer: use encode_outputs)."""
        if len(self.layers) != 1:
            raise ValueError(f"{self.name} selects {len(self.layers)} layers; use encode_outputs()")
        return self.encode_outputs(waves)[self.name]


# ---- wav2vec2 / HuBERT / WavLM / data2vec-audio -------------------------------------------------------------
def default_ssl_feature_extractor(config: Any) -> Any:
    """A ``Wav2Vec2FeatureExtractor`` for a model without ``preprocessor_config.json``: normalise (and take an
    attention mask) exactly when ``feat_extract_norm == "layer"`` (the fairseq training convention)."""
    from transformers import Wav2Vec2FeatureExtractor

    layer_norm = getattr(config, "feat_extract_norm", "layer") == "layer"
    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                    do_normalize=layer_norm, return_attention_mask=layer_norm)


class SSLSpeechFeatureSet(HFSpeechFeatureSet):
    """wav2vec2-style encoders: waveform -> float32 [frames, hidden_size] at 16000 / prod(conv_stride) Hz.

    Frames for ``n`` samples: the conv stack's ``floor((n - k) / s) + 1`` per layer (wav2vec2 defaults:
    ``floor((n - 400) / 320) + 1``); :attr:`min_samples` is its receptive field (400 = 25 ms).
    """

    def __init__(self, model: Any, feature_extractor: Any | None = None, **kw: Any) -> None:
        cfg = model.config
        if cfg.model_type not in SSL_TYPES:
            raise ValueError(f"{type(model).__name__} ({cfg.model_type}) is not one of {', '.join(SSL_TYPES)}")
        if getattr(cfg, "add_adapter", False):
            raise ValueError(f"{cfg.model_type} with add_adapter=True changes the frame rate; not supported")
        fe = feature_extractor if feature_extractor is not None else default_ssl_feature_extractor(cfg)
        if getattr(fe, "sampling_rate", SAMPLE_RATE) != SAMPLE_RATE:
            raise ValueError(f"feature extractor expects {fe.sampling_rate} Hz audio; this toolkit feeds 16 kHz")
        super().__init__(model, fe, num_layers=cfg.num_hidden_layers, dims=cfg.hidden_size, **kw)
        self.kernels = [int(k) for k in cfg.conv_kernel]
        self.strides = [int(s) for s in cfg.conv_stride]
        self.frame_rate_hz = SAMPLE_RATE / math.prod(self.strides)
        rf, jump = self.kernels[0], self.strides[0]
        for k, s in zip(self.kernels[1:], self.strides[1:]):
            rf += (k - 1) * jump
            jump *= s
        self.min_samples = rf
        self.feat_extract_norm = getattr(cfg, "feat_extract_norm", "layer")
        self.pad_batches = self.feat_extract_norm == "layer" and cfg.model_type not in UNPADDED_TYPES

    def n_frames(self, n_samples: int) -> int:
        """The conv stack's ``floor((n - k) / s) + 1`` per layer (0 below :attr:`min_samples`)."""
        n = int(n_samples)
        for k, s in zip(self.kernels, self.strides):
            if n < k:
                return 0
            n = (n - k) // s + 1
        return n

    @property
    def max_batch_samples(self) -> int:
        """80 s of padded audio per batch (16 × 5 s)."""
        return SAMPLE_RATE * 16 * 5

    def _extra_provenance(self) -> dict[str, Any]:
        return {"feat_extract_norm": self.feat_extract_norm,
                "do_normalize": bool(getattr(self.fe, "do_normalize", False)),
                "padding": ("padded batches with attention_mask" if self.pad_batches
                            else "no padding: equal-length batches, else one utterance at a time")}

    def _groups(self, waves: list[np.ndarray]) -> list[list[int]]:
        if self.pad_batches:
            return [list(range(len(waves)))]
        by_len: dict[int, list[int]] = {}
        for i, w in enumerate(waves):
            by_len.setdefault(w.shape[0], []).append(i)
        return list(by_len.values())

    def _forward(self, waves: list[np.ndarray]) -> dict[int, list[np.ndarray]]:
        import torch

        out: dict[int, list[Any]] = {k: [None] * len(waves) for k in self.layers}
        for group in self._groups(waves):
            feats = self.fe([waves[i] for i in group], sampling_rate=SAMPLE_RATE, padding=True,
                            return_attention_mask=self.pad_batches, return_tensors="pt")
            inputs = {"input_values": feats["input_values"].to(self.device, torch.float32)}
            if self.pad_batches:
                inputs["attention_mask"] = feats["attention_mask"].to(self.device)
            with torch.inference_mode(), autocast(self.device, self.compute_dtype), warnings.catch_warnings():
                # WavLM's attention mixes a bool padding mask with a float bias: a torch deprecation notice
                warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
                hs = hidden_states(self.model, self.layers, **inputs)
            for k, h in hs.items():
                h = h.float().cpu().numpy()
                for row, i in enumerate(group):
                    out[k][i] = np.ascontiguousarray(h[row, :self.n_frames(waves[i].shape[0])])
        return out


# ---- Whisper encoder --------------------------------------------------------------------------------------
def parse_whisper_window(value: str | float | None) -> float | None:
    """``--whisper-window``: ``padded`` (or ``None``) -> 30.0; ``native`` -> ``None`` (each clip's own length);
    ``"10"`` -> 10.0 seconds. Raises ``ValueError`` naming the accepted values."""
    if value is None or value == "padded":
        return 30.0
    if value == "native":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not (0 < seconds <= 30 and abs(seconds * 50 - round(seconds * 50)) < 1e-9):
        raise ValueError(f"--whisper-window must be padded, native or a number of seconds in (0, 30] that is a "
                         f"multiple of 0.02 (one encoder frame), got {value!r}")
    return seconds


class WhisperEncoderFeatureSet(HFSpeechFeatureSet):
    """Whisper encoder: log-mel windows -> float32 [frames, d_model] at 50 frames/s.

    ``window`` (``--whisper-window``) is how much input the encoder sees per clip:

    * ``30.0`` (``padded``, the default, what Whisper was trained with): each utterance is padded to the
      encoder's fixed window (30 s = 3000 mel frames -> 1500 encoder frames);
    * ``W`` seconds (``0 < W < 30``): padded to ``W`` s, the encoder run with its first ``W × 50`` positional
      embeddings (a cheaper window: attention and MLP cost scale with the window);
    * ``None`` (``native``): no padding beyond one encoder frame: each clip is its own window (the cheapest;
      the real frames no longer attend to the padding frames the encoder was trained with, so the features
      change).

    In every case only the frames of the real audio are kept: ``ceil(n_samples / 320)``. Clips longer than
    the window are split into non-overlapping windows (see the module docstring). A window costs a forward
    pass of its full length, so batches are sized by count (:attr:`batch_items` windows per forward pass);
    ``native`` batches only clips of equal frame counts. The window is recorded in the provenance
    (``window_s``, and ``whisper_window`` when it is not the padded default), so stores of different windows
    never meet, and named in the store (``hf-<model>-native-l4``, ``hf-<model>-w10-l4``).
    """

    def __init__(self, model: Any, feature_extractor: Any | None = None, *, batch_items: int | None = None,
                 window: str | float | None = "padded", **kw: Any) -> None:
        from transformers import WhisperFeatureExtractor
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        if model.config.model_type not in WHISPER_TYPES:
            raise ValueError(f"{type(model).__name__} ({model.config.model_type}) is not a Whisper model")
        if not isinstance(model, WhisperEncoder):
            model = model.get_encoder()
        cfg = model.config
        fe = feature_extractor if feature_extractor is not None else WhisperFeatureExtractor(
            feature_size=cfg.num_mel_bins, sampling_rate=SAMPLE_RATE)
        if fe.sampling_rate != SAMPLE_RATE:
            raise ValueError(f"feature extractor expects {fe.sampling_rate} Hz audio; this toolkit feeds 16 kHz")
        super().__init__(model, fe, num_layers=cfg.encoder_layers, dims=cfg.d_model, **kw)
        self.hop = int(fe.hop_length)
        self.samples_per_frame = self.hop * int(model.conv1.stride[0]) * int(model.conv2.stride[0])
        self.window = int(fe.n_samples)
        self.frames_per_window = int(cfg.max_source_positions)
        if self.window != self.frames_per_window * self.samples_per_frame:
            raise ValueError(f"feature extractor window ({self.window} samples) does not give the encoder's "
                             f"{self.frames_per_window} positions × {self.samples_per_frame} samples")
        self.frame_rate_hz = SAMPLE_RATE / self.samples_per_frame
        self.min_samples = self.hop
        self.batch_items = int(batch_items) if batch_items else None
        self.window_s = self.window / SAMPLE_RATE
        self.configure(window)

    def configure(self, whisper_window: str | float | None = "padded") -> "WhisperEncoderFeatureSet":
        """Set the input window (``--whisper-window``; see the class docstring), renaming the store to match."""
        base = self.basename.removesuffix(f"-{self._window_tag()}") if self._window_tag() else self.basename
        self.window_s = parse_whisper_window(whisper_window)
        self.basename = f"{base}-{self._window_tag()}" if self._window_tag() else base
        self.name = self._name()
        return self

    def _window_tag(self) -> str:
        """``native``, ``w10`` (a 10 s window; ``w7p5`` for 7.5 s), or ``""`` for the padded 30 s default."""
        if self.window_s == self.window / SAMPLE_RATE:
            return ""
        return "native" if self.window_s is None else f"w{self.window_s:g}".replace(".", "p")

    @property
    def window_samples(self) -> int | None:
        """Samples per encoder window (``None``: native, each clip rounded up to whole encoder frames)."""
        return None if self.window_s is None else int(round(self.window_s * SAMPLE_RATE))

    def _windowed_states(self, x: Any, n_frames: int) -> dict[int, Any]:
        """``{layer: hidden_states[layer]}`` [B × n_frames × D] of log-mel ``x`` [B × mels × 2·n_frames] for a
        window other than the encoder's 30 s: Whisper's encoder forward written out (conv1, GELU, conv2, GELU,
        + the first ``n_frames`` positional embeddings, the layers, the final layer norm on the last state),
        because transformers refuses inputs that are not 3000 mel frames long. Equal to transformers' own
        forward at 1500 frames (a test checks it). Layers above the deepest selected one are not run
        (``@4`` of a 6-layer encoder runs 4 layers)."""
        import torch.nn.functional as F

        m = self.model
        h = F.gelu(m.conv2(F.gelu(m.conv1(x)))).permute(0, 2, 1)
        h = h + m.embed_positions.weight[:n_frames].to(h.dtype)
        states = [h]
        for layer in m.layers[:max(self.layers)]:
            out = layer(h, None)
            h = out[0] if isinstance(out, tuple) else out
            states.append(h)
        if len(states) == self.num_layers + 1:    # hidden_states[N] is the output after the final layer norm
            states[-1] = m.layer_norm(h)
        return {k: states[k] for k in self.layers}

    def n_frames(self, n_samples: int) -> int:
        """``ceil(n_samples / 320)``: the frames of the real audio, whatever the window."""
        return math.ceil(int(n_samples) / self.samples_per_frame)

    def _items_per_pass(self) -> int:
        if self.batch_items:
            return self.batch_items
        return 16 if self.device.startswith("cuda") else 4

    @property
    def max_batch_samples(self) -> int:
        """Budget for the pipeline's length batching; forward passes are further capped at
        :attr:`batch_items` windows (16 on GPU, 4 on CPU by default), each costing 30 s of compute."""
        return self.window * self._items_per_pass() * 4

    @property
    def max_batch_items(self) -> int:
        """Utterances per pipeline batch: a few forward passes' worth, so progress and commits stay fine-grained."""
        return self._items_per_pass() * 4

    def _extra_provenance(self) -> dict[str, Any]:
        common = {"num_mel_bins": int(self.model.config.num_mel_bins), "hop_length": self.hop}
        if self.window_s == self.window / SAMPLE_RATE:      # the padded default: the provenance it always had
            return {"window_s": self.window / SAMPLE_RATE, **common, "padding": "each input padded to the 30 s "
                    "window; real frames kept (ceil(n_samples / 320)); longer clips: non-overlapping 30 s "
                    "windows, frames concatenated"}
        if self.window_s is None:
            return {"window_s": None, "whisper_window": "native", **common, "padding": "each input padded to "
                    "whole encoder frames only (its own window, positional embeddings sliced); longer than 30 s: "
                    "non-overlapping 30 s windows, frames concatenated"}
        return {"window_s": self.window_s, "whisper_window": f"{self.window_s:g}", **common,
                "padding": f"each input padded to a {self.window_s:g} s window (positional embeddings sliced); "
                           f"real frames kept; longer clips: non-overlapping {self.window_s:g} s windows"}

    def _forward(self, waves: list[np.ndarray]) -> dict[int, list[np.ndarray]]:
        import torch

        span = self.window_samples or self.window          # native: clips longer than 30 s still split at 30 s
        chunks: list[tuple[int, np.ndarray]] = []
        for i, w in enumerate(waves):
            for start in range(0, w.shape[0], span):
                piece = w[start:start + span]
                if piece.shape[0] > 0:
                    chunks.append((i, piece))

        def padded_samples(piece: np.ndarray) -> int:
            """The window a piece is padded to: the fixed window, or (native) its whole encoder frames."""
            if self.window_samples is not None:
                return self.window_samples
            return self.n_frames(piece.shape[0]) * self.samples_per_frame

        pieces: dict[int, list[list[np.ndarray]]] = {k: [[] for _ in waves] for k in self.layers}
        step = self._items_per_pass()
        fe_device = "cuda" if self.device.startswith("cuda") else "cpu"
        order = sorted(range(len(chunks)), key=lambda j: padded_samples(chunks[j][1]))
        batches: list[list[int]] = []
        for j in order:               # batches of equal window length (all of them, unless native), in order
            if batches and len(batches[-1]) < step and \
                    padded_samples(chunks[batches[-1][0]][1]) == padded_samples(chunks[j][1]):
                batches[-1].append(j)
            else:
                batches.append([j])
        done: dict[int, dict[int, np.ndarray]] = {k: {} for k in self.layers}
        for idx in batches:
            batch = [chunks[j] for j in idx]
            length = padded_samples(batch[0][1])
            feats = self.fe([c for _, c in batch], sampling_rate=SAMPLE_RATE, padding="max_length",
                            max_length=length, truncation=True, return_tensors="pt", device=fe_device)
            x = feats["input_features"].to(self.device, torch.float32)
            n_frames = length // self.samples_per_frame
            with torch.inference_mode(), autocast(self.device, self.compute_dtype):
                if n_frames == self.frames_per_window:
                    hs = hidden_states(self.model, self.layers, input_features=x)
                else:
                    hs = self._windowed_states(x, n_frames)
            for k, h in hs.items():
                h = h.float().cpu().numpy()
                for row, j in enumerate(idx):
                    done[k][j] = h[row, :self.n_frames(chunks[j][1].shape[0])]
        for k in self.layers:
            for j, (i, _) in enumerate(chunks):       # back in clip order, each clip's windows in time order
                pieces[k][i].append(done[k][j])
        return {k: [np.ascontiguousarray(np.concatenate(p, axis=0)) for p in pieces[k]] for k in self.layers}


# ---- building ------------------------------------------------------------------------------------------------
def from_model(model: Any, feature_extractor: Any | None = None, **kw: Any) -> HFSpeechFeatureSet:
    """The feature set for an already-built model (e.g. a random one from a config), by its ``model_type``."""
    mt = model.config.model_type
    if mt in WHISPER_TYPES:
        return WhisperEncoderFeatureSet(model, feature_extractor, **kw)
    if mt in SSL_TYPES:
        return SSLSpeechFeatureSet(model, feature_extractor, **kw)
    raise ValueError(f"model_type {mt!r} is not supported by hf: (supported: {', '.join(SUPPORTED_TYPES)})")


def _load_feature_extractor(loader: Any, name_or_path: str) -> Any | None:
    """The model's own feature extractor, or ``None`` when it has no ``preprocessor_config.json``."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "preprocessor_config.json").is_file():
            return None
        return load_pretrained(loader, str(path), spec_prefix="hf", trust_remote_code=False)
    try:
        return load_pretrained(loader, name_or_path, spec_prefix="hf", trust_remote_code=False)
    except OSError:
        return None


def from_pretrained(name_or_path: str, layers: str | int | list[int] | None = None, **kw: Any) -> HFSpeechFeatureSet:
    """Load a speech encoder from a local folder or hub id (fails fast offline, see :mod:`extract.hub`).

    Custom code is never run (``trust_remote_code=False``): a folder with an ``auto_map`` is refused with
    :class:`extract.hub.RemoteCodeRefusedError` before anything is loaded.
    """
    import torch
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, WhisperFeatureExtractor, WhisperModel

    if layers is None or isinstance(layers, str):
        suffix = "" if layers is None else f"@{layers}"
    else:
        suffix = "@" + ",".join(map(str, [layers] if isinstance(layers, int) else layers))
    config = load_pretrained(AutoConfig, name_or_path, spec_prefix="hf", spec_suffix=suffix, trust_remote_code=False)
    mt = config.model_type
    if mt not in SUPPORTED_TYPES:
        raise ValueError(f"{name_or_path}: model_type {mt!r} is not supported by hf: "
                         f"(supported: {', '.join(SUPPORTED_TYPES)})")
    if mt in WHISPER_TYPES:
        with quiet_transformers():  # encoder-only checkpoints: the decoder is reported missing, by design
            model, info = load_pretrained(WhisperModel, name_or_path, spec_prefix="hf", spec_suffix=suffix,
                                          dtype=torch.float32, output_loading_info=True, trust_remote_code=False)
        missing = [k for k in info.get("missing_keys", []) if not k.startswith("decoder.")]
        if missing:
            raise ValueError(f"{name_or_path}: Whisper encoder weights missing from the checkpoint: "
                             f"{', '.join(sorted(missing)[:8])}{' …' if len(missing) > 8 else ''}")
        model = model.get_encoder()
        fe = _load_feature_extractor(WhisperFeatureExtractor, name_or_path)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = load_pretrained(AutoModel, name_or_path, spec_prefix="hf", spec_suffix=suffix,
                                    dtype=torch.float32, trust_remote_code=False)
        fe = _load_feature_extractor(AutoFeatureExtractor, name_or_path)
    return from_model(model, fe, layers=layers, encoder=str(name_or_path),
                      weights=weights_sha256(name_or_path), **kw)


@register("hf", "hidden layer of any transformers speech encoder (wav2vec2, HuBERT, WavLM, data2vec-audio, "
                "Whisper encoder); argument: model[@layer], layer an int, a comma list or 'all' (one forward "
                "pass, one store per layer)")
def build_hf(arg: str | None) -> HFSpeechFeatureSet:
    """``hf:<hub id or path>[@layer]``: layer ``k`` (hidden_states[k]), ``2,4,6`` or ``all``; default the last."""
    model, layers = parse_hf_arg(arg)
    return from_pretrained(model, layers)
