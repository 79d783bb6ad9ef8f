"""Synthetic faces: identities, and a renderer whose mouth follows given (opening, width, rounding).

Faces are drawn with OpenCV primitives in a face-centred coordinate frame (x right, y down, the
face about 1.6 wide and 1.9 tall, its centre at the origin), mapped to pixels by a centre, a
radius in pixels and a rotation (head motion), and drawn at twice the size then reduced, so that
edges are smooth and the mouth's shape changes continuously with its parameters. The mouth's
interior is dark and its lips have their own colour, so the opening can be read back from any
crop (sync.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

SUPERSAMPLE = 2
MOUTH_Y = 0.48  # mouth centre, face units below the face centre
EYE_Y = -0.22


@dataclass(frozen=True)
class Identity:
    skin: tuple[float, float, float]  # BGR
    lips: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    background: tuple[tuple[float, float, float], tuple[float, float, float]]
    face_width: float  # half-width in face units
    face_height: float
    chin: float  # how narrow the jaw is, 0..1
    eye_spacing: float
    eye_size: float
    brow: float  # thickness
    hair_style: int  # 0 short, 1 long, 2 bald, 3 bangs
    glasses: bool
    glasses_colour: tuple[float, float, float]
    light_angle: float  # radians
    light_strength: float
    mouth_scale: float


def _colour(rng, lo, hi) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(lo, hi))


def make_identity(rng: np.random.Generator) -> Identity:
    tone = rng.uniform(0, 1)  # dark to light skin, BGR
    skin = (40 + 150 * tone + rng.uniform(-10, 10), 60 + 150 * tone + rng.uniform(-10, 10), 95 + 140 * tone + rng.uniform(-8, 8))
    lips = (skin[0] * 0.55 + rng.uniform(0, 20), skin[1] * 0.45 + rng.uniform(0, 15), min(255.0, skin[2] * 0.85 + 40))
    hair = _colour(rng, (5, 5, 5), (120, 140, 170)) if rng.random() < 0.85 else _colour(rng, (180, 180, 180), (230, 230, 230))
    bg = (_colour(rng, (20, 20, 20), (250, 250, 250)), _colour(rng, (20, 20, 20), (250, 250, 250)))
    return Identity(
        skin=skin, lips=lips, hair=hair, iris=_colour(rng, (20, 20, 10), (160, 130, 90)), background=bg,
        face_width=float(rng.uniform(0.66, 0.8)), face_height=float(rng.uniform(0.86, 0.98)),
        chin=float(rng.uniform(0.0, 1.0)), eye_spacing=float(rng.uniform(0.26, 0.34)),
        eye_size=float(rng.uniform(0.08, 0.12)), brow=float(rng.uniform(0.02, 0.05)),
        hair_style=int(rng.integers(0, 4)), glasses=bool(rng.random() < 0.3),
        glasses_colour=_colour(rng, (0, 0, 0), (90, 90, 90)), light_angle=float(rng.uniform(0, 2 * math.pi)),
        light_strength=float(rng.uniform(0.0, 0.25)), mouth_scale=float(rng.uniform(0.9, 1.1)),
    )


class _Pen:
    """Face units -> canvas pixels (fixed-point, as cv2 draws with shift bits)."""

    SHIFT = 4

    def __init__(self, cx: float, cy: float, radius: float, angle_deg: float):
        self.cx, self.cy, self.r = cx, cy, radius
        self.angle = angle_deg
        a = math.radians(angle_deg)
        self.cos, self.sin = math.cos(a), math.sin(a)
        self.k = 1 << self.SHIFT

    def pt(self, x: float, y: float) -> tuple[int, int]:
        px = self.cx + (x * self.cos - y * self.sin) * self.r
        py = self.cy + (x * self.sin + y * self.cos) * self.r
        return int(round(px * self.k)), int(round(py * self.k))

    def ellipse(self, img, x, y, ax, ay, colour, thickness=-1, start=0, end=360, rot=0.0):
        axes = (max(1, int(round(ax * self.r * self.k))), max(1, int(round(ay * self.r * self.k))))
        cv2.ellipse(img, self.pt(x, y), axes, self.angle + rot, start, end, colour, thickness, cv2.LINE_AA, self.SHIFT)

    def poly(self, img, points, colour):
        pts = np.array([self.pt(x, y) for x, y in points], np.int32)
        cv2.fillPoly(img, [pts], colour, cv2.LINE_AA, self.SHIFT)

    def line(self, img, x1, y1, x2, y2, colour, width):
        cv2.line(img, self.pt(x1, y1), self.pt(x2, y2), colour, max(1, int(round(width * self.r))), cv2.LINE_AA, self.SHIFT)


_BACKGROUNDS: dict = {}


def _background(identity: Identity, h: int, w: int) -> np.ndarray:
    """A two-colour diagonal gradient, with the identity's lighting folded in (cached)."""
    key = (identity, h, w)
    if key not in _BACKGROUNDS:
        if len(_BACKGROUNDS) > 512:
            _BACKGROUNDS.clear()
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        t = ((x / max(w - 1, 1)) + (y / max(h - 1, 1))) / 2
        a, b = (np.array(c, np.float32) for c in identity.background)
        _BACKGROUNDS[key] = (a * (1 - t[..., None]) + b * t[..., None]).astype(np.uint8)
    return _BACKGROUNDS[key]


_LIGHTS: dict = {}


def _light(identity: Identity, h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    key = (identity.light_angle, identity.light_strength, h, w, round(cx), round(cy), round(r))
    if key not in _LIGHTS:
        if len(_LIGHTS) > 2048:
            _LIGHTS.clear()
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        d = ((x - cx) * math.cos(identity.light_angle) + (y - cy) * math.sin(identity.light_angle)) / max(r, 1)
        _LIGHTS[key] = (1 + identity.light_strength * np.clip(d, -1.5, 1.5))[..., None].astype(np.float32)
    return _LIGHTS[key]


def draw_face(img: np.ndarray, identity: Identity, mouth: tuple[float, float, float], blink: float,
              cx: float, cy: float, radius: float, angle: float) -> None:
    """Draw the face onto `img` (BGR, in place). `radius`: pixels per face unit."""
    p = _Pen(cx, cy, radius, angle)
    fw, fh = identity.face_width, identity.face_height
    skin = identity.skin
    # hair behind the head
    if identity.hair_style == 1:
        p.ellipse(img, 0, 0.05, fw + 0.16, fh + 0.12, identity.hair)
    if identity.hair_style != 2:
        p.ellipse(img, 0, -0.28, fw + 0.08, fh * 0.78, identity.hair)
    # ears, head, jaw
    for side in (-1, 1):
        p.ellipse(img, side * fw * 0.98, -0.05, 0.1, 0.18, tuple(c * 0.9 for c in skin))
    p.ellipse(img, 0, 0, fw, fh, skin)
    jaw = fw * (0.55 + 0.3 * (1 - identity.chin))
    p.poly(img, [(-fw * 0.97, 0.2), (fw * 0.97, 0.2), (jaw, fh * 0.82), (0, fh * 1.02), (-jaw, fh * 0.82)], skin)
    if identity.hair_style == 3:  # bangs
        p.poly(img, [(-fw * 0.9, -0.45), (-fw * 0.6, -0.8), (0, -fh * 0.98), (fw * 0.6, -0.8), (fw * 0.9, -0.45),
                     (fw * 0.5, -0.55), (0, -0.5), (-fw * 0.5, -0.55)], identity.hair)
    # eyes, lids (blink), brows
    es, ez = identity.eye_spacing, identity.eye_size
    for side in (-1, 1):
        ex = side * es
        p.ellipse(img, ex, EYE_Y, ez * 1.35, ez * 0.75, (235, 235, 235))
        p.ellipse(img, ex, EYE_Y, ez * 0.6, ez * 0.6, identity.iris)
        p.ellipse(img, ex, EYE_Y, ez * 0.28, ez * 0.28, (20, 20, 20))
        if blink > 0:
            lid = tuple(c * 0.92 for c in skin)
            p.ellipse(img, ex, EYE_Y - ez * 0.75 * (1 - blink), ez * 1.45, ez * 0.8 * blink + 0.005, lid)
        p.line(img, ex - ez * 1.3, EYE_Y - ez * 1.6, ex + ez * 1.3, EYE_Y - ez * 1.8 * (1 + 0.1 * side), identity.hair,
               identity.brow)
    if identity.glasses:
        for side in (-1, 1):
            p.ellipse(img, side * es, EYE_Y, ez * 2.0, ez * 1.6, identity.glasses_colour, max(1, int(radius * 0.025)))
        p.line(img, -es + ez * 2.0, EYE_Y, es - ez * 2.0, EYE_Y, identity.glasses_colour, 0.025)
    # nose
    nose = tuple(c * 0.8 for c in skin)
    p.poly(img, [(0, -0.1), (0.07, 0.2), (-0.07, 0.2)], tuple(c * 0.93 for c in skin))
    p.line(img, -0.06, 0.21, 0.06, 0.21, nose, 0.02)
    draw_mouth(img, p, identity, mouth)


TEETH_FROM, TONGUE_FROM = 0.22, 0.45  # openings from which the upper teeth and the tongue show


def mouth_geometry(mouth: tuple[float, float, float], scale: float = 1.0) -> tuple[float, float, float, float]:
    """(lip half-width, interior half-width, interior half-height, lip thickness) in face units."""
    opening, width, rounding = (float(np.clip(v, 0.0, 1.0)) for v in mouth)
    half_w = scale * (0.17 + 0.13 * width - 0.07 * rounding)
    inner_h = scale * (0.008 + 0.17 * opening)
    inner_w = half_w * (0.92 - 0.3 * rounding)
    return half_w, inner_w, inner_h, 0.045 * scale * (1 + 0.3 * rounding)


def dark_mouth_area(mouth) -> float:
    """The visible dark interior (face units squared): the interior ellipse less about half of
    the teeth and tongue ellipses, which sit on its upper and lower edges."""
    _, inner_w, inner_h, _ = mouth_geometry(mouth)
    covered = 0.11 * (mouth[0] > TEETH_FROM) + 0.10 * (mouth[0] > TONGUE_FROM)
    return math.pi * inner_w * inner_h * (1 - covered)


def draw_mouth(img: np.ndarray, p: _Pen, identity: Identity, mouth: tuple[float, float, float]) -> None:
    half_w, inner_w, inner_h, lip = mouth_geometry(mouth, identity.mouth_scale)
    p.ellipse(img, 0, MOUTH_Y, half_w + 0.02, inner_h + lip, identity.lips)
    p.ellipse(img, 0, MOUTH_Y, inner_w, inner_h, (14, 8, 18))  # the dark interior
    if mouth[0] > TEETH_FROM:  # upper teeth
        p.ellipse(img, 0, MOUTH_Y - inner_h * 0.78, inner_w * 0.72, inner_h * 0.3, (225, 230, 232))
    if mouth[0] > TONGUE_FROM:  # tongue
        p.ellipse(img, 0, MOUTH_Y + inner_h * 0.72, inner_w * 0.62, inner_h * 0.32, (70, 60, 150))


def render(identity: Identity, mouth: tuple[float, float, float], blink: float, size: tuple[int, int],
           center: tuple[float, float], radius: float, angle: float = 0.0) -> np.ndarray:
    """A BGR uint8 image of `size` (height, width): the identity's background, lighting and face.
    `center` and `radius` (pixels per face unit) place the face; `angle` rotates it (degrees)."""
    h, w = size
    ss = SUPERSAMPLE
    canvas = cv2.resize(_background(identity, h, w), (w * ss, h * ss), interpolation=cv2.INTER_NEAREST)
    draw_face(canvas, identity, mouth, blink, center[0] * ss, center[1] * ss, radius * ss, angle)
    small = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    small *= _light(identity, h, w, center[0], center[1], radius)
    return np.clip(small, 0, 255).astype(np.uint8)


def face_box(center: tuple[float, float], radius: float, identity: Identity) -> tuple[int, int, int, int]:
    """The face's box (x1, y1, x2, y2) in pixels, brow to chin, as a face detector would give it."""
    cx, cy = center
    return (int(round(cx - identity.face_width * radius)), int(round(cy - 0.62 * radius)),
            int(round(cx + identity.face_width * radius)), int(round(cy + identity.face_height * 1.02 * radius)))


CROP_SPAN = 1.75  # a face crop is this many face units wide and tall
CROP_CENTRE_Y = 0.40  # the face centre's height in the crop, as a share of its side


def crop_placement(size: int) -> tuple[tuple[float, float], float]:
    """Centre and radius that make the face fill a size x size crop as Wav2Lip's face crops do
    (detector box plus its bottom padding): brow near the top, chin near the bottom."""
    return (size / 2, size * CROP_CENTRE_Y), size / CROP_SPAN


def crop_box(center: tuple[float, float], radius: float) -> tuple[float, float, float, float]:
    """The square (x1, y1, x2, y2) around a face placed at `center` / `radius` in a larger image
    that frames it as crop_placement does: cropping it and resizing gives the same face crop."""
    side = CROP_SPAN * radius
    x1, y1 = center[0] - side / 2, center[1] - CROP_CENTRE_Y * side
    return x1, y1, x1 + side, y1 + side
