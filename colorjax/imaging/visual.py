"""Pictures for people: network tensors to uint8 RGB, labelled image grids, PNG files.

grid = image_grid([[l_to_visual(L), network_to_visual(L, fake), network_to_visual(L, ab)]],
                  column_titles=["gray", "generated", "real"])
save_png(grid, "samples/step_000100.png")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from colorjax import color

VISUAL_L = 70.0  # lightness at which an ab field is shown on its own
PAD = 2  # pixels between cells and around the grid
BACKGROUND = 255
TITLE_HEIGHT = 14


def to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 as is; floats are read as [0, 1], clipped and rounded."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """[H, W], [H, W, 1] or [H, W, 3] -> uint8 [H, W, 3]."""
    image = to_uint8(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an [H, W], [H, W, 1] or [H, W, 3] image, got {image.shape}")
    return image


def l_to_visual(l: np.ndarray) -> np.ndarray:
    """Network L [..., H, W, 1] in [-1, 1] -> uint8 gray [..., H, W, 3] (the L channel as is)."""
    return np.repeat(to_uint8((np.asarray(l) + 1.0) / 2.0), 3, axis=-1)


def network_to_visual(l: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Network (L, ab) in [-1, 1] -> uint8 sRGB."""
    return to_uint8(np.asarray(color.network_to_rgb(l, ab)))


def ab_to_visual(ab: np.ndarray, lightness: float = VISUAL_L) -> np.ndarray:
    """Network ab [..., 2] in [-1, 1] shown as uint8 sRGB at a fixed ``lightness`` (0..100)."""
    ab = np.asarray(ab, np.float32)
    l = np.full((*ab.shape[:-1], 1), lightness / color.L_SCALE - 1.0, np.float32)
    return network_to_visual(l, ab)


def _title_band(titles: Sequence[str], widths: Sequence[int]) -> np.ndarray:
    band = Image.new("RGB", (sum(widths) + PAD * (len(widths) + 1), TITLE_HEIGHT), "white")
    draw, left = ImageDraw.Draw(band), PAD
    for title, width in zip(titles, widths, strict=True):
        draw.text((left, 1), title, fill="black")
        left += width + PAD
    return np.asarray(band)


def image_grid(
    rows: Sequence[Sequence[np.ndarray]], column_titles: Sequence[str] | None = None
) -> np.ndarray:
    """Images laid out in rows and columns with ``PAD`` pixels between; uint8 [H, W, 3].

    Cells take the largest height of their row and width of their column; gray images are
    promoted to RGB; optional titles go above the columns.
    """
    cells = [[to_rgb(image) for image in row] for row in rows]
    columns = max((len(row) for row in cells), default=0)
    if not columns:
        raise ValueError("image_grid needs at least one image")
    heights = [max(c.shape[0] for c in row) for row in cells]
    widths = [max(row[j].shape[1] for row in cells if j < len(row)) for j in range(columns)]
    grid = np.full(
        (sum(heights) + PAD * (len(rows) + 1), sum(widths) + PAD * (columns + 1), 3),
        BACKGROUND,
        np.uint8,
    )
    top = PAD
    for row, height in zip(cells, heights, strict=True):
        left = PAD
        for cell, width in zip(row, widths, strict=False):
            grid[top : top + cell.shape[0], left : left + cell.shape[1]] = cell
            left += width + PAD
        top += height + PAD
    if column_titles is not None:
        titles = list(column_titles) + [""] * (columns - len(column_titles))
        grid = np.concatenate([_title_band(titles, widths), grid], axis=0)
    return grid


def resize_to_height(image: np.ndarray, height: int) -> np.ndarray:
    """``image`` (uint8, gray or RGB) resized to ``height`` rows, keeping its aspect ratio."""
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(resized)


def save_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an image array as PNG (parent folders are created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_rgb(array)).save(path, format="PNG")
    return path
