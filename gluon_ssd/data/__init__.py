"""The data stage. Import the submodules; this package imports none of them eagerly, so that
e.g. ``gluon_ssd.data.io`` loads neither the synthetic dataset nor gluoncv's dataset classes.

- ``io``: the one image reader (:func:`~gluon_ssd.data.io.read_image`), ``BadImageError``,
  image folder listing.
- ``labels``: the label layout ``(M, 6)`` ``xmin, ymin, xmax, ymax, class_id, ignore`` in pixels,
  named columns, box sanitising, ``LoadStats``.
- ``datasets``: Pascal VOC and VOC-format folders, ``get_dataset`` (any dataset by name or
  folder), ``DataConfig`` and ``build_split``; ``coco``: COCO-format datasets; ``files``: what the
  on-disk datasets share.
- ``synthetic``: ``SyntheticShapes``, the embedded default dataset; ``voc_shapes``: VOC-format
  folders unlike it.
- ``transforms``: training / evaluation transforms and the batch loader.
"""
