"""Feature sets by spec prefix: ``lld``, ``wav2vec[:ckpt]``, ``bert[:model]``, ``hf:model[@layer]``."""

from __future__ import annotations

from typing import Callable

from .feature_set import FeatureSet

_BUILDERS: dict[str, Callable[[str | None], FeatureSet]] = {}
_HELP: dict[str, str] = {}


def register(prefix: str, help: str) -> Callable:
    """Decorator: ``@register("lld", "…")`` on a function ``(argument or None) -> FeatureSet``."""
    def deco(fn: Callable[[str | None], FeatureSet]) -> Callable[[str | None], FeatureSet]:
        _BUILDERS[prefix] = fn
        _HELP[prefix] = help
        return fn
    return deco


def _load_builtin() -> None:
    # importing each module registers its builder; heavy imports (torch, transformers) stay inside builders
    from . import bert, hf, lld, wav2vec  # noqa: F401


def build(spec: str) -> FeatureSet:
    """Build the feature set named by ``spec``, e.g. ``lld`` or ``hf:../shared/models/whisper-base-encoder@3``."""
    _load_builtin()
    prefix, _, arg = spec.partition(":")
    if prefix not in _BUILDERS:
        raise ValueError(f"unknown feature spec {spec!r}; known prefixes: {', '.join(sorted(_BUILDERS))}")
    fs = _BUILDERS[prefix](arg or None)
    fs.spec = spec
    return fs


def describe() -> dict[str, str]:
    """prefix -> one-line help (for ``ser-extract --help``)."""
    _load_builtin()
    return dict(_HELP)
