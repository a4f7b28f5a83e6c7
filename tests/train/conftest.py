"""Fixtures of the training tests: a folder of tiny generated stores (see :mod:`toy_stores`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from .toy_stores import write_toy_folder

# One intra-op thread: on a busy shared machine OpenMP barriers make 2+ threads far slower for small heads.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory) -> Path:
    """A stores folder: lld.h5 (34-like scaled LLDs), wav2vec-toy.h5 (pre-trained), bert-toy.h5 (text)."""
    scale = np.array([1, 10, 100, 0.01, 1000, 1, 5, 0.1], np.float32)
    return write_toy_folder(tmp_path_factory.mktemp("stores"), lld_scale=scale)


@pytest.fixture(scope="session")
def toy_store(toy_dir) -> Path:
    return toy_dir / "wav2vec-toy.h5"


@pytest.fixture(scope="session")
def toy_text(toy_dir) -> Path:
    return toy_dir / "bert-toy.h5"
