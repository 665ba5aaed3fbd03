"""The demo workflow (``gluon-ssd demo``, ``make demo``): train the ``demo`` preset on
SyntheticShapes, then show SSD300's anchors on a photo and how well they cover elongated boxes.

Everything goes to one run folder: the training run's files (checkpoints, logs, ``curve.png``,
``detections.png``) and ``anchors_per_layer.png``, ``anchors_at_pixel.png``, ``coverage.png``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple, Union

from .anchors import preset_table
from .anchor_fit import describe_fit, fit_anchors
from .coverage import preset_coverage, sample_boxes
from .presets import get_preset
from .report import write_run_pictures
from .train import TrainConfig, TrainResult, train
from .visualize import plot_anchors_at, plot_coverage, plot_preset_anchors, sample_image

# What the demo writes besides the training run's own files.
DEMO_PICTURES = ("anchors_per_layer.png", "anchors_at_pixel.png", "coverage.png")


def demo_config(out: Union[str, "Path"] = "runs/demo", *, epochs: Optional[int] = None,
                train_size: Optional[int] = None, val_size: Optional[int] = None,
                image_size: Optional[int] = None, batch_size: Optional[int] = None,
                progress: bool = True, overwrite: bool = False,
                gpus: Optional[Tuple[int, ...]] = None) -> TrainConfig:
    """The demo's training run (the ``make demo`` recipe; the shipped ``demo`` weights are its
    best checkpoint with the defaults): the ``demo`` preset on SyntheticShapes, seed 0."""
    # No loader process: on a machine with few cores a loader process takes CPU from oneDNN's
    # threads and slows the steps down by far more than loading in the training process costs
    # (benchmarks/README.md, "Speed").
    return TrainConfig(preset="demo", data="synthetic", out=str(out), epochs=epochs,
                       train_size=train_size, val_size=val_size, image_size=image_size,
                       batch_size=batch_size, num_workers=0, progress=progress,
                       overwrite=overwrite, gpus=gpus)


def run_demo(out: Union[str, "Path"] = "runs/demo", *, epochs: Optional[int] = None,
             train_size: Optional[int] = None, val_size: Optional[int] = None,
             image_size: Optional[int] = None, batch_size: Optional[int] = None,
             progress: bool = True, overwrite: bool = False,
             gpus: Optional[Tuple[int, ...]] = None) -> TrainResult:
    """Train the ``demo`` preset into ``out`` (``None`` settings: the preset's) and draw the
    run's pictures, then plot SSD300's anchors and their coverage of random elongated boxes
    there; prints the anchor table, the coverage summary and the validation mAP. Returns the
    training result. A folder that holds a run already is refused unless ``overwrite``
    (see :class:`~gluon_ssd.train.TrainConfig`)."""
    out = Path(out)
    result = train(demo_config(out, epochs=epochs, train_size=train_size, val_size=val_size,
                               image_size=image_size, batch_size=batch_size, progress=progress,
                               overwrite=overwrite, gpus=gpus))
    write_run_pictures(result.out)
    preset = get_preset("ssd300")
    spec = preset.model.anchors
    photo = sample_image()
    print(preset_table(spec))
    plot_preset_anchors(spec, image=photo, title=f"{preset.name} on a 600x512 photo",
                        path=out / "anchors_per_layer.png")
    plot_anchors_at((0.75, 0.5, 0.25), (1, 2, 0.5), image=photo, path=out / "anchors_at_pixel.png")
    boxes = sample_boxes(500, max_ratio=8.0, min_size=0.1)  # elongated boxes, e.g. people, text
    fitted = fit_anchors(boxes, spec)
    before, after = preset_coverage(boxes, spec), preset_coverage(boxes, fitted)
    print(f"\n500 random boxes, aspect ratios up to 8:\n{before.summary()}\n"
          f"fitted anchors:\n{describe_fit(spec, fitted, before, after)}")
    plot_coverage({preset.name: before, "fitted": after}, path=out / "coverage.png")
    print(f"\ndemo: VOC07 mAP {result.best_map:.4f} on the SyntheticShapes validation split")
    return result
