"""Transforms, batching (labels ``(B, M, 6)``, original image sizes as batch metadata) and the
reproducible loader."""
import random

import mxnet as mx
import numpy as np
import pytest
from gluoncv.utils.bbox import bbox_iou

from gluon_ssd.data.synthetic import SyntheticShapes
from gluon_ssd.data.labels import WIDTH
from gluon_ssd.data.transforms import (
    DEFAULT_MEAN, DEFAULT_STD, PATCH_CONSTRAINTS, Batch, DetectionLoader, EvalTransform,
    TrainTransform, as_label, batchify, min_iou_crop, random_hflip, sample_patches, seeded_rngs,
    to_network_input, zoom_in, zoom_out,
)


@pytest.fixture(scope="module")
def shapes():
    return SyntheticShapes(24, (96, 128), seed=5)


def _assert_valid_boxes(label, height, width):
    assert label.dtype == np.float32
    assert np.all(label[:, 0] < label[:, 2]) and np.all(label[:, 1] < label[:, 3])
    assert np.all(label[:, :4] >= 0)
    assert np.all(label[:, 2] <= width) and np.all(label[:, 3] <= height)


def test_train_transform_shapes_and_valid_boxes(shapes):
    transform = TrainTransform((80, 112))
    for i in range(len(shapes)):
        image, label = shapes[i]
        with seeded_rngs(i):
            out, boxes = transform(image, label)
        assert out.shape == (3, 80, 112) and out.dtype == np.float32
        assert boxes.shape[1] == WIDTH and len(boxes) >= 1
        assert np.all(boxes[:, 5] == 0)  # SyntheticShapes ignores nothing
        _assert_valid_boxes(boxes, 80, 112)
        assert set(boxes[:, 4]) <= set(label[:, 4])


def test_train_transform_keeps_the_ignore_column_and_accepts_numpy():
    image = np.zeros((40, 50, 3), np.uint8)
    label = np.array([[5, 5, 20, 30, 2, 1]], np.float32)  # a difficult box
    out, boxes = TrainTransform((32, 32), augment=False)(image, label)
    np.testing.assert_allclose(boxes, [[3.2, 4, 12.8, 24, 2, 1]], rtol=1e-6)
    assert out.shape == (3, 32, 32)


def test_labels_get_the_six_columns():
    five = np.array([[1, 2, 3, 4, 0]], np.float32)
    np.testing.assert_array_equal(as_label(five), [[1, 2, 3, 4, 0, 0]])
    assert as_label(np.zeros((0, 4))).shape == (0, 6)  # empty: any width
    with pytest.raises(ValueError, match=r"label: expected \(M, 6\).*\(1, 4\)"):
        as_label(np.ones((1, 4)))


def test_no_augmentation_is_resize_and_normalise(shapes):
    image, label = shapes[0]
    out, boxes = TrainTransform((48, 64), augment=False)(image, label)
    expected = to_network_input(mx.image.imresize(image, 64, 48), DEFAULT_MEAN, DEFAULT_STD)
    np.testing.assert_allclose(out.asnumpy(), expected.asnumpy(), atol=1e-6)
    np.testing.assert_allclose(boxes[:, :4], label[:, :4] / 2, rtol=1e-6)
    pixel = out.asnumpy()[:, 0, 0] * np.array(DEFAULT_STD) + np.array(DEFAULT_MEAN)
    np.testing.assert_allclose(pixel * 255, mx.image.imresize(image, 64, 48).asnumpy()[0, 0],
                               atol=1e-3)


def test_flips_alone_mirror_half_the_images_and_their_boxes(shapes):
    """``flip`` without the paper's augmentation: the resized image, or it and its boxes
    mirrored left-right, about half the time, the same under a seed."""
    image, label = shapes[0]
    transform = TrainTransform((48, 64), augment=False, flip=True)
    plain, plain_boxes = TrainTransform((48, 64), augment=False)(image, label)
    mirrored_boxes = plain_boxes.copy()
    mirrored_boxes[:, [0, 2]] = 64 - plain_boxes[:, [2, 0]]
    flips = []
    for seed in range(40):
        with seeded_rngs(seed):
            out, boxes = transform(image, label)
        with seeded_rngs(seed):
            again, _ = transform(image, label)
        np.testing.assert_array_equal(out.asnumpy(), again.asnumpy())
        flipped = not np.allclose(out.asnumpy(), plain.asnumpy())
        if flipped:
            np.testing.assert_allclose(out.asnumpy(), plain.asnumpy()[:, :, ::-1], atol=1e-6)
        np.testing.assert_allclose(boxes, mirrored_boxes if flipped else plain_boxes, atol=1e-4)
        flips.append(flipped)
    assert 10 <= sum(flips) <= 30


def test_zoom_in_crops_around_every_box_on_a_hand_example():
    """Every pixel of every object stays in the patch, the boxes move with it, and the patch is
    1/r of each side unless the boxes need more."""
    image = np.zeros((60, 80, 3), np.uint8)
    image[10:20, 30:50] = 255   # box [30, 10, 50, 20]
    image[40:55, 5:12] = 128    # box [5, 40, 12, 55]
    label = np.array([[30, 10, 50, 20, 1, 0], [5, 40, 12, 55, 2, 0]], np.float32)
    grown = []
    for seed in range(30):
        with seeded_rngs(seed):
            patch, moved = zoom_in(mx.nd.array(image, dtype="uint8"), label, 2.0)
        patch = patch.asnumpy()
        h, w = patch.shape[:2]
        assert 45 <= w <= 80 and 45 <= h <= 60  # the boxes span x 5..50, y 10..55
        assert (patch == 255).sum() == (image == 255).sum()  # nothing cut off
        assert (patch == 128).sum() == (image == 128).sum()
        x, y = label[0, 0] - moved[0, 0], label[0, 1] - moved[0, 1]
        np.testing.assert_array_equal(moved[:, :4], label[:, :4] - [x, y, x, y])
        np.testing.assert_array_equal(moved[:, 4:], label[:, 4:])
        np.testing.assert_array_equal(patch, image[int(y):int(y) + h, int(x):int(x) + w])
        grown.append((w, h) != (80, 60))
    assert sum(grown) >= 20
    one = np.array([[70, 2, 78, 8, 0, 0]], np.float32)  # a small box in a corner
    sides = []
    for seed in range(30):
        with seeded_rngs(seed):
            patch, moved = zoom_in(mx.nd.array(image, dtype="uint8"), one, 4.0)
        h, w = patch.shape[:2]
        assert 20 <= w <= 80 and 15 <= h <= 60
        _assert_valid_boxes(moved, h, w)
        sides.append(w)
    assert min(sides) < 40  # zoomed in up to 4x
    same, kept = zoom_in(mx.nd.array(image, dtype="uint8"), label, 1.0)
    assert same.shape == image.shape and kept is label
    empty = np.zeros((0, 6), np.float32)
    assert zoom_in(mx.nd.array(image, dtype="uint8"), empty, 3.0)[0].shape == image.shape


def test_light_augmentation_keeps_every_object_and_is_seeded(shapes):
    """Without the paper's augmentation, colour distortion and zoom-in: every box survives
    (inside the image, larger or equal), the same draws under a seed, other colours than plain."""
    transform = TrainTransform((48, 64), augment=False, flip=True, distort=True, zoom_in=1.6)
    plain = TrainTransform((48, 64), augment=False)
    for i in range(len(shapes)):
        image, label = shapes[i]
        with seeded_rngs(i):
            out, boxes = transform(image, label)
        with seeded_rngs(i):
            again, same = transform(image, label)
        np.testing.assert_array_equal(out.asnumpy(), again.asnumpy())
        np.testing.assert_array_equal(boxes, same)
        _, before = plain(image, label)
        assert len(boxes) == len(label) and out.shape == (3, 48, 64)
        _assert_valid_boxes(boxes, 48, 64)
        np.testing.assert_array_equal(np.sort(boxes[:, 4]), np.sort(before[:, 4]))
        area = np.prod(boxes[:, 2:4] - boxes[:, :2], axis=1)
        assert area.sum() >= np.prod(before[:, 2:4] - before[:, :2], axis=1).sum() - 1e-3


def test_eval_transform_scales_boxes_and_keeps_extra_columns():
    image = mx.nd.zeros((60, 80, 3), dtype="uint8")
    label = np.array([[8, 6, 40, 30, 1, 1], [0, 0, 80, 60, 0, 0]], np.float32)
    out, boxes = EvalTransform((30, 20))(image, label)
    assert out.shape == (3, 30, 20)
    np.testing.assert_allclose(boxes, [[2, 3, 10, 15, 1, 1], [0, 0, 20, 30, 0, 0]], rtol=1e-6)


def test_flip_on_a_hand_example():
    image = np.zeros((4, 10, 3), np.uint8)
    image[1:3, 1:4] = 255  # the object covers columns 1..3, rows 1..2: box [1, 1, 4, 3]
    flipped, label = random_hflip(mx.nd.array(image, dtype="uint8"),
                                  np.array([[1, 1, 4, 3, 7]], np.float32), p=1.0)
    np.testing.assert_array_equal(label, [[6, 1, 9, 3, 7]])
    rows, cols = np.nonzero(flipped.asnumpy()[..., 0])
    assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == (6, 1, 9, 3)
    same, kept = random_hflip(mx.nd.array(image, dtype="uint8"), label, p=0.0)
    np.testing.assert_array_equal(same.asnumpy(), image)
    np.testing.assert_array_equal(kept, label)


def test_zoom_out_keeps_the_object_and_fills_with_the_mean():
    image = mx.nd.array(np.random.RandomState(0).randint(0, 256, (20, 30, 3)), dtype="float32")
    label = np.array([[5, 4, 15, 12, 1]], np.float32)
    fill = [m * 255 for m in DEFAULT_MEAN]
    with seeded_rngs(1):
        canvas, moved = zoom_out(image, label, fill, max_ratio=4, p=1.0)
    h, w = canvas.shape[:2]
    assert h > 20 and w > 30 and abs(w / h - 1.5) < 0.1
    x0, y0 = int(moved[0, 0]) - 5, int(moved[0, 1]) - 4
    pixels = canvas.asnumpy()
    np.testing.assert_array_equal(pixels[y0:y0 + 20, x0:x0 + 30], image.asnumpy())
    outside = np.ones((h, w), bool)
    outside[y0:y0 + 20, x0:x0 + 30] = False
    np.testing.assert_allclose(pixels[outside], np.broadcast_to(fill, pixels[outside].shape),
                               rtol=1e-5)
    np.testing.assert_array_equal(moved[:, 2:4] - moved[:, :2], label[:, 2:4] - label[:, :2])


def test_patch_candidates_satisfy_their_constraints():
    label = np.array([[40, 30, 70, 60, 0]], np.float32)
    for seed in range(20):
        with seeded_rngs(seed):
            candidates = sample_patches(label, (100, 80))
        assert candidates[0] == (0, 0, 100, 80) and len(candidates) >= 2  # whole image, any patch
        assert len(candidates) <= len(PATCH_CONSTRAINTS) + 1
        for x, y, w, h in candidates[1:]:
            assert 0 <= x and x + w <= 100 and 0 <= y and y + h <= 80
            assert 0.3 * 0.7 <= w / 100 <= 1 and 0.3 * 0.7 <= h / 80 <= 1


def test_a_patch_needs_one_object_over_the_threshold_not_all():
    """The paper's (Caffe's) rule; gluoncv's ``random_crop_with_constraints`` wants all objects."""
    label = np.array([[0, 0, 90, 70, 0], [92, 72, 100, 80, 1]], np.float32)  # big + tiny
    found = 0
    for seed in range(10):
        with seeded_rngs(seed):
            candidates = sample_patches(label, (100, 80), constraints=((0.5, 1),))
        for x, y, w, h in candidates[1:]:
            iou = bbox_iou(np.array([[x, y, x + w, y + h]], float), label[:, :4].astype(float))
            assert iou.max() >= 0.5 and iou.min() < 0.5
            found += 1
    assert found >= 8


def test_min_iou_crop_keeps_an_object():
    image = mx.nd.array(np.arange(80 * 100 * 3).reshape(80, 100, 3) % 251, dtype="float32")
    label = np.array([[10, 10, 30, 25, 3], [60, 50, 95, 75, 4]], np.float32)
    for seed in range(30):
        with seeded_rngs(seed):
            patch, boxes = min_iou_crop(image, label)
        assert len(boxes) >= 1
        _assert_valid_boxes(boxes, *patch.shape[:2])
        assert set(boxes[:, 4]) <= {3, 4}
    empty = np.zeros((0, 5), np.float32)
    with seeded_rngs(0):
        patch, boxes = min_iou_crop(image, empty)
    assert boxes.shape == (0, 5)
    with seeded_rngs(0):  # an image without objects goes through the whole augmentation
        out, boxes = TrainTransform((32, 32))(image.astype("uint8"), np.zeros((0, 6), np.float32))
    assert out.shape == (3, 32, 32) and boxes.shape == (0, WIDTH)


def test_augmentation_is_deterministic_under_a_seed(shapes):
    transform = TrainTransform((64, 64))
    image, label = shapes[3]
    np.random.seed(123)
    random.seed(123)
    before = (np.random.random(), random.random())
    np.random.seed(123)
    random.seed(123)
    with seeded_rngs(9):
        a = transform(image, label)
    with seeded_rngs(9):
        b = transform(image, label)
    with seeded_rngs(10):
        c = transform(image, label)
    assert (np.random.random(), random.random()) == before  # global state restored
    np.testing.assert_array_equal(a[0].asnumpy(), b[0].asnumpy())
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0].asnumpy(), c[0].asnumpy())


def test_batchify_pads_with_minus_one_to_at_least_three_rows():
    image = mx.nd.zeros((3, 8, 8))
    one = np.array([[1, 2, 3, 4, 0, 0]], np.float32)
    none = np.zeros((0, 6), np.float32)
    batch = batchify([(image, one, (20, 30)), (image, none, (8, 8))])
    assert isinstance(batch, Batch)
    images, labels, sizes = batch
    assert images.shape == (2, 3, 8, 8) and labels.shape == (2, 3, 6)
    np.testing.assert_array_equal(labels.asnumpy()[0, 0], one[0])
    assert np.all(labels.asnumpy()[0, 1:] == -1) and np.all(labels.asnumpy()[1] == -1)
    np.testing.assert_array_equal(sizes, [[20, 30], [8, 8]])
    many = np.tile(one, (5, 1))
    labels = batchify([(image, many, (8, 8)), (image, one, (8, 8))]).labels
    assert labels.shape == (2, 5, 6) and np.all(labels.asnumpy()[1, 1:] == -1)


def test_batches_carry_the_original_image_sizes():
    """Images of three sizes resized to one input: ``image_sizes`` holds each one's (h, w), in
    this process and from loader processes alike (which hand batches back as lists)."""
    items = [(np.zeros(shape, np.uint8), np.array([[1, 1, 5, 5, 0, 0]], np.float32))
             for shape in ((40, 60, 3), (30, 20, 3), (16, 16, 3))]
    dataset = mx.gluon.data.SimpleDataset(items)
    for workers in (0, 1):
        loader = DetectionLoader(dataset, EvalTransform((16, 16)), 2, shuffle=False,
                                 num_workers=workers)
        batches = list(loader.epoch(0))
        assert all(isinstance(b, Batch) for b in batches)
        np.testing.assert_array_equal(np.concatenate([b.image_sizes for b in batches]),
                                      [[40, 60], [30, 20], [16, 16]])
        assert batches[0].image_sizes.dtype == np.int64
        assert batches[0].labels.shape == (2, 3, 6) and batches[1].images.shape == (1, 3, 16, 16)


def _epoch(loader, epoch, start=0):
    return [(b.images.asnumpy(), b.labels.asnumpy(), b.image_sizes)
            for b in loader.epoch(epoch, start)]


def _assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b):
        for xa, xb in zip(a, b):
            np.testing.assert_array_equal(xa, xb)


def test_loader_reproduces_epochs_for_resume_and_across_workers(shapes):
    transform = TrainTransform((64, 64))
    first = DetectionLoader(shapes, transform, 5, seed=11, last_batch="discard")
    assert len(first) == 4
    epoch0, epoch1 = _epoch(first, 0), _epoch(first, 1)
    assert epoch0[0][0].shape == (5, 3, 64, 64) and epoch0[0][1].shape[2] == WIDTH
    assert not np.array_equal(epoch0[0][0], epoch1[0][0])
    resumed = DetectionLoader(shapes, transform, 5, seed=11, last_batch="discard")
    _assert_same(_epoch(resumed, 1), epoch1)  # a fresh loader, straight at epoch 1
    _assert_same(_epoch(resumed, 1, start=2), epoch1[2:])
    workers = DetectionLoader(shapes, transform, 5, seed=11, last_batch="discard", num_workers=2)
    _assert_same(_epoch(workers, 1), epoch1)


def test_loader_order_and_last_batch(shapes):
    loader = DetectionLoader(shapes, EvalTransform((32, 32)), 10, shuffle=False)
    batches = _epoch(loader, 3)
    assert len(loader) == 3 and [len(x) for x, _, _ in batches] == [10, 10, 4]
    expected = EvalTransform((32, 32))(*shapes[12])[0].asnumpy()
    np.testing.assert_array_equal(batches[1][0][2], expected)
    with pytest.raises(ValueError, match="last_batch"):
        DetectionLoader(shapes, EvalTransform((32, 32)), 10, last_batch="rollover")
