"""The one image reader: files, PIL images and arrays to ``(H, W, 3)`` uint8 RGB numpy.

Files are decoded by OpenCV (``cv2.imdecode``): EXIF orientation applied, grayscale repeated to
RGB, alpha dropped, 16-bit samples scaled to 8 bits (the high byte). A JPEG whose data stops
before its end-of-image marker (a partial download or copy) still decodes, the missing part
filled in by libjpeg; :func:`read_image` reports it with a :class:`TruncatedImageWarning` naming
the file (:func:`collect_truncated` collects their paths, to count them), or with
``on_truncated="raise"`` refuses it as a :class:`BadImageError`, as the datasets do.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from typing import TYPE_CHECKING, Iterator, List, Sequence, Tuple, Union

import cv2
import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:
    import mxnet as mx

LOG = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
PathLike = Union[str, "os.PathLike[str]"]
ImageSource = Union[PathLike, Image.Image, np.ndarray, "mx.nd.NDArray"]

EXIF_ORIENTATION = 0x0112  # the EXIF tag
_TRANSPOSED = (5, 6, 7, 8)  # orientations that swap width and height
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = 0xD9
_JPEG_SOS = 0xDA
# Markers without a length field: TEM and RST0-7 (SOI / EOI are handled separately).
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
# The end of a scan's entropy-coded data: 0xFF followed by a byte that is neither a stuffed 0x00,
# a restart marker RST0-7 (which stays inside the scan) nor another 0xFF (a fill byte).
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


class BadImageError(OSError, ValueError):
    """An image file that is missing, cannot be decoded or (where refused) is truncated;
    ``path`` names it and ``reason`` says what is wrong."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):  # picklable, so it crosses from loader worker processes intact
        return type(self), (self.path, self.reason)


class TruncatedImageWarning(UserWarning):
    """A JPEG file that ends before its end-of-image marker; ``path`` names it. The decoded
    image is returned, its missing part filled in by the decoder."""

    def __init__(self, path: str):
        super().__init__(f"truncated image {path}: the JPEG data ends before its end-of-image "
                         "marker; the missing part is filled in")
        self.path = path


def jpeg_truncated(data: bytes) -> bool:
    """Whether JPEG ``data`` ends before its end-of-image marker.

    Walks the marker segments by their lengths (so an EXIF thumbnail's own end marker and bytes
    appended after the image do not count) and each scan's entropy-coded data to the marker that
    ends it. ``False`` for data that is not a JPEG or whose structure it does not follow: only
    running out of bytes counts as truncation.
    """
    if not data.startswith(_JPEG_SOI):
        return False
    pos, end = 2, len(data)
    while pos + 1 < end:
        if data[pos] != 0xFF:
            return False  # not a marker where one belongs: corrupt, not (only) truncated
        marker = data[pos + 1]
        if marker == _JPEG_EOI:
            return False
        if marker == 0xFF or marker in _STANDALONE:
            pos += 1 if marker == 0xFF else 2  # a fill byte / a marker without a segment
            continue
        if pos + 4 > end:
            return True
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == _JPEG_SOS:
            found = _SCAN_END.search(data, pos)
            if found is None:
                return True
            pos = found.start()
    return True


def read_image(src: ImageSource, *, on_truncated: str = "warn") -> np.ndarray:
    """Any supported image as ``(H, W, 3)`` uint8 RGB numpy.

    Args:
        src: one of

            * a path (``str`` / ``os.PathLike``): decoded as the module docstring says;
            * a PIL image: EXIF orientation applied, converted to RGB (16-bit grayscale scaled
              to 8 bits);
            * a numpy array or ``mx.nd.NDArray`` ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` (RGB)
              or ``(H, W, 4)`` (RGBA), uint8 or uint16 (scaled to 8 bits): grayscale repeated,
              alpha dropped. A ``(H, W, 3)`` uint8 numpy array is returned as is (not copied).
        on_truncated: for a truncated JPEG file: ``"warn"`` (a :class:`TruncatedImageWarning`,
            the image is returned) or ``"raise"`` (a :class:`BadImageError`).

    Raises:
        BadImageError: a file that is missing or not a decodable image (or truncated, with
            ``on_truncated="raise"``); a PIL image whose file cannot be decoded.
        ValueError: an array of another dtype or shape; a bad ``on_truncated``; another type.
    """
    if on_truncated not in ("warn", "raise"):
        raise ValueError(f"on_truncated must be 'warn' or 'raise', got {on_truncated!r}")
    if isinstance(src, Image.Image):
        return _from_pil(src)
    if hasattr(src, "asnumpy"):  # an mx.nd.NDArray, without importing mxnet here
        src = src.asnumpy()
    if isinstance(src, np.ndarray):
        return _from_array(src)
    if isinstance(src, (str, os.PathLike)):
        return _from_file(os.fspath(src), on_truncated)
    raise ValueError("an image must be a path, a PIL image or an (H, W[, C]) array, got "
                     f"{type(src).__name__}")


def _from_file(path: str, on_truncated: str) -> np.ndarray:
    """Decode the file at ``path`` with OpenCV (see :func:`read_image`)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise BadImageError(path, err.strerror or str(err)) from err
    # IMREAD_COLOR: EXIF orientation applied, gray / BGRA made BGR, 16 bits scaled to 8
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise BadImageError(path, "not a decodable image")
    if jpeg_truncated(data):
        if on_truncated == "raise":
            raise BadImageError(path, "truncated JPEG (the data ends before its end-of-image "
                                      "marker)")
        warnings.warn(TruncatedImageWarning(path), stacklevel=3)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _from_pil(image: Image.Image) -> np.ndarray:
    """A PIL image, EXIF orientation applied, as RGB uint8 (16-bit gray scaled to 8 bits)."""
    try:
        image = ImageOps.exif_transpose(image)
        if image.mode == "I" or image.mode.startswith("I;16"):
            return _from_array(np.asarray(image).clip(0, 65535).astype(np.uint16))
        return np.asarray(image.convert("RGB"))
    except OSError as err:  # a lazily loaded file that turns out broken or truncated
        raise BadImageError(getattr(image, "filename", "") or "<PIL image>", str(err)) from err


def _from_array(image: np.ndarray) -> np.ndarray:
    """A uint8 / uint16 ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` array as
    ``(H, W, 3)`` uint8 (16 bits: the high byte, as OpenCV scales 16-bit files)."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8 (0..255) or uint16, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or 0 in image.shape:
        raise ValueError("image arrays must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
                         f"got {image.shape}")
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]


def image_size(path: PathLike) -> Tuple[int, int]:
    """``(height, width)`` of the image file as :func:`read_image` returns it (EXIF orientation
    applied), from its header alone; :class:`BadImageError` if it cannot be opened."""
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except OSError as err:
        raise BadImageError(path, str(err)) from err
    return (width, height) if orientation in _TRANSPOSED else (height, width)


def find_unreadable(paths: Sequence[str]) -> List[int]:
    """Indices of the image files in ``paths`` that cannot be decoded or are truncated (as
    ``read_image(path, on_truncated="raise")`` refuses them), each logged as a warning."""
    bad = []
    for i, path in enumerate(paths):
        try:
            read_image(path, on_truncated="raise")
        except BadImageError as err:
            LOG.warning("skipping %s", err)
            bad.append(i)
    return bad


@contextlib.contextmanager
def collect_truncated() -> Iterator[List[str]]:
    """Collect the :class:`TruncatedImageWarning` s issued in the ``with`` block instead of showing
    them: yields a list that, when the block ends, holds their paths in order (a file read twice
    is listed twice). Other warnings are shown as usual when the block ends."""
    paths: List[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncatedImageWarning)
        try:
            yield paths
        finally:
            others = [w for w in caught if not isinstance(w.message, TruncatedImageWarning)]
            paths.extend(w.message.path for w in caught
                         if isinstance(w.message, TruncatedImageWarning))
    for w in others:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)


def list_images(inputs: Union[PathLike, Sequence[PathLike]]) -> Tuple[List[str], List[str]]:
    """Expand folders: ``(image paths, skipped entries)``.

    A folder contributes its entries with an image extension (:data:`IMAGE_EXTENSIONS`, any
    case), sorted by name, except subfolders; every other entry of it is skipped. An entry with
    an image extension that cannot be opened (a symbolic link to nothing or to itself, a file
    without read permission) is kept, so that reading it fails naming it, as for a file that is
    not an image: it is an unreadable image, not a non-image entry. Paths that are not folders
    are kept as given (a missing or undecodable one fails when it is read, named).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    images, skipped = [], []
    for item in map(os.fspath, inputs):
        if not os.path.isdir(item):
            images.append(item)
            continue
        for name in sorted(os.listdir(item)):
            path = os.path.join(item, name)
            if name.lower().endswith(IMAGE_EXTENSIONS) and not os.path.isdir(path):
                images.append(path)
            else:
                skipped.append(path)
    return images, skipped


__all__ = ["IMAGE_EXTENSIONS", "BadImageError", "TruncatedImageWarning", "read_image",
           "jpeg_truncated", "image_size", "find_unreadable", "collect_truncated", "list_images"]
