"""Training stage: small emotion-recognition heads on frozen feature stores (after Boigne et al., 2020).

Reads only the HDF5 feature stores of :mod:`ser_common.store` (never audio, never ``extract``). Modules:

``data``          load a store once into memory; join an audio and a text store by utt_id
``normalization`` per-fold frame-level standardisation
``batching``      batch order (bucketed by length) and padded gathers (x [B × T × D], mask [B × T])
``pooling``, ``recurrent``, ``dropout``  masked reductions, the masked Bi-LSTM, CPU-cheap dropout
``heads``         registry of heads: mean, meanmax, attention, mlp, bimodal (``register_head``, ``build_head``)
``trainer``       frame-level training loop and the batched trainer of pooled heads
``adam``          Adam over one flat parameter buffer (the frame-level loop's optimiser on CPU)
``parallel``      frame-level jobs (folds × seeds) in forked worker processes on CPU
``metrics``       UA, WA, macro F1, confusion matrix
``protocol``      speaker-independent CV, k-per-class sampling, learning curves
``runs``          run folders; ``reports`` tables/figures; ``tables`` the paper's tables; ``bundle`` fit/predict
``suggest``       what to label next (uncertainty, k-center, diverse-entropy); ``audio_paths`` audio from manifests
``calibration``   temperature scaling, ECE and reliability plots (run folders, ``fit --calibrate``, abstention)
``forecast``      data needed for a target UA; ``cli`` the ``ser-train`` command

Typical use from Python::

    from train.config import schedule_config
    from train.inputs import load_inputs
    from train.protocol import cross_validate

    inputs = load_inputs("stores/iemocap/wav2vec.h5")          # or load_inputs(audio, text) for bimodal
    result = cross_validate(inputs, "mlp", schedule_config("paper"), k=125, seeds=(0, 1, 2))
    print(result.summary["ua_mean"], result.summary["ua_std"])
"""
