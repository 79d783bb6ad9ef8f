"""Where `preprocess` cuts a video into training clips: spans of one face, a few seconds long.

The rules, on the 25 fps timeline of the training crops (frame n is the video's moment n / 25):

- A frame can go into a clip when a face is followed there: the largest face of the frame, as
  the one face pipeline tracks it (faces/speakers.py). A clip holds one track, so it ends where
  the shot ends (no track crosses a shot boundary), where the face is lost, and where another
  face takes over as the largest; frames without a face, or past the end of the sound, are left
  out. Nothing else about the video matters: a faceless second costs that second, not the video.
- A clip also ends where the followed face jumps from one frame to the next (its centre moves
  JUMP_SHARE of its box or more, or its size changes by JUMP_SCALE): a jump cut the shot detector
  cannot see, because the picture around the face stays the same (a vlogger cut between takes
  against one wall). The tracker still follows such a face, since detection every n-th frame
  lets a face move half a box between detections; here faces are detected on every frame, and a
  talking head moves a few hundredths of its box in 40 ms, so a jump that size is an edit. A clip
  across it would teach the generator from windows whose frames come from two takes.
- MARGIN_FRAMES are left out on either side of such a cut: the frames next to a cut, a face
  entering or leaving, or a change of face hold the least certain boxes (a dissolve's blend, a
  face half out of the frame), and the two margins keep clips on either side apart.
- A run longer than MAX_CLIP_SECONDS is cut at a pause of the speech (a gap between Silero VAD's
  stretches of speech of at least GAP_FRAMES; VAD pads each stretch by 30 ms, so that is a
  silence of about a quarter of a second): the longest pause that leaves a piece of
  MIN_CLIP_SECONDS to MAX_CLIP_SECONDS before it, the pause itself left out; where the speech runs
  on without such a pause, at MAX_CLIP_SECONDS (or halfway, where the rest would be shorter than
  MIN_CLIP_SECONDS), GAP_FRAMES left out.
- Pieces shorter than MIN_CLIP_SECONDS are left out.

So no two clips of a video touch: at least GAP_FRAMES (0.2 s, the span of one of the expert's
windows) lie between any two. A clip's sound runs TAIL_FRAMES past its last frame, for the mel
windows of its last frames (a frame's window starts at the frame and lasts 0.2 s), less than
halfway to the next clip: clips on either side of a train/val border share no frame and no sample.

The lengths follow LRS2, whose utterances last 1 to 6 s: a second (25 frames) is the least that
gives the expert's and the generator's 5-frame windows a choice of other windows of the same clip
(the expert's off-sync pairs, the generator's reference), and up to 6 s keeps a sentence together
while a long recording still gives many clips to hold some out by time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..faces.synchrony import runs
from ..faces.track import jump_starts
from ..media import FPS

MIN_CLIP_SECONDS = 1.0
MAX_CLIP_SECONDS = 6.0
MARGIN_FRAMES = 3  # left out on either side of a cut, a lost face or a change of face (0.12 s)
GAP_FRAMES = 5  # the least time between two clips of a video (0.2 s); two margins are more
TAIL_FRAMES = 2  # a clip's sound runs this far past its last frame (less than half of GAP_FRAMES)
# with a sync model: a clip whose mouth and sound are further apart than this (frames; 120 ms, where
# viewers begin to notice sound late) is left out, as the field filters its sets
MAX_OFFSET = 3
JUMP_SHARE = 0.15  # the followed face's centre moving this share of its box width in one frame ...
JUMP_SCALE = 1.25  # ... or its width changing by this factor: a cut between takes (see above)

# why frames were left out, as the report names it
NO_FACE, NO_SOUND, MARGIN, PAUSE, TOO_SHORT, OUT_OF_SYNC = (
    "no face", "no sound", "cut margin", "pause", "too short", "out of sync")


@dataclass
class Cutting:
    """The clips of one video, [first, end) frames on the 25 fps timeline, each of one track; the
    frames left out, by reason; and the spans left out that a user may look for (no face, too
    short), (first, end, reason)."""

    clips: list[tuple[int, int]] = field(default_factory=list)
    tracks: list[int] = field(default_factory=list)  # the track of each clip
    left_out: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[int, int, str]] = field(default_factory=list)

    def leave_out(self, reason: str, first: int, end: int, listed: bool = False):
        if end > first:
            self.left_out[reason] = self.left_out.get(reason, 0) + end - first
            if listed:
                self.skipped.append((first, end, reason))


def voiced_frames(spans: list[tuple[float, float]], frames: int) -> np.ndarray:
    """(frames,) bool: frame n (the moment n / 25 to (n + 1) / 25) overlaps a stretch of speech."""
    out = np.zeros(frames, bool)
    for a, b in spans:
        lo, hi = int(np.floor(a * FPS)), int(np.ceil(b * FPS))
        out[max(0, lo):max(0, min(frames, hi))] = True
    return out


def split_at_jumps(track: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """`track` (the followed track per 25 fps frame, negative where none) with a new id from every
    frame where the followed face jumped since the frame before (faces.track.jump_starts, at this
    module's thresholds: boxes detected on every frame, none interpolated); `boxes` (frames, 4),
    the followed face's detected box in each frame (x1, y1, x2, y2; anything where there is none)."""
    track = np.asarray(track)
    out, fresh = track.copy(), int(track.max(initial=-1)) + 1
    for a, b in runs(track >= 0):
        edges = [a, *(a + np.flatnonzero(np.diff(track[a:b])) + 1).tolist(), b]
        for p, q in zip(edges[:-1], edges[1:]):  # one track's run of frames
            for i in jump_starts(boxes[p:q], JUMP_SHARE, JUMP_SCALE):
                out[p + i:q] = fresh  # from the jump on, an id of its own (a later jump takes another)
                fresh += 1
    return out


def cut_clips(track: np.ndarray, voiced: np.ndarray, frames_with_sound: int | None = None,
              min_clip: int = int(MIN_CLIP_SECONDS * FPS), max_clip: int = int(MAX_CLIP_SECONDS * FPS)) -> Cutting:
    """The clips of a video from the track followed in each 25 fps frame (`track`, -1 where no
    face is) and where the speech is (`voiced`, bool per frame); frames from `frames_with_sound`
    on have no sound. See the module docstring for the rules."""
    track = np.asarray(track).copy()
    n = len(track)
    out = Cutting()
    heard = n if frames_with_sound is None else max(0, min(n, frames_with_sound))
    out.leave_out(NO_SOUND, heard, n, listed=True)
    track[heard:] = -2
    for a, b in runs(track == -1):
        out.leave_out(NO_FACE, a, b, listed=True)
    edges = [0, *(np.flatnonzero(track[1:] != track[:-1]) + 1).tolist(), n]
    for a, b in zip(edges[:-1], edges[1:]):
        if track[a] < 0:
            continue
        first = a + MARGIN_FRAMES if a > 0 else a
        end = b - MARGIN_FRAMES if b < n else b
        out.leave_out(MARGIN, a, min(first, b))
        out.leave_out(MARGIN, max(end, first), b)
        if end <= first:
            continue
        for p, q in _split_at_pauses(first, end, voiced, min_clip, max_clip, out):
            if q - p < min_clip:
                out.leave_out(TOO_SHORT, p, q, listed=True)
            else:
                out.clips.append((p, q))
                out.tracks.append(int(track[a]))
    out.skipped.sort()
    return out


def _split_at_pauses(first: int, end: int, voiced: np.ndarray, min_clip: int, max_clip: int,
                     out: Cutting) -> list[tuple[int, int]]:
    """[first, end) in pieces of at most max_clip frames, cut at pauses (see the module docstring)."""
    quiet = ~np.asarray(voiced[first:end], bool)
    if len(quiet) < end - first:  # no speech known past the sound's analysis: all pause
        quiet = np.concatenate([quiet, np.ones(end - first - len(quiet), bool)])
    pauses = [(first + a, first + b) for a, b in runs(quiet) if b - a >= GAP_FRAMES]
    pieces, pos = [], first
    while end - pos > max_clip:
        fits = [(s, e) for s, e in pauses if pos + min_clip <= s <= pos + max_clip]
        # a pause that leaves enough after it (or nothing at all) before one that leaves a scrap
        good = [(s, e) for s, e in fits if e >= end or end - e >= min_clip]
        if fits:
            s, e = max(good or fits, key=lambda p: (p[1] - p[0], p[0]))  # the longest, then the latest
            pieces.append((pos, s))
            out.leave_out(PAUSE, s, e)
            pos = e
        else:  # speech without a pause: cut anyway, a gap left out; in two halves where the rest would be a scrap
            length = max_clip
            if end - (pos + max_clip + GAP_FRAMES) < min_clip:
                length = (end - pos - GAP_FRAMES) // 2
            pieces.append((pos, pos + length))
            out.leave_out(MARGIN, pos + length, min(end, pos + length + GAP_FRAMES))
            pos = min(end, pos + length + GAP_FRAMES)
    if pos < end:
        pieces.append((pos, end))
    return pieces
