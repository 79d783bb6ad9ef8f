"""Face alignment for DAVS: the eye centres and the mouth centre mapped by a similarity transform
(rotation, uniform scale, translation) onto a fixed template, and the inverse transform that
pastes a generated face back with a soft mask.

The template puts the eyes and the mouth where the synthetic corpus's face crops have them (an
upright face filling the crop as Wav2Lip's crops do), so real photos aligned here are framed like
the faces DAVS is trained on.
"""

from __future__ import annotations

import cv2
import numpy as np

from .base import Detection

# (x, y) as fractions of the aligned face's side: left eye, right eye, mouth centre
TEMPLATE = np.array([[0.329, 0.274], [0.671, 0.274], [0.500, 0.674]], np.float64)


def key_points(det: Detection) -> np.ndarray:
    """(3, 2) eye centres (left, right in the image) and mouth centre of a detection: from its 5
    landmarks (RetinaFace: eyes, nose, mouth corners) or 68 (face-alignment), else estimated from
    the box as the template frames a face."""
    lm = det.landmarks
    if lm is not None and len(lm) == 5:
        eyes = lm[:2]
        mouth = lm[3:5].mean(axis=0)
    elif lm is not None and len(lm) == 68:
        eyes = np.stack([lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)])
        mouth = lm[48:68].mean(axis=0)
    else:
        x1, y1, x2, y2 = det.box
        w, h = x2 - x1, y2 - y1
        eyes = np.array([[x1 + 0.30 * w, y1 + 0.38 * h], [x1 + 0.70 * w, y1 + 0.38 * h]])
        mouth = np.array([x1 + 0.5 * w, y1 + 0.80 * h])
    eyes = eyes[np.argsort(eyes[:, 0])]
    return np.vstack([eyes, mouth[None]]).astype(np.float64)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform that maps points `src` onto `dst` best in least squares
    (Umeyama's closed form, reflection excluded)."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / s.var(axis=0).sum()
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]])


def alignment(points: np.ndarray, size: int) -> np.ndarray:
    """The 2x3 transform from image pixels to a size x size aligned face."""
    return similarity(points, TEMPLATE * size)


def align(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def soft_mask(size: int, feather: float = 0.08) -> np.ndarray:
    """(size, size) float32 in [0, 1]: an ellipse over the face in the aligned frame, its edge
    blurred over `feather` of the side, so a pasted face fades into the photo."""
    mask = np.zeros((size, size), np.float32)
    centre = (size / 2, size * 0.52)
    axes = (size * 0.36, size * 0.44)
    cv2.ellipse(mask, (int(round(centre[0])), int(round(centre[1]))),
                (int(round(axes[0])), int(round(axes[1]))), 0, 0, 360, 1.0, -1)
    k = max(3, int(size * feather) | 1)
    return cv2.GaussianBlur(mask, (k, k), 0)


class Paster:
    """Pastes aligned faces back into one image through the inverse of its alignment."""

    def __init__(self, image: np.ndarray, matrix: np.ndarray, size: int, feather: float = 0.08):
        self.image = image
        self.inverse = cv2.invertAffineTransform(matrix)
        h, w = image.shape[:2]
        mask = cv2.warpAffine(soft_mask(size, feather), self.inverse, (w, h), flags=cv2.INTER_LINEAR)
        ys, xs = np.nonzero(mask > 1e-3)
        if len(ys) == 0:
            raise ValueError("the face lies outside the image")
        self.y1, self.y2, self.x1, self.x2 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        self.alpha = mask[self.y1:self.y2, self.x1:self.x2, None]
        self.shift = self.inverse.copy()
        self.shift[:, 2] -= (self.x1, self.y1)  # warp straight into the region that changes

    def paste(self, face: np.ndarray) -> np.ndarray:
        out = self.image.copy()
        region = out[self.y1:self.y2, self.x1:self.x2]
        warped = cv2.warpAffine(face, self.shift, (self.x2 - self.x1, self.y2 - self.y1), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        blended = region.astype(np.float32) * (1 - self.alpha) + warped.astype(np.float32) * self.alpha
        out[self.y1:self.y2, self.x1:self.x2] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return out
