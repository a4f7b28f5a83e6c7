"""The small interface every feature set implements (the s3prl "upstream" of this toolkit)."""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Any, Literal

import numpy as np

SAMPLE_RATE = 16_000
"""Every audio feature set takes 16 kHz mono float32 waveforms in [-1, 1]."""

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
"""What :meth:`FeatureSet.to` accepts as ``compute_dtype``."""


def check_compute_dtype(device: str, compute_dtype: str) -> str:
    """The dtype actually computed in: ``compute_dtype`` on CUDA, always ``float32`` on CPU."""
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {compute_dtype!r}")
    return compute_dtype if str(device).startswith("cuda") else "float32"


class FeatureSet(ABC):
    """Turns a batch of waveforms (audio) or transcripts (text) into per-utterance frame matrices.

    Everything the extraction pipeline uses is declared here; a feature set overrides what differs.

    Attributes:
        spec: the spec string it was built from (``lld``, ``wav2vec:/path/wav2vec_large.pt``, ``hf:…@6``), set by
            :func:`extract.registry.build` (the one place that knows it); ``None`` for a feature set
            constructed directly, which then records its :attr:`name` as its spec.
        name: file stem of its store (``lld``, ``wav2vec``, ``bert-minilm-l6-v2``, ``hf-whisper-base-encoder-l6``).
        modality: ``audio`` or ``text``.
        dims: columns of every frame matrix.
        frame_rate_hz: frames per second of audio (``None`` for text: one row per token).
        min_samples: shortest waveform (16 kHz samples) that yields at least one frame.
        runs_in_workers: computed on the CPU inside the decoding workers (the LLDs), not batched on the device.
        device: where :meth:`to` put it (``cpu``, ``cuda``, ``cuda:N``).
        compute_dtype: what it computes in (:meth:`to`; always ``float32`` on the CPU).
    """

    spec: str | None = None
    name: str
    modality: Literal["audio", "text"] = "audio"
    dims: int
    frame_rate_hz: float | None
    min_samples: int = 1
    runs_in_workers: bool = False
    device: str = "cpu"
    compute_dtype: str = "float32"

    @abstractmethod
    def provenance(self) -> dict[str, Any]:
        """What a store must record about this feature set.

        Keys: ``feature`` (= :attr:`name`), ``spec``, ``modality``, ``encoder`` (hub id, URL or path as given),
        ``encoder_class``, ``weights_sha256`` (sha256 of the weights file, ``None`` for random weights),
        ``layer`` (int index into the hidden states, ``None`` where not applicable), ``frame_rate_hz``,
        ``dims``, ``sample_rate`` (16000) and anything else that changes the numbers. The extraction
        pipeline adds ``crop_s``, ``manifest_sha256``, ``compute_dtype``, ``package_versions``, ``created``,
        ``shard``.
        """

    def to(self, device: str, compute_dtype: str = "float32") -> "FeatureSet":
        """Move to ``device`` (``cpu``/``cuda[:N]``) and compute in ``compute_dtype`` (float32|bfloat16|float16).

        On CUDA, bfloat16/float16 run under autocast (:func:`extract.runtime.autocast`; weights stay float32);
        on the CPU computation stays float32 whatever is asked (with a warning when something else was).
        Moving the model itself is :meth:`_move_model`'s job.
        """
        computed = check_compute_dtype(device, compute_dtype)
        self._move_model(str(device))
        if computed != compute_dtype:
            warnings.warn(f"{self.name} on the CPU computes in float32 (asked for {compute_dtype})", stacklevel=2)
        self.device = str(device)
        self.compute_dtype = computed
        return self

    def _move_model(self, device: str) -> None:
        """Put the model (if any) on ``device``; called by :meth:`to`. Default: nothing to move."""

    def configure(self, whisper_window: str | float | None = "padded") -> "FeatureSet":
        """Apply the run's feature-set options (``ser-extract`` flags that change what a family computes).

        ``whisper_window`` (``--whisper-window``): the input window of Whisper encoders (``padded``, ``native``
        or seconds; :class:`extract.hf.WhisperEncoderFeatureSet`). A feature set ignores the options that are
        not about it; one that uses an option records it in its provenance and store name.
        """
        return self

    def encode(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Audio: ``waves[i]`` float32 [samples] at 16 kHz -> float32 [frames_i, dims] per utterance."""
        raise NotImplementedError(f"{self.name} is not an audio feature set")

    def encode_text(self, texts: list[str]) -> list[tuple[list[str], np.ndarray]]:
        """Text: each transcript -> (tokens, float32 [n_tokens, dims]); one row per token."""
        raise NotImplementedError(f"{self.name} is not a text feature set")

    def n_frames(self, n_samples: int) -> int:
        """Audio: frames :meth:`encode` yields for ``n_samples`` samples of 16 kHz audio (0 below
        :attr:`min_samples`)."""
        raise NotImplementedError(f"{self.name} does not define its frame count")

    # -- several outputs from one forward pass (a cheap layer sweep: ``hf:model@2,4,6`` or ``@all``) --------
    def output_names(self) -> list[str]:
        """Store names this feature set writes; one store per name. Default: just :attr:`name`."""
        return [self.name]

    def output_provenance(self, output: str) -> dict[str, Any]:
        """Provenance of one output store (default: :meth:`provenance`; a layer sweep overrides ``layer``)."""
        return self.provenance()

    def encode_outputs(self, waves: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        """Audio: output name -> per-utterance float32 [frames_i, dims]. Default: ``{name: encode(waves)}``."""
        return {self.name: self.encode(waves)}

    max_batch_items: int = 256
    """Most utterances per pipeline batch (whatever their length)."""

    @property
    def max_batch_samples(self) -> int:
        """Budget of padded samples per batch (the pipeline batches by length up to this)."""
        return SAMPLE_RATE * 16 * 5
