"""Box formats, units and the box coder, against independent references (gluoncv, hand maths)."""
import math

import numpy as np
import pytest

from gluon_ssd.boxes import (BoxCoder, centre_to_corner, corner_to_centre, corner_to_xywh,
                             to_normalised, to_pixels, xywh_to_corner)

CORNERS = np.array([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 5.5, 9.0]])


def test_formats_round_trip():
    np.testing.assert_allclose(centre_to_corner(corner_to_centre(CORNERS)), CORNERS)
    np.testing.assert_allclose(xywh_to_corner(corner_to_xywh(CORNERS)), CORNERS)
    np.testing.assert_allclose(corner_to_centre(CORNERS[:1]), [[30, 50, 40, 60]])
    np.testing.assert_allclose(corner_to_xywh(CORNERS[:1]), [[10, 20, 40, 60]])


def test_units_scale_x_by_width_and_y_by_height():
    pixels = to_pixels([[0.1, 0.2, 0.5, 1.0]], (200, 400))  # (H, W)
    np.testing.assert_allclose(pixels, [[40, 40, 200, 200]])
    np.testing.assert_allclose(to_normalised(pixels, (200, 400)), [[0.1, 0.2, 0.5, 1.0]])


def test_coder_matches_the_papers_formula_with_its_variances():
    coder = BoxCoder((0.1, 0.2, 0.3, 0.4))
    anchor, box = np.array([[0.2, 0.3, 0.6, 0.5]]), np.array([[0.25, 0.28, 0.7, 0.55]])
    acx, acy, aw, ah = 0.4, 0.4, 0.4, 0.2
    cx, cy, w, h = 0.475, 0.415, 0.45, 0.27
    expected = [(cx - acx) / aw / 0.1, (cy - acy) / ah / 0.2, math.log(w / aw) / 0.3,
                math.log(h / ah) / 0.4]
    np.testing.assert_allclose(coder.encode(box, anchor)[0], expected)
    np.testing.assert_allclose(coder.decode(coder.encode(box, anchor), anchor), box, atol=1e-12)


@pytest.mark.parametrize("variances", [(0, 0.1, 0.2, 0.2), (0.1, 0.1, 0.2), (-1, 1, 1, 1)])
def test_coder_refuses_bad_variances(variances):
    with pytest.raises(ValueError, match="variances must be four positive numbers"):
        BoxCoder(variances)
