"""From per-frame detections to boxes per frame: tracking (one face, or every face), temporal
smoothing, padding.

Everything here works streaming, chunk by chunk, because the pipeline decodes the video in
chunks and never holds all frames::

    tracker, smoother = FaceTracker(face_index=None), BoxSmoother(window=5)
    for frames in chunks:
        boxes = smoother.push(tracker.update(detector.detect(frames)))
        ...                        # boxes for the oldest frames not yet emitted, in order
    boxes = smoother.flush()       # the rest

Boxes are (x1, y1, x2, y2) in full-frame pixels everywhere in the code (floats from the
detectors, integers once padded), or None for a frame without the tracked face.
(boxes.FaceBoxes runs this chain, with detection every n-th frame, for dub and preprocess.)
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .base import Detection

Box = tuple[float, float, float, float]  # (x1, y1, x2, y2)
Tracks = dict[int, Box]  # one frame's tracked faces: track id -> box

DEFAULT_PADS = (0, 10, 0, 0)  # Wav2Lip's (top, bottom, left, right)
SMOOTH_WINDOW = 5  # Wav2Lip's temporal window
# A face whose box moves this share of its width from one frame to the next, or changes size by
# JUMP_SCALE, jumped: a jump cut against one background, which the shot detector cannot see.
# A talking head moves under 6% of its width in 40 ms (the sample clips: 2.5-5.9%); with
# detection every 2nd frame a jump shows as two steps of half its size between interpolated boxes.
JUMP_SHARE = 0.08
JUMP_SCALE = 1.15


def box_area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def select_face(dets: Sequence[Detection], face_index: int | None = None) -> Detection | None:
    """Pick the face to follow in one frame.

    ``face_index`` None: the largest box. Otherwise faces are ordered **left to right by the x
    of their box centre** and ``face_index`` picks one (0 = leftmost; negative counts from the
    right as in Python). None when there is no such face in this frame.
    """
    if not dets:
        return None
    if face_index is None:
        return max(dets, key=lambda d: d.area)
    ordered = sorted(dets, key=lambda d: d.center[0])
    if -len(ordered) <= face_index < len(ordered):
        return ordered[face_index]
    return None


class FaceTracker:
    """Follow one face through a stream of per-frame detections.

    The face is chosen with :func:`select_face` (largest, or ``face_index`` left to right) the
    first time one is found; after that each frame takes the detection with the highest IoU with
    the last tracked box, provided it is at least ``iou_threshold``. So a face that appears
    elsewhere does not steal the track. Frames where the tracked face is not found give None
    and keep the last box; after ``max_lost`` such frames in a row (a cut, the person left) the
    face is chosen afresh. ``max_lost`` None: never re-choose.

    Each choice starts a new track (``track_id`` counts them): :meth:`tracks` gives per frame the
    followed faces by track id, the form in which a tracker of several faces will answer.
    """

    def __init__(
        self,
        face_index: int | None = None,
        *,
        iou_threshold: float = 0.3,
        max_lost: int | None = 25,
    ):
        self.face_index = face_index
        self.iou_threshold = float(iou_threshold)
        self.max_lost = max_lost
        self.reset()

    def reset(self) -> None:
        self.last_box: Box | None = None
        self.lost = 0
        self.track_id = -1  # the current track's id, -1 before the first

    def step(self, dets: Sequence[Detection]) -> Box | None:
        """One frame's detections -> the tracked box (or None)."""
        if self.last_box is not None and self.max_lost is not None and self.lost >= self.max_lost:
            self.last_box = None
        chosen: Detection | None
        if self.last_box is None:
            chosen = select_face(dets, self.face_index)
        else:
            chosen = None
            best = 0.0
            for d in dets:
                o = iou(d.box, self.last_box)
                if o > best:
                    chosen, best = d, o
            if best < self.iou_threshold:
                chosen = None
        if chosen is None:
            self.lost += 1
            return None
        if self.last_box is None:
            self.track_id += 1
        self.lost = 0
        self.last_box = tuple(float(v) for v in chosen.box)  # type: ignore[assignment]
        return self.last_box

    def update(self, dets_per_frame: Iterable[Sequence[Detection]]) -> list[Box | None]:
        """A chunk of frames' detections -> one box (or None) per frame; state carries over."""
        return [self.step(dets) for dets in dets_per_frame]

    def tracks(self, dets_per_frame: Iterable[Sequence[Detection]]) -> list[Tracks]:
        """As :meth:`update`, each frame's box keyed by its track id ({} without one)."""
        out: list[Tracks] = []
        for dets in dets_per_frame:
            box = self.step(dets)
            out.append({} if box is None else {self.track_id: box})
        return out


class MultiFaceTracker:
    """Follow every face through a stream of per-frame detections, each under its own track id.

    Each frame's detections are matched to the live tracks, best overlap first (IoU with the
    track's last box, at least ``iou_threshold``; a face that moved further than that still
    matches when its centre lies within half a box of the last one and its size is within a
    factor 1.5, as when detection runs on every n-th frame only). A detection left unmatched
    starts a new track; ids count up and are never reused. A track that finds no detection keeps
    its id through ``max_lost`` frames in a row (a blink of the detector, a hand in front of the
    face), then ends. Detections scoring below ``min_score`` are ignored.
    """

    def __init__(self, *, iou_threshold: float = 0.3, max_lost: int = 25, min_score: float = 0.0):
        self.iou_threshold = float(iou_threshold)
        self.max_lost = int(max_lost)
        self.min_score = float(min_score)
        self.live: dict[int, Box] = {}  # track id -> last box
        self.lost: dict[int, int] = {}  # track id -> frames in a row without it
        self.next_id = 0

    def _affinity(self, det: Box, last: Box) -> float:
        overlap = iou(det, last)
        if overlap >= self.iou_threshold:
            return 1.0 + overlap
        w, h = last[2] - last[0], last[3] - last[1]
        dx = (det[0] + det[2] - last[0] - last[2]) / 2.0
        dy = (det[1] + det[3] - last[1] - last[3]) / 2.0
        ratio = box_area(det) / max(box_area(last), 1e-6)
        if (dx * dx + dy * dy) ** 0.5 <= 0.5 * max(w, h) and 1 / 2.25 <= ratio <= 2.25:
            return overlap  # below 1: taken only after every good overlap
        return -1.0

    def step(self, dets: Sequence[Detection]) -> Tracks:
        """One frame's detections -> the faces found in it, by track id."""
        boxes = [tuple(float(v) for v in d.box) for d in dets if d.score >= self.min_score]
        pairs = sorted(((self._affinity(b, last), i, tid) for i, b in enumerate(boxes)
                        for tid, last in self.live.items()), reverse=True)
        found: Tracks = {}
        taken: set[int] = set()
        for score, i, tid in pairs:
            if score < 0:
                break
            if i in taken or tid in found:
                continue
            found[tid] = boxes[i]  # type: ignore[assignment]
            taken.add(i)
        for i, b in enumerate(boxes):
            if i not in taken:
                found[self.next_id] = b  # type: ignore[assignment]
                self.next_id += 1
        for tid in list(self.live):
            if tid not in found:
                self.lost[tid] += 1
                if self.lost[tid] > self.max_lost:
                    del self.live[tid], self.lost[tid]
        for tid, b in found.items():
            self.live[tid] = b
            self.lost[tid] = 0
        return found

    def end_all(self) -> None:
        """End every live track (a shot boundary: no face carries over it); ids still never repeat."""
        self.live.clear()
        self.lost.clear()

    def tracks(self, dets_per_frame: Iterable[Sequence[Detection]]) -> list[Tracks]:
        """A chunk of frames' detections -> per frame the faces found, by track id; state carries over."""
        return [self.step(dets) for dets in dets_per_frame]


def _mean(boxes: Sequence[Box]) -> Box:
    n = len(boxes)
    return tuple(sum(b[k] for b in boxes) / n for k in range(4))  # type: ignore[return-value]


class BoxSmoother:
    """Streaming temporal smoothing of boxes, Wav2Lip style.

    Each box becomes the mean of itself and the following ``window - 1`` boxes; the last boxes
    of a run, which have no full window ahead, all take the mean of the run's final ``window``
    boxes (the whole run when it is shorter). Runs are separated by None (frames without a
    face): smoothing never crosses a gap, and None comes out as None.

    ``push`` returns smoothed boxes for the oldest frames not yet emitted, in order; at most
    ``window - 1`` frames are held back. ``flush`` emits the rest and ends the stream (the
    smoother can then be reused). ``push(all) + flush()`` equals :func:`smooth_boxes`.

    Unlike Wav2Lip's in-place loop, the final window uses the raw boxes, not partly smoothed
    ones.
    """

    def __init__(self, window: int = SMOOTH_WINDOW):
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = int(window)
        self._run: list[Box] = []  # raw boxes of the current run still needed
        self._next = 0  # index in _run of the first box not yet emitted

    @property
    def pending(self) -> int:
        """Frames pushed but not yet emitted."""
        return len(self._run) - self._next

    def _end_run(self, out: list[Box | None]) -> None:
        if self._next < len(self._run):
            m = _mean(self._run[-self.window :])
            out.extend([m] * (len(self._run) - self._next))
        self._run = []
        self._next = 0

    def push(self, boxes: Iterable[Sequence[float] | None]) -> list[Box | None]:
        out: list[Box | None] = []
        w = self.window
        for b in boxes:
            if b is None:
                self._end_run(out)
                out.append(None)
                continue
            self._run.append(tuple(float(v) for v in b))  # type: ignore[arg-type]
            if len(self._run) - self._next >= w:
                out.append(_mean(self._run[self._next : self._next + w]))
                self._next += 1
                drop = len(self._run) - w
                if drop > 0:
                    del self._run[:drop]
                    self._next -= drop
        return out

    def flush(self) -> list[Box | None]:
        out: list[Box | None] = []
        self._end_run(out)
        return out


def smooth_boxes(
    boxes: Sequence[Sequence[float] | None], window: int = SMOOTH_WINDOW, breaks: Iterable[int] = ()
) -> list[Box | None]:
    """Smooth a whole sequence at once (see :class:`BoxSmoother`); a run also ends before each
    index of `breaks` (a jump: see :func:`jump_starts`), so no window reaches across it."""
    s = BoxSmoother(window)
    out: list[Box | None] = []
    start = 0
    for b in sorted(set(breaks)) + [len(boxes)]:
        if start < b <= len(boxes):
            out += s.push(boxes[start:b]) + s.flush()
            start = b
    return out


def jump_starts(boxes, share: float = JUMP_SHARE, scale: float = JUMP_SCALE) -> list[int]:
    """The indices i of a run of boxes ((n, 4) x1, y1, x2, y2) where the box jumped from box i - 1:
    its centre moved `share` of its width or more, or its width changed by the factor `scale`."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    width = np.maximum(b[:, 2] - b[:, 0], 1e-6)
    centre = (b[:, :2] + b[:, 2:]) / 2
    moved = np.hypot(*(centre[1:] - centre[:-1]).T) / width[:-1]
    ratio = np.maximum(width[1:], width[:-1]) / np.minimum(width[1:], width[:-1])
    return (np.flatnonzero((moved >= share) | (ratio >= scale)) + 1).tolist()


def pad_box(
    box: Sequence[float],
    pads: Sequence[int],
    frame_w: int,
    frame_h: int,
) -> tuple[int, int, int, int]:
    """Grow a box (x1, y1, x2, y2) by ``pads`` = (top, bottom, left, right) pixels and clip it
    to the frame.

    Returns integer (x1, y1, x2, y2), for ``frame[y1:y2, x1:x2]``, as Wav2Lip pads:
    y1 = max(0, top - pad_top), y2 = min(h, bottom + pad_bottom), x1 = max(0, left - pad_left),
    x2 = min(w, right + pad_right). Box coordinates are rounded to the nearest pixel first.
    Raises ValueError when nothing of the box is left inside the frame.
    """
    pad_top, pad_bottom, pad_left, pad_right = (int(p) for p in pads)
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    y1 = max(0, y1 - pad_top)
    y2 = min(int(frame_h), y2 + pad_bottom)
    x1 = max(0, x1 - pad_left)
    x2 = min(int(frame_w), x2 + pad_right)
    if y2 <= y1 or x2 <= x1:
        raise ValueError(f"box {tuple(box)} lies outside the {frame_w}x{frame_h} frame")
    return x1, y1, x2, y2
