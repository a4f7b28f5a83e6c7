"""The paper's encoder: wav2vec 1.0 large context vectors ``c`` (512 dims, 100 frames/s).

Spec ``wav2vec`` (the released checkpoint, downloaded once into the cache) or ``wav2vec:<path or URL>``.
The model is :class:`extract.wav2vec_model.Wav2VecModel`, a plain-PyTorch port of fairseq's, loaded from an
original fairseq checkpoint. Frames for ``n`` samples: ``floor((n - 465) / 160) + 1`` for the large model
(its first frame sees 465 samples, so :attr:`min_samples` is 465); a padded batch gives the same frames as
encoding each utterance alone (masked normalisation, see :mod:`extract.wav2vec_model`).

Importing this module is cheap: torch is imported when a feature set is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .feature_set import SAMPLE_RATE, FeatureSet
from .registry import register

if TYPE_CHECKING:
    from .wav2vec_model import Wav2VecModel

ENCODER_CLASS = "fairseq.Wav2VecModel (plain-PyTorch port)"


class Wav2VecFeatureSet(FeatureSet):
    """wav2vec 1.0 context vectors: float32 [frames, dims] per utterance, one frame per hop (10 ms for large).

    Args:
        model: a loaded :class:`~extract.wav2vec_model.Wav2VecModel`.
        encoder: the checkpoint path or URL as the user gave it (recorded in provenance).
        checkpoint_path: the local file the weights came from (hashed for provenance).
    """

    name = "wav2vec"
    modality = "audio"

    def __init__(self, model: "Wav2VecModel", encoder: str, checkpoint_path: str | None = None) -> None:
        self.model = model.eval()
        self.encoder = encoder
        self.checkpoint_path = checkpoint_path
        self.dims = model.output_dim
        self.frame_rate_hz = model.frame_rate_hz
        self.min_samples = model.receptive_field
        self._sha256: str | None = None

    # -- FeatureSet -----------------------------------------------------------------------------------------
    def provenance(self) -> dict[str, Any]:
        cfg = self.model.cfg
        if self._sha256 is None and self.checkpoint_path is not None:
            from ser_common.provenance import sha256_file_cached
            self._sha256 = sha256_file_cached(self.checkpoint_path)
        return {
            "feature": self.name, "spec": self.spec or self.name, "modality": self.modality,
            "encoder": self.encoder, "encoder_class": ENCODER_CLASS, "weights_sha256": self._sha256,
            "layer": None, "output": "c", "frame_rate_hz": self.frame_rate_hz, "dims": self.dims,
            "sample_rate": SAMPLE_RATE,
            "conv_feature_layers": [list(x) for x in cfg.conv_feature_layers],
            "conv_aggregator_layers": [list(x) for x in cfg.conv_aggregator_layers],
            "receptive_field_samples": self.model.receptive_field, "hop_samples": self.model.hop_length,
            "log_compression": cfg.log_compression, "skip_connections_feat": cfg.skip_connections_feat,
            "skip_connections_agg": cfg.skip_connections_agg, "residual_scale": cfg.residual_scale,
            "padding": "zero-padded batches with per-utterance (masked) GroupNorm statistics",
        }

    def _move_model(self, device: str) -> None:
        """Only ``cpu``/``cuda[:i]``; GroupNorm statistics stay float32 under autocast."""
        import torch

        dev = torch.device(device)
        if dev.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, got {device!r}")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
        self.model.to(dev)

    def encode(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """``waves[i]`` float32 [samples_i] at 16 kHz (>= :attr:`min_samples`) -> float32 [frames_i, dims].

        One zero-padded batch; each result equals encoding that utterance alone (to float rounding).
        """
        import torch

        from .runtime import autocast

        for i, w in enumerate(waves):
            if np.asarray(w).ndim != 1:
                raise ValueError(f"waves[{i}] must be mono [samples], got shape {np.asarray(w).shape}")
            if len(w) < self.min_samples:
                raise ValueError(f"waves[{i}] has {len(w)} samples, fewer than the {self.min_samples} "
                                 f"({1000 * self.min_samples / SAMPLE_RATE:.0f} ms) that give one wav2vec frame")
        with torch.inference_mode(), autocast(self.device, self.compute_dtype):
            return self.model.encode_batch([np.asarray(w, dtype=np.float32) for w in waves], device=self.device)

    def n_frames(self, n_samples: int) -> int:
        """``floor((n - 465) / 160) + 1`` for large (:meth:`Wav2VecModel.num_frames`)."""
        return self.model.num_frames(n_samples)

    @property
    def max_batch_samples(self) -> int:
        """64 x 5 s of padded audio per batch on a GPU; one utterance at a time on the CPU.

        On the CPU, batching buys nothing: oneDNN's convolutions over 512 channels x 16 k samples are
        memory-bound and got superlinearly slower with the batch (measured: 0.32 s for one 5 s clip, 4.8 s
        for four, 2 cores), so each batch holds one clip there.
        """
        return SAMPLE_RATE * 5 * (64 if self.device.startswith("cuda") else 1)


@register("wav2vec", "wav2vec 1.0 large context vectors c (512 dims, 100 frames/s); argument: checkpoint path or URL")
def build_wav2vec(arg: str | None) -> Wav2VecFeatureSet:
    """``wav2vec`` (the released large checkpoint, cached) or ``wav2vec:<path or URL>``."""
    from .checkpoints import WAV2VEC_LARGE_URL, resolve_checkpoint
    from .wav2vec_model import Wav2VecModel

    encoder = arg or WAV2VEC_LARGE_URL
    path = resolve_checkpoint(encoder)
    model = Wav2VecModel.from_checkpoint(path)
    return Wav2VecFeatureSet(model, encoder=encoder, checkpoint_path=str(path))
