"""GPU extraction stage: audio/transcripts of a manifest -> frame-level features in HDF5 stores.

``extract`` imports ``ser_common`` and never the training package. One module per feature set
(:mod:`extract.lld`, :mod:`extract.wav2vec`, :mod:`extract.bert`, :mod:`extract.hf`), all implementing
:class:`extract.feature_set.FeatureSet` and registered by spec prefix in :mod:`extract.registry`. The run
itself is :mod:`extract.pipeline`, built from :mod:`extract.config`, :mod:`extract.runtime`,
:mod:`extract.batching`, :mod:`extract.workers`, :mod:`extract.outputs` and :mod:`extract.shards`.
"""
