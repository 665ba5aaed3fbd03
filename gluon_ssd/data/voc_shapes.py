"""VOCShapes: VOC-format dataset folders unlike SyntheticShapes, to try gluon-ssd on data it was
not designed around (a user's own data, as far as anything made here can be).

    python -m gluon_ssd.data.voc_shapes OUT --train 600 --val 150 --seed 0

writes ``OUT/Annotations/<id>.xml`` (with ``<size>``), ``OUT/JPEGImages/<id>.jpg`` and
``OUT/ImageSets/Main/{train,val}.txt``, the layout ``gluon-ssd train --data OUT`` reads. ``OUT``
must not exist or be empty: nothing is ever overwritten.

How it differs from SyntheticShapes (``gluon_ssd.data.synthetic``):

* non-square images of several sizes (:data:`IMAGE_SIZES`: 320x240, 240x320, 400x300, 300x400),
  which the model squeezes into its square input without keeping the aspect;
* four classes, three of which SyntheticShapes cannot draw: ``arrow`` (filled, about 1:2.5,
  pointing up/down/left/right), ``bar`` (filled, 1:3 to 1:6, horizontal or vertical),
  ``hexagon`` (an outline, not filled) and ``ellipse`` (filled, any rotation);
* objects from :data:`MIN_EXTENT` to :data:`MAX_EXTENT` of the image side (the object's longer
  side over ``sqrt(W * H)``, uniform), so many are small, and elongated ones;
* clutter: random lines in front of and behind the objects, blotchy backgrounds, pixel noise.

Each image is a pure function of ``(seed, index)``. Boxes are the tight boxes of the drawn
pixels, written VOC-style (1-based, inclusive: continuous ``[x0, x1)`` becomes ``x0 + 1 .. x1``).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple
from xml.sax.saxutils import escape

import cv2
import numpy as np
from tqdm import tqdm

CLASSES = ("arrow", "bar", "ellipse", "hexagon")
IMAGE_SIZES = ((320, 240), (240, 320), (400, 300), (300, 400))  # (width, height)
MIN_EXTENT, MAX_EXTENT = 0.05, 0.5  # object's longer side / sqrt(W * H), uniform
MAX_OBJECTS = 5
MIN_THICKNESS = 3  # px: thinner bars and outlines would vanish in the resize to the input
MAX_BOX_IOU = 0.2  # a new object overlapping an earlier one more than this is placed again
PLACEMENT_TRIALS = 10
JPEG_QUALITY = 92


def _rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    return points @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])


def _outline(rng: np.random.Generator, name: str, extent: float) -> Tuple[np.ndarray, bool, int]:
    """One object's polygon ``(K, 2)`` in pixels centred at 0 (longer side ``extent``), whether
    it is filled, and the outline thickness."""
    if name == "bar":
        aspect = rng.uniform(3.0, 6.0)
        width = max(extent / aspect, MIN_THICKNESS)
        poly = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [extent / 2, width / 2]
        angle = 90.0 * rng.integers(2) + rng.uniform(-5, 5)
        return _rotate(poly, angle), True, 0
    if name == "arrow":
        s, h = 0.18, 0.4  # half shaft width, half head width (units of the arrow's length)
        poly = np.array([[-0.5, -s], [0.1, -s], [0.1, -h], [0.5, 0], [0.1, h], [0.1, s],
                         [-0.5, s]]) * extent
        return _rotate(poly, 90.0 * rng.integers(4) + rng.uniform(-10, 10)), True, 0
    if name == "ellipse":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        poly = np.stack([np.cos(t), rng.uniform(0.45, 0.8) * np.sin(t)], axis=1) * extent / 2
        return _rotate(poly, rng.uniform(0, 180)), True, 0
    t = np.arange(6) * np.pi / 3 + rng.uniform(0, np.pi / 3)  # hexagon
    thickness = int(max(MIN_THICKNESS - 1, round(extent * 0.07)))
    return np.stack([np.cos(t), np.sin(t)], axis=1) * extent / 2, False, thickness


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Blotchy two-scale colour background ``(H, W, 3)`` uint8 with clutter lines."""
    coarse = cv2.resize(rng.integers(0, 256, (2, 3, 3), dtype=np.uint8), (width, height),
                        interpolation=cv2.INTER_LINEAR)
    fine = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (width, height),
                      interpolation=cv2.INTER_CUBIC)
    image = cv2.addWeighted(coarse, 0.75, fine, 0.25, 0)
    _lines(rng, image, int(rng.integers(3, 12)))
    return image


def _lines(rng: np.random.Generator, image: np.ndarray, count: int) -> None:
    h, w = image.shape[:2]
    for _ in range(count):
        p, q = rng.integers(0, [w, h], size=(2, 2))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.line(image, tuple(int(v) for v in p), tuple(int(v) for v in q), color,
                 int(rng.integers(1, 3)), cv2.LINE_AA)


def _box_iou(box: Sequence[int], others: List[Sequence[int]]) -> float:
    if not others:
        return 0.0
    b, o = np.asarray(box, float), np.asarray(others, float)
    inter = (np.clip(np.minimum(b[2], o[:, 2]) - np.maximum(b[0], o[:, 0]), 0, None)
             * np.clip(np.minimum(b[3], o[:, 3]) - np.maximum(b[1], o[:, 1]), 0, None))
    union = (b[2] - b[0]) * (b[3] - b[1]) + (o[:, 2] - o[:, 0]) * (o[:, 3] - o[:, 1]) - inter
    return float((inter / union).max())


def _draw_object(rng: np.random.Generator, image: np.ndarray, name: str,
                 taken: List[Sequence[int]]) -> Optional[Tuple[int, int, int, int]]:
    """Draw one object where it overlaps no earlier box much; its tight box ``(x0, y0, x1, y1)``
    in continuous pixels, or ``None`` when no place was found."""
    h, w = image.shape[:2]
    extent = np.sqrt(h * w) * rng.uniform(MIN_EXTENT, MAX_EXTENT)
    poly, filled, thickness = _outline(rng, name, extent)
    half = np.abs(poly).max(axis=0) + thickness + 2
    mask = np.zeros((h, w), np.uint8)
    for _ in range(PLACEMENT_TRIALS):
        centre = rng.uniform(half, [w - half[0], h - half[1]])
        points = [np.round((poly + centre) * 16).astype(np.int32)]
        mask[:] = 0
        if filled:
            cv2.fillPoly(mask, points, 255, cv2.LINE_AA, 4)
        else:
            cv2.polylines(mask, points, True, 255, thickness, cv2.LINE_AA, 4)
        x, y, bw, bh = cv2.boundingRect(mask)
        box = (x, y, x + bw, y + bh)
        if bw > 1 and bh > 1 and _box_iou(box, taken) <= MAX_BOX_IOU:
            color = rng.integers(0, 256, 3).astype(np.float32)
            alpha = mask[..., None].astype(np.float32) / 255
            image[:] = (image * (1 - alpha) + color * alpha).astype(np.uint8)
            return box
    return None


def render(seed: int, index: int) -> Tuple[np.ndarray, List[Tuple[str, Tuple[int, int, int, int]]]]:
    """Image ``index`` of the set with ``seed``: ``(H, W, 3)`` uint8 BGR (as OpenCV writes it)
    and its objects ``(class name, (x0, y0, x1, y1))`` in continuous pixels."""
    rng = np.random.default_rng([seed, index])
    width, height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    image = _background(rng, width, height)
    objects: List[Tuple[str, Tuple[int, int, int, int]]] = []
    for _ in range(rng.integers(1, MAX_OBJECTS + 1)):
        name = CLASSES[rng.integers(len(CLASSES))]
        box = _draw_object(rng, image, name, [b for _, b in objects])
        if box is not None:
            objects.append((name, box))
    _lines(rng, image, int(rng.integers(0, 4)))  # clutter in front of the objects too
    noise = rng.normal(0, rng.uniform(3, 12), image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), objects


def annotation_xml(image_id: str, size: Tuple[int, int],
                   objects: Sequence[Tuple[str, Tuple[int, int, int, int]]]) -> str:
    """A VOC annotation for an image of ``size = (width, height)`` and its objects."""
    parts = [f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{image_id}.jpg</filename>\n"
             f"  <size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>\n"]
    for name, (x0, y0, x1, y1) in objects:
        parts.append(f"  <object><name>{escape(name)}</name><pose>Unspecified</pose>"
                     f"<truncated>0</truncated><difficult>0</difficult>"
                     f"<bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
                     f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>\n")
    return "".join(parts) + "</annotation>\n"


def make_dataset(out, train: int = 600, val: int = 150, seed: int = 0,
                 progress: bool = False) -> Path:
    """Write a dataset of ``train + val`` images into the new or empty folder ``out``.

    Image ids are ``000000`` ... in order; the first ``train`` are the train split. Raises
    ``ValueError`` naming ``out`` if it is a file or a folder that is not empty, or for counts
    below 1 (train) / 0 (val). Returns ``out`` as a ``Path``.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder; choose a new OUT")
    if train < 1 or val < 0:
        raise ValueError(f"need train >= 1 and val >= 0, got train={train}, val={val}")
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        (out / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"{i:06d}" for i in range(train + val)]
    for i in tqdm(range(len(ids)), desc=f"writing {out}", unit="image", disable=not progress):
        image, objects = render(seed, i)
        cv2.imwrite(str(out / "JPEGImages" / f"{ids[i]}.jpg"), image,
                    [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        size = (image.shape[1], image.shape[0])
        (out / "Annotations" / f"{ids[i]}.xml").write_text(annotation_xml(ids[i], size, objects))
    for split, chosen in (("train", ids[:train]), ("val", ids[train:])):
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in chosen))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="new (or empty) folder to write the dataset into")
    parser.add_argument("--train", type=int, default=600, help="training images (default 600)")
    parser.add_argument("--val", type=int, default=150, help="validation images (default 150)")
    parser.add_argument("--seed", type=int, default=0, help="the set's seed (default 0)")
    args = parser.parse_args(argv)
    try:
        out = make_dataset(args.out, args.train, args.val, args.seed, progress=True)
    except ValueError as err:
        print(f"voc_shapes: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.train} training and {args.val} validation images to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
