"""The detector factory: a face detector by name, and a pool that builds each size once.

The detectors implement the interface of base.py (:class:`FaceDetector`, which returns
:class:`Detection` lists); they load onnxruntime or torch only when one is built.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .base import Detection, FaceDetector
from .retinaface import RetinaFaceDetector
from .s3fd import S3FDDetector

DETECTOR_NAMES = ("retinaface", "s3fd")


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
    CUDA provider). ``max_side``: detection resolution, see :func:`base.detection_size`.
    ``s3fd_weights``: local path to s3fd-619a316812.pth (otherwise the torch hub cache / a
    download is tried). Raises :class:`base.DetectorUnavailable` when the detector cannot be set up.
    """
    key = name.lower().strip()
    if key == "retinaface":
        return RetinaFaceDetector(device, max_side=max_side, score_threshold=score_threshold)
    if key == "s3fd":
        return S3FDDetector(device, max_side=max_side, weights=s3fd_weights, score_threshold=score_threshold)
    raise ValueError(f"unknown face detector {name!r}; choose one of: {', '.join(DETECTOR_NAMES)}")


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


def detect_looking_twice(detectors: Callable[[int], FaceDetector], detect_size: int,
                         frames: Sequence[np.ndarray]) -> list[list[Detection]]:
    """Detect on frames downscaled to `detect_size` (`detectors(size)`: a DetectorPool); frames
    where that finds nothing are looked at again at twice the size, because a small face can
    vanish in the downscaled frame (not when the frames are no larger than `detect_size`)."""
    frames = list(frames)
    dets = detectors(detect_size).detect(frames)
    missed = [i for i, d in enumerate(dets) if not d]
    if missed and detect_size and max(frames[0].shape[:2]) > detect_size:
        for i, d in zip(missed, detectors(2 * detect_size).detect([frames[i] for i in missed])):
            dets[i] = d
    return dets
