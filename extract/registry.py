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


_MODULES = {"lld": "extract.lld", "wav2vec": "extract.wav2vec", "bert": "extract.bert", "hf": "extract.hf"}
"""Built-in prefixes and the module whose import registers them (imported only when the prefix is used)."""


def _load_builtin(prefix: str | None = None) -> None:
    import importlib

    for p, module in _MODULES.items():
        if (prefix is None or p == prefix) and p not in _BUILDERS:
            importlib.import_module(module)


def build(spec: str, whisper_window: str | float | None = "padded") -> FeatureSet:
    """Build the feature set named by ``spec``, e.g. ``lld`` or ``hf:../shared/models/whisper-base-encoder@3``,
    with the run's options (:meth:`FeatureSet.configure`: ``whisper_window``).

    The one place that sets :attr:`FeatureSet.spec`: to ``spec`` as given (what stores record)."""
    prefix, _, arg = spec.partition(":")
    _load_builtin(prefix)
    if prefix not in _BUILDERS:
        raise ValueError(f"unknown feature spec {spec!r}; known prefixes: {', '.join(sorted(set(_BUILDERS) | set(_MODULES)))}")
    fs = _BUILDERS[prefix](arg or None)
    fs.spec = spec
    return fs.configure(whisper_window=whisper_window)


def describe() -> dict[str, str]:
    """prefix -> one-line help (for ``ser-extract --help``)."""
    _load_builtin()
    return dict(_HELP)
