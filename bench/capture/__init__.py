"""Observing an unmodified training script: ``vaebench run train.py`` (one process, or many
under torchrun). See :mod:`bench.capture.recorder` for how steps and parts are found."""
