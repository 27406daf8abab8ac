"""Metrics for generated images.

- :mod:`~gankit.metrics.evaluate`: ``gankit evaluate`` and evaluation during training (:class:`Evaluator`);
- :mod:`~gankit.metrics.fid`: FID, KID and the Inception score through torchmetrics, from features;
- :mod:`~gankit.metrics.prdc`: improved precision/recall and density/coverage;
- :mod:`~gankit.metrics.features`: feature networks (``inception``, ``digits``, a user's file);
- :mod:`~gankit.metrics.inception`: the FID Inception-v3 in plain PyTorch;
- :mod:`~gankit.metrics.classifier`: the small classifier for small grayscale datasets;
- :mod:`~gankit.metrics.digits`: the SVM-based quality report for digits generators.

Submodules are imported on use (torchmetrics loads only when a metric is computed).
"""
