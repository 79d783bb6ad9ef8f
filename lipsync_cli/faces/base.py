"""The face-detector interface that every detector implements, and the helpers they share.

Every detector takes a batch of same-sized uint8 HxWx3 **BGR** frames (as decoded for the
model) and returns, per frame, a list of :class:`Detection` sorted by score, highest first.
Detection runs on a copy of the frames downscaled so that the longer side is at most
``max_side`` (never upscaled); boxes and landmarks are mapped back to full-frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence, runtime_checkable

import cv2
import numpy as np

from ..errors import InputError, LipsyncError


@dataclass(frozen=True)
class Detection:
    """One detected face in full-frame pixel coordinates.

    ``box`` is (x1, y1, x2, y2); ``landmarks`` is a (5, 2) float array of x, y (eyes, nose,
    mouth corners) or None when the detector has none (S3FD). Equality and hashing use box
    and score only.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = field(default=None, compare=False)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0)


@runtime_checkable
class FaceDetector(Protocol):
    name: str

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        """frames: uint8 HxWx3 BGR, all the same size. Per frame, detections by score desc."""
        ...


# What a detector's network finds in one downscaled frame: x1, y1, x2, y2, score, landmarks (k, 2) or None
Found = tuple[float, float, float, float, float, "np.ndarray | None"]


def detect_downscaled(frames: Sequence[np.ndarray], max_side: int | None,
                      run: Callable[[list[np.ndarray]], Iterable[Iterable[Found]]]) -> list[list[Detection]]:
    """What every detector does around its network: check the batch, downscale it to the
    detection size, `run` the network on it (per frame, what it found in the small frame's
    pixels), map boxes and landmarks back to full-frame pixels, clip them, sort by score."""
    if len(frames) == 0:
        return []
    full_h, full_w = check_frames(frames)
    h, w = detection_size(full_h, full_w, max_side)
    sx, sy = full_w / w, full_h / h
    scale = np.array([sx, sy], dtype=np.float32)
    results = []
    for found in run(resize_batch(frames, (h, w))):
        dets = [Detection(box=clip_box((x1 * sx, y1 * sy, x2 * sx, y2 * sy), full_w, full_h), score=float(score),
                          landmarks=None if lm is None else lm.astype(np.float32) * scale)
                for x1, y1, x2, y2, score, lm in found]
        dets.sort(key=lambda d: d.score, reverse=True)
        results.append(dets)
    return results


class DetectorUnavailable(LipsyncError):
    """A detector cannot be set up here (its weights missing, unreadable or not downloadable);
    the message is one line that says what to do. Exit code 1, or 2 when the file the user named
    (--s3fd-weights) is the problem."""

    def __init__(self, message: str, *, users_file: bool = False):
        super().__init__(message)
        if users_file:
            self.exit_code = InputError.exit_code


def check_frames(frames: Sequence[np.ndarray]) -> tuple[int, int]:
    """Validate a batch of frames; return its (height, width)."""
    h = w = None
    for f in frames:
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            raise ValueError("frames must be uint8 HxWx3 BGR arrays")
        if h is None:
            h, w = f.shape[:2]
        elif f.shape[:2] != (h, w):
            raise ValueError("all frames of a batch must have the same size")
    if h is None:
        raise ValueError("empty batch")
    return int(h), int(w)


def detection_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(height, width) the detector runs at: longer side <= max_side, never upscaled.

    ``max_side`` None or <= 0 means full resolution.
    """
    longest = max(height, width)
    if not max_side or max_side <= 0 or longest <= max_side:
        return height, width
    scale = max_side / longest
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_batch(frames: Sequence[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    """Resize frames to (height, width) with area interpolation; no copy when already that size."""
    h, w = size
    if frames[0].shape[:2] == (h, w):
        return list(frames)
    return [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]


def clip_box(
    box: Sequence[float], width: int, height: int
) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return (
        min(max(x1, 0.0), float(width)),
        min(max(y1, 0.0), float(height)),
        min(max(x2, 0.0), float(width)),
        min(max(y2, 0.0), float(height)),
    )
