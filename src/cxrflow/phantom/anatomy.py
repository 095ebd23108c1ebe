"""Chest anatomy: geometry, rendering of frontal (PA/AP) and lateral radiographs, and masks.

Rendering works in "brightness" (1 = attenuating / white on a MONOCHROME2 display) on a float32
grid at the target size. Structures are composed additively, which is how attenuations along
the beam add up, then noise is added and the result clipped to [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cxrflow.findings import MASK_STRUCTURES
from cxrflow.phantom import lesions as L
from cxrflow.phantom.canvas import Canvas, smooth_noise, smoothstep, soft
from cxrflow.phantom.plan import Lesion

BIT = {name: i for i, name in enumerate(MASK_STRUCTURES)}
LEFT, RIGHT = 1, -1  # patient's side as the sign of U (patient's left is image right)
NORMAL_CTR = (0.38, 0.46)
CARDIOMEGALY_CTR = {1: 0.53, 2: 0.57, 3: 0.61}


@dataclass(frozen=True)
class Body:
    """Subject-level body habitus that drives soft tissue, contrast and noise."""

    sex: str
    bmi: float
    age: int

    @property
    def soft_tissue(self) -> float:
        """Chest wall thickness beyond the ribs, in U units."""
        return float(np.clip(0.08 + 0.012 * (self.bmi - 22.0), 0.04, 0.35))

    @property
    def tissue_level(self) -> float:
        """Brightness of full-thickness soft tissue."""
        return float(np.clip(0.55 + 0.006 * (self.bmi - 22.0), 0.5, 0.7))

    @property
    def lung_contrast(self) -> float:
        """How much darker aerated lung is than soft tissue (less in heavy subjects)."""
        return float(np.clip(0.44 - 0.007 * (self.bmi - 22.0), 0.26, 0.46))

    @property
    def noise(self) -> float:
        """Quantum-noise standard deviation (more in heavy subjects)."""
        return float(np.clip(0.008 + 0.0009 * (self.bmi - 22.0), 0.006, 0.03))


@dataclass
class Geometry:
    """Shape parameters of one frontal chest (U/T units)."""

    hr: float = 1.75  # lung height / rib-cage half width
    lat_w: float = 0.93  # lateral lung edge at the bases
    med_w: float = 0.13  # medial lung edge beside the mediastinum
    apex_a: float = 0.48  # apex position
    dome: float = 0.14  # diaphragm dome height
    right_raise: float = 0.03  # the right hemidiaphragm sits higher
    ctr: float = 0.43  # cardiothoracic ratio
    heart_b: float = 0.34
    heart_angle: float = math.radians(30.0)
    heart_ct: float = 0.79
    knob_r: float = 0.075
    knob_u: float = 0.15
    mediastinum_extra: float = 0.0
    clavicle_t: float = 0.0

    @property
    def heart_extent(self) -> float:
        """Half of the heart's horizontal extent."""
        return self.ctr * self.lat_w

    @property
    def heart_a(self) -> float:
        """Long semi-axis of the heart ellipse that gives the target CTR."""
        e = self.heart_extent
        sn, c = math.sin(self.heart_angle), math.cos(self.heart_angle)
        return math.sqrt(max(e * e - (self.heart_b * sn) ** 2, 1e-4) / (c * c))

    @property
    def heart_cu(self) -> float:
        """Heart centre: the right border stays near the spine, enlargement goes left."""
        return self.heart_extent - 0.24 - 0.25 * max(self.ctr - 0.43, 0.0)


@dataclass
class Scene:
    """The layers of one frontal image while it is being built."""

    cv: Canvas
    geom: Geometry
    body: Body
    view: str
    rng: np.random.Generator
    hemi: dict[int, np.ndarray] = field(default_factory=dict)  # lung fields by side sign
    lung_depth: np.ndarray | None = None
    vessels: np.ndarray | None = None
    add: np.ndarray | None = None  # additive brightness from findings
    lung_exclude: np.ndarray | None = None  # fluid and pleura: not aerated lung
    ptx: np.ndarray | None = None
    tube: np.ndarray | None = None
    ribs: np.ndarray | None = None

    def lateral_edge(self, side: int, t: np.ndarray | float) -> np.ndarray | float:
        """U-distance from the midline of a lung's lateral edge at height t."""
        tc = np.clip(t, 0.0, 1.0)
        g = self.geom
        return g.apex_a + (g.lat_w - g.apex_a) * np.sqrt(1.0 - (1.0 - tc) ** 3)

    def lung_field(
        self, side: int, U: np.ndarray | None = None, T: np.ndarray | None = None
    ) -> np.ndarray:
        """The hemithorax air space of one lung (before heart/mediastinum are cut out)."""
        U = self.cv.U if U is None else U
        T = self.cv.T if T is None else T
        g = self.geom
        a = side * U
        tc = np.clip(T, 0.0, 1.0)
        lat = self.lateral_edge(side, T)
        med = g.apex_a - (g.apex_a - g.med_w) * np.sqrt(1.0 - (1.0 - tc) ** 4)
        return (T >= 0.0) & (a >= med) & (a <= lat) & (T <= self.diaphragm(side, a))

    def diaphragm(self, side: int, a: np.ndarray | float) -> np.ndarray | float:
        """T of the diaphragm under a lung at lateral distance a."""
        g = self.geom
        c = (g.lat_w + g.med_w) / 2.0
        hw = (g.lat_w - g.med_w) / 2.0 * 1.05
        base = 1.0 - (g.right_raise if side == RIGHT else 0.0)
        return base - g.dome * np.clip(1.0 - ((np.asarray(a) - c) / hw) ** 2, 0.0, 1.0)


# --------------------------------------------------------------------------- geometry


def frontal_geometry(
    rng_subject: np.random.Generator,
    rng_image: np.random.Generator,
    view: str,
    lesions: tuple[Lesion, ...],
) -> Geometry:
    """Subject-stable shape with per-image jitter, modified by findings."""
    g = Geometry()
    g.hr = float(rng_subject.uniform(1.62, 1.88))
    g.lat_w = float(rng_subject.uniform(0.9, 0.96))
    g.apex_a = float(rng_subject.uniform(0.44, 0.52))
    g.dome = float(rng_subject.uniform(0.11, 0.17))
    g.ctr = float(rng_subject.uniform(*NORMAL_CTR))
    g.hr *= float(rng_image.uniform(0.96, 1.04))  # depth of inspiration varies per exam
    found = {les.finding: les for les in lesions}
    if "cardiomegaly" in found:
        g.ctr = CARDIOMEGALY_CTR[found["cardiomegaly"].severity] + float(rng_image.uniform(0, 0.02))
    if view == "AP":
        # AP: magnified heart, shallower inspiration, clavicles projected higher.
        g.ctr = min(g.ctr * 1.06, 0.49) if "cardiomegaly" not in found else g.ctr * 1.06
        g.hr *= 0.92
        g.clavicle_t = -0.05
    g.heart_b = 0.34 * (1.0 + 0.6 * max(g.ctr - 0.45, 0.0))
    if "aortic_enlargement" in found:
        sev = found["aortic_enlargement"].severity
        g.knob_r = 0.075 + 0.03 + 0.02 * sev
        g.knob_u = 0.16 + 0.025 * sev
        g.mediastinum_extra = 0.03 + 0.025 * sev
    if "pulmonary_fibrosis" in found:
        g.hr *= 0.9 - 0.03 * found["pulmonary_fibrosis"].severity  # volume loss
        g.dome *= 0.8
    return g


def make_canvas(
    rng: np.random.Generator,
    rows: int,
    cols: int,
    hr: float,
    half_span: float,
    v_span: float,
    u_centre: float = 0.0,
) -> Canvas:
    """Fit the body into the image with a random zoom, shift and small rotation."""
    s = min(cols / (2.0 * half_span), rows / (v_span * hr)) * float(rng.uniform(0.92, 1.04))
    cx = cols / 2.0 - u_centre * s + float(rng.uniform(-0.04, 0.04)) * cols
    lung_px = s * hr
    cy = rows / 2.0 - 0.56 * lung_px + float(rng.uniform(-0.04, 0.04)) * rows
    theta = math.radians(float(rng.uniform(-3.0, 3.0)))
    return Canvas.make(rows, cols, s, hr, cx, cy, theta)


# --------------------------------------------------------------------------- frontal


def _heart(sc: Scene) -> np.ndarray:
    g = sc.geom
    return sc.cv.ellipse(g.heart_cu, g.heart_ct, g.heart_a, g.heart_b, g.heart_angle)


def _mediastinum(sc: Scene) -> np.ndarray:
    """Soft mediastinal silhouette (1 inside), including the aortic knob and ascending aorta."""
    g, U, T = sc.geom, sc.cv.U, sc.cv.T
    mw = 0.125 + 0.06 * smoothstep(0.0, 0.6, T) + g.mediastinum_extra * smoothstep(-0.2, 0.3, T)
    band = (np.abs(U - 0.01) < mw) & (T < 0.85)
    knob = sc.cv.ellipse(g.knob_u, 0.25, g.knob_r, g.knob_r * 1.1) < 1.0
    asc = sc.cv.ellipse(-0.12 - g.mediastinum_extra, 0.42, 0.07 + g.mediastinum_extra, 0.16) < 1.0
    return band | knob | asc


def _ribs(sc: Scene, fracture: Lesion | None) -> tuple[np.ndarray, np.ndarray]:
    """Posterior and anterior ribs plus clavicles; returns (bone layer, rib mask)."""
    g = sc.geom
    lines_post: list = []
    lines_ant: list = []
    rib_w = 0.075 if sc.view != "AP" else 0.07
    for side in (LEFT, RIGHT):
        for k in range(10):
            tk = -0.07 + k * 0.098
            pts = rib_path(sc, side, k)
            if fracture is not None and k == fracture.rib and side in _sides(fracture.side):
                # A displaced fracture: a gap in the rib and a step between its fragments.
                cut, gap, step = 10, 1, 0.035
                medial = pts[: cut - gap]
                lateral = [(u, t + step) for u, t in pts[cut + gap :]]
                lines_post += [(medial, rib_w, 1.0), (lateral, rib_w, 1.0)]
                lines_post += [(medial, rib_w * 0.45, 0.55), (lateral, rib_w * 0.45, 0.55)]
                continue
            lines_post.append((pts, rib_w, 1.0))
            lines_post.append((pts, rib_w * 0.45, 0.55))  # cortex brighter than medulla
            if k <= 5:
                a0 = float(sc.lateral_edge(side, min(max(tk + 0.2, 0.02), 1.0))) + 0.02
                ant = [
                    (side * (a0 - (a0 - 0.3) * f), tk + 0.2 + 0.26 * f**1.2)
                    for f in np.linspace(0.0, 1.0, 8)
                ]
                lines_ant.append((ant, rib_w * 0.7, 1.0))
    post = sc.cv.polylines(lines_post)
    ant = sc.cv.polylines(lines_ant)
    ribs_mask = (post > 0.3) | (ant > 0.3)
    clav = []
    for side in (LEFT, RIGHT):
        ct = g.clavicle_t
        pts = [
            (side * x, ct - 0.02 - 0.13 * x + 0.05 * math.sin(math.pi * x / 1.1))
            for x in np.linspace(0.07, 1.08, 12)
        ]
        clav.append((pts, 0.07, 1.0))
        clav.append((pts, 0.032, 0.7))
    clavicles = sc.cv.polylines(clav)
    bones = 0.085 * post + 0.035 * ant + 0.13 * clavicles
    return soft(bones, 0.004 * sc.cv.s), ribs_mask & (sc.cv.T > -0.2)


def rib_path(sc: Scene, side: int, k: int) -> list[tuple[float, float]]:
    """Centre line of posterior rib k: an arch from the spine that curves down the lateral wall."""
    tk = -0.07 + k * 0.098
    lat = float(sc.lateral_edge(side, min(max(tk + 0.16, 0.02), 1.0))) + 0.04
    pts = [
        (side * (0.08 + (lat - 0.08) * x), tk - 0.03 * math.sin(math.pi * x) + 0.2 * x**1.8)
        for x in np.linspace(0.0, 1.0, 14)
    ]
    pts += [(side * lat * 0.985, tk + 0.26), (side * lat * 0.95, tk + 0.32)]
    return pts


def _sides(side: str) -> tuple[int, ...]:
    return {"left": (LEFT,), "right": (RIGHT,), "bilateral": (LEFT, RIGHT)}[side]


def _vessels(sc: Scene) -> np.ndarray:
    """Branching pulmonary vessels radiating from both hila."""
    rng = sc.rng
    lines: list = []

    def branch(u: float, t: float, ang: float, length: float, width: float, depth: int) -> None:
        u2 = u + length * math.cos(ang)
        t2 = t + length * math.sin(ang) / sc.geom.hr
        lines.append(([(u, t), (u2, t2)], width, 0.2 + 0.8 * min(width / 0.03, 1.0)))
        if depth == 0:
            return
        for d in (-1, 1):
            branch(
                u2,
                t2,
                ang + d * float(rng.uniform(0.25, 0.55)),
                length * 0.72,
                width * 0.68,
                depth - 1,
            )

    for side in (LEFT, RIGHT):
        hu, ht = side * 0.25, 0.45 if side == RIGHT else 0.42
        for base in np.linspace(-1.25, 1.25, 7):
            ang = float(base + rng.uniform(-0.12, 0.12))
            # Angle 0 points laterally; convert to U direction for this side.
            direction = ang if side == LEFT else math.pi - ang
            branch(hu, ht, direction, float(rng.uniform(0.14, 0.2)), 0.032, 3)
    layer = sc.cv.polylines(lines)
    return soft(layer, 0.006 * sc.cv.s)


def render_frontal(
    rows: int,
    cols: int,
    view: str,
    body: Body,
    lesions: tuple[Lesion, ...],
    rng_subject: np.random.Generator,
    rng_image: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Render a PA/AP chest radiograph; returns (image in [0,1], packed uint16 mask, CTR)."""
    geom = frontal_geometry(rng_subject, rng_image, view, lesions)
    cv = make_canvas(rng_image, rows, cols, geom.hr, half_span=1.12, v_span=1.38)
    sc = Scene(cv, geom, body, view, rng_image)
    U, T = cv.U, cv.T
    found = {les.finding: les for les in lesions}
    st = body.soft_tissue

    # Body outline: chest wall, shoulders, neck; the chord profile makes edges fade in.
    bw = geom.lat_w + 0.07 + st
    shoulder = bw + 0.28 * np.exp(-(((T + 0.1) / 0.16) ** 2))
    neck = 0.3 + 0.5 * st
    half = np.where(T < -0.1, neck + (shoulder - neck) * smoothstep(-0.42, -0.12, T), shoulder)
    chord = np.sqrt(np.clip(1.0 - (U / half) ** 2, 0.0, 1.0))

    heart = _heart(sc) < 1.0
    medi = _mediastinum(sc)
    for side in (LEFT, RIGHT):
        sc.hemi[side] = sc.lung_field(side) & ~heart & ~medi
    sc.add = np.zeros(cv.shape, np.float32)
    sc.lung_exclude = np.zeros(cv.shape, bool)
    sc.ptx = np.zeros(cv.shape, bool)
    sc.tube = np.zeros(cv.shape, bool)

    lungs = sc.hemi[LEFT] | sc.hemi[RIGHT]
    depth = soft(lungs, 0.025 * cv.s)
    depth = np.clip(depth * 1.15, 0.0, 1.0) * (1.08 - 0.18 * np.clip(T, 0.0, 1.0))
    sc.lung_depth = depth
    sc.vessels = _vessels(sc)
    bones, ribs_mask = _ribs(sc, found.get("rib_fracture"))
    sc.ribs = ribs_mask

    if "pneumothorax" in found:
        L.pneumothorax(sc, found["pneumothorax"])

    # Below the diaphragm: liver and abdomen are dense.
    a_abs = np.abs(U)
    diaph = np.where(U < 0, sc.diaphragm(RIGHT, a_abs), sc.diaphragm(LEFT, a_abs))
    abdomen = smoothstep(-0.01, 0.03, T - diaph) * (T > 0.3)

    img = 0.03 + body.tissue_level * chord**0.9
    img += 0.1 * abdomen * chord
    img += 0.02 * smooth_noise(rng_image, cv.shape, 0.12 * cv.s) * chord
    img -= body.lung_contrast * depth
    above = 1.0 - abdomen
    img += 0.08 * soft(medi & (T > -0.5), 0.01 * cv.s) * above
    img += 0.08 * soft(heart, 0.008 * cv.s) * (T > 0.3) * above
    # Spine: vertebral bodies with darker disc spaces, seen through the mediastinum.
    spine = (np.abs(U) < 0.085).astype(np.float32)
    discs = 0.5 + 0.5 * np.abs(np.sin(math.pi * (T + 0.02) / 0.098)) ** 0.4
    img += 0.05 * soft(spine, 0.006 * cv.s) * discs * chord * (1.0 - 0.7 * abdomen)
    # Trachea and main bronchi (air).
    airway = cv.polylines(
        [
            ([(0.0, -0.7), (0.0, 0.33)], 0.085, 1.0),
            ([(0.0, 0.33), (0.22, 0.44)], 0.05, 1.0),
            ([(0.0, 0.33), (-0.2, 0.46)], 0.055, 1.0),
        ]
    )
    img -= 0.09 * soft(airway, 0.006 * cv.s) * (T > -0.75)
    # Hila: vessels converge into denser shadows.
    for side in (LEFT, RIGHT):
        img += 0.07 * np.exp(-(cv.ellipse(side * 0.24, 0.45, 0.07, 0.11) ** 2))
    img += 0.11 * sc.vessels * depth
    img += bones * (0.6 + 0.4 * chord)
    # Gastric bubble under the left hemidiaphragm.
    gb_t = float(sc.diaphragm(LEFT, 0.5)) + 0.06
    img -= 0.16 * soft(cv.ellipse(0.45, gb_t, 0.12, 0.07) < 1.0, 0.01 * cv.s) * chord
    if body.sex == "F":
        # Breast shadows over the lower zones, with a convex inferior margin.
        level = float(np.clip(0.05 + 0.004 * (body.bmi - 22.0), 0.04, 0.12))
        for side in (LEFT, RIGHT):
            b = cv.ellipse(side * 0.58, 0.88, 0.5, 0.38)
            img += level * soft(b < 1.0, 0.02 * cv.s) * np.clip(1.2 - b, 0, 1)
    # Parenchymal texture.
    img += 0.02 * smooth_noise(rng_image, cv.shape, 0.02 * cv.s) * depth

    L.apply_frontal_findings(sc, found)
    img += sc.add
    img += body.noise * rng_image.standard_normal(cv.shape, dtype=np.float32)
    img = np.clip(img, 0.0, 1.0)

    mask = _pack_masks(sc)
    return img.astype(np.float32), mask, geom.ctr


def _pack_masks(sc: Scene) -> np.ndarray:
    """Bit i set where MASK_STRUCTURES[i] is present; zones are thirds of each lung's height."""
    out = np.zeros(sc.cv.shape, np.uint16)
    for side, name, prefix in (
        (LEFT, "left_lung", "zone_left"),
        (RIGHT, "right_lung", "zone_right"),
    ):
        lung = sc.hemi[side] & ~sc.lung_exclude
        out |= lung.astype(np.uint16) << BIT[name]
        rows = np.flatnonzero(lung.any(axis=1))
        if rows.size == 0:
            continue
        top, bottom = rows[0], rows[-1] + 1
        cuts = np.linspace(top, bottom, 4)
        r = np.arange(sc.cv.rows)[:, None]
        for z, zone in enumerate(("upper", "middle", "lower")):
            band = (r >= cuts[z]) & (r < cuts[z + 1])
            out |= (lung & band).astype(np.uint16) << BIT[f"{prefix}_{zone}"]
    out |= sc.ptx.astype(np.uint16) << BIT["pneumothorax"]
    out |= sc.tube.astype(np.uint16) << BIT["chest_tube"]
    out |= sc.ribs.astype(np.uint16) << BIT["ribs"]
    return out


# --------------------------------------------------------------------------- lateral


def render_lateral(
    rows: int,
    cols: int,
    body: Body,
    lesions: tuple[Lesion, ...],
    rng_subject: np.random.Generator,
    rng_image: np.random.Generator,
) -> np.ndarray:
    """Render a lateral chest radiograph (anterior to image left); returns image in [0,1]."""
    found = {les.finding: les for les in lesions}
    hr = float(rng_subject.uniform(1.62, 1.88)) * float(rng_image.uniform(0.96, 1.04))
    if "pulmonary_fibrosis" in found:
        hr *= 0.88
    hr *= 0.82  # U spans the antero-posterior depth here, which is smaller than the width
    cv = make_canvas(rng_image, rows, cols, hr, half_span=1.05, v_span=1.4, u_centre=0.1)
    U, T = cv.U, cv.T
    st = body.soft_tissue
    tc = np.clip(T, 0.0, 1.0)

    # Trunk between the anterior and posterior skin; raised arms add tissue at the top.
    front = -(0.92 + st) + 0.25 * smoothstep(-0.05, -0.5, T)
    back = 1.0 + 0.6 * st
    mid, half = (front + back) / 2.0, (back - front) / 2.0
    chord = np.sqrt(np.clip(1.0 - ((U - mid) / half) ** 2, 0.0, 1.0))
    img = 0.03 + (body.tissue_level + 0.06) * chord**0.8
    arms = smoothstep(0.1, -0.35, T) * np.sqrt(np.clip(1.0 - ((U + 0.2) / 0.75) ** 2, 0, 1))
    img += 0.1 * arms
    img += 0.02 * smooth_noise(rng_image, cv.shape, 0.12 * cv.s) * chord

    width = 0.8 * np.sqrt(1.0 - (1.0 - tc) ** 2.2)
    centre = 0.04 + 0.06 * (1.0 - tc)
    base = 0.8 + 0.3 * np.clip((U + 0.76) / 1.52, 0.0, 1.0) ** 1.5
    lung = (T >= 0.0) & (np.abs(U - centre) < width) & (T < base)
    scale = 1.0
    if "cardiomegaly" in found:
        scale = 1.12 + 0.06 * found["cardiomegaly"].severity
    heart = cv.ellipse(
        -0.3 - 0.05 * (scale - 1), 0.74, 0.42 * scale, 0.33 * scale, math.radians(-35)
    )
    heart_soft = soft(heart < 1.0, 0.03 * cv.s)
    depth = np.clip(soft(lung, 0.03 * cv.s) * 1.15, 0, 1) * (1.05 - 0.15 * tc)
    depth *= 1.0 - 0.45 * heart_soft
    img -= body.lung_contrast * 0.95 * depth
    img += 0.04 * heart_soft
    img += 0.08 * smoothstep(-0.01, 0.04, T - base) * chord

    bone_lines: list = []
    # Vertebral bodies behind the heart; normally they look more lucent lower down.
    for k in range(-6, 14):
        t0 = k * 0.1
        bone_lines.append(([(0.58, t0), (0.58, t0 + 0.078)], 0.2, 0.8 - 0.03 * max(k, 0)))
        bone_lines.append(([(0.74, t0 + 0.02), (0.92, t0 + 0.07)], 0.05, 0.5))
    bone_lines.append(([(-0.9, -0.05), (-0.87, 0.3), (-0.84, 0.62)], 0.05, 1.0))  # sternum
    bones = soft(cv.polylines(bone_lines), 0.004 * cv.s)
    ribs = []
    for k in range(9):  # posterior ribs, faint arcs running forward and down
        t0 = 0.02 + k * 0.1
        ribs.append(([(0.85, t0), (0.5, t0 + 0.06), (0.0, t0 + 0.16), (-0.5, t0 + 0.3)], 0.05, 1.0))
    ribs_layer = soft(cv.polylines(ribs), 0.006 * cv.s) * (T < base + 0.04)
    img += 0.13 * bones * (0.5 + 0.5 * chord) + 0.04 * ribs_layer
    airway = cv.polylines([([(-0.05, -0.8), (0.02, 0.1), (0.1, 0.36)], 0.09, 1.0)])
    img -= 0.09 * soft(airway, 0.006 * cv.s)
    aorta = cv.polylines(
        [
            (
                [(-0.2, 0.42), (-0.15, 0.22), (0.05, 0.13), (0.3, 0.2), (0.45, 0.4), (0.48, 1.0)],
                0.1,
                1.0,
            )
        ]
    )
    img += 0.04 * soft(aorta, 0.012 * cv.s)
    img += 0.02 * smooth_noise(rng_image, cv.shape, 0.02 * cv.s) * depth
    img += L.lateral_findings(cv, found, lung, base, body)
    img += body.noise * rng_image.standard_normal(cv.shape, dtype=np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)
