"""The drawing surface: body coordinates on the pixel grid, and small vectorised drawing helpers.

Body coordinates: `U` runs across the patient (the rib cage's half width is about 1; positive
towards image right, i.e. the patient's LEFT on a PA or AP view) and `T` runs down (0 = lung
apices, 1 = costophrenic angles). One unit of `T` spans `hr` times as many pixels as a unit of
`U`. The grid can be slightly rotated to mimic patient positioning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage


@dataclass(frozen=True)
class Canvas:
    """Pixel grid with the body-coordinate mapping."""

    rows: int
    cols: int
    s: float  # pixels per unit of U
    hr: float  # T-unit length / U-unit length
    cx: float  # pixel column of U = 0, T = 0
    cy: float  # pixel row of U = 0, T = 0
    theta: float  # rotation (radians)
    U: np.ndarray
    T: np.ndarray

    @classmethod
    def make(cls, rows: int, cols: int, s: float, hr: float, cx: float, cy: float, theta: float):
        """Build the coordinate grids (float32, vectorised)."""
        y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
        dx, dy = x - cx, y - cy
        c, sn = math.cos(theta), math.sin(theta)
        u = (dx * c + dy * sn) / s
        t = (-dx * sn + dy * c) / (s * hr)
        return cls(rows, cols, s, hr, cx, cy, theta, u.astype(np.float32), t.astype(np.float32))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    def px(self, u: float, t: float) -> tuple[float, float]:
        """Pixel (x, y) of body point (u, t)."""
        xr, yr = u * self.s, t * self.s * self.hr
        c, sn = math.cos(self.theta), math.sin(self.theta)
        return (self.cx + xr * c - yr * sn, self.cy + xr * sn + yr * c)

    def ellipse(self, u0: float, t0: float, au: float, bu: float, angle: float = 0.0) -> np.ndarray:
        """Normalised radius field of an ellipse: < 1 inside. Axes `au`, `bu` in U units."""
        du = self.U - u0
        dt = (self.T - t0) * self.hr
        c, sn = math.cos(angle), math.sin(angle)
        p = du * c + dt * sn
        q = -du * sn + dt * c
        return np.sqrt((p / au) ** 2 + (q / bu) ** 2)

    def polylines(
        self,
        lines: list[tuple[list[tuple[float, float]], float, float]],
        supersample: int = 1,
    ) -> np.ndarray:
        """Draw polylines [(points in (u, t), width in U units, value)] into a float layer.

        Later lines overwrite earlier ones where they overlap (like opaque strokes).
        """
        img = Image.new("F", (self.cols, self.rows), 0.0)
        draw = ImageDraw.Draw(img)
        for points, width, value in lines:
            pts = [self.px(u, t) for u, t in points]
            w = max(1, round(width * self.s))
            draw.line(pts, fill=float(value), width=w, joint="curve")
        return np.asarray(img, dtype=np.float32).copy()


def soft(mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """Blur a mask (float32), cheaply: blur at reduced resolution when sigma is large."""
    m = mask.astype(np.float32)
    if sigma_px < 0.5:
        return m
    f = int(max(1, min(8, sigma_px // 2)))
    if f == 1:
        return ndimage.gaussian_filter(m, sigma_px, truncate=3.0)
    small = m[::f, ::f]
    small = ndimage.gaussian_filter(small, sigma_px / f, truncate=3.0)
    return upsample(small, m.shape)


def upsample(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float array to `shape` (rows, cols)."""
    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32))
    # np.array, not np.asarray: a view of a PIL image is read-only, and the lesions modify the
    # layers in place (a pneumothorax at >= 1800 px failed with "output array is read-only").
    return np.array(img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Zero-mean, unit-ish variance noise with features about `scale_px` pixels wide."""
    f = max(1.0, scale_px / 2.0)
    small_shape = (max(2, int(shape[0] / f) + 2), max(2, int(shape[1] / f) + 2))
    small = rng.standard_normal(small_shape).astype(np.float32)
    small = ndimage.gaussian_filter(small, 1.0)
    small /= small.std() + 1e-6
    return upsample(small, shape)


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at edge0 to 1 at edge1."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
