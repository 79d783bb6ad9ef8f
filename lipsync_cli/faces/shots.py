"""Shot boundaries, found as a clip streams: hard cuts, fades through black, and the clear part of
a dissolve.

Edited footage is a sequence of shots, and nothing about a face carries over a shot boundary: a
track, the smoothing of its boxes, the interpolation between its detections and who speaks all
start afresh. PySceneDetect (BSD-3) decides where the boundaries are; it is a well-kept library
whose detectors take the frames we already decode:

- AdaptiveDetector for cuts: the content change (hue, saturation, luma) between a frame and the
  previous one, against its average over the two frames either side, so a fast pan, a zoom or a
  quick gesture, whose change is high for several frames running, is no cut; a cut stands alone.
- a cut whose picture is back as it was two frames later is a flash (a photographer's flash, a
  glitch), not a cut; a cut onto a black frame is the end of a fade out, not a shot.
- ThresholdDetector for fades: the frames' mean falls below a level (fade out) and rises again;
  the new shot starts on the frame the picture is back (fade_bias +1), which is also where the
  detector reports it, so a fade costs no delay.

Frames are scaled down to SHOT_WIDTH pixels wide first: the decision does not need detail, and
the detectors' colour conversions then cost a fraction of a millisecond a frame.
benchmarks/edits.md compares the detectors on edited composites of real clips.
"""

from __future__ import annotations

import bisect

import cv2
import numpy as np

SHOT_WIDTH = 256  # frames are scaled to this width for the detectors
CUT_RATIO = 3.0  # AdaptiveDetector: a frame's change this many times its neighbours' ...
CUT_MIN_CHANGE = 15.0  # ... and at least this much (its content scale, 0-255)
CUT_WINDOW = 2  # ... neighbours either side; cuts are reported this many frames late
BLACK_LEVEL = 12.0  # ThresholdDetector: a frame with a mean below this is black (fade)
MIN_SHOT_FRAMES = 6  # shorter shots are not split off (a stutter of the detector)
FLASH_SHARE = 0.4  # a change whose picture is back within CUT_WINDOW frames to this share of it: a flash


class ShotDetector:
    """Feed frames in order (any size, BGR uint8); get the frame indices where new shots start.

        shots = ShotDetector(fps=25)
        for frame in frames:
            for start in shots.push(frame):   # indices, at most `delay` frames before the last pushed
                ...
        shots.flush()                         # cuts still held back at the end

    Frame 0 always starts a shot and is not reported.
    """

    def __init__(self, fps: float, *, cut_ratio: float = CUT_RATIO, min_change: float = CUT_MIN_CHANGE,
                 black_level: float = BLACK_LEVEL, min_shot: int = MIN_SHOT_FRAMES):
        from scenedetect import FrameTimecode
        from scenedetect.detectors import AdaptiveDetector, ThresholdDetector

        self._timecode = FrameTimecode
        self.fps = float(fps)
        self.detectors = [
            AdaptiveDetector(adaptive_threshold=cut_ratio, min_content_val=min_change, window_width=CUT_WINDOW,
                             min_scene_len=min_shot),
            ThresholdDetector(threshold=black_level, min_scene_len=min_shot, fade_bias=1.0),
        ]
        self.delay = max(d.event_buffer_length for d in self.detectors)
        self.frames = 0  # frames pushed so far
        self.starts: list[int] = []  # every shot start found so far, in order, 0 left out
        self.black_level = black_level
        self._recent: dict[int, np.ndarray] = {}  # the last frames, small and grey: black? a flash?
        self._size: tuple[int, int] | None = None

    def push(self, frame: np.ndarray) -> list[int]:
        """One more frame -> the shot starts it revealed (sorted; usually none)."""
        if self._size is None:
            h, w = frame.shape[:2]
            scale = min(1.0, SHOT_WIDTH / w)
            self._size = (max(2, int(round(w * scale))), max(2, int(round(h * scale))))
        small = frame if frame.shape[1::-1] == self._size else cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        tc = self._timecode(self.frames, fps=self.fps)
        self._recent[self.frames] = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.int16)
        self._recent.pop(self.frames - self.delay - 2, None)
        found = []
        for d in self.detectors:
            found += [c.frame_num for c in d.process_frame(tc, small)]
        self.frames += 1
        return self._keep(found)

    def flush(self) -> list[int]:
        """The cuts the detectors still held back, once the last frame was pushed."""
        if not self.frames:
            return []
        tc = self._timecode(self.frames - 1, fps=self.fps)
        found = []
        for d in self.detectors:
            found += [c.frame_num for c in d.post_process(tc)]
        return self._keep(found)

    def _black(self, f: int) -> bool:
        return f in self._recent and float(self._recent[f].mean()) < self.black_level

    def _flash(self, f: int) -> bool:
        """The picture changed at f and is back as it was CUT_WINDOW frames later (a flash, a
        frame dropped or doubled): no new shot."""
        before, at, after = (self._recent.get(k) for k in (f - 1, f, f + CUT_WINDOW))
        if before is None or at is None or after is None:
            return False
        return float(np.abs(after - before).mean()) < FLASH_SHARE * float(np.abs(at - before).mean())

    def _keep(self, found: list[int]) -> list[int]:
        """New starts only: not frame 0, not one already known, not within min_shot of another,
        not a black frame (the content detector sees the last step of a fade out as a change;
        the new shot starts when the picture is back, where the fade's own start is), not a flash."""
        new = []
        for f in sorted(set(found)):
            if f <= 0 or f >= self.frames or self._black(f) or self._flash(f):
                continue
            if any(abs(f - s) < MIN_SHOT_FRAMES for s in self.starts):
                continue
            self.starts.append(f)
            new.append(f)
        self.starts.sort()
        return new


def shot_index(starts: list[int], frame: int) -> int:
    """The shot (0 = the first) that `frame` belongs to, given the sorted shot starts (0 left out)."""
    return bisect.bisect_right(starts, frame)
