"""Settings of one extraction run (:class:`ExtractConfig`) and what a run did (:class:`ExtractReport`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ser_common.cpus import auto_workers


@dataclass
class ExtractConfig:
    """Settings of one extraction run (recorded in each store's provenance where they change the numbers).

    Attributes:
        crop_s: keep the first ``crop_s`` seconds of each utterance (the paper: 5.0); ``None`` = all.
        device: ``auto`` (cuda when available), ``cpu``, ``cuda`` or ``cuda:N``.
        compute_dtype: ``auto`` (bfloat16 on a GPU that supports it, else float32), ``float32``,
            ``bfloat16`` or ``float16`` (autocast; CPU always computes in float32).
        store_dtype: ``float16`` (default) or ``float32`` on disk.
        workers: decoding processes; 0 decodes in the main process (default: ``--workers auto``, one per
            available CPU, at most 4: :func:`ser_common.cpus.auto_workers`).
        prefetch: batches decoded ahead of the encoder, per worker.
        on_error: ``skip`` (report and leave the utterance out) or ``fail`` (stop the run).
        shard: ``(i, n)``: process only manifest positions ``p`` with ``p % n == i``.
        overwrite: recompute a complete store (its replacement is renamed over it only once complete) and
            discard a partial one of other settings.
        retry_skipped: retry every skipped utterance (without it, only those whose audio file changed).
        batch_samples: override the feature set's padded-samples-per-batch budget.
        progress: show tqdm bars.
        whisper_window: input window of Whisper encoders (``padded``, ``native`` or seconds; other feature
            sets ignore it; see :meth:`extract.feature_set.FeatureSet.configure`).
    """

    crop_s: float | None = 5.0
    device: str = "auto"
    compute_dtype: str = "auto"
    store_dtype: str = "float16"
    workers: int = field(default_factory=auto_workers)
    prefetch: int = 4
    on_error: str = "skip"
    shard: tuple[int, int] | None = None
    overwrite: bool = False
    retry_skipped: bool = False
    batch_samples: int | None = None
    progress: bool = True
    whisper_window: str = "padded"


@dataclass
class ExtractReport:
    """What one feature set's run did (``status``: ``done`` or ``up to date``). Seconds are wall clock."""

    feature: str
    stores: list[str]
    status: str
    n_written: int = 0
    n_skipped: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def realtime_factor(self) -> float:
        """Seconds of (cropped) audio processed per second of wall time."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "realtime_factor": self.realtime_factor}
