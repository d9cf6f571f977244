"""Undo the salt-and-pepper noise that Roboflow's export added to the drone-people training split.

Over half of that split's images (283 of 524; none of its valid and test images) carry isolated black and white
pixels, added before JPEG encoding, at up to ~2.5 % of the pixels. Drawn at 1.4-2.6x for the drone specialist, each
such pixel becomes a 2-4 pixel dark or bright blob: what a swimmer or a walker 1-2 pixels wide looks like. A
network taught on those frames learns that such blobs are mostly not people, on frames no camera produces.

The cure is the classic one for impulse noise: a pixel far from its 3x3 median takes the median. Only in frames
that are speckled, told by their near-black and near-white outliers (over 0.3 % of the pixels: 0.06 % at most in
the 51 valid images, 0.26 % in the 26 test ones, a median of 0.44 % in the training split), and never inside a
labelled person's box (grown by a pixel), where the median would erase the person it is meant to teach. JPEG
smears each noise pixel into its neighbours, so in a speckled frame every outlier is replaced, not only the
extreme ones.
"""

from __future__ import annotations

import cv2
import numpy as np

OUTLIER_STEP = 50  # a pixel this far (in any channel, 0-255) from its 3x3 median is an outlier
DARK, BRIGHT = 30, 225  # an extreme outlier: every channel at most DARK, or every channel at least BRIGHT
SPECKLED_SHARE = 0.003  # a frame with more extreme outliers than this share of its pixels is speckled
BOX_MARGIN_PX = 1


def outliers(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of impulse pixels, the 3x3 median image) of an HxWx3 uint8 image."""
    median = cv2.medianBlur(image, 3)
    step = np.abs(image.astype(np.int16) - median.astype(np.int16)).max(axis=-1)
    return step > OUTLIER_STEP, median


def despeckle(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The image with its impulse pixels replaced by their median, outside `boxes` (xyxy pixels); a frame that is
    not speckled comes back as it is (the same array)."""
    mask, median = outliers(image)
    extreme = mask & ((image.max(axis=-1) <= DARK) | (image.min(axis=-1) >= BRIGHT))
    if extreme.mean() <= SPECKLED_SHARE:
        return image
    h, w = mask.shape
    for x0, y0, x1, y1 in np.asarray(boxes, np.float64).reshape(-1, 4):
        c0, r0 = max(0, int(np.floor(x0)) - BOX_MARGIN_PX), max(0, int(np.floor(y0)) - BOX_MARGIN_PX)
        c1, r1 = min(w, int(np.ceil(x1)) + BOX_MARGIN_PX), min(h, int(np.ceil(y1)) + BOX_MARGIN_PX)
        mask[r0:r1, c0:c1] = False
    cleaned = image.copy()
    cleaned[mask] = median[mask]
    return cleaned
