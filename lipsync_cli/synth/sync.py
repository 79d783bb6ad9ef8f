"""A lip-sync measure for the synthetic domain that needs no trained network.

The synthetic faces have a dark mouth interior between lips of their own colour, so the mouth
opening can be read off any face crop, rendered or generated: the share of dark pixels in the
mouth region, relative to the region's own brightness (so skin tone and lighting do not matter). The truth it is compared
with is the dark mouth area that the audio's visemes imply (synth.face.dark_mouth_area).
A video is scored against the mouth track that the audio driving it implies (its truth): the
Pearson correlation of the two over time, and the frame offset that maximises it.

This measure is only meaningful for our synthetic faces, where the renderer fixes the colours of
the mouth; real faces keep their real audio-visual relationship only in their own clips, and are
measured with LSE-D / LSE-C instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The mouth region of a face crop made by synth.face.crop_placement (fractions of the crop).
REGION_ROWS = (0.56, 0.84)
REGION_COLS = (0.28, 0.72)
DARK = 0.45  # a pixel darker than this share of the region's median brightness is mouth interior
DARK_FLOOR = 45  # ... or darker than this absolute level (the interior is near black; dark skin is not)


def mouth_opening(crops: np.ndarray) -> np.ndarray:
    """Per crop (n, H, W, 3) uint8 BGR -> the share of the mouth region that is open mouth."""
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    n, h, w, _ = crops.shape
    y1, y2 = int(h * REGION_ROWS[0]), int(round(h * REGION_ROWS[1]))
    x1, x2 = int(w * REGION_COLS[0]), int(round(w * REGION_COLS[1]))
    region = crops[:, y1:y2, x1:x2].astype(np.float32)
    value = region.max(axis=3)  # HSV's V: lighting-invariant enough for a ratio
    ref = np.median(value.reshape(n, -1), axis=1)
    threshold = np.maximum(DARK * ref, DARK_FLOOR)
    return (value < threshold[:, None, None]).mean(axis=(1, 2))


def openings_in_frames(frames: np.ndarray, placements, size: int = 96) -> np.ndarray:
    """The mouth opening of a face followed through full frames (a synthetic video, or one dubbed
    from it): each frame is cropped around the face's placement from the truth file, framed as
    the corpus's face crops are, and read with mouth_opening."""
    import cv2

    from .face import crop_box

    crops = np.empty((len(frames), size, size, 3), np.uint8)
    for i, (frame, (cx, cy, r, _angle)) in enumerate(zip(frames, placements)):
        x1, y1, x2, y2 = crop_box((cx, cy), r)
        scale = size / (x2 - x1)
        warp = np.array([[scale, 0, -x1 * scale], [0, scale, -y1 * scale]], np.float32)
        crops[i] = cv2.warpAffine(frame, warp, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return mouth_opening(crops)


@dataclass(frozen=True)
class SyncScore:
    correlation: float  # at offset 0
    best_offset: int  # frames; positive: the video lags the audio
    best_correlation: float

    def as_dict(self) -> dict:
        return {"correlation": round(self.correlation, 4), "best_offset": self.best_offset,
                "best_correlation": round(self.best_correlation, 4)}


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3:
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-12 else 0.0


def sync_score(video_opening: np.ndarray, truth_opening: np.ndarray, max_offset: int = 10) -> SyncScore:
    """Correlate the opening read from a video with the opening the audio implies, at offsets
    -max_offset..max_offset frames (compared over the frames both cover)."""
    v, t = np.asarray(video_opening, float), np.asarray(truth_opening, float)
    n = min(len(v), len(t))
    v, t = v[:n], t[:n]
    best = (-2.0, 0)
    at_zero = _corr(v, t)
    for off in range(-max_offset, max_offset + 1):
        if off >= 0:
            c = _corr(v[off:], t[: n - off])
        else:
            c = _corr(v[: n + off], t[-off:])
        if c > best[0]:
            best = (c, off)
    return SyncScore(at_zero, best[1], best[0])
