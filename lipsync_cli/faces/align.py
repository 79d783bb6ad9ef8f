"""Face alignment by a similarity transform (rotation, uniform scale, translation) onto a fixed
template, and back through its inverse (paste.AlignedPaster).

- DAVS: the eye centres and the mouth centre onto TEMPLATE (`key_points`, `alignment`).
- GFPGAN (`dub --enhance gfpgan`): RetinaFace's five landmarks onto RESTORE_TEMPLATE, the points
  where GFPGAN's training faces (FFHQ, aligned by facexlib) have them in 512x512
  (`five_point_alignment`).

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

# (x, y) pixels of a 512x512 face, in RetinaFace's landmark order: the eye on the image's left, the
# other eye, the nose tip, the mouth corner on the image's left, the other corner
RESTORE_SIZE = 512
RESTORE_TEMPLATE = np.array([[192.98138, 239.94708], [318.90277, 240.19360], [256.63416, 314.01935],
                             [201.26117, 371.41043], [313.08905, 371.15118]], np.float64)


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


def five_point_alignment(landmarks: np.ndarray, size: int = RESTORE_SIZE) -> np.ndarray:
    """(5, 2) landmarks in image pixels (RetinaFace's order) -> the 2x3 transform from image
    pixels to a size x size face aligned as GFPGAN expects (least squares over the five points)."""
    points = np.asarray(landmarks, np.float64).reshape(5, 2)
    return similarity(points, RESTORE_TEMPLATE * (size / RESTORE_SIZE))


def box_landmarks(box: tuple[float, float, float, float]) -> np.ndarray:
    """(5, 2) landmarks where an upright face has them in its detection box, for a face whose
    landmarks are not known (a --box, a detector without landmarks)."""
    x1, y1, x2, y2 = map(float, box)
    w, h = x2 - x1, y2 - y1
    rel = np.array([[0.31, 0.40], [0.69, 0.40], [0.50, 0.58], [0.35, 0.78], [0.65, 0.78]])
    return np.column_stack([x1 + rel[:, 0] * w, y1 + rel[:, 1] * h])
