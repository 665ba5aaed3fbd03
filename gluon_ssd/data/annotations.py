"""Reading annotation files so that every defect is named: the file, and the image or
annotation it is in.

* VOC XML (:func:`xml_root`, :func:`xml_text`, :func:`xml_number`): a malformed file, a missing
  tag or a number that is not one (``<xmin>abc</xmin>``) is a ``ValueError`` naming the file.
* COCO ``instances_*.json`` (:func:`read_coco`): checked before pycocotools indexes it, so that
  invalid JSON, a missing or malformed ``bbox``, an image without ``width`` / ``height`` (or with
  one of 0) are ``ValueError`` s naming the file and the annotation or image id.
* Image paths an annotation file names (:func:`inside`) must stay inside the dataset folder
  (``../../etc/passwd`` is refused). The check is on the path as written, so a dataset whose
  image folder is a symbolic link to another disk still works.
"""
from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Mapping

# What each COCO section's entries must have: key -> (check, what it must be).
_ID = (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
_NAME = (lambda v: isinstance(v, str) and v != "", "a non-empty string")
_SIZE = (lambda v: _is_number(v) and v > 0, "a positive number")
_BBOX = (lambda v: isinstance(v, list) and len(v) == 4 and all(map(_is_number, v)),
         "a list of 4 numbers [x, y, width, height]")
_REQUIRED = {
    "images": {"id": _ID, "file_name": _NAME, "width": _SIZE, "height": _SIZE},
    "annotations": {"id": _ID, "image_id": _ID, "category_id": _ID, "bbox": _BBOX},
    "categories": {"id": _ID, "name": _NAME},
}
_SINGULAR = {"images": "image", "annotations": "annotation", "categories": "category"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def xml_root(path: str) -> ET.Element:
    """The parsed annotation file; ``ValueError`` naming it if it is malformed."""
    try:
        return ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise ValueError(f"cannot parse annotation {path}: {err}") from err


def xml_text(element: ET.Element, tag: str, path: str) -> str:
    """Stripped text of ``element``'s child ``tag``; ``ValueError`` naming ``path`` if absent."""
    child = element.find(tag)
    if child is None or child.text is None:
        raise ValueError(f"annotation {path}: <{element.tag}> has no <{tag}>")
    return child.text.strip()


def xml_number(element: ET.Element, tag: str, path: str) -> float:
    """:func:`xml_text` as a finite number; ``ValueError`` naming ``path`` if it is not one."""
    text = xml_text(element, tag, path)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"annotation {path}: <{element.tag}><{tag}> is not a number: {text!r}")
    return value


def read_coco(path: str) -> Dict[str, Any]:
    """The COCO annotation document at ``path``, checked: ``images`` and ``categories`` (and
    ``annotations``, if present) are lists of objects with the keys pycocotools and the
    datasets read, each of the right kind, and every annotation's ``image_id`` names an image.

    Raises:
        ValueError: naming ``path`` and the image or annotation id of the first defect.
    """
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a COCO annotation file (a JSON object with 'images', "
                         "'annotations' and 'categories')")
    doc.setdefault("annotations", [])
    for section, required in _REQUIRED.items():
        for entry in _entries(doc, section, path):
            _check_entry(entry, required, f"{path}: {_SINGULAR[section]}", path)
    if not doc["categories"]:
        raise ValueError(f"{path}: lists no categories (the class names)")
    images = {entry["id"] for entry in doc["images"]}
    for obj in doc["annotations"]:
        if obj["image_id"] not in images:
            raise ValueError(f"{path}: annotation {obj['id']} has image_id {obj['image_id']}, "
                             "not among the images")
    return doc


def _entries(doc: Mapping[str, Any], section: str, path: str) -> List[Dict[str, Any]]:
    entries = doc.get(section)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        state = "has no" if entries is None else "has a malformed"
        raise ValueError(f"{path}: {state} {section!r} list (a list of objects)")
    return entries


def _check_entry(entry: Mapping[str, Any], required: Mapping[str, tuple], what: str,
                 path: str) -> None:
    """``ValueError`` ``"{what} {id}: ..."`` for the first key of ``required`` that ``entry``
    lacks or holds a value of the wrong kind."""
    name = entry.get("id", f"without an id ({json.dumps(entry)[:80]})")
    for key, (valid, kind) in required.items():
        if key not in entry:
            raise ValueError(f"{what} {name} has no {key!r}")
        if not valid(entry[key]):
            raise ValueError(f"{what} {name}: {key!r} must be {kind}, got {entry[key]!r}")


def inside(root: str, folder: str, name: str, source: str) -> str:
    """The path ``root/folder/name`` of a file that ``source`` names ``name``; ``ValueError``
    naming ``source`` and ``name`` if ``name`` is absolute or the path leaves ``root``."""
    root = os.path.normpath(root)
    path = os.path.normpath(os.path.join(root, folder, name))
    if os.path.isabs(name) or os.path.commonpath([root, path]) != root:
        raise ValueError(f"{source}: file name {name!r} leaves the dataset folder {root}")
    return path


__all__ = ["xml_root", "xml_text", "xml_number", "read_coco", "inside"]
