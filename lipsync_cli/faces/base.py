"""One face-detector interface, shared helpers, and the detector factory.

Every detector takes a batch of same-sized uint8 HxWx3 **BGR** frames (as decoded for the
model) and returns, per frame, a list of :class:`Detection` sorted by score, highest first.
Detection runs on a copy of the frames downscaled so that the longer side is at most
``max_side`` (never upscaled); boxes and landmarks are mapped back to full-frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import cv2
import numpy as np

DETECTOR_NAMES = ("retinaface", "s3fd")


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


class DetectorUnavailable(Exception):
    """A detector cannot be used here; the message is one line meant for the user."""


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


class DetectorPool:
    """Detectors of one kind built once per detection size and reused (clips of a batch, the
    second look at twice the size). Not thread-safe: one decoding thread uses it."""

    def __init__(self, name: str, device: str = "cpu", s3fd_weights: str | None = None):
        self.name, self.device, self.s3fd_weights = name, device, s3fd_weights
        self._built: dict[int, FaceDetector] = {}

    def __call__(self, max_side: int) -> FaceDetector:
        if max_side not in self._built:
            self._built[max_side] = make_detector(self.name, self.device, max_side=max_side,
                                                  s3fd_weights=self.s3fd_weights)
        return self._built[max_side]


def make_detector(
    name: str,
    device: str = "cpu",
    *,
    max_side: int = 480,
    s3fd_weights: str | None = None,
    score_threshold: float = 0.8,
) -> FaceDetector:
    """Build a face detector by name ("retinaface" or "s3fd").

    ``device``: "cpu" or "cuda[:N]" (RetinaFace falls back to CPU when onnxruntime has no
    CUDA provider). ``max_side``: detection resolution, see :func:`detection_size`.
    ``s3fd_weights``: local path to s3fd-619a316812.pth (otherwise the torch hub cache / a
    download is tried). Raises :class:`DetectorUnavailable` when the detector cannot be set up.
    """
    key = name.lower().strip()
    if key == "retinaface":
        from .retinaface import RetinaFaceDetector

        return RetinaFaceDetector(device, max_side=max_side, score_threshold=score_threshold)
    if key == "s3fd":
        from .s3fd import S3FDDetector

        return S3FDDetector(
            device, max_side=max_side, weights=s3fd_weights, score_threshold=score_threshold
        )
    raise ValueError(f"unknown face detector {name!r}; choose one of: {', '.join(DETECTOR_NAMES)}")
