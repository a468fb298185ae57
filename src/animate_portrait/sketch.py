"""The paper's landmark image (Zakharov et al. 2019, Fig. 2): 68 iBUG points as coloured polylines on black.

Each facial part gets its own colour so the generator can tell, e.g., the upper lip from a brow even where
the lines cross; eyes and lips are closed curves so their opening reads as an area, not two lines.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

# (first index, last index inclusive, RGB colour, closed)
PARTS: tuple[tuple[int, int, tuple[int, int, int], bool], ...] = (
    (0, 16, (255, 255, 255), False),  # jaw
    (17, 21, (255, 0, 0), False),  # brow (image left)
    (22, 26, (0, 255, 0), False),  # brow (image right)
    (27, 30, (0, 0, 255), False),  # nose bridge
    (31, 35, (0, 0, 255), False),  # lower nose
    (36, 41, (255, 0, 255), True),  # eye (image left)
    (42, 47, (0, 255, 255), True),  # eye (image right)
    (48, 59, (255, 255, 0), True),  # outer lips
    (60, 67, (255, 255, 0), True),  # inner lips
)


def draw_sketch(points: np.ndarray, size: int | tuple[int, int], thickness: int | None = None) -> np.ndarray:
    """(size, size, 3) uint8 landmark image of (68, 2) crop-pixel points; lines ~2 px wide at 256².

    `size` may also be (width, height): a whole frame's sketch. A part with a NaN point (no landmarks) is
    left out rather than drawn to a wrong place.
    """
    wide, high = (size, size) if isinstance(size, int) else size
    width = thickness if thickness is not None else max(1, round(2 * min(wide, high) / 256))
    img = Image.new("RGB", (wide, high))
    draw = ImageDraw.Draw(img)
    for first, last, colour, closed in PARTS:
        part = np.asarray(points[first : last + 1], np.float64)
        if not np.isfinite(part).all():
            continue
        xy = [(float(x), float(y)) for x, y in part]
        if closed:
            xy.append(xy[0])
        draw.line(xy, fill=colour, width=width, joint="curve")
    return np.asarray(img)
