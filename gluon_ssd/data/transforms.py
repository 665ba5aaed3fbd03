"""From dataset items to network batches: the paper's augmentation, the eval resize, batching.

Training augmentation (Liu et al. 2016, Sec. 2.2 and 3.6), built from gluoncv primitives:
photometric distortion -> zoom out (with probability 0.5, onto a canvas up to ``max_expand``
times each side, filled with the mean colour) -> min-IoU random crop (the whole image, or a patch
whose IoU with some object is at least 0.1, 0.3, 0.5, 0.7 or 0.9, or any patch; sides 0.3-1 of
the image's, aspect ratio 1/2-2; boxes whose centre leaves the patch are dropped, the others
clipped to it; see :func:`sample_patches`) -> resize to the input size (random interpolation)
-> horizontal flip (p = 0.5) -> CHW float32 normalised with ``(x / 255 - mean) / std``.
Without it, a lighter augmentation for small datasets that keeps every object whole, each part
optional: photometric distortion -> :func:`zoom_in` (a crop holding every box) -> resize ->
horizontal flip.

Inputs: ``image`` an ``(H, W, 3)`` uint8 RGB ``mx.nd.NDArray`` (what the datasets return; numpy
is converted), ``label`` a numpy array ``(M, 6)`` with rows ``xmin, ymin, xmax, ymax, class_id,
ignore`` in pixels of that image (the layout of :mod:`gluon_ssd.data.labels`; a label without
the ``ignore`` column gets one of zeros). Labels stay in pixels (of the resized image);
normalising to [0, 1] and reordering for MultiBoxTarget is the trainer's job.

Batches: :class:`DetectionLoader` yields :class:`Batch` ``(images, labels, image_sizes)``; the
original size of every image travels as ``image_sizes``, so evaluation can score boxes in the
original image's pixels.

Randomness: the transforms draw only from numpy's global RNG (``np.random``) and Python's
``random`` module (gluoncv's primitives use both). :class:`DetectionLoader` seeds both for every
sample from ``(seed, epoch, index)`` (see :func:`sample_seed`), so a sample's augmentation does not
depend on worker processes, batch composition or what ran before: resuming at epoch ``e``
reproduces exactly the batches of an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import functools
import random
from dataclasses import fields
from typing import Iterator, List, NamedTuple, Sequence, Tuple, Union

import mxnet as mx
import numpy as np
from gluoncv.data.transforms import bbox as tbbox
from gluoncv.data.transforms import experimental
from gluoncv.data.transforms import image as timage
from gluoncv.utils.bbox import bbox_iou
from mxnet import gluon

from ..presets import ModelSpec
from ..targets import MIN_LABEL_ROWS  # MultiBoxTarget needs at least 3 label rows per image
from .labels import BOX, IGNORE, PAD, WIDTH

Image = Union[mx.nd.NDArray, np.ndarray]
Sample = Tuple[mx.nd.NDArray, np.ndarray]  # what a transform returns: (image, label)

_MODEL_DEFAULTS = {f.name: f.default for f in fields(ModelSpec)}
DEFAULT_MEAN: Tuple[float, float, float] = _MODEL_DEFAULTS["mean"]
DEFAULT_STD: Tuple[float, float, float] = _MODEL_DEFAULTS["std"]
# The paper's patch sampling: some object's IoU with the patch at least 0.1 ... 0.9, or any patch.
PATCH_CONSTRAINTS = ((0.1, 1), (0.3, 1), (0.5, 1), (0.7, 1), (0.9, 1), (0, 1))
PATCH_MIN_SCALE = 0.3  # smallest patch side / image side (Caffe SSD; the paper says 0.1)
PATCH_MAX_RATIO = 2.0  # patch aspect ratios lie in [1/2, 2]
LINEAR = 1  # OpenCV's INTER_LINEAR
N_INTERPOLATIONS = 5  # OpenCV's nearest, linear, cubic, area, lanczos


class Batch(NamedTuple):
    """One batch of :class:`DetectionLoader`.

    Attributes:
        images: ``(B, 3, H, W)`` float32 NDArray, the network input.
        labels: ``(B, M, 6)`` float32 NDArray, rows ``xmin, ymin, xmax, ymax, class_id, ignore``
            in pixels of the network input (columns named in :mod:`gluon_ssd.data.labels`);
            rows past an image's objects are -1.
        image_sizes: ``(B, 2)`` int64 numpy ``(height, width)`` of each ORIGINAL image (before
            the transform), to take boxes back to its pixels.
    """

    images: mx.nd.NDArray
    labels: mx.nd.NDArray
    image_sizes: np.ndarray


def _as_ndarray(image: Image) -> mx.nd.NDArray:
    return image if isinstance(image, mx.nd.NDArray) else mx.nd.array(image, dtype="uint8")


def as_label(label: np.ndarray) -> np.ndarray:
    """``label`` ``(M, 5)`` or ``(M, 6)`` -> float32 ``(M, 6)``; a missing ``ignore`` column is
    0, an empty label of any shape is ``(0, 6)``. ``ValueError`` for any other width."""
    label = np.asarray(label, np.float32)
    if label.size == 0:
        return np.zeros((0, WIDTH), np.float32)
    if label.ndim == 2 and label.shape[1] == WIDTH:
        return label
    if label.ndim != 2 or label.shape[1] != IGNORE:  # all columns up to ignore
        raise ValueError(f"label: expected (M, {WIDTH}) rows xmin, ymin, xmax, ymax, class_id, "
                         f"ignore, got shape {label.shape}")
    return np.concatenate([label, np.zeros((len(label), 1), np.float32)], axis=1)


def photometric_distort(image: mx.nd.NDArray) -> mx.nd.NDArray:
    """Random brightness, contrast, saturation and hue (gluoncv's SSD distortion).

    ``image`` ``(H, W, 3)`` in 0..255 -> float32 ``(H, W, 3)`` clipped to 0..255.
    """
    return mx.nd.clip(experimental.image.random_color_distort(image), 0, 255)


def zoom_out(image: mx.nd.NDArray, label: np.ndarray, fill: Sequence[float],
             max_ratio: float, p: float = 0.5) -> Tuple[mx.nd.NDArray, np.ndarray]:
    """With probability ``p``, place the image at a random spot of a canvas ``r`` times its size
    (``r`` uniform in ``[1, max_ratio]``, same for both sides) filled with ``fill`` (RGB, 0..255).

    Returns the new image ``(rH, rW, 3)`` and ``label`` ``(M, 4+)`` shifted to the canvas (pixels).
    """
    if np.random.uniform() >= p:
        return image, label
    image, (x, y, _, _) = timage.random_expand(image, max_ratio=max_ratio, fill=list(fill))
    return image, tbbox.translate(label, x_offset=x, y_offset=y)


def zoom_in(image: mx.nd.NDArray, label: np.ndarray,
            max_ratio: float) -> Tuple[mx.nd.NDArray, np.ndarray]:
    """Crop a patch ``1 / r`` of each side (``r`` uniform in ``[1, max_ratio]``, drawn for width
    and height apart) that holds every box whole, at a uniform place among those that do; a patch
    too small for the boxes grows to their extent.

    Unlike :func:`min_iou_crop` no object is dropped or cut, so a small dataset's objects all
    stay while they grow by up to ``max_ratio``. Returns the patch ``(h, w, 3)`` and ``label``
    ``(M, 4+)`` shifted into its pixels.
    """
    if max_ratio <= 1 or not len(label):
        return image, label
    size = np.array(image.shape[1::-1])  # (W, H)
    lo = np.clip(np.floor(label[:, BOX][:, :2].min(axis=0)), 0, size).astype(int)
    hi = np.clip(np.ceil(label[:, BOX][:, 2:].max(axis=0)), 0, size).astype(int)
    patch = np.minimum(np.maximum((size / np.random.uniform(1, max_ratio, 2)).astype(int),
                                  hi - lo), size)
    first, last = np.maximum(0, hi - patch), np.minimum(lo, size - patch)  # patch origins
    x, y = first + (np.random.uniform(size=2) * (last - first + 1)).astype(int)
    return (mx.image.fixed_crop(image, int(x), int(y), int(patch[0]), int(patch[1])),
            tbbox.translate(label, x_offset=-x, y_offset=-y))


def min_iou_crop(image: mx.nd.NDArray, label: np.ndarray) -> Tuple[mx.nd.NDArray, np.ndarray]:
    """The paper's random patch: a uniform choice among the whole image and one patch per
    :data:`PATCH_CONSTRAINTS` entry (see :func:`sample_patches`).

    Returns the patch ``(h, w, 3)`` and ``label`` ``(K, 4+)`` in the patch's pixels, ``K <= M``:
    boxes whose centre lies outside the patch are dropped, the others clipped to it (gluoncv's
    ``bbox.crop``). Patches that would drop every box are not chosen, so a non-empty ``label``
    stays non-empty.
    """
    h, w = image.shape[:2]
    candidates = sample_patches(label, (w, h))
    while candidates:
        patch = candidates.pop(np.random.randint(len(candidates)))
        cropped = tbbox.crop(label, patch, allow_outside_center=False)
        if len(cropped) or not len(label):
            return mx.image.fixed_crop(image, *patch), cropped
    return image, label


def sample_patches(label: np.ndarray, size: Tuple[int, int],
                   constraints: Sequence[Tuple[float, float]] = PATCH_CONSTRAINTS,
                   trials: int = 50) -> List[Tuple[int, int, int, int]]:
    """Candidate patches ``(x, y, w, h)`` in pixels: the whole image, then for each
    ``(min_iou, max_iou)`` constraint the first of ``trials`` random patches that satisfies it.

    As in the original Caffe SSD sampler: a patch has sides ``scale * sqrt(ar)`` (width) and
    ``scale / sqrt(ar)`` (height) of the image's, ``scale`` uniform in ``[PATCH_MIN_SCALE, 1]``,
    ``ar`` uniform in ``[max(1/2, scale^2), min(2, 1/scale^2)]``; it satisfies a constraint when
    *some* object's IoU with it lies in ``[min_iou, max_iou]`` (``(0, 1)``: any patch, which an
    image without objects also accepts). gluoncv's ``random_crop_with_constraints`` instead asks
    *every* object to satisfy it, which images with several objects rarely meet, and is ~20x
    slower (one Python iteration per trial); the trials here are vectorised.

    Args:
        label: ``(M, 4+)`` boxes ``[xmin, ymin, xmax, ymax, ...]`` in pixels.
        size: image ``(width, height)``.
    """
    w, h = size
    candidates = [(0, 0, w, h)]
    for min_iou, max_iou in constraints:
        scale = np.random.uniform(PATCH_MIN_SCALE, 1.0, trials)
        low = np.maximum(1 / PATCH_MAX_RATIO, scale ** 2)
        high = np.minimum(PATCH_MAX_RATIO, scale ** -2)
        ratio = low + np.random.uniform(size=trials) * (high - low)
        pw = np.maximum((w * scale * np.sqrt(ratio)).astype(int), 1)
        ph = np.maximum((h * scale / np.sqrt(ratio)).astype(int), 1)
        px = (np.random.uniform(size=trials) * (w - pw + 1)).astype(int)
        py = (np.random.uniform(size=trials) * (h - ph + 1)).astype(int)
        patches = np.stack([px, py, px + pw, py + ph], axis=1)
        if (min_iou, max_iou) == (0, 1):
            ok = np.ones(trials, bool)
        else:
            iou = bbox_iou(patches.astype(np.float64), np.asarray(label, np.float64)[:, BOX])
            ok = ((iou >= min_iou) & (iou <= max_iou)).any(axis=1)
        if ok.any():
            first = int(np.argmax(ok))
            candidates.append((int(px[first]), int(py[first]), int(pw[first]), int(ph[first])))
    return candidates


def resize(image: mx.nd.NDArray, label: np.ndarray, size: Tuple[int, int],
           interp: int = LINEAR) -> Tuple[mx.nd.NDArray, np.ndarray]:
    """Resize to ``size = (height, width)``; ``label`` ``(M, 4+)`` pixels scaled along (float32)."""
    h, w = image.shape[:2]
    image = timage.imresize(image, size[1], size[0], interp=interp)
    return image, tbbox.resize(label, (w, h), (size[1], size[0])).astype(np.float32)


def random_hflip(image: mx.nd.NDArray, label: np.ndarray,
                 p: float = 0.5) -> Tuple[mx.nd.NDArray, np.ndarray]:
    """Mirror left-right with probability ``p``; a box ``[x0, y0, x1, y1]`` becomes
    ``[W - x1, y0, W - x0, y1]`` (continuous pixel coordinates)."""
    w = image.shape[1]
    image, (flip_x, _) = timage.random_flip(image, px=p)
    return image, tbbox.flip(label, (w, image.shape[0]), flip_x=flip_x)


def to_network_input(image: mx.nd.NDArray, mean: Sequence[float],
                     std: Sequence[float]) -> mx.nd.NDArray:
    """``(H, W, 3)`` RGB in 0..255 -> ``(3, H, W)`` float32 ``(x / 255 - mean) / std``."""
    tensor = mx.nd.image.to_tensor(image.astype("float32"))
    return mx.nd.image.normalize(tensor, mean=tuple(mean), std=tuple(std))


class TrainTransform:
    """The paper's training augmentation, or with ``augment=False`` a lighter one that keeps
    every object whole: optional photometric distortion (``distort``), :func:`zoom_in` (up to
    ``zoom_in``), resize, optional horizontal flip of half the images (``flip``), normalise.

    Args:
        size: network input ``(height, width)`` in pixels.
        mean, std: RGB normalisation of 0..1 images (defaults: ``ModelSpec``'s ImageNet values);
            ``mean * 255`` also fills the zoom-out canvas.
        augment: apply the paper's augmentation.
        max_expand: its largest zoom-out factor per side (the paper: 4).
        flip, distort, zoom_in: without ``augment`` (which does all three its own way): flip half
            the images horizontally; distort colours as the paper does; the largest zoom-in
            factor per side of :func:`zoom_in` (1: none).

    Call with ``(image (H, W, 3) uint8, label (M, 6))`` (see :func:`as_label`); returns
    ``(image (3, height, width) float32 NDArray, label (K, 6) float32 numpy)``, boxes in pixels of
    the output image, inside it, ``xmin < xmax`` and ``ymin < ymax`` for valid input; the class
    and ``ignore`` columns ride along (training learns ignored boxes as objects, as GluonCV
    does: only evaluation reads the flag). Random draws: ``np.random`` and ``random``.
    """

    def __init__(self, size: Tuple[int, int], mean: Sequence[float] = DEFAULT_MEAN,
                 std: Sequence[float] = DEFAULT_STD, augment: bool = True,
                 max_expand: float = 4.0, flip: bool = False, distort: bool = False,
                 zoom_in: float = 1.0):
        self.size = (int(size[0]), int(size[1]))
        self.mean, self.std = tuple(mean), tuple(std)
        self.augment = augment
        self.max_expand = max_expand
        self.flip, self.distort, self.zoom_in = flip, distort, zoom_in

    def __call__(self, image: Image, label: np.ndarray) -> Sample:
        image = _as_ndarray(image)
        label = as_label(label)
        if not self.augment:
            if self.distort:
                image = photometric_distort(image)
            image, label = zoom_in(image, label, self.zoom_in)
            image, label = resize(image, label, self.size)
            if self.flip:
                image, label = random_hflip(image, label)
            return to_network_input(image, self.mean, self.std), label
        image = photometric_distort(image)
        image, label = zoom_out(image, label, [m * 255 for m in self.mean], self.max_expand)
        image, label = min_iou_crop(image, label)
        image, label = resize(image, label, self.size, np.random.randint(N_INTERPOLATIONS))
        image, label = random_hflip(image, label)
        return to_network_input(image, self.mean, self.std), label


class EvalTransform:
    """Resize to the input size and normalise, for evaluation.

    Args:
        size: network input ``(height, width)``.
        mean, std: as in :class:`TrainTransform`.

    Call with ``(image (H, W, 3), label (M, 6))`` (see :func:`as_label`); returns ``(image (3,
    height, width) float32 NDArray, label (M, 6) float32)`` with the boxes scaled to the resized
    image's pixels and the class and ``ignore`` columns kept. No randomness.
    """

    def __init__(self, size: Tuple[int, int], mean: Sequence[float] = DEFAULT_MEAN,
                 std: Sequence[float] = DEFAULT_STD):
        self.size = (int(size[0]), int(size[1]))
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image: Image, label: np.ndarray) -> Sample:
        image, label = resize(_as_ndarray(image), as_label(label), self.size)
        return to_network_input(image, self.mean, self.std), label


def batchify(samples: Sequence[Tuple[mx.nd.NDArray, np.ndarray, Tuple[int, int]]],
             min_rows: int = MIN_LABEL_ROWS) -> Batch:
    """Stack transformed samples into a batch.

    Args:
        samples: ``B`` triples ``(image (3, H, W) float32, label (M_i, 6) float32, (h_i, w_i))``
            (same H, W), ``(h_i, w_i)`` the size of the image before the transform.
        min_rows: the smallest number of label rows per image in the output.

    Returns:
        :class:`Batch`: ``images (B, 3, H, W)``, ``labels (B, max(min_rows, max_i M_i), 6)``
        (the rows past each image's ``M_i`` are all -1, MultiBoxTarget's padding) and
        ``image_sizes (B, 2)``.
    """
    images, labels, sizes = zip(*samples)
    rows = max([min_rows] + [len(lab) for lab in labels])
    padded = np.full((len(labels), rows, WIDTH), PAD, np.float32)
    for i, lab in enumerate(labels):
        padded[i, :len(lab)] = lab
    return Batch(mx.nd.stack(*images), mx.nd.array(padded), np.array(sizes, np.int64))


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The 32-bit seed of dataset item ``index`` in ``epoch``: a hash of the three."""
    return int(np.random.SeedSequence([seed, epoch, 1, index]).generate_state(1)[0])


@contextlib.contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed ``np.random`` and ``random`` with ``seed`` inside the block; restore them after."""
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


class _SeededDataset(gluon.data.Dataset):
    """``dataset`` transformed, item key ``epoch * len(dataset) + index``: ``(image, label,
    (h, w))``, ``(h, w)`` the size of the dataset's image (before the transform).

    The key carries the epoch into worker processes (which hold a copy of this object made when
    the loader started); the transform runs under :func:`seeded_rngs` with
    :func:`sample_seed` ``(seed, epoch, index)``.
    """

    def __init__(self, dataset: gluon.data.Dataset, transform, seed: int):
        self._dataset, self._transform, self._seed = dataset, transform, seed

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, key: int) -> Tuple[mx.nd.NDArray, np.ndarray, Tuple[int, int]]:
        epoch, index = divmod(key, len(self._dataset))
        image, label = self._dataset[index]
        with seeded_rngs(sample_seed(self._seed, epoch, index)):
            return (*self._transform(image, label), tuple(image.shape[:2]))


class _EpochBatchSampler:
    """Batches of keys ``epoch * n + index``; the order is a function of ``(seed, epoch)``."""

    def __init__(self, length: int, batch_size: int, shuffle: bool, seed: int, last_batch: str):
        if last_batch not in ("keep", "discard"):
            raise ValueError(f"last_batch must be 'keep' or 'discard', got {last_batch!r}")
        self._length, self._batch_size = length, batch_size
        self._shuffle, self._seed, self._last_batch = shuffle, seed, last_batch
        self._batches: List[List[int]] = []

    def __len__(self) -> int:
        if self._last_batch == "keep":
            return -(-self._length // self._batch_size)
        return self._length // self._batch_size

    def __iter__(self) -> Iterator[List[int]]:
        return iter(self._batches)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Make ``iter`` yield the batches of ``epoch`` from batch number ``start`` on."""
        if self._shuffle:
            order = np.random.default_rng([self._seed, epoch, 0]).permutation(self._length)
        else:
            order = np.arange(self._length)
        keys = (epoch * self._length + order).tolist()
        self._batches = [keys[i:i + self._batch_size]
                         for i in range(0, len(self) * self._batch_size, self._batch_size)][start:]


class DetectionLoader:
    """Reproducible batches of a detection dataset: batch ``b`` of epoch ``e`` depends only on
    ``(dataset, transform, seed, e, b)``, not on ``num_workers`` or on earlier epochs.

    Args:
        dataset: items ``(image (H, W, 3) uint8, label (M, 6) pixels)``.
        transform: e.g. :class:`TrainTransform` or :class:`EvalTransform`.
        batch_size: images per batch.
        shuffle: a new order every epoch (a function of ``(seed, epoch)``), else dataset order.
        seed: base seed of the order and of every sample's augmentation.
        last_batch: ``"keep"`` a smaller last batch or ``"discard"`` it.
        num_workers: worker processes (0: in this process); results are identical either way.
        min_rows: at least this many label rows per image (see :func:`batchify`).

    ``for batch in loader.epoch(e)`` yields :class:`Batch` ``(images (B, 3, H, W), labels
    (B, M_max, 6), image_sizes (B, 2))`` on the CPU.
    """

    def __init__(self, dataset: gluon.data.Dataset, transform, batch_size: int, *,
                 shuffle: bool = True, seed: int = 0, last_batch: str = "keep",
                 num_workers: int = 0, min_rows: int = MIN_LABEL_ROWS):
        self.dataset = dataset
        self._sampler = _EpochBatchSampler(len(dataset), batch_size, shuffle, seed, last_batch)
        self._loader = gluon.data.DataLoader(
            _SeededDataset(dataset, transform, seed), batch_sampler=self._sampler,
            batchify_fn=functools.partial(batchify, min_rows=min_rows), num_workers=num_workers)

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self._sampler)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch``, skipping the first ``start`` (to resume mid-epoch)."""
        self._sampler.set_epoch(epoch, start)
        for batch in self._loader:
            yield Batch(*batch)  # loader processes hand the batch back as a list

    def batch_indices(self, epoch: int) -> List[List[int]]:
        """The dataset indices of every batch of ``epoch``, in the order :meth:`epoch` yields them."""
        self._sampler.set_epoch(epoch)
        return [[key % len(self.dataset) for key in batch] for batch in self._sampler]


__all__ = [
    "Batch", "TrainTransform", "EvalTransform", "DetectionLoader", "as_label", "batchify",
    "sample_seed",
    "seeded_rngs", "photometric_distort", "zoom_out", "min_iou_crop", "resize", "random_hflip",
    "to_network_input", "DEFAULT_MEAN", "DEFAULT_STD", "MIN_LABEL_ROWS",
]
