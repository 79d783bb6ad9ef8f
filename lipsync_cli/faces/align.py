"""Face alignment by a similarity transform (rotation, uniform scale, translation) onto a fixed
template, and back through its inverse (paste.AlignedPaster).

- DAVS: the eye centres and the mouth centre onto TEMPLATE (`key_points`, `alignment`).
- GFPGAN (`dub --enhance gfpgan`): RetinaFace's five landmarks onto RESTORE_TEMPLATE, the points
  where GFPGAN's training faces (FFHQ, aligned by facexlib) have them in 512x512
  (`five_point_alignment`).
- The generator (`dub`, `preprocess --align`): a face's box turned with its head (`head_warp`),
  by the roll its eye line shows (`roll_degrees`, read again on the face turned upright by
  `upright_face`: RetinaFace's landmarks drift on a tilted face), so the generator sees an upright
  face framed as today's box frames one, and the mouth goes back along the head.

The template puts the eyes and the mouth where the synthetic corpus's face crops have them (an
upright face filling the crop as Wav2Lip's crops do), so real photos aligned here are framed like
the faces DAVS is trained on.
"""

from __future__ import annotations

import cv2
import numpy as np

from typing import Callable

from .base import Detection, FaceDetector

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


# -- the generator's crop, turned with the head ------------------------------------------------

# Heads on camera lean a few degrees (the sample clips 3-4, with a few degrees of landmark jitter):
# that needs no turn, and costs nothing. More, and the crop turns.
REFINE_FROM = 6.0  # degrees: a face that leans more is looked at again, turned upright
REFINE_SIZE = 192  # pixels: the side of that second look (the face fills 1 / REFINE_CONTEXT of it)
REFINE_CONTEXT = 1.6
UPRIGHT_BELOW = 5.0  # degrees: a head that leans less is cropped upright, exactly as without alignment
TURNED_FROM = 9.0  # ... and from here on turned by all of its roll (in between, a share of it)


def roll_degrees(landmarks: np.ndarray) -> float:
    """A face's roll from its landmarks: the angle of the line from the eye on the image's left of
    an upright face to the other (RetinaFace's five points: its first two; face-alignment's 68:
    the eyes' centres), in degrees, positive when the face is turned clockwise on screen."""
    lm = np.asarray(landmarks, np.float64)
    if len(lm) == 68:
        a, b = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    else:
        a, b = lm[0], lm[1]
    return float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))


def upright_face(detect: Callable[[int], FaceDetector], frame: np.ndarray, det: Detection,
                 size: int | None = None) -> tuple[float, tuple[float, float, float, float]] | None:
    """(roll, (cx, cy, w, h)) of a detected face that leans, or of one whose detector gives no
    landmarks (S3FD): the face turned upright by the roll its landmarks show and detected again at
    REFINE_SIZE by RetinaFace (`detect(size)`: a RetinaFace DetectorPool), where its landmarks are
    accurate (within 2 degrees on the sample clips rolled by up to 40, where the first reading is
    up to 10 off); the box found there is a box of the upright face: centre, width and height in
    `frame`'s pixels, the box to turn by the roll. A face without landmarks is first looked at as
    it stands, then turned by what that shows. None when the face leans by less than REFINE_FROM
    degrees by its own landmarks, or is not found again.

    With `size` (the detection size the face was found at), the box is then taken from the whole
    frame turned upright by that roll and detected again at `size`: the same detector at the
    same scale and in the same surroundings frames the face as it frames an upright one (the
    close view above frames it a few per cent wider or shorter and off by a few pixels, which
    cost the generator's sync on the synthetic benchmark); the close view's box where that look
    finds nothing."""
    if det.landmarks is None:
        roll, looks = 0.0, 2
    else:
        roll, looks = roll_degrees(det.landmarks), 1
        if abs(roll) < REFINE_FROM:
            return None
    cx, cy = det.center
    side = REFINE_CONTEXT * max(det.width, det.height)
    head = None
    for _ in range(looks):
        turn = cv2.getRotationMatrix2D((cx, cy), roll, REFINE_SIZE / side)  # counter-clockwise by `roll`: upright
        turn[:, 2] += (REFINE_SIZE / 2 - cx, REFINE_SIZE / 2 - cy)
        view = cv2.warpAffine(frame, turn, (REFINE_SIZE, REFINE_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        found = [d for d in detect(REFINE_SIZE).detect([view])[0] if d.landmarks is not None]
        if not found:
            return None if head is None else (roll, head)
        centre = np.array([REFINE_SIZE / 2, REFINE_SIZE / 2])
        again = min(found, key=lambda d: np.hypot(*(np.array(d.center) - centre)))
        x, y = cv2.invertAffineTransform(turn) @ np.array([*again.center, 1.0])
        scale = side / REFINE_SIZE
        roll += roll_degrees(again.landmarks)
        head = (float(x), float(y), again.width * scale, again.height * scale)
        if abs(roll) < REFINE_FROM:  # upright enough: this look was accurate
            break
    if size is not None:
        h, w = frame.shape[:2]
        turn = cv2.getRotationMatrix2D((cx, cy), roll, 1.0)
        view = cv2.warpAffine(frame, turn, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        near = turn @ np.array([head[0], head[1], 1.0])  # the close view's centre, upright
        found = [(float(np.hypot(*(np.array(d.center) - near))), d) for d in detect(size).detect([view])[0]]
        found = [(dist, d) for dist, d in found if dist < 0.5 * max(head[2], head[3])]
        if found:
            again = min(found, key=lambda pair: pair[0])[1]
            x, y = cv2.invertAffineTransform(turn) @ np.array([*again.center, 1.0])
            head = (float(x), float(y), float(again.width), float(again.height))
    return roll, head


def applied_roll(roll: float) -> float:
    """The roll a crop is turned by: none below UPRIGHT_BELOW degrees (the landmarks' jitter on an
    upright face; its crop stays exactly today's), all of it from TURNED_FROM, a growing share in
    between (no jump as a head starts to lean)."""
    lean = abs(roll)
    if lean <= UPRIGHT_BELOW:
        return 0.0
    return roll * min(1.0, (lean - UPRIGHT_BELOW) / (TURNED_FROM - UPRIGHT_BELOW))


def head_warp(head: tuple[float, float, float, float], roll: float, pads: tuple[int, int, int, int],
              size: int) -> np.ndarray:
    """The 2x3 transform from frame pixels to the size x size crop of a face box turned by `roll`
    degrees about its centre: `head` = (cx, cy, w, h) of the box as the face's own axes see it,
    grown by `pads` (top, bottom, left, right) along those axes, as pad_box grows an upright box.
    At roll 0 it samples as cv2.resize of the padded box does (pixel centres to pixel centres)."""
    cx, cy, w, h = (float(v) for v in head)
    top, bottom, left, right = (float(p) for p in pads)
    x0, y0 = -w / 2 - left, -h / 2 - top  # the padded box's corner, in the face's axes about its centre
    width, height = w + left + right, h + top + bottom
    t = np.radians(roll)
    along = np.array([np.cos(t), np.sin(t)])  # the eye line, on screen
    down = np.array([-np.sin(t), np.cos(t)])  # from the eyes to the mouth
    sx, sy = size / width, size / height
    centre = np.array([cx, cy])
    # crop x = (u - x0) * sx - 0.5 + sx / 2 with u the frame pixel's position along the eye line
    # (the half pixels: cv2.resize's pixel-centre convention), y alike along `down`
    return np.array([
        [sx * along[0], sx * along[1], sx * (-along @ centre - x0) + sx / 2 - 0.5],
        [sy * down[0], sy * down[1], sy * (-down @ centre - y0) + sy / 2 - 0.5],
    ])


def turned_crop(frame: np.ndarray, warp: np.ndarray, size: int) -> np.ndarray:
    """The size x size crop `warp` (head_warp) cuts from `frame`; beyond the frame's edges its
    border pixels repeat."""
    return cv2.warpAffine(frame, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def turned_crop_area(frame: np.ndarray, head: tuple[float, float, float, float], roll: float,
                     pads: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The crop of `head_warp` with pixel-area averaging, as a training set's crops are shrunk
    (cv2.INTER_AREA): turned at the face's own scale, then shrunk to size x size."""
    _, _, w, h = head
    top, bottom, left, right = pads
    native = max(size, int(round(max(w + left + right, h + top + bottom))))
    crop = turned_crop(frame, head_warp(head, roll, pads, native), native)
    return crop if native == size else cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
