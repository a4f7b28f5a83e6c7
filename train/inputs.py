"""Loading what a run trains on: audio store(s), optional text store(s), joined into :class:`~train.data.Inputs`.

Kept apart from :mod:`train.data` (stores in memory) and :mod:`train.layer_stores` (stacked layer stores),
which it composes, so neither of those imports the other.
"""

from __future__ import annotations

import os
from typing import Sequence

from ser_common.store import StoreError

from .data import Inputs, combine_stores, load_store, make_inputs
from .layer_stores import load_stacked


def load_inputs(store: str | os.PathLike | Sequence[str | os.PathLike],
                text: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                classes: Sequence[str] | None = None, intersect: bool = False, layer_sum: bool = False) -> Inputs:
    """:func:`load_store` the store(s) and :func:`make_inputs` them. Several audio (and text) stores, one
    per corpus, are joined with :func:`combine_stores` (in the same corpus order for audio and text).

    ``layer_sum``: each audio ``store`` names the layer stores of one ``@all`` extraction (a glob, or one
    of them), stacked side by side (:func:`train.layer_stores.stack_layers`) for a learned layer sum."""
    many = [store] if isinstance(store, (str, os.PathLike)) else list(store)
    if layer_sum:
        audio = combine_stores([load_stacked(s) for s in many])
    else:
        audio = combine_stores([load_store(p) for p in many])
    if text is not None:
        texts = [text] if isinstance(text, (str, os.PathLike)) else list(text)
        if len(texts) != len(many):
            raise StoreError(f"{len(many)} --store but {len(texts)} --text: give one text store per audio store, "
                             f"in the same order")
        text = combine_stores([load_store(p) for p in texts])
    return make_inputs(audio, text, classes=classes, intersect=intersect)
