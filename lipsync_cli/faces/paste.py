"""Putting generated faces back into frames.

- :class:`BoxPaster` (dub): a 96x96 face resized into its (x1, y1, x2, y2) box, either blended in
  with a feathered mask over the lower face (``feather``: no seam shows) or pasted whole
  (``hard``: exactly as the reference Wav2Lip inference does); a face cropped along a tilted head
  (align.head_warp) goes back through the inverse warp, its feathered mask turned with the head.
- :class:`AlignedPaster` (animate): a face generated in DAVS's aligned frame warped back into the
  photo through the inverse of its alignment (align.py), under a soft elliptical mask.
"""

from __future__ import annotations

import cv2
import numpy as np

PASTE_MODES = ("feather", "hard")
# The feathered blend starts this far down the (padded) box, nothing above it is pasted, and is
# whole from FEATHER_FULL on. The generator redraws the lower half; the eyes of a detected face lie
# at 0.35-0.41 of its padded box (RetinaFace, the five sample clips), their lids and lashes to
# about 0.46: a blend from 0.40 blurred them with the generator's 96-pixel face.
FEATHER_FROM = 0.50
FEATHER_FULL = 0.62


def first_blended_row(mode: str, size: int) -> int:
    """The first row of a size x size generated face that a paste in `mode` can show: the rows
    above it need not be generated. The bilinear resize into a box of any height reads source
    rows from floor(FEATHER_FROM * size) - 1 down for the box rows the blend weighs above 0."""
    return max(0, int(FEATHER_FROM * size) - 2) if mode == "feather" else 0


def feather_mask(h: int, w: int) -> np.ndarray:
    """Blend weights for the generated face inside its box: the lower face (where the mouth is
    regenerated) fully, fading out towards the eyes and the box edges so no seam shows."""
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]

    def ramp(v, a, b):
        t = np.clip((v - a) / (b - a), 0.0, 1.0)
        return t * t * (3 - 2 * t)

    vertical = ramp(y, FEATHER_FROM, FEATHER_FULL) * (1.0 - ramp(y, 0.94, 1.0))
    horizontal = ramp(x, 0.0, 0.12) * (1.0 - ramp(x, 0.88, 1.0))
    return np.ascontiguousarray(vertical * horizontal)


class BoxPaster:
    """``paster(frame, box, face)``: a copy of the frame with the face in the box, by ``mode``
    ("feather" or "hard"). Feather masks are made once per box size."""

    def __init__(self, mode: str):
        if mode not in PASTE_MODES:
            raise ValueError(f"paste mode {mode!r}: choose {' or '.join(PASTE_MODES)}")
        self.mode = mode
        self._masks: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._turned_masks: dict[int, np.ndarray] = {}

    def __call__(self, frame: np.ndarray, box: tuple[int, int, int, int], face: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = box
        patch = cv2.resize(face, (x2 - x1, y2 - y1))  # bilinear, as the reference
        out = frame.copy()
        if self.mode == "hard":
            out[y1:y2, x1:x2] = patch
            return out
        key = (y2 - y1, x2 - x1)
        if key not in self._masks:
            m = feather_mask(*key)
            self._masks[key] = (m, 1.0 - m)
        m, inv = self._masks[key]
        out[y1:y2, x1:x2] = cv2.blendLinear(patch, out[y1:y2, x1:x2], m, inv)
        return out

    def turned(self, frame: np.ndarray, warp: np.ndarray, face: np.ndarray) -> np.ndarray:
        """A copy of the frame with `face` (S x S, cropped by the 2x3 `warp`: align.head_warp) put
        back through the inverse warp under the feathered mask of the crop, which turns with the
        head: its upper edge runs parallel to the eyes, which never change."""
        size = face.shape[0]
        h, w = frame.shape[:2]
        back = cv2.invertAffineTransform(warp)
        corners = back @ np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64).T
        x1, y1 = (max(0, int(np.floor(v)) - 1) for v in corners.min(axis=1))
        x2, y2 = min(w, int(np.ceil(corners[0].max())) + 2), min(h, int(np.ceil(corners[1].max())) + 2)
        out = frame.copy()
        if x2 <= x1 or y2 <= y1:
            return out
        shifted = warp.copy()
        shifted[:, 2] += warp[:, :2] @ np.array([x1, y1], np.float64)  # region pixel -> crop pixel
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        region = (x2 - x1, y2 - y1)
        if size not in self._turned_masks:
            self._turned_masks[size] = feather_mask(size, size)
        alpha = cv2.warpAffine(self._turned_masks[size], shifted, region, flags=flags, borderValue=0.0)
        patch = cv2.warpAffine(face, shifted, region, flags=flags, borderMode=cv2.BORDER_REPLICATE)
        out[y1:y2, x1:x2] = cv2.blendLinear(patch, out[y1:y2, x1:x2], alpha, 1.0 - alpha)
        return out


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


class AlignedPaster:
    """Pastes aligned faces back into one image through the inverse of its alignment ``matrix``
    (align.alignment: image pixels -> the size x size aligned face)."""

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
