"""The EfficientLEAF paper's six data sets for ``eleaf train`` (SPEC §9), read from their
published on-disk layouts below one ``--data-path`` directory (see ``docs/datasets.md``).

Modules (import them directly; this package imports nothing, so ``eleaf.datasets.audio``
stays light):

- ``audio``: ``load_audio(path, sample_rate)``, any file as float32 mono at a sample rate;
- ``splits``: the grouped 70/10/20 split;
- ``base``: ``AudioDataset``, items (waveform (1, L) float32, label), unreadable files
  replaced and counted;
- one module per data set: ``speechcommands``, ``crema_d``, ``voxforge``, ``nsynth``,
  ``birdclef2021``;
- ``registry``: ``build(name, data_path)``, the ``--data-set`` names to datasets;
- ``prepare``: steps, downloads and validation (``eleaf data prepare``).
"""
