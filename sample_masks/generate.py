"""Write the sample masks: 32 palette PNGs of 64x64 pixels, deterministic, checkable by eye.

Run from anywhere: ``python sample_masks/generate.py``. Every mask has a 2-pixel void frame of
value 255 (as in Pascal VOC), a background (0), a road (1) along the bottom, a building (2) in
the top-left corner, and every eighth mask a small person (3): the rare class. README.md beside
this file gives the counts these shapes add up to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64
FRAME = 2
VOID = 255
NAMES = ("background", "road", "building", "person")

# Pascal VOC's colour map for ids 0-3, and its cream colour for the void label 255.
PALETTE = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), VOID: (224, 224, 192)}

SPLITS = {"train": range(0, 24), "val": range(24, 32)}


def make_mask(i: int) -> np.ndarray:
    """Return mask number ``i`` as a uint8 array of class ids."""
    mask = np.full((SIZE, SIZE), VOID, np.uint8)
    inner = slice(FRAME, SIZE - FRAME)
    mask[inner, inner] = 0
    road_rows = 10 + 2 * (i % 5)  # 10 to 18 rows of 60 pixels
    mask[SIZE - FRAME - road_rows : SIZE - FRAME, inner] = 1
    building_cols = 8 + 4 * (i % 3)  # 20 rows of 8, 12 or 16 pixels
    mask[FRAME : FRAME + 20, FRAME : FRAME + building_cols] = 2
    if i % 8 == 0:
        mask[30:35, 30:33] = 3  # 15 pixels
    return mask


def palette() -> list[int]:
    flat = [0] * (256 * 3)
    for index, rgb in PALETTE.items():
        flat[3 * index : 3 * index + 3] = rgb
    return flat


def main() -> None:
    here = Path(__file__).resolve().parent
    for split, numbers in SPLITS.items():
        (here / split).mkdir(exist_ok=True)
        for i in numbers:
            image = Image.fromarray(make_mask(i))
            image.putpalette(palette())  # turns the L image into a P image, ids unchanged
            image.save(here / split / f"mask_{i:03d}.png", optimize=False)


if __name__ == "__main__":
    main()
