"""Per-frame face boxes for frames that stream through in chunks, following one face: what dub
crops in a still image, and the fixed --box. (A video takes the one face pipeline of
faces/speakers.py: shots, every face tracked within its shot, the faces to dub chosen per frame.)

    boxes = FaceBoxes(DetectorPool("retinaface"), width, height)
    for chunk in chunks:
        for frame, box in boxes.push(chunk):   # box: padded (x1, y1, x2, y2) ints, or None
            ...
    for frame, box in boxes.flush():           # the frames still held back
        ...

Each chunk goes through these steps:

1. detection on every `detect_every`-th frame (and the chunk's last one), on frames downscaled to
   `detect_size`; frames where that finds nothing are searched again at twice the size, because a
   small face can vanish in the downscaled frame;
2. tracking: the faces followed through the video, per frame by track id (track.FaceTracker:
   one face, the largest or the `face_index`-th from the left);
3. selection: the track to dub in each frame, the one face followed;
4. interpolation of the selected box between detected frames (within one track);
5. smoothing over track.SMOOTH_WINDOW frames, and padding by `pads`.

Smoothing looks ahead, so boxes come out a few frames after their frames went in; the frames wait
in a small deque meanwhile. A fixed `box` skips all five steps.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError
from .base import FaceDetector
from .detectors import detect_looking_twice
from .track import DEFAULT_PADS, SMOOTH_WINDOW, Box, BoxSmoother, FaceTracker, Tracks, pad_box

PixelBox = tuple[int, int, int, int]  # (x1, y1, x2, y2) in whole pixels, for frame[y1:y2, x1:x2]


def fixed_box(box: Sequence[int], width: int, height: int) -> PixelBox:
    """A box given by the user (x1, y1, x2, y2), clipped to the frame; InputError when less than
    2 pixels of it are left (the message in --box's own order, Y1 Y2 X1 X2)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
    if cy2 - cy1 < 2 or cx2 - cx1 < 2:
        raise InputError(f"--box {y1} {y2} {x1} {x2}: empty inside a {width}x{height} frame")
    return cx1, cy1, cx2, cy2


class FaceBoxes:
    """Streaming per-frame face boxes (see the module docstring).

    ``detectors(max_side)`` gives the detector for a detection size (a detectors.DetectorPool,
    shared between the clips of a batch); unused with a fixed ``box``. ``seconds``: the time
    spent finding boxes so far.
    """

    def __init__(self, detectors: Callable[[int], FaceDetector] | None, width: int, height: int, *,
                 box: Sequence[int] | None = None, pads: Sequence[int] = DEFAULT_PADS,
                 face_index: int | None = None, detect_size: int = 320, detect_every: int = 2,
                 smooth: bool = True):
        if detect_every < 1:
            raise ValueError("detect_every must be 1 or more")
        self.width, self.height = width, height
        self.pads, self.detect_size, self.detect_every = tuple(pads), detect_size, detect_every
        self.fixed = None if box is None else fixed_box(box, width, height)
        self.detectors = detectors
        if box is None:
            detectors(detect_size)  # built now: a detector that cannot be set up fails before any frame
        self.tracker = FaceTracker(face_index)
        self.smoother = BoxSmoother(SMOOTH_WINDOW if smooth else 1)
        self.waiting: deque[np.ndarray] = deque()
        self.seconds = 0.0

    def push(self, frames: Sequence[np.ndarray]) -> list[tuple[np.ndarray, PixelBox | None]]:
        """A chunk of frames in -> (frame, box) for the oldest frames not yet given out, in order."""
        if self.fixed is not None:
            return [(f, self.fixed) for f in frames]
        t0 = time.perf_counter()
        n = len(frames)
        sampled = list(range(0, n, self.detect_every))
        if sampled[-1] != n - 1:
            sampled.append(n - 1)
        tracks = self.tracker.tracks(detect_looking_twice(self.detectors, self.detect_size, [frames[k] for k in sampled]))
        selected = [self.select(t) for t in tracks]
        self.waiting.extend(frames)
        out = self._finish(self.smoother.push(_interpolate(sampled, selected, n)))
        self.seconds += time.perf_counter() - t0
        return out

    def flush(self) -> list[tuple[np.ndarray, PixelBox | None]]:
        """The frames still held back by the smoothing, with their boxes; ends the stream."""
        if self.fixed is not None:
            return []
        return self._finish(self.smoother.flush())

    def select(self, tracks: Tracks) -> tuple[int, Box] | None:
        """The track to dub in one frame, as (track id, box), or None. The tracker follows one
        face, so it is that face's track."""
        return next(iter(tracks.items()), None)

    def _finish(self, boxes: list[Box | None]) -> list[tuple[np.ndarray, PixelBox | None]]:
        return [(self.waiting.popleft(), None if b is None else pad_box(b, self.pads, self.width, self.height))
                for b in boxes]


def _interpolate(sampled: list[int], selected: list[tuple[int, Box] | None], n: int) -> list[Box | None]:
    """Boxes for all n frames of a chunk from those of its sampled frames: linear between two
    sampled neighbours in the same track, None elsewhere."""
    boxes: list[Box | None] = [None] * n
    for k, choice in zip(sampled, selected):
        boxes[k] = None if choice is None else choice[1]
    for (a, ca), (b, cb) in zip(zip(sampled, selected), zip(sampled[1:], selected[1:])):
        if ca is None or cb is None or ca[0] != cb[0]:
            continue
        for k in range(a + 1, b):
            w = (k - a) / (b - a)
            boxes[k] = tuple((1 - w) * u + w * v for u, v in zip(ca[1], cb[1]))  # type: ignore[assignment]
    return boxes
