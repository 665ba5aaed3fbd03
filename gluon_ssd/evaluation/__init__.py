"""Evaluation, by job. Import the submodules; this package imports none of them eagerly, so
that training (which uses ``run``) loads no plotting.

- ``metrics``: VOC07 / VOC2010+ mAP, COCO AP and precision-recall curves, accumulated batch by
  batch (``DetectionEvaluator``, ``Evaluation``, ``EvalResult``, ``PRCurve``, ``CocoResult``);
  boxes in pixels of the original images.
- ``run``: the one evaluation path of training and ``gluon-ssd evaluate``: the evaluation
  loader, detectors over batches (``evaluate``, ``evaluate_many``, ``decoder_predictor``) and a
  stored model on a dataset split (``evaluate_model``).
- ``report``: text tables, ``metrics.json`` and the precision-recall plots.
"""
