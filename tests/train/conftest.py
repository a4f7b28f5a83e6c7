"""Fixtures of the training tests: a folder of tiny generated stores (see :mod:`toy_stores`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from .toy_stores import LLD_PROV, write_toy_store

# One intra-op thread: on a busy shared machine OpenMP barriers make 2+ threads far slower for small heads.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory) -> Path:
    """A stores folder: lld.h5 (34-like scaled LLDs), wav2vec-toy.h5 (pre-trained), bert-toy.h5 (text)."""
    d = tmp_path_factory.mktemp("stores")
    scale = np.array([1, 10, 100, 0.01, 1000, 1, 5, 0.1], np.float32)
    write_toy_store(d / "lld.h5", seed=1, sep=0.7, provenance=LLD_PROV, scale=scale, dtype="float32")
    write_toy_store(d / "wav2vec-toy.h5", seed=2, sep=1.2)
    write_toy_store(d / "bert-toy.h5", dims=6, seed=3, sep=1.5, text=True)
    return d


@pytest.fixture(scope="session")
def toy_store(toy_dir) -> Path:
    return toy_dir / "wav2vec-toy.h5"


@pytest.fixture(scope="session")
def toy_text(toy_dir) -> Path:
    return toy_dir / "bert-toy.h5"
