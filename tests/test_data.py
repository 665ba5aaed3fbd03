"""Datasets: SyntheticShapes, VOC / VOC-format folders and COCO built on disk in tmp dirs."""
import json
import os
import re

import cv2
import numpy as np
import pytest
from PIL import Image

from gluon_ssd.data import files, synthetic
from gluon_ssd.data.datasets import (
    VOC_CLASSES, COCODataset, DataConfig, VOCDataset, VOCFolderDataset, build_split, get_dataset,
)
from gluon_ssd.data.io import BadImageError
from gluon_ssd.data.labels import (BOX, CLASS, IGNORE, PAD, WIDTH, LoadStats, is_object,
                                   make_label, sanitize_boxes)
from gluon_ssd.data.synthetic import MAX_AREA, MIN_AREA, SyntheticShapes


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_by_seed_and_index():
    a = SyntheticShapes(20, (96, 96), seed=7)
    b = SyntheticShapes(20, (96, 96), seed=7)
    for i in (5, 0, 19, 5):  # any order, any instance
        img_a, lab_a = a[i]
        img_b, lab_b = b[i]
        np.testing.assert_array_equal(img_a.asnumpy(), img_b.asnumpy())
        np.testing.assert_array_equal(lab_a, lab_b)
    other_seed = SyntheticShapes(20, (96, 96), seed=8)
    val = SyntheticShapes(20, (96, 96), split="val", seed=7)
    assert not np.array_equal(a.render(3)[0], other_seed.render(3)[0])
    assert not np.array_equal(a.render(3)[0], val.render(3)[0])


def test_synthetic_items_layout_counts_and_sizes():
    ds = SyntheticShapes(150, (128, 128), seed=1)
    counts = []
    for i in range(len(ds)):
        image, label = ds.render(i)
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert label.dtype == np.float32 and label.shape[1] == WIDTH
        assert np.all(label[:, IGNORE] == 0)
        counts.append(len(label))
        assert np.all(label[:, 0] < label[:, 2]) and np.all(label[:, 1] < label[:, 3])
        assert np.all(label[:, BOX] >= 0) and np.all(label[:, [2, 3]] <= 128)
        assert set(label[:, CLASS].astype(int)) <= set(range(len(ds.classes)))
        longer = np.maximum(label[:, 2] - label[:, 0], label[:, 3] - label[:, 1])
        assert np.all(longer >= np.sqrt(MIN_AREA) * 128 - 2)
        assert np.all(longer <= np.sqrt(MAX_AREA) * 128 + 2)
    assert min(counts) == 1 and max(counts) == 6
    assert ds.classes == ("circle", "square", "triangle", "star", "cross")


def test_synthetic_non_square_images_use_the_whole_frame():
    ds = SyntheticShapes(60, (80, 200), classes=("ellipse", "hexagon", "ring"))
    labels = np.concatenate([ds.render(i)[1] for i in range(len(ds))])
    assert ds.render(0)[0].shape == (80, 200, 3)
    assert labels[:, 2].max() <= 200 and labels[:, 3].max() <= 80
    assert labels[:, 0].max() > 80  # shapes also in the part beyond the shorter side
    assert set(labels[:, CLASS].astype(int)) == {0, 1, 2}


@pytest.mark.parametrize("size", [(192, 320), (320, 192), (40, 300)])
def test_synthetic_largest_shapes_fit_any_aspect(size):
    """Shapes at the largest area are capped by the shorter side, antialiased edges included."""
    ds = SyntheticShapes(40, size, split="val")
    for i in range(len(ds)):
        label = ds.render(i)[1]
        assert len(label) >= 1
        assert label[:, 2].max() <= size[1] and label[:, 3].max() <= size[0]


def test_synthetic_boxes_are_tight(monkeypatch):
    """On a black background without clutter or noise, every drawn pixel lies in the box, and
    the box's border rows / columns hold drawn pixels (1 px slack for faint antialiasing)."""
    monkeypatch.setattr(synthetic, "_background", lambda rng, size: np.zeros(size + (3,), np.uint8))
    monkeypatch.setattr(synthetic, "_draw_lines", lambda rng, image, count: None)
    monkeypatch.setattr(SyntheticShapes, "_add_noise", lambda self, rng, canvas: canvas)
    ds = SyntheticShapes(120, (96, 128), seed=3, classes=tuple(synthetic.SHAPES))
    singles = 0
    for i in range(len(ds)):
        image, label = ds.render(i)
        drawn = image.max(axis=2) > 0
        inside = np.zeros_like(drawn)
        for x0, y0, x1, y1 in label[:, BOX].astype(int):
            inside[y0:y1, x0:x1] = True
        assert not np.any(drawn & ~inside), f"item {i}: drawn pixels outside every box"
        if len(label) == 1:
            singles += 1
            ys, xs = np.nonzero(drawn)
            tight = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            assert np.abs(tight - label[0, :4]).max() <= 1, (i, tight, label)
    assert singles >= 5


def test_synthetic_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        SyntheticShapes(split="test")
    with pytest.raises(ValueError, match="unknown shapes"):
        SyntheticShapes(classes=("circle", "blob"))
    with pytest.raises(ValueError, match="at least"):
        SyntheticShapes(size=(16, 64))
    with pytest.raises(ValueError, match="cache_mb"):
        SyntheticShapes(cache_mb=-1)


def test_synthetic_cache_keeps_renders_within_its_budget(monkeypatch):
    # 64x80x3 = 15360 bytes per image: a budget of 2.5 images keeps the first two rendered.
    cached = SyntheticShapes(6, (64, 80), seed=3, cache_mb=2.5 * 15360 / 2 ** 20)
    plain = SyntheticShapes(6, (64, 80), seed=3)
    renders = []
    render = SyntheticShapes.render
    monkeypatch.setattr(SyntheticShapes, "render",
                        lambda self, i: renders.append(i) or render(self, i))
    for _ in range(2):
        for i in (0, 1, 2):
            image, label = cached[i]
            label[:, 0] = -5  # callers may edit what they get; the cache keeps its own
    assert renders == [0, 1, 2, 2]  # items 0 and 1 rendered once, item 2 past the budget
    for i in (0, 1, 2):
        np.testing.assert_array_equal(cached[i][0].asnumpy(), plain[i][0].asnumpy())
        np.testing.assert_array_equal(cached[i][1], plain[i][1])


def test_get_dataset_synthetic():
    train = get_dataset("synthetic", "train", size=(64, 80), length=12, seed=2)
    val = get_dataset("synthetic", "val", size=(64, 80), length=12, seed=2)
    assert len(train) == 12 and train[0][0].shape == (64, 80, 3)
    assert train.split == "train" and val.split == "val"
    assert train.stats.summary().startswith("0 boxes clipped")


# ----------------------------------------------------------------------------- VOC

def _write_image(path, height=60, width=80, colour=(0, 128, 255)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = np.full((height, width, 3), colour, np.uint8)
    assert cv2.imwrite(path, image)


def _write_voc_xml(path, objects, width=80, height=60):
    """objects: (name, (x1, y1, x2, y2) 1-based inclusive, difficult)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    body = "".join(
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
        f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for name, (x1, y1, x2, y2), difficult in objects)
    with open(path, "w") as f:
        f.write(f"<annotation><size><width>{width}</width><height>{height}</height>"
                f"<depth>3</depth></size>{body}</annotation>")


def _write_ids(folder, split, ids):
    os.makedirs(os.path.join(folder, "ImageSets", "Main"), exist_ok=True)
    with open(os.path.join(folder, "ImageSets", "Main", f"{split}.txt"), "w") as f:
        f.write("\n".join(ids) + "\n\n")  # a trailing blank line must not become an id


@pytest.fixture
def voc_root(tmp_path):
    """VOCdevkit with VOC2007: trainval = 000001, 000002; test = 000003."""
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    objects = {
        "000001": [("dog", (11, 21, 40, 50), 0), ("person", (1, 1, 80, 60), 1)],
        "000002": [("car", (5, 5, 30, 30), 0)],
        "000003": [("cat", (2, 3, 20, 30), 0), ("bird", (50, 10, 70, 25), 1)],
    }
    for image_id, objs in objects.items():
        _write_image(str(voc / "JPEGImages" / f"{image_id}.jpg"))
        _write_voc_xml(str(voc / "Annotations" / f"{image_id}.xml"), objs)
    _write_ids(str(voc), "trainval", ["000001", "000002"])
    _write_ids(str(voc), "test", ["000003"])
    return str(tmp_path / "VOCdevkit")


def test_voc_labels_with_difficult_flag(voc_root):
    ds = VOCDataset(voc_root, [(2007, "trainval")])
    assert len(ds) == 2 and ds.classes == VOC_CLASSES
    image, label = ds[0]
    assert image.shape == (60, 80, 3) and image.dtype == np.uint8
    assert label.dtype == np.float32 and label.shape == (2, 6)
    dog, person = VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")
    np.testing.assert_array_equal(label[0], [10, 20, 40, 50, dog, 0])  # 1-based -> continuous
    np.testing.assert_array_equal(label[1], [0, 0, 80, 60, person, 1])  # difficult kept
    assert ds.stats.boxes_clipped == 0 and ds.stats.boxes_dropped == 0


def test_voc_through_get_dataset(voc_root):
    val = get_dataset("voc", "val", root=voc_root)
    assert len(val) == 1 and val[0][1][:, IGNORE].tolist() == [0, 1]
    devkit = get_dataset(voc_root, "2007_trainval")
    assert isinstance(devkit, VOCDataset) and len(devkit) == 2
    with pytest.raises(ValueError, match="split file .*2012"):
        get_dataset("voc", "train", root=voc_root)  # VOC2012 is missing
    with pytest.raises(ValueError, match="VOC split"):
        get_dataset("voc", "everything", root=voc_root)


def _folder(tmp_path, with_split_file=False):
    """A VOC-format folder with its own classes: 5 images, one png, names kiwi/apple/zebra."""
    root = tmp_path / "mydata"
    names = ["kiwi", "apple", "zebra", "apple", "kiwi"]
    for i, name in enumerate(names):
        ext = ".png" if i == 4 else ".jpg"
        _write_image(str(root / "JPEGImages" / f"img{i}{ext}"))
        _write_voc_xml(str(root / "Annotations" / f"img{i}.xml"), [(name, (3, 4, 30, 40), 0)])
    if with_split_file:
        _write_ids(str(root), "train", ["img4", "img1"])
    return str(root)


def test_voc_folder_classes_and_derived_split(tmp_path):
    root = _folder(tmp_path)
    train = get_dataset(root, "train")
    val = get_dataset(root, "val")
    assert isinstance(train, VOCFolderDataset)
    assert train.classes == val.classes == ("apple", "kiwi", "zebra")
    train_ids = {i for _, i in train._items}
    val_ids = {i for _, i in val._items}
    assert not train_ids & val_ids and len(train_ids | val_ids) == 5 and val_ids
    everything = VOCFolderDataset(root, "all")
    assert len(everything) == 5
    png = [i for i in range(5) if everything.image_path(i).endswith(".png")]
    image, label = everything[png[0]]
    assert image.shape == (60, 80, 3)
    np.testing.assert_array_equal(label[0, :4], [2, 3, 30, 40])
    assert label[0, 4] == everything.classes.index("kiwi")


def test_folder_cache_decodes_each_image_once_within_its_budget(tmp_path, monkeypatch):
    # 60x80x3 = 14400 bytes per image: a budget of 2.5 images keeps the first two decoded
    root = _folder(tmp_path)
    reads = []
    read = files.read_image
    monkeypatch.setattr(files, "read_image", lambda path, **kw: reads.append(path) or read(path, **kw))
    cached = get_dataset(root, "all", cache_mb=2.5 * 14400 / 2 ** 20)
    plain = get_dataset(root, "all")
    for _ in range(2):
        for i in (0, 1, 2):
            image, label = cached[i]
            image[:] = 0  # callers may edit what they get; the cache keeps its own
            label[:] = -5
    paths = [cached.image_path(i) for i in (0, 1, 2)]
    assert reads == paths + [paths[2]]  # items 0 and 1 decoded once, item 2 past the budget
    for i in (0, 1, 2):
        np.testing.assert_array_equal(cached[i][0].asnumpy(), plain[i][0].asnumpy())
        np.testing.assert_array_equal(cached[i][1], plain[i][1])
    with pytest.raises(ValueError, match="cache_mb"):
        get_dataset(root, "all", cache_mb=-1)


def test_voc_folder_split_file_and_class_errors(tmp_path):
    root = _folder(tmp_path, with_split_file=True)
    train = VOCFolderDataset(root, "train")
    assert [i for _, i in train._items] == ["img4", "img1"]
    assert train.classes == ("apple", "kiwi", "zebra")  # from all XMLs, not just the split's
    with pytest.raises(ValueError, match=r"img\d\.xml.*'(kiwi|zebra)' is not in the class list"):
        VOCFolderDataset(root, "all", classes=("apple",))
    with pytest.raises(ValueError, match="test.txt"):
        VOCFolderDataset(root, "test")


def test_bad_boxes_are_clipped_or_dropped_and_counted(tmp_path):
    root = tmp_path / "bad"
    _write_image(str(root / "JPEGImages" / "a.jpg"))
    _write_voc_xml(str(root / "Annotations" / "a.xml"), [
        ("ok", (11, 11, 20, 20), 0),
        ("ok", (-5, 50, 100, 70), 0),  # reaches outside: clipped to the 80x60 image
        ("ok", (30, 10, 20, 40), 0),   # xmin >= xmax: dropped
        ("ok", (90, 10, 99, 20), 0),   # wholly outside: dropped
    ])
    ds = VOCFolderDataset(str(root), "all")
    label = ds[0][1]
    np.testing.assert_array_equal(label[:, BOX], [[10, 10, 20, 20], [0, 49, 80, 60]])
    assert ds.stats.boxes_clipped == 1 and ds.stats.boxes_dropped == 2
    assert ds.stats.summary() == "1 boxes clipped, 2 dropped, 0 unreadable images skipped"


def test_label_layout_helpers():
    label = make_label([[1, 2, 3, 4], [5, 6, 7, 8]], [0, 3], ignore=[0, 1])
    assert label.dtype == np.float32 and label.shape == (2, WIDTH)
    np.testing.assert_array_equal(label[:, BOX], [[1, 2, 3, 4], [5, 6, 7, 8]])
    assert label[:, CLASS].tolist() == [0, 3] and label[:, IGNORE].tolist() == [0, 1]
    assert make_label(np.zeros((0, 4)), []).shape == (0, WIDTH)
    padded = np.full((1, 3, WIDTH), PAD, np.float32)
    padded[0, :2] = label
    assert is_object(padded).tolist() == [[True, True, False]]
    stats = LoadStats()
    kept = stats.sanitize(np.array([[-1, 0, 5, 5, 1, 0], [4, 4, 2, 9, 0, 0]], np.float32), 4, 4)
    np.testing.assert_array_equal(kept, [[0, 0, 4, 4, 1, 0]])
    assert (stats.boxes_clipped, stats.boxes_dropped) == (1, 1)


def test_missing_xml_size_is_read_from_the_image_as_decoded(tmp_path):
    """``<size>`` 0: the size comes from the image header, EXIF orientation applied (as decoded)."""
    root = tmp_path / "nosize"
    os.makedirs(root / "JPEGImages")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 80 wide, 60 tall; shown (and decoded) 60 wide, 80 tall
    Image.new("RGB", (80, 60)).save(root / "JPEGImages" / "a.jpg", exif=exif.tobytes())
    _write_voc_xml(str(root / "Annotations" / "a.xml"), [("ok", (1, 1, 100, 100), 0)], 0, 0)
    ds = VOCFolderDataset(str(root), "all")
    assert ds[0][0].shape == (80, 60, 3)
    np.testing.assert_array_equal(ds[0][1][:, BOX], [[0, 0, 60, 80]])
    assert ds.stats.boxes_clipped == 1
    (root / "JPEGImages" / "a.jpg").write_bytes(b"not an image")
    with pytest.raises(BadImageError, match="a.jpg.*needed for its size, absent from .*a.xml"):
        VOCFolderDataset(str(root), "all")


def test_sanitize_boxes_keeps_extra_columns():
    label = np.array([[-1, -1, 5, 5, 3, 1], [4, 4, 4, 9, 0, 0]], np.float32)
    kept, clipped, dropped = sanitize_boxes(label, 10, 10)
    np.testing.assert_array_equal(kept, [[0, 0, 5, 5, 3, 1]])
    assert (clipped, dropped) == (1, 1)


def _truncated_jpeg() -> bytes:
    """The first 40% of a noise JPEG (noise: the scan data is most of the file), which libjpeg
    still decodes, filling the rest in."""
    noise = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", noise)[1].tobytes()
    return data[:int(len(data) * 0.4)]


@pytest.mark.parametrize("content, reason", [(b"not a jpeg at all", "not a decodable image"),
                                             (_truncated_jpeg(), "truncated JPEG")])
def test_corrupt_or_truncated_image_is_named_and_can_be_skipped(tmp_path, content, reason):
    root = _folder(tmp_path)
    bad = os.path.join(root, "JPEGImages", "img2.jpg")
    with open(bad, "wb") as f:
        f.write(content)
    ds = VOCFolderDataset(root, "all")
    index = [i for i in range(len(ds)) if ds.image_path(i) == bad][0]
    with pytest.raises(BadImageError, match=f"img2.jpg: {reason}"):
        ds[index]
    skipping = get_dataset(root, "all", skip_bad=True)
    assert len(skipping) == 4 and skipping.stats.unreadable == [bad]
    assert skipping.stats.summary().endswith("1 unreadable images skipped")
    assert all(skipping.image_path(i) != bad for i in range(4))
    skipping[3]  # the others load


def test_data_config_from_dict_and_build_split():
    recorded = {"preset": "demo", "data": "synthetic", "data_root": "/nowhere", "train_size": 6,
                "val_size": 3, "seed": 4, "cache_mb": 1.0, "epochs": 2}
    cfg = DataConfig.from_dict(recorded, ignore_unknown=True)
    assert cfg == DataConfig("synthetic", "/nowhere", 6, 3, 4, False, 1.0)
    with pytest.raises(ValueError, match=r"unknown DataConfig field\(s\) \['epochs', 'preset'\]"):
        DataConfig.from_dict(recorded)
    train, val = build_split(cfg, "train", (64, 80)), build_split(cfg, "val", (64, 80))
    assert (len(train), len(val)) == (6, 3) and val.split == "val" and train.seed == 4
    assert train[0][0].shape == (64, 80, 3) and train[0][1].shape[1] == WIDTH
    np.testing.assert_array_equal(
        val[1][1], get_dataset("synthetic", "val", size=(64, 80), length=3, seed=4)[1][1])
    with pytest.raises(ValueError, match="neither a dataset name"):
        build_split(DataConfig(data="nothing-here"), "val", (64, 64))


def test_empty_or_missing_folders_raise_naming_them(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"no dataset found in folder {empty}"):
        get_dataset(str(empty))
    (empty / "Annotations").mkdir()
    with pytest.raises(ValueError, match=f"{empty} has no Annotations"):
        get_dataset(str(empty))
    with pytest.raises(ValueError, match="neither a dataset name"):
        get_dataset(str(tmp_path / "nowhere"))


# ----------------------------------------------------------------------------- COCO

@pytest.fixture
def coco_root(tmp_path):
    """COCO layout, val2017: 3 images (one without objects), categories 1=cat, 3=dog."""
    root = tmp_path / "coco"
    images = [{"id": 7, "file_name": "a.jpg", "width": 80, "height": 60},
              {"id": 2, "file_name": "b.jpg", "width": 80, "height": 60},
              {"id": 9, "file_name": "c.jpg", "width": 80, "height": 60}]
    annotations = [
        {"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 5, 20, 30], "area": 600,
         "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [60, 40, 40, 40], "area": 400,
         "iscrowd": 1},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 0], "area": 0,
         "iscrowd": 0},
    ]
    for entry in images:
        _write_image(str(root / "val2017" / entry["file_name"]))
    os.makedirs(root / "annotations")
    with open(root / "annotations" / "instances_val2017.json", "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": 3, "name": "dog"}, {"id": 1, "name": "cat"}]}, f)
    return str(root)


def test_coco_dataset(coco_root):
    ds = get_dataset("coco", "val", root=coco_root)
    assert isinstance(ds, COCODataset) and len(ds) == 3
    assert ds.classes == ("cat", "dog")  # category-id order
    assert ds.contiguous_id_to_json == {0: 1, 1: 3}
    assert ds.image_path(0).endswith(os.path.join("val2017", "b.jpg"))  # sorted by image id
    assert ds[0][1].shape == (0, 6)  # its only box has no area: dropped, image kept
    image, label = ds[1]
    assert image.shape == (60, 80, 3)
    np.testing.assert_array_equal(label, [[10, 5, 30, 35, 1, 0], [60, 40, 80, 60, 0, 1]])
    assert ds.stats.boxes_clipped == 1 and ds.stats.boxes_dropped == 1
    assert sorted(ds.coco.getImgIds()) == [2, 7, 9]
    assert isinstance(get_dataset(coco_root, "val"), COCODataset)


def test_coco_unknown_category_is_an_error(coco_root):
    path = os.path.join(coco_root, "annotations", "instances_val2017.json")
    with open(path) as f:
        data = json.load(f)
    data["annotations"][0]["category_id"] = 42
    with open(path, "w") as f:
        json.dump(data, f)
    with pytest.raises(ValueError, match="instances_val2017.json.*category_id 42"):
        COCODataset(coco_root, "val2017")
    with pytest.raises(ValueError, match="instances_train2017.json does not exist"):
        COCODataset(coco_root, "train2017")


def _edit_coco(coco_root, edit):
    path = os.path.join(coco_root, "annotations", "instances_val2017.json")
    with open(path) as f:
        data = json.load(f)
    edit(data)
    with open(path, "w") as f:
        json.dump(data, f)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["annotations"][0].pop("bbox"), "annotation 1 has no 'bbox'"),
    (lambda d: d["annotations"][1].update(bbox="60,40,40,40"),
     "annotation 2: 'bbox' must be a list of 4 numbers [x, y, width, height], got '60,40,40,40'"),
    (lambda d: d["annotations"][2].update(bbox=[0, 0, 10]), "annotation 3: 'bbox' must be"),
    (lambda d: d["images"][0].pop("width"), "image 7 has no 'width'"),
    (lambda d: d["images"][1].update(height=0),
     "image 2: 'height' must be a positive number, got 0"),
    (lambda d: d["annotations"][0].update(image_id=5),
     "annotation 1 has image_id 5, not among the images"),
    (lambda d: d["images"][2].update(file_name="../../etc/passwd"),
     "image 9: file name '../../etc/passwd' leaves the dataset folder"),
    (lambda d: d["images"][2].update(file_name="/etc/passwd"),
     "image 9: file name '/etc/passwd' leaves the dataset folder"),
    (lambda d: d.pop("categories"), "has no 'categories' list"),
    (lambda d: d.update(categories=[]), "lists no categories"),
])
def test_coco_defects_name_the_file_and_the_entry(coco_root, edit, message):
    path = _edit_coco(coco_root, edit)
    with pytest.raises(ValueError) as err:
        COCODataset(coco_root, "val2017")
    assert str(err.value).startswith(f"{path}: "), str(err.value)
    assert message in str(err.value)


def test_coco_invalid_json_is_named(coco_root):
    path = os.path.join(coco_root, "annotations", "instances_val2017.json")
    with open(path, "a") as f:
        f.write("}")
    with pytest.raises(ValueError, match=rf"^{path}: not valid JSON \(Extra data: line 1"):
        COCODataset(coco_root, "val2017")


def test_coco_image_folder_may_be_a_symbolic_link(coco_root, tmp_path):
    elsewhere = tmp_path / "disk2"
    os.rename(os.path.join(coco_root, "val2017"), elsewhere)
    os.symlink(elsewhere, os.path.join(coco_root, "val2017"))
    ds = COCODataset(coco_root, "val2017")
    assert ds[1][0].shape == (60, 80, 3)


@pytest.mark.parametrize("tag, text", [("xmin", "abc"), ("ymax", "nan"), ("width", "wide")])
def test_voc_number_that_is_not_one_names_the_xml_file(voc_root, tmp_path, tag, text):
    xml = os.path.join(voc_root, "VOC2007", "Annotations", "000002.xml")
    with open(xml) as f:
        content = f.read()
    with open(xml, "w") as f:
        f.write(re.sub(f"<{tag}>[^<]*</{tag}>", f"<{tag}>{text}</{tag}>", content, count=1))
    with pytest.raises(ValueError, match=rf"annotation {re.escape(xml)}: <\w+><{tag}> is not a "
                                         rf"number: '{text}'"):
        get_dataset("voc", "2007_trainval", root=voc_root)
