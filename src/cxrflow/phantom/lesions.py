"""Findings drawn into a chest scene: clearly visible, so that a small ViT can learn them.

Each function adds brightness to `scene.add` (or edits the vessel layer for a pneumothorax) and
records what it covers in the scene's masks. Shapes are seeded by the lesion's token so that a
finding that persists between studies keeps roughly its place and shape.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from cxrflow.phantom.canvas import Canvas, smooth_noise, smoothstep, soft
from cxrflow.phantom.plan import Lesion

if TYPE_CHECKING:
    from cxrflow.phantom.anatomy import Body, Scene

LEFT, RIGHT = 1, -1
ZONE_T = {"upper": 0.2, "middle": 0.48, "lower": 0.74}


def sides(side: str) -> tuple[int, ...]:
    """Side signs of a lesion's laterality (patient's left = +1)."""
    return {"left": (LEFT,), "right": (RIGHT,), "bilateral": (LEFT, RIGHT)}[side]


def _rng(les: Lesion, *extra: int) -> np.random.Generator:
    return np.random.default_rng([les.token, *extra])


def blob(cv: Canvas, u: float, t: float, r: float, out: np.ndarray, value: float) -> None:
    """Add a Gaussian blob of radius r (U units) at (u, t), computed only in its bounding box."""
    x, y = cv.px(u, t)
    rp = 3.0 * r * cv.s
    x0, x1 = max(int(x - rp), 0), min(int(x + rp) + 1, cv.cols)
    y0, y1 = max(int(y - rp), 0), min(int(y + rp) + 1, cv.rows)
    if x0 >= x1 or y0 >= y1:
        return
    du = cv.U[y0:y1, x0:x1] - u
    dt = (cv.T[y0:y1, x0:x1] - t) * cv.hr
    out[y0:y1, x0:x1] += value * np.exp(-(du * du + dt * dt) / (r * r))


def apply_frontal_findings(sc: Scene, found: dict[str, Lesion]) -> None:
    """Draw every additive finding of a frontal view (pneumothorax and fractures are done
    earlier, because they change the vessel and bone layers)."""
    if "pulmonary_fibrosis" in found:
        fibrosis(sc, found["pulmonary_fibrosis"])
    if "tuberculosis" in found:
        tuberculosis(sc, found["tuberculosis"])
    if "lung_opacity" in found:
        opacity(sc, found["lung_opacity"])
    if "pleural_thickening" in found:
        pleural_thickening(sc, found["pleural_thickening"])
    if "pleural_effusion" in found:
        effusion(sc, found["pleural_effusion"])
    if "rib_fracture" in found and found["rib_fracture"].severity >= 2:
        fracture_callus(sc, found["rib_fracture"])
    if "chest_tube" in found:
        chest_tube(sc, found["chest_tube"])


def pneumothorax(sc: Scene, les: Lesion) -> None:
    """Apical/lateral air without lung markings, bounded by a thin bright visceral pleural line."""
    side = sides(les.side)[0]
    f = {1: 0.8, 2: 0.68, 3: 0.55}[les.severity]
    hu, ht = side * 0.3, 0.55
    # The collapsed lung is the lung shape shrunk towards the hilum.
    collapsed = sc.lung_field(side, hu + (sc.cv.U - hu) / f, ht + (sc.cv.T - ht) / f)
    hemi = sc.hemi[side]
    a = side * sc.cv.U
    region = hemi & ~collapsed & ((a > 0.3) | (sc.cv.T < ht))
    sc.ptx |= region
    air = soft(region, 0.004 * sc.cv.s)
    sc.vessels *= 1.0 - air
    sc.add -= 0.08 * air
    inner = soft(collapsed & hemi, 0.003 * sc.cv.s)
    line = np.clip(1.0 - np.abs(inner - 0.5) * 4.0, 0.0, 1.0)
    line *= soft(region, 0.01 * sc.cv.s) > 0.05
    sc.add += 0.16 * line
    sc.add += 0.03 * (collapsed & hemi)


def effusion(sc: Scene, les: Lesion) -> None:
    """Fluid filling the costophrenic angle, with a meniscus climbing the lateral wall."""
    lc = sc.body.lung_contrast
    for side in sides(les.side):
        sev = les.severity if side == sides(les.side)[0] else max(1, les.severity - 1)
        t0 = {1: 0.86, 2: 0.72, 3: 0.56}[sev]
        a = side * sc.cv.U
        lat = sc.lateral_edge(side, sc.cv.T)
        level = t0 - (0.1 + 0.05 * sev) * smoothstep(0.35, 1.0, a / np.maximum(lat, 1e-3))
        fluid = sc.hemi[side] & (sc.cv.T > level)
        sc.lung_exclude |= fluid
        hazy = soft(fluid, 0.012 * sc.cv.s)
        sc.add += (lc * 0.95 * sc.lung_depth + 0.04) * hazy * (sc.cv.T > 0.2)


def pleural_thickening(sc: Scene, les: Lesion) -> None:
    """A bright irregular band along the lateral chest wall (and an apical cap if severe)."""
    rng = _rng(les)
    lc = sc.body.lung_contrast
    for side in sides(les.side):
        a = side * sc.cv.U
        lat = sc.lateral_edge(side, sc.cv.T)
        w = (0.035 + 0.015 * les.severity) * (
            1.0 + 0.35 * smooth_noise(rng, sc.cv.shape, 0.15 * sc.cv.s)
        )
        t_lo, t_hi = (0.04, 0.85) if les.severity == 3 else (0.22, 0.85)
        band = sc.hemi[side] & (a > lat - w) & (sc.cv.T > t_lo) & (sc.cv.T < t_hi)
        if les.severity >= 2:
            band |= sc.hemi[side] & (sc.cv.T < 0.05 + 0.02 * les.severity)
        sc.lung_exclude |= band
        sc.add += (lc * 0.9 * sc.lung_depth + 0.06) * soft(band, 0.004 * sc.cv.s)


def opacity(sc: Scene, les: Lesion) -> None:
    """Patchy airspace consolidation in one zone of one or both lungs."""
    rng = _rng(les)
    lc = sc.body.lung_contrast
    for side in sides(les.side):
        t_c = ZONE_T[les.zone] + float(rng.uniform(-0.05, 0.05))
        a_c = float(sc.lateral_edge(side, t_c)) * float(rng.uniform(0.55, 0.7))
        r = 0.16 + 0.05 * les.severity
        field = sc.cv.ellipse(side * a_c, t_c, r * 1.1, r * 0.9, float(rng.uniform(0, math.pi)))
        field = field + 0.35 * smooth_noise(rng, sc.cv.shape, 0.08 * sc.cv.s)
        patch = soft((field < 1.0) & sc.hemi[side], 0.012 * sc.cv.s)
        mottle = 0.75 + 0.25 * smooth_noise(rng, sc.cv.shape, 0.03 * sc.cv.s)
        strength = 0.55 + 0.12 * les.severity
        sc.add += strength * lc * patch * np.clip(mottle, 0.3, 1.3) * np.maximum(sc.lung_depth, 0.3)


def fibrosis(sc: Scene, les: Lesion) -> None:
    """Reticular (net-like) bright texture in the lower and peripheral zones."""
    rng = _rng(les)
    n = smooth_noise(rng, sc.cv.shape, 0.024 * sc.cv.s)
    net = soft(np.exp(-((n / 0.22) ** 2)), 0.003 * sc.cv.s)
    where = smoothstep(0.3, 0.85, sc.cv.T) * (0.4 + 0.6 * smoothstep(0.25, 0.7, np.abs(sc.cv.U)))
    strength = (0.14 + 0.05 * les.severity) * sc.body.lung_contrast / 0.4
    sc.add += strength * net * where * sc.lung_depth


def tuberculosis(sc: Scene, les: Lesion) -> None:
    """Upper-zone nodules, fibrotic streaks towards the hilum and, if severe, a cavity."""
    rng = _rng(les)
    layer = np.zeros(sc.cv.shape, np.float32)
    streaks = []
    for side in sides(les.side):
        for _ in range(4 + 2 * les.severity):
            t = float(rng.uniform(0.06, 0.36))
            a = float(sc.lateral_edge(side, t)) * float(rng.uniform(0.35, 0.85))
            blob(sc.cv, side * a, t, float(rng.uniform(0.025, 0.05)), layer, 0.32)
            if rng.random() < 0.5:
                streaks.append(([(side * a, t), (side * 0.28, 0.42)], 0.012, 0.35))
        # A confluent upper-zone infiltrate under the nodules.
        blob(sc.cv, side * 0.55, 0.2, 0.16, layer, 0.12 + 0.03 * les.severity)
        if les.severity >= 2:
            cu, ct = side * float(rng.uniform(0.5, 0.65)), float(rng.uniform(0.14, 0.26))
            e = sc.cv.ellipse(cu, ct, 0.075, 0.065)
            layer += 0.3 * np.exp(-(((e - 1.0) / 0.22) ** 2))  # cavity wall
            layer -= 0.1 * (e < 0.85)  # air inside the cavity
    if streaks:
        layer += 0.5 * soft(sc.cv.polylines(streaks), 0.003 * sc.cv.s)
    lungs = soft(sc.hemi[LEFT] | sc.hemi[RIGHT], 0.01 * sc.cv.s)
    sc.add += layer * lungs * sc.body.lung_contrast / 0.4


def chest_tube(sc: Scene, les: Lesion) -> None:
    """A radiopaque drain entering the lower lateral chest wall and running up to the apex,
    with side holes (gaps in the radiopaque stripe) near its tip."""
    rng = _rng(les)
    side = sides(les.side)[0]
    g = sc.geom
    tip_t = float(rng.uniform(0.06, 0.16))
    pts = [
        (side * 1.45, 1.05),
        (side * (g.lat_w + 0.12), 0.82),
        (side * (g.lat_w - 0.05), 0.68),
        (side * 0.78, 0.45),
        (side * 0.66, 0.26),
        (side * 0.55, tip_t),
    ]
    width = max(0.022, 3.0 / sc.cv.s)
    stripe = max(0.009, 1.0 / sc.cv.s)
    lines = [(pts, width, 0.55), (pts, stripe, 1.0)]
    # Side holes: short dark interruptions of the stripe along the last segments.
    for f in (0.25, 0.55, 0.85):
        (u0, t0), (u1, t1) = pts[-2], pts[-1]
        um, tm = u0 + (u1 - u0) * f, t0 + (t1 - t0) * f
        du, dt = (u1 - u0) * 0.05, (t1 - t0) * 0.05
        lines.append(([(um - du, tm - dt), (um + du, tm + dt)], width * 0.9, 0.15))
    layer = sc.cv.polylines(lines)
    sc.tube |= layer > 0.1
    sc.add += 0.35 * layer


def fracture_callus(sc: Scene, les: Lesion) -> None:
    """Healing callus: a small bright blob at the fracture site of a displaced fracture."""
    layer = np.zeros(sc.cv.shape, np.float32)
    for side in sides(les.side):
        tk = -0.07 + les.rib * 0.098
        lat = float(sc.lateral_edge(side, min(max(tk + 0.18, 0.02), 1.0))) + 0.045
        p = 0.62 * math.pi * 7.5 / 15.0
        u = side * (0.08 + (lat - 0.08) * math.sin(p))
        t = tk + 0.24 * (1.0 - math.cos(p)) ** 1.4 - 0.035 * math.sin(p) + 0.018
        blob(sc.cv, u, t, 0.04, layer, 0.08)
    sc.add += layer


def lateral_findings(
    cv: Canvas, found: dict[str, Lesion], lung: np.ndarray, base: np.ndarray, body: Body
) -> np.ndarray:
    """Findings as seen on a lateral view (effusion, opacity, tuberculosis); brightness to add."""
    add = np.zeros(cv.shape, np.float32)
    lc = body.lung_contrast
    if "pleural_effusion" in found:
        sev = found["pleural_effusion"].severity
        level = base - ((0.04 + 0.05 * sev) + 0.08 * sev * smoothstep(0.2, 0.8, cv.U)) * (
            smoothstep(-0.4, 0.3, cv.U)
        )
        fluid = lung & (cv.T > level)
        add += (lc * 0.9 + 0.03) * soft(fluid, 0.012 * cv.s)
    if "lung_opacity" in found:
        les = found["lung_opacity"]
        rng = _rng(les, 1)
        t = ZONE_T[les.zone] + float(rng.uniform(-0.04, 0.04))
        r = 0.15 + 0.05 * les.severity
        field = cv.ellipse(float(rng.uniform(-0.3, 0.4)), t, r, r * 0.8)
        field = field + 0.35 * smooth_noise(rng, cv.shape, 0.08 * cv.s)
        add += (0.55 + 0.12 * les.severity) * lc * soft((field < 1.0) & lung, 0.012 * cv.s)
    if "tuberculosis" in found:
        rng = _rng(found["tuberculosis"], 2)
        for _ in range(5):
            blob(
                cv,
                float(rng.uniform(-0.2, 0.5)),
                float(rng.uniform(0.05, 0.3)),
                float(rng.uniform(0.025, 0.05)),
                add,
                0.3,
            )
    return add
