"""Downloading the demo's encoders from the Hugging Face hub, pinned to a commit and to each file's sha256.

``python -m extract.hub_fetch whisper-base DEST`` makes ``DEST`` a model folder that
``transformers`` loads (``config.json`` + ``model.safetensors`` + the feature extractor or tokenizer files):

* every file is fetched from ``$HF_ENDPOINT`` (default ``https://huggingface.co``)
  ``/<repo>/resolve/<commit>/<file>``: the commit pins the revision; each file's size and sha256 are checked
  before use (:func:`ser_common.download.fetch`: a resumable ``.partial``, deleted on a mismatch);
* files are gathered in ``DEST.partial/`` (a rerun resumes there), ``config.json``'s ``model_type`` is
  checked, ``.ser_download.json`` records the repo, commit and hashes, and the folder is renamed to ``DEST``
  only when complete;
* an existing ``DEST`` with a ``config.json`` and weights is used as it is (idempotent; ``../shared`` copies
  and a user's own folders included);
* offline (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` set, or the hub unreachable) it fails within seconds,
  naming the repo, the commit, the files and where to put them, or the Make variable that takes a local copy.

Pins (:data:`PINNED_MODELS`): the commit hashes and file digests were taken from public pin lists of other
projects (they could not be fetched where this was written, which has no internet); the MiniLM
``config.json`` and ``tokenizer_config.json`` digests were confirmed by rebuilding those files byte for
byte from their published git blob hashes. Only the encoder of Whisper is used (``get_encoder()``); the hub
has no encoder-only file, so the full 290 MB checkpoint is fetched.

No torch or transformers import: the folder is checked by reading its JSON.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import click

from ser_common.download import DownloadError, DownloadUnavailable, PinnedFile, check_reachable, fetch

from .hub import HUB_HOST, hub_offline_env
from .weights import weight_files


@dataclass(frozen=True)
class PinnedModel:
    """A hub model at one commit, with the files to fetch.

    Attributes:
        key: the command-line name (``whisper-base``).
        repo: hub id (``openai/whisper-base``).
        revision: the commit hash (40 hex digits) every file is fetched at.
        model_type: ``config.json``'s ``model_type`` the folder must have.
        files: ``(file name, size in bytes, sha256)`` of each file.
        make_var: the Makefile variable that takes a local copy (``WHISPER``).
    """

    key: str
    repo: str
    revision: str
    model_type: str
    files: tuple[tuple[str, int, str], ...]
    make_var: str

    def url(self, file_name: str) -> str:
        """``<endpoint>/<repo>/resolve/<revision>/<file>``."""
        return f"{hub_base_url()}/{self.repo}/resolve/{self.revision}/{file_name}"

    def pins(self) -> list[tuple[str, PinnedFile]]:
        """``(file name, PinnedFile)`` of every file."""
        return [(name, PinnedFile(self.url(name), size, sha)) for name, size, sha in self.files]


WHISPER_BASE = PinnedModel(
    key="whisper-base", repo="openai/whisper-base", revision="e37978b90ca9030d5170a5c07aadb050351a65bb",
    model_type="whisper", make_var="WHISPER",
    files=(("config.json", 1_983, "a153c53883a6799b6f056b4a8d1a515c9926d03994682ba88a7616618d7da0c1"),
           ("preprocessor_config.json", 184_990, "9b5cd03a36fbb8a627c64d98a5b5b126ead95a77720723944487311f0110b666"),
           ("model.safetensors", 290_403_936, "07cadb9f25677c8d50df603e66a98fbd842cce45047139baeb16e6219a1e807b")))
"""openai/whisper-base (MIT): the full checkpoint (encoder + decoder, fp32); the toolkit uses its encoder."""

MINILM_L6_V2 = PinnedModel(
    key="minilm-l6-v2", repo="sentence-transformers/all-MiniLM-L6-v2",
    revision="1110a243fdf4706b3f48f1d95db1a4f5529b4d41", model_type="bert", make_var="MINILM",
    files=(("config.json", 612, "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
           ("tokenizer_config.json", 350, "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
           ("tokenizer.json", 466_247, "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
           ("model.safetensors", 90_868_376, "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db")))
"""sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0): a 6-layer BertModel with its WordPiece tokenizer."""

PINNED_MODELS: dict[str, PinnedModel] = {m.key: m for m in (WHISPER_BASE, MINILM_L6_V2)}
"""Command-line name -> pinned model."""

MARKER = ".ser_download.json"


def hub_base_url() -> str:
    """``$HF_ENDPOINT`` (a mirror) without a trailing ``/``, else ``https://huggingface.co``."""
    return (os.environ.get("HF_ENDPOINT") or f"https://{HUB_HOST}").rstrip("/")


def is_model_folder(folder: str | os.PathLike) -> bool:
    """True for a folder with a ``config.json`` and weights that transformers loads (any origin)."""
    folder = Path(folder)
    return (folder / "config.json").is_file() and bool(weight_files(folder))


def _partial_dir(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


def _offline(model: PinnedModel, dest: Path, reason: str) -> DownloadUnavailable:
    names = " ".join(name for name, _, _ in model.files)
    return DownloadUnavailable(
        f"cannot download {model.repo} (commit {model.revision}) from {hub_base_url()}: {reason}. Download its "
        f"files {names} on a machine with internet access (e.g. `huggingface-cli download {model.repo} {names} "
        f"--revision {model.revision} --local-dir {model.key}`) and put them in {dest}, or pass the folder to "
        f"make: `make demo {model.make_var}=/path/to/{model.key}`.")


def fetch_model(model: PinnedModel, dest: str | os.PathLike) -> tuple[Path, str]:
    """Make ``dest`` a folder of ``model``'s pinned files; returns ``(dest, "present" | "downloaded")``.

    Raises:
        DownloadUnavailable: offline or the hub unreachable (fails within seconds, naming the files, the
            commit and where to put them).
        DownloadError: an HTTP error, a size/sha256 mismatch (that file's partial download is deleted), a
            ``config.json`` of another model type, or ``dest`` exists without a model in it.
    """
    dest = Path(dest).expanduser()
    if is_model_folder(dest):
        return dest, "present"
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(f"{dest} exists but is not a model folder (no config.json with weights); it is not "
                            f"overwritten: remove it, or pass your copy's folder as {model.make_var}=…")
    offline = hub_offline_env()
    if offline:
        raise _offline(model, dest, f"the Hugging Face hub is switched off ({offline} is set)")
    try:
        check_reachable(hub_base_url())
    except OSError as e:
        raise _offline(model, dest, f"the hub is unreachable ({type(e).__name__}: {e}; no network?)") from None
    work = _partial_dir(dest)
    work.mkdir(parents=True, exist_ok=True)
    for name, pin in model.pins():
        try:
            fetch(pin, work / name, what=f"{model.repo} {name}")
        except DownloadUnavailable:
            raise _offline(model, dest, f"the connection failed while fetching {name} (the files fetched so "
                                        f"far are kept in {work}: rerun to resume)") from None
    cfg_file = work / "config.json"
    try:
        model_type = json.loads(cfg_file.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as e:
        raise DownloadError(f"{cfg_file}: not a readable config.json ({e})") from None
    if model_type != model.model_type:
        raise DownloadError(f"{cfg_file}: model_type {model_type!r}, expected {model.model_type!r} for {model.repo}")
    (work / MARKER).write_text(json.dumps({
        "repo": model.repo, "revision": model.revision, "endpoint": hub_base_url(),
        "files": {name: {"bytes": size, "sha256": sha} for name, size, sha in model.files},
        "downloaded_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2) + "\n")
    if dest.is_dir():
        dest.rmdir()  # empty (checked above)
    os.rename(work, dest)
    return dest, "downloaded"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Choice(sorted(PINNED_MODELS)))
@click.argument("dest", type=click.Path(path_type=Path))
def main(model: str, dest: Path) -> None:
    """Make DEST a folder of MODEL at its pinned commit: nothing to do if it is there, else download and verify."""
    spec = PINNED_MODELS[model]
    try:
        path, what = fetch_model(spec, dest)
    except DownloadError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{spec.repo}: {path} ({what})")


if __name__ == "__main__":
    main()
