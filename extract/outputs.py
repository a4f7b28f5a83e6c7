"""The output stores of one feature set in one run: decide what each needs, then write them together.

:func:`plan_outputs` compares each output's requested :class:`~ser_common.identity.FeatureIdentity` with
what is on disk: a complete store of the same identity is left alone (nothing to do), one of another
identity is refused naming the differing fields (``overwrite`` writes a replacement beside it), a complete
one with skipped utterances to retry is reopened, anything else (new, ``.partial``) is written or resumed.
:class:`OutputStores` opens the writers of the outputs that need work and moves them together (a layer
sweep writes one store per layer from the same batches).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ser_common.identity import format_diff
from ser_common.store import FeatureStore, StoreError, StoreWriter, changed_skips, store_identity, store_path

from .config import ExtractConfig
from .feature_set import FeatureSet
from .shards import shard_output_name


def store_provenance(fs: FeatureSet, output: str, run: dict[str, Any]) -> dict[str, Any]:
    """Provenance of output ``output`` of ``fs``: the feature set's, updated with the run's keys ``run``
    (``spec``, ``crop_s``, ``sample_rate``, …); a text store's ``crop_s`` is ``None`` (whole transcripts)."""
    prov = {**fs.output_provenance(output), **run}
    if fs.modality == "text":
        prov["crop_s"] = None  # the transcript of the whole utterance
    return prov


def skips_to_retry(skipped: dict[str, str], sources: dict[str, Any], cfg: ExtractConfig) -> list[str]:
    """Skipped utterances to try again: all with ``retry_skipped``, else those whose audio file changed."""
    return sorted(skipped) if cfg.retry_skipped else changed_skips(sources)


@dataclass
class OutputPlan:
    """What to do with one output store: write it (new, resume, overwrite) or ``reopen`` it to retry skips."""

    path: Path
    provenance: dict[str, Any]
    reopen: bool = False


def plan_outputs(fs: FeatureSet, out_dir: Path, cfg: ExtractConfig, base_prov: dict[str, Any]
                 ) -> tuple[dict[str, OutputPlan], list[Path]]:
    """Decide per output: up to date (left out of the plan), refuse (another identity), or write/reopen.

    Returns the plans of the outputs that need work and the paths of every output (for the report).
    """
    plans: dict[str, OutputPlan] = {}
    paths = []
    for name in fs.output_names():
        prov = store_provenance(fs, name, base_prov)
        path = store_path(out_dir, shard_output_name(name, cfg.shard))
        paths.append(path)
        if cfg.overwrite or not path.exists():
            plans[name] = OutputPlan(path, prov)
            continue
        want = store_identity(prov, fs.dims, cfg.store_dtype)
        try:
            with FeatureStore(path) as have:
                diff = have.identity.diff(want)
                retry = skips_to_retry(have.skipped, have.skip_sources, cfg)
        except StoreError as e:
            raise StoreError(f"{e}\n(this extraction would reuse it: pass --overwrite to rebuild it; the old file "
                             f"stays until the new store is complete)") from None
        if diff:
            raise StoreError(
                f"{path}: a complete store of other features is already there "
                f"({format_diff(diff, 'on disk', 'requested')}); pass --overwrite to replace it (it stays until the "
                f"new store is complete) or choose another --out")
        if retry:
            plans[name] = OutputPlan(path, prov, reopen=True)
    return plans, paths


class OutputStores:
    """The writers of the outputs of one feature set that need work, moved together.

    ``plans`` maps an output name to its store path, provenance and how to open it (``reopen``: a complete
    store of the same identity with skips to retry). Outputs that are up to date are not opened at all.

    Attributes:
        writers: output name -> its open :class:`~ser_common.store.StoreWriter`.
        done: utterance ids every output already has (resumed runs skip them).
        skipped: utterance id -> reason, of the utterances left out (earlier runs and this one).
    """

    def __init__(self, fs: FeatureSet, plans: dict[str, OutputPlan], cfg: ExtractConfig):
        self.writers: dict[str, StoreWriter] = {}
        try:
            for name, plan in plans.items():
                self.writers[name] = StoreWriter(plan.path, dims=fs.dims, provenance=plan.provenance,
                                                 dtype=cfg.store_dtype, text=fs.modality == "text",
                                                 overwrite=cfg.overwrite, reopen=plan.reopen)
        except BaseException:
            self.close()
            raise
        for w in self.writers.values():
            retry = skips_to_retry(w.skipped, w.skip_sources, cfg)
            if retry:
                w.unskip(retry)
        first = next(iter(self.writers.values()))
        # an utterance is done only when every output has it (outputs are written together, so they agree)
        self.done = set.intersection(*(w.done_ids for w in self.writers.values()))
        self.skipped = dict(first.skipped)

    def skip(self, utt_id: str, reason: str, source: str | None = None) -> None:
        """Record ``utt_id`` as skipped (with the audio ``source`` whose change makes it retried) in every output."""
        for w in self.writers.values():
            w.skip(utt_id, reason, source)
        self.skipped[utt_id] = reason

    def finalize(self) -> list[str]:
        """Make every output complete (``.partial`` -> ``.h5``); returns their paths."""
        return [str(w.finalize()) for w in self.writers.values()]

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
