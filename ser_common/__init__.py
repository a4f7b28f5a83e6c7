"""The contract between the extraction and training stages.

``ser_common`` imports nothing of ours (numpy and h5py only). It owns the manifest records and their IO
(:mod:`ser_common.manifest`), the label sets (:mod:`ser_common.labels`), speaker-independent fold groups and
k-per-class sampling (:mod:`ser_common.folds`), the HDF5 feature-store format (:mod:`ser_common.store`) and
provenance helpers (:mod:`ser_common.provenance`).
"""

__version__ = "0.1.0"
