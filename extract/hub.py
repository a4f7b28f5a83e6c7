"""Loading pre-trained transformers models: local paths, the Hugging Face hub, failing fast when it is offline.

Shared by the transformers-backed feature sets (:mod:`extract.bert`, :mod:`extract.hf`):

* :func:`load_pretrained` wraps ``loader.from_pretrained``: a local directory is used as is; a hub id is
  looked up in the local HF cache first (``local_files_only=True``), then, only if ``huggingface.co`` (or
  ``$HF_ENDPOINT``) answers a TCP connect within 3 s, downloaded. Offline (``HF_HUB_OFFLINE`` /
  ``TRANSFORMERS_OFFLINE`` set, no route, DNS failure, connection refused) it raises
  :class:`ModelNotAvailableError` within seconds, saying which model, why, and how to pass a local copy
  (``bert:/path/to/bert-base-uncased``) instead of hanging in retries.
* Custom code is never run: every load passes ``trust_remote_code=False``, and a model folder (local, or
  a hub id's cached snapshot) whose ``config.json``, ``tokenizer_config.json``, ``preprocessor_config.json``
  or ``processor_config.json`` has an ``auto_map`` (Python classes shipped with the weights) is refused up
  front with :class:`RemoteCodeRefusedError`, never prompted for.
* :func:`resolve_model_dir`: the folder a model's files are in (a local folder, or a hub id's cached snapshot).
* :func:`quiet_transformers`, :func:`no_load_bars`: quieter loading.

The weights' provenance hash is :mod:`extract.weights`; store names from model paths are :mod:`extract.naming`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from .naming import looks_like_path

HUB_HOST = "huggingface.co"
REACHABILITY_TIMEOUT_S = 3.0
"""Seconds a TCP connect (DNS included) to the hub may take before the hub counts as unreachable."""

_TRUE = {"1", "true", "yes", "on"}


class ModelNotAvailableError(OSError):
    """A model named by a hub id cannot be loaded: the hub is offline/unreachable, or the id is unknown."""


class RemoteCodeRefusedError(ValueError):
    """A model folder that ships custom code (``auto_map``): refused, this toolkit never runs such code."""


CODE_CONFIG_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")
"""The JSON files of a model folder in which an ``auto_map`` (custom code to import) is looked for."""


def _has_auto_map(obj: Any, depth: int = 0) -> bool:
    """True if ``obj`` (parsed JSON) has a non-empty ``auto_map`` at the top level or in a nested config."""
    if not isinstance(obj, dict) or depth > 4:
        return False
    if obj.get("auto_map"):
        return True
    return any(_has_auto_map(v, depth + 1) for v in obj.values() if isinstance(v, dict))


def check_no_remote_code(model_dir: str | os.PathLike, spec_prefix: str = "bert") -> None:
    """Refuse a model folder that ships custom code: an ``auto_map`` in any of :data:`CODE_CONFIG_FILES`.

    Files that are absent or not valid JSON are left to transformers to report.

    Raises:
        RemoteCodeRefusedError: naming the file, the classes it would import, and what to use instead.
    """
    d = Path(model_dir)
    for name in CODE_CONFIG_FILES:
        f = d / name
        try:
            cfg = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if _has_auto_map(cfg):
            amap = cfg.get("auto_map") if isinstance(cfg, dict) else None
            shown = ", ".join(sorted(map(str, amap)))[:200] if isinstance(amap, dict) else "nested config"
            raise RemoteCodeRefusedError(
                f"{f}: refused: the model folder ships custom Python code (\"auto_map\": {shown}), and this "
                f"toolkit never runs code from model folders (trust_remote_code=False). Use a model whose "
                f"architecture transformers implements itself (a config.json with a built-in model_type and "
                f"no auto_map) and pass its folder (`{spec_prefix}:/path/to/model`); only if you have checked "
                f"that the built-in model_type fits the weights, delete the auto_map entry from {name}.")


# ---- hub ids and paths -----------------------------------------------------------------------------------
def hub_offline_env() -> str | None:
    """The name of the set offline switch (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``), else ``None``."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return var
    return None


def hub_endpoint() -> tuple[str, int]:
    """(host, port) of the hub: ``$HF_ENDPOINT`` if set (a mirror), else ``huggingface.co:443``."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or f"https://{HUB_HOST}")
    port = url.port or (80 if url.scheme == "http" else 443)
    return url.hostname or HUB_HOST, port


def hub_reachable(timeout: float = REACHABILITY_TIMEOUT_S) -> bool:
    """True if a TCP connection to the hub opens within ``timeout`` seconds (DNS lookup included).

    The lookup runs in a daemon thread so a hanging resolver cannot stall the caller past ``timeout``.
    """
    host, port = hub_endpoint()
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                ok.append(True)
        except OSError:
            ok.append(False)

    t = threading.Thread(target=probe, daemon=True, name="hub-probe")
    t.start()
    t.join(timeout)
    return bool(ok and ok[0])


def local_hint(name_or_path: str, spec_prefix: str = "bert", spec_suffix: str = "") -> str:
    """How to pass a local copy on the command line, e.g. ``bert:/path/to/bert-base-uncased``."""
    base = str(name_or_path).rstrip("/").split("/")[-1] or "model"
    return f"{spec_prefix}:/path/to/{base}{spec_suffix}"


def _unavailable(name: str, why: str, hint: str) -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"cannot load model {name!r}: {why}. It is not in the local Hugging Face cache either. "
        f"Download it on a machine with access (e.g. `huggingface-cli download {name} --local-dir "
        f"/path/to/{name.split('/')[-1]}`) and pass the local directory instead of the hub id: `{hint}`.")


def load_pretrained(loader: Any, name_or_path: str | os.PathLike, *, spec_prefix: str = "bert",
                    spec_suffix: str = "", reachability_timeout: float = REACHABILITY_TIMEOUT_S,
                    **kw: Any) -> Any:
    """``loader.from_pretrained(name_or_path, **kw)``, failing fast and clearly when a hub id cannot be had.

    Args:
        loader: anything with ``from_pretrained`` (``AutoModel``, ``AutoTokenizer``, ``WhisperModel``, …).
        name_or_path: a local model directory, or a hub id (``bert-base-uncased``, ``facebook/hubert-base-ls960``).
        spec_prefix, spec_suffix: used in the error's hint (``hf`` + ``@6`` -> ``hf:/path/to/model@6``).
        reachability_timeout: seconds the hub probe may take.
        **kw: passed to ``from_pretrained``; ``trust_remote_code`` is always ``False`` (``True`` is refused).

    Order for a hub id: the local HF cache (``local_files_only=True``); then, unless an offline switch is set
    or the hub does not answer a TCP connect within ``reachability_timeout``, the hub. A local folder, a
    cached snapshot and a fresh download are each checked for custom code (:func:`check_no_remote_code`).

    Raises:
        FileNotFoundError: ``name_or_path`` is a path (``/…``, ``./…``, ``a/b/c``) that is not a directory.
        ModelNotAvailableError: a hub id that is neither cached nor downloadable (offline, unreachable,
            or unknown to the hub).
        RemoteCodeRefusedError: the model ships custom code (``auto_map``), or ``trust_remote_code=True``
            was asked for.
    """
    if kw.pop("trust_remote_code", False):
        raise RemoteCodeRefusedError(f"cannot load model {str(name_or_path)!r} with trust_remote_code=True: this "
                                     "toolkit never runs code from model folders; load a built-in architecture")
    kw["trust_remote_code"] = False
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        check_no_remote_code(path, spec_prefix)
        with no_load_bars():
            return loader.from_pretrained(str(path), **kw)
    hint = local_hint(name, spec_prefix, spec_suffix)
    if looks_like_path(name):
        raise FileNotFoundError(f"model directory {name!r} does not exist (or is not a directory); "
                                f"expected a Hugging Face model folder (config.json + weights), e.g. `{hint}`")
    cached = resolve_model_dir(name)
    if cached is not None:
        check_no_remote_code(cached, spec_prefix)
    try:
        with no_load_bars():
            return loader.from_pretrained(name, **{**kw, "local_files_only": True})
    except (OSError, ValueError):
        pass  # not (completely) in the cache
    offline = hub_offline_env()
    if offline:
        raise _unavailable(name, f"the Hugging Face hub is switched off ({offline} is set)", hint)
    if not hub_reachable(reachability_timeout):
        host, port = hub_endpoint()
        raise _unavailable(name, f"the Hugging Face hub is unreachable ({host}:{port} did not answer within "
                                 f"{reachability_timeout:g} s; no network?)", hint)
    try:
        loaded = loader.from_pretrained(name, **kw)
    except OSError as e:  # transformers reports connection problems and unknown repos as OSError
        raise _unavailable(name, f"download failed ({type(e).__name__}: {e})", hint) from e
    except ValueError:  # e.g. transformers refusing custom code: say so in this module's words
        downloaded = resolve_model_dir(name)
        if downloaded is not None:
            check_no_remote_code(downloaded, spec_prefix)
        raise
    downloaded = resolve_model_dir(name)
    if downloaded is not None:
        check_no_remote_code(downloaded, spec_prefix)
    return loaded


# ---- where a model's files are -------------------------------------------------------------------------
def resolve_model_dir(model_or_path: Any) -> Path | None:
    """The directory a model's files are in: a local directory as is; a hub id -> its cached snapshot.

    Accepts a path/id string or a loaded model (its ``name_or_path``). ``None`` for random models (empty
    ``name_or_path``) and for ids not in the local cache.
    """
    if model_or_path is None:
        return None
    if isinstance(model_or_path, (str, os.PathLike)):
        name = str(model_or_path)
    else:
        name = str(getattr(model_or_path, "name_or_path", "") or "")
    if not name:
        return None
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if looks_like_path(name):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "config.json")
    except Exception:  # noqa: BLE001 - a malformed id is just "not cached"
        return None
    return Path(found).parent if isinstance(found, str) else None


# ---- quieter loading -------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings (e.g. a load report listing deliberately missing weights) for a block."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


@contextlib.contextmanager
def no_load_bars() -> Iterator[None]:
    """Hide transformers' "Loading weights" progress bar for a local load (downloads keep theirs)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if was:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
