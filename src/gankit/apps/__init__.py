"""Applications: what each ``gankit`` command does, as functions the CLI (and scripts) call.

``train`` (training and resuming runs), ``sample``, ``interpolate`` (latent walks), ``attention`` (the SAGAN
attention figure), ``export``, ``evaluate``, ``report`` (the digit report), ``prepare`` (dataset caches),
``bench``, ``presets`` and ``torchhub`` (pytorch_GAN_zoo's Torch Hub object). ``outputs`` holds what the
image-writing commands share.
"""
