"""Every face of a clip, shot by shot, who speaks when, and which faces to dub in each frame: the
one face pipeline that `dub`, `batch`, `speakers`, `preprocess` and the Python API follow.

The analysis streams over frames decoded at most ANALYSIS_SIDE pixels on their longer side:

1. shots and faces (`find_tracks`), on the clip's own timeline (the frames dub decodes): shot
   boundaries found as the frames go by (faces.shots: cuts, fades); face detection on every
   `detect_every`-th frame of each shot and on its first and last frame, frames where nothing is
   found looked at again at twice the detection size; every face followed by
   faces.MultiFaceTracker, whose tracks all end at a shot boundary, each track's boxes filled in
   between its own detections. A track shorter than MIN_TRACK_FRAMES is taken for a false
   detection, unless it lasts its whole (short) shot. Only the boxes are kept (four numbers per
   frame and face).
2. scores, in the same pass (`_TrackScorer`), on Light-ASD's 25 fps timeline (its frame a is
   the clip's frame round(a * fps / 25)): each track's crops cut as soon as its boxes are known
   13 frames around them (about 1.5 s behind the decoder: the crops follow a median of the boxes,
   and a face's track is known to have ended only max_lost detections after it was last seen)
   and scored by block, the last block as soon as the track ends, so memory stays flat in the
   clip's length whatever the number of shots. The same crops give each face's lower-face
   motion and mouth opening, which faces.synchrony compares with the speech's loudness; the cues
   are combined per frame (synchrony.combine: above 0, speaking) and brought back to the clip's
   timeline (`combine_scores`). A face that goes on at its place after a jump cut keeps its
   speech cues' context across it (`same_place_runs`), and when every face of both shots does, who
   leads is followed across the cut too (`same_place_groups`); tracks, boxes and Light-ASD's
   scores stop at it.
3. decisions (`decide`), shot by shot: speaking runs shorter than MIN_RUN_SECONDS dropped and
   pauses shorter than MIN_PAUSE_SECONDS bridged; then per frame the faces that speak are dubbed;
   a frame where no face in the shot speaks but a voice is heard (someone off screen, a
   narrator, the speaker of a reaction shot) dubs nobody, unless that voice lasts less than
   OFF_SCREEN_SECONDS (a few frames Light-ASD missed) or one face's mouth follows it clearly
   better than the other faces' (`voice_owner`: its speaker, whom Light-ASD missed), or it runs
   without a pause into a turn of one of two faces or more within LEAD_IN_SECONDS (that turn's
   start, which Light-ASD saw late); a pause of the speech goes to the shot's last speaker, or
   before its first turn to its first one.
   Light-ASD gives one verdict per window, so a change of speaker shows up at a window's edge:
   each such change moves to the end of the nearest pause of the speech
   (`place_turns_at_pauses`), where the new voice starts.
   When the sound holds no speech at all (silence, music, noise: a voice activity detector
   decides), nobody speaks: `FacePlan` then dubs the largest face.

`FacePlan` turns the analysis into the faces to dub per frame under one policy: auto (who
speaks), largest, all, a track index, or the n-th face from the left (--face-index); boxes
smoothed over each track, which never crosses a shot.

One decode serves both: holding 1.5 s of 640-pixel frames (they stay in the 32-frame blocks they
were decoded into: three blocks, about 70 MB at 640x360) costs less than decoding
the clip a second time (0.06 s per second of 720p video on 2 cores, 4% of a dub).
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Sequence

import numpy as np

from .. import media
from ..errors import InputError
from ..models import light_asd
from . import align, synchrony
from .detectors import DetectorPool, detect_looking_twice
from .shots import ShotDetector
from .track import SMOOTH_WINDOW, MultiFaceTracker, box_area, jump_starts, smooth_boxes

FPS = light_asd.FPS  # the scoring timeline
ANALYSIS_SIDE = 640  # longer side of the frames the analysis decodes
MIN_TRACK_FRAMES = 10  # shorter tracks are false detections (the reference's minimum too)
MAX_LOST_SECONDS = 1.0  # a face unseen for longer ends its track
LOOK_SECONDS = 0.15  # a leaning face is looked at again, turned upright, this often at most (its roll)
BLOCK_SECONDS = 10  # Light-ASD scores a track in blocks of about this length (a multiple of every window)
MIN_RUN_SECONDS = 0.2  # shorter speaking runs are noise
MIN_PAUSE_SECONDS = 0.3  # shorter pauses inside a face's speech do not end its turn
OFF_SCREEN_SECONDS = 0.5  # a voice heard while no face speaks, at least this long: someone off screen
TURN_PAUSE_SECONDS = 0.2  # a change of speaker moves to the end of a pause at least this long ...
TURN_AHEAD_SECONDS = 0.3  # ... from a Light-ASD window before the change to this after it
VOICE_OWNER_SYNC = 0.25  # a face whose 3 s synchrony with a voice nobody speaks is above this ...
VOICE_OWNER_AHEAD = 0.1  # ... and ahead of every other face's by this is that voice's speaker
# a voice nobody speaks that runs without a pause into a turn of one of two faces or more, and
# lasts at most this, is the start of that turn: Light-ASD answers late (see `turns_in_shot`)
LEAD_IN_SECONDS = 2.0
MIN_SPEECH_SECONDS = 0.5  # less speech than this in the sound: none to find a speaker by
DEFAULT_WINDOWS = (1.0,)  # Light-ASD window lengths (seconds) averaged; see benchmarks/speakers.md

Box = tuple[float, float, float, float]


@dataclass
class SpeakerOptions:
    weights: str = "light_asd_talkset"  # a registry name or a file
    detector: str = "retinaface"
    detect_size: int = 320
    detect_every: int = 2
    windows: tuple[float, ...] = DEFAULT_WINDOWS
    device: str = "cpu"
    # Light-ASD's: auto (on a CPU the shipped weights' int8 visual encoder, else bf16 with AMX;
    # fp16 on CUDA), or fp32
    precision: str = "auto"
    s3fd_weights: str | None = None
    # read each face's roll (faces.align: a leaning face looked at again, turned upright), for a
    # dub that crops along the head
    align: bool = False


@dataclass
class Track:
    """One face followed through one shot, on the clip's timeline (its frames as dub decodes them)."""

    index: int  # as `lipsync speakers` lists it: by first frame, then left to right
    first: int  # frame of its first box
    boxes: np.ndarray  # (T, 4) float32 (x1, y1, x2, y2) full-frame pixels, frames first .. first + T - 1
    shot: int = 0  # the shot it belongs to
    fps: float = float(FPS)
    score: np.ndarray | None = None  # (T,) the combined speaking score: above 0, speaking; NaN: not scored
    speaking: np.ndarray | None = None  # (T,) bool, after the run and pause rules
    # Light-ASD's score, the synchrony cue and the per-frame evidence, on the 25 fps timeline
    # from scoring frame `scored_first` (what synchrony.combine reads)
    scored_first: int = 0
    raw: np.ndarray | None = None  # (T,) Light-ASD's own score on the clip's timeline (before any mean)
    asd: np.ndarray | None = None
    sync: np.ndarray | None = None
    evidence: np.ndarray | None = None
    # with SpeakerOptions.align: (T,) the face's roll in degrees (align.roll_degrees), and (T, 4)
    # its box as the face's own axes see it, centre x, centre y, width, height (full-frame pixels)
    roll: np.ndarray | None = None
    heads: np.ndarray | None = None

    @property
    def last(self) -> int:
        return self.first + len(self.boxes) - 1

    def __contains__(self, frame: int) -> bool:
        return self.first <= frame <= self.last

    @property
    def start(self) -> float:
        return self.first / self.fps

    @property
    def end(self) -> float:
        return (self.last + 1) / self.fps

    @property
    def speaking_seconds(self) -> float:
        return float(self.speaking.sum()) / self.fps if self.speaking is not None else 0.0

    def box(self) -> Box:
        """The median box over the track."""
        return tuple(float(v) for v in np.median(self.boxes, axis=0))  # type: ignore[return-value]

    def segments(self) -> list[tuple[float, float]]:
        """Speaking segments, (start, end) seconds on the clip's timeline."""
        if self.speaking is None:
            return []
        return [((self.first + a) / self.fps, (self.first + b) / self.fps) for a, b in synchrony.runs(self.speaking)]


@dataclass
class SpeakerReport:
    video: str
    audio: str | None  # None: no speech compared with (tracks only)
    weights: str
    frames: int  # frames of the clip analysed
    fps: Fraction  # the clip's rate
    width: int
    height: int
    tracks: list[Track]
    shots: list[int]  # the frames where shots start, 0 first
    dubbed: list[tuple[int, ...]]  # per frame: the tracks `--speaker auto` dubs
    speech: bool = True  # False: the sound holds no speech (silence), nobody can be found speaking
    seconds: float = 0.0
    stage_seconds: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.frames / float(self.fps)

    def shot_spans(self) -> list[tuple[int, int]]:
        """(first, last) frame of every shot."""
        ends = [s - 1 for s in self.shots[1:]] + [self.frames - 1]
        return list(zip(self.shots, ends))

    def as_dict(self) -> dict:
        def number(v):
            return None if v is None or not math.isfinite(v) else round(float(v), 3)

        fps = float(self.fps)
        tracks = []
        for t in self.tracks:
            timeline = [None] * self.frames
            if t.score is not None:
                timeline[t.first:t.last + 1] = [number(v) for v in t.score]
            tracks.append({
                "index": t.index, "shot": t.shot, "first_frame": t.first, "last_frame": t.last,
                "start": round(t.start, 3), "end": round(t.end, 3),
                "box": [round(v, 1) for v in t.box()],
                "mean_score": number(np.nanmean(t.score)) if t.score is not None and np.isfinite(t.score).any() else None,
                "speaking_seconds": round(t.speaking_seconds, 3),
                "segments": [[round(a, 3), round(b, 3)] for a, b in t.segments()],
                "scores": timeline,
            })
        shots = []
        for k, (a, b) in enumerate(self.shot_spans()):
            here = [t for t in self.tracks if t.shot == k]
            shots.append({"index": k, "first_frame": a, "last_frame": b, "start": round(a / fps, 3),
                          "end": round((b + 1) / fps, 3), "tracks": [t.index for t in here],
                          "speakers": [t.index for t in here if t.speaking is not None and t.speaking.any()]})
        return {"video": self.video, "audio": self.audio, "fps": fps, "frames": self.frames,
                "duration": round(self.duration, 3), "weights": self.weights, "speech": self.speech,
                "shots": shots, "tracks": tracks, "dubbed": [list(d) for d in self.dubbed],
                "seconds": round(self.seconds, 3),
                "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()}}


# ----------------------------------------------------------------------------------------------
# 1. Shots and faces, and 2. their scores, in one pass


def analysis_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the analysis frames: longer side at most ANALYSIS_SIDE, even numbers."""
    scale = min(1.0, ANALYSIS_SIDE / max(width, height))
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


class _TrackCollector:
    """Detection and tracking for frames released in order with their shot known: what
    find_tracks runs behind the shot detector's short delay."""

    def __init__(self, detectors: Callable[[int], object], opts: SpeakerOptions, fps: float, clock=None):
        self.every = max(1, opts.detect_every)
        self.max_lost = max(1, int(round(MAX_LOST_SECONDS * fps)) // self.every)
        self.tracker = MultiFaceTracker(max_lost=self.max_lost)
        self.detectors, self.detect_size = detectors, opts.detect_size
        self.clock = clock
        self.batch: list[tuple[int, np.ndarray, int]] = []  # (frame index, frame, shot) to detect
        self.seen: dict[int, tuple[list[int], list[Box]]] = {}  # track id -> (frames, boxes), detected frames
        self.turns: dict[int, list[tuple[float, float, float, float, float]]] = {}  # with align: roll, cx, cy, w, h
        self.align = opts.align
        # the landmarks that tell a face's roll come from RetinaFace, whichever detector found it
        self.landmarks = detectors if opts.detector == "retinaface" else DetectorPool("retinaface", opts.device)
        self.look_every = max(1, int(round(LOOK_SECONDS * fps)))
        self.looked: dict[int, int] = {}  # track id -> the last frame its leaning face was looked at again
        self.shot_of: dict[int, int] = {}  # track id -> shot
        self.tracked = -1  # the last frame the tracker has seen (every frame before it too)

    def add(self, index: int, frame: np.ndarray, shot: int, shot_first: int, last_of_shot: bool):
        """A frame in order; detected when sampled, or the first or last of its shot."""
        if index == shot_first and index > 0:
            self.run()
            self.tracker.end_all()  # nothing carries over a shot boundary
        if (index - shot_first) % self.every == 0 or last_of_shot:
            self.batch.append((index, frame, shot))
            if len(self.batch) >= 16:
                self.run()

    def run(self):
        if not self.batch:
            return
        t = time.perf_counter()
        dets = detect_looking_twice(self.detectors, self.detect_size, [f for _, f, _ in self.batch])
        for (index, frame, shot), found, faces in zip(self.batch, self.tracker.tracks(dets), dets):
            for tid, box in found.items():
                frames_, boxes = self.seen.setdefault(tid, ([], []))
                frames_.append(index)
                boxes.append(box)
                self.shot_of[tid] = shot
                if self.align:
                    self.turns.setdefault(tid, []).append(self._turn(tid, index, frame, box, faces))
        self.tracked = self.batch[-1][0]
        self.batch = []
        if self.clock:
            self.clock.add("detect", t)

    def _turn(self, tid: int, index: int, frame: np.ndarray, box: Box,
              faces: Sequence) -> tuple[float, float, float, float, float]:
        """(roll, cx, cy, w, h) of the face detected at `box`: read again on the face turned upright
        when it leans (align.upright_face), else its landmarks' roll and its box. A leaning face is
        looked at again every LOOK_SECONDS of its track at most (NaN in between: filled in from the
        looks around, as boxes are between detections)."""
        det = next((d for d in faces if tuple(float(v) for v in d.box) == tuple(box)), None)
        x1, y1, x2, y2 = box
        plain = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
        if det is None:
            return (0.0, *plain)
        leans = det.landmarks is None or abs(align.roll_degrees(det.landmarks)) >= align.REFINE_FROM
        if leans and index - self.looked.get(tid, -self.look_every) < self.look_every:
            return (math.nan,) * 5
        if leans:
            self.looked[tid] = index
        t = time.perf_counter()
        upright = align.upright_face(self.landmarks, frame, det, self.detect_size)
        if self.clock:
            self.clock.add("roll", t)
        if upright is None:
            return (align.roll_degrees(det.landmarks) if det.landmarks is not None else 0.0, *plain)
        roll, head = upright
        return (roll, *head)

    def ended(self, tid: int) -> bool:
        return tid not in self.tracker.live


@dataclass
class _Scoring:
    """What scoring the tracks needs: Light-ASD, its window lengths and precision, and the speech's
    features on the 25 fps timeline, for at least as many frames as the clip has: its MFCC and
    loudness (synchrony.speech_loudness), computed before the frames are, so the samples (230 MB
    for an hour) are let go before the pass."""

    net: light_asd.LightASD
    mfcc: np.ndarray
    loudness: np.ndarray
    windows: Sequence[float]
    precision: str = "fp32"


class _TrackScorer:
    """Light-ASD's score and the synchrony cues of every track, from the frames the first pass
    decodes (no second decode). Light-ASD's 25 fps frame a is the clip's frame round(a * fps / 25),
    the one ffmpeg's fps filter picks. A crop's centre and size are medians over 13 frames of the
    track's boxes, so a frame is held until the tracker is sure of every track in it that far
    ahead: a face detected past that point, or its track ended (unseen for max_lost detections,
    or a cut). That is about 1.5 s of analysis frames, whatever the clip's length or the number of
    faces. Crops are copies; each track's are scored a block at a time and the rest as soon as
    it ends, so nothing of a track but a few numbers per frame outlives it."""

    def __init__(self, scoring: _Scoring, collector: _TrackCollector, fps: float, full_scale: tuple[float, float],
                 clock=None):
        import torch

        self.collector, self.fps, self.clock = collector, fps, clock
        self.net, self.windows = scoring.net, scoring.windows
        self.device = next(self.net.parameters()).device
        # On a CPU the visual encoder, nine tenths of the work, runs in ONNX Runtime when it can (fp32
        # three times faster than PyTorch; the shipped weights' int8 copy twice as fast again, scores
        # within 0.14 of fp32 on the talk clips); else bf16 where the CPU has AMX: 1.5 times faster
        # than fp32, scores within 0.04 of fp32 (the same sign)
        self.dtype = None if self.net.visual_in_onnx(self.device) else {
            "bf16": torch.bfloat16, "fp16": torch.float16}.get(scoring.precision)
        self.mfcc, self.loudness = scoring.mfcc, scoring.loudness
        # full-frame pixels from analysis pixels, as Track keeps them (float32), and back
        self.to_full = np.array([full_scale[0], full_scale[1], full_scale[0], full_scale[1]])
        self.to_analysis = 1.0 / self.to_full
        lengths = [max(1, int(round(d * FPS))) for d in self.windows]
        self.block = math.lcm(*lengths) * max(1, round(BLOCK_SECONDS * FPS / math.lcm(*lengths)))
        self.reach = light_asd.SMOOTHING // 2
        self.hold = int(math.ceil((self.reach + 1) * fps / FPS)) + (collector.max_lost + 2) * collector.every
        self.held: deque[tuple[int, np.ndarray]] = deque()  # frames released, their crops not yet cut
        self.next_a = 0  # the next 25 fps frame to cut crops for
        self.next_tid = 0  # the next track id to open (ids count up in the order tracks start)
        self.open: dict[int, dict] = {}  # track id -> its scoring state
        self.cues: dict[int, tuple[int, np.ndarray, np.ndarray, np.ndarray]] = {}  # id -> first a, asd, motion, dark

    def _scored(self, frames: int) -> int:
        return int(math.ceil(frames * FPS / self.fps))

    def push(self, index: int, frame: np.ndarray, frames: int | None = None):
        """Frame `index` released by the first pass; then cut the crops of every held frame the
        tracker is sure about (all of them once `frames`, the clip's count, is given)."""
        if frame is not None:
            self.held.append((index, frame))
        while self.held and (frames is not None or self.held[0][0] + self.hold <= self.collector.tracked):
            self._cut(*self.held.popleft(), frames)

    def _source(self, a: int, frames: int | None) -> int:
        s = int(round(a * self.fps / FPS))
        return s if frames is None else min(frames - 1, s)

    def _cut(self, index: int, frame: np.ndarray, frames: int | None):
        seen = self.collector.seen
        while self.next_tid in seen and seen[self.next_tid][0][0] <= index:
            self.open[self.next_tid] = {"first": None, "pending": [], "done": 0, "asd": [], "motion": [],
                                        "darkness": [], "previous": None, "geometry": {}}
            self.next_tid += 1
        t1 = time.perf_counter()
        last_frame = frames is not None and index == frames - 1
        scored = self._scored(frames) if frames is not None else None
        while (self.next_a < scored) if last_frame else (self._source(self.next_a, frames) <= index):
            a = self.next_a
            for tid, s in self.open.items():
                detected = seen[tid][0]
                if detected[0] <= index <= detected[-1] and not s.get("short"):
                    cx, cy, half = self._geometry(tid, s, a, frames)
                    if half <= 0:  # the 13-frame median is more zeros than boxes: a track under 7 frames,
                        s["short"] = True  # which Light-ASD does not score (light_asd.MIN_TRACK)
                        continue
                    if s["first"] is None:
                        s["first"] = a
                    s["pending"].append(light_asd.crop_face(frame, cx, cy, half).copy())  # not a view of the frame
            self.next_a += 1
        if self.clock:
            self.clock.add("crops", t1)
        for tid in list(self.open):
            s = self.open[tid]
            while len(s["pending"]) >= self.block:
                self._score(s, s["pending"][:self.block])
                del s["pending"][:self.block]
            if last_frame or (seen[tid][0][-1] < index and self.collector.ended(tid)):
                self._finish(tid)

    def _box(self, tid: int, a: int, frames: int | None) -> np.ndarray | None:
        """Track `tid`'s box on 25 fps frame a in analysis pixels (through Track's float32 full-frame
        copy, so the crops are those of the track's stored boxes), None outside the track."""
        if a < 0 or (frames is not None and a >= self._scored(frames)):
            return None
        detected, boxes = self.collector.seen[tid]
        i = self._source(a, frames)
        if not detected[0] <= i <= detected[-1]:
            return None
        j = bisect.bisect_left(detected, i)
        if detected[j] == i:
            box = np.array(boxes[j], np.float64)
        else:  # between two detections: as np.interp over the whole track gives it
            f0, f1 = detected[j - 1], detected[j]
            box = np.array([np.interp(i, (f0, f1), (boxes[j - 1][c], boxes[j][c])) for c in range(4)])
        return (box * self.to_full).astype(np.float32) * self.to_analysis

    def _geometry(self, tid: int, s: dict, a: int, frames: int | None) -> tuple[float, float, float]:
        """light_asd.crop_geometry at frame a: centre and half-size, each the median of 13 frames,
        zeros beyond the track's ends."""
        cache = s["geometry"]
        for k in range(a - self.reach, a + self.reach + 1):
            if k not in cache:
                b = self._box(tid, k, frames)
                cache[k] = (0.0, 0.0, 0.0) if b is None else (
                    (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, max(b[3] - b[1], b[2] - b[0]) / 2)
        for k in [k for k in cache if k < a - self.reach]:
            del cache[k]
        values = np.array([cache[k] for k in range(a - self.reach, a + self.reach + 1)])
        cx, cy, half = np.median(values, axis=0)
        return float(cx), float(cy), float(half)

    def _score(self, s: dict, crops: list[np.ndarray]):
        from ..device import autocast

        stack = np.stack(crops)
        t1 = time.perf_counter()
        first = 4 * (s["first"] + s["done"])
        if len(self.mfcc) < first + 4 * len(stack):  # past the speech and then some: its silence goes on
            self.mfcc = np.pad(self.mfcc, ((0, first + 4 * len(stack) - len(self.mfcc)), (0, 0)), mode="edge")
        with autocast(self.device, self.dtype):
            s["asd"].append(light_asd.speaking_scores(self.net, stack, self.mfcc[first:first + 4 * len(stack)],
                                                      self.windows))
        if self.clock:
            self.clock.add("light-asd", t1)
        t1 = time.perf_counter()
        lead = s["previous"]
        moved = synchrony.lower_face_motion(stack if lead is None else np.concatenate([lead[None], stack]))
        s["motion"].append(moved if lead is None else moved[1:])
        s["darkness"].append(synchrony.mouth_darkness(stack))
        s["previous"] = stack[-1]
        s["done"] += len(stack)
        if self.clock:
            self.clock.add("synchrony", t1)

    def _finish(self, tid: int):
        s = self.open.pop(tid)
        while s["pending"]:
            self._score(s, s["pending"][:self.block])  # exactly one block: windows start at its edges
            del s["pending"][:self.block]
        if s["first"] is not None and s["done"] >= light_asd.MIN_TRACK:  # shorter: the median box is no box
            self.cues[tid] = (s["first"], np.concatenate(s["asd"]), np.concatenate(s["motion"]),
                              np.concatenate(s["darkness"]))

    def apply(self, tracks: Sequence[Track], ids: Sequence[int], frames: int):
        """Set each track's scores (.asd, .sync, .evidence on the 25 fps timeline, .score and .raw
        on the clip's) from what was cut for its tracker id."""
        scored_frames = self._scored(frames)
        envelope = synchrony.clip_loudness(_extended(self.loudness, scored_frames))
        motion: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for t, tid in zip(tracks, ids):
            if tid in self.cues:
                t.scored_first, t.asd, moved, dark = self.cues[tid]
                motion[t.index] = (moved, dark)
        combine_scores(tracks, motion, envelope, scored_frames)


def combine_scores(tracks: Sequence[Track], motion: dict[int, tuple[np.ndarray, np.ndarray]],
                   envelope: np.ndarray, scored_frames: int) -> None:
    """The synchrony cues of the tracks with Light-ASD scores (`motion`: their lower-face motion and
    mouth darkness by track index), over each face's run of shots at one place (see
    `same_place_runs`), combined with Light-ASD's per frame (synchrony.combine: above 0, speaking)
    and brought to the clip's timeline: sets .sync, .evidence, .score and .raw."""
    scored = [t for t in tracks if t.index in motion]
    runs = same_place_runs(scored)
    for run in runs:
        moved = np.concatenate([motion[t.index][0] for t in run])
        dark = np.concatenate([motion[t.index][1] for t in run])
        loudness = envelope[run[0].scored_first:run[0].scored_first + len(moved)]
        sync, evidence = synchrony.synchrony(moved, loudness), synchrony.evidence(moved, dark, loudness)
        k = 0
        for t in run:
            t.sync, t.evidence = sync[k:k + len(t.asd)], evidence[k:k + len(t.asd)]
            k += len(t.asd)
    # combined shot by shot, on the shot's own stretch of the timeline: only faces seen together
    # compete, and a shot's faces are never seen in another (an hour of an edit has thousands of
    # tracks: on the whole timeline each would take a row of every frame, 24 GB). Consecutive shots
    # joined by jump cuts that keep every face at its place are one stretch, each face one row:
    # who leads is followed across such a cut as the evidence is (a turn that starts just before
    # it is measured on both sides); the Light-ASD mean stops at it.
    combined: dict[int, np.ndarray] = {}  # track index -> scores from its scored_first on
    for group in same_place_groups(scored, runs):  # each face of the stretch: its tracks, one per shot
        here = [t for run in group for t in run]
        lo = min(t.scored_first for t in here)
        hi = min(scored_frames, max(t.scored_first + len(t.asd) for t in here))
        asd_of, sync_of, evidence_of = ({i: _runs_on_timeline(run, lo, hi, field) for i, run in enumerate(group)}
                                        for field in ("asd", "sync", "evidence"))
        breaks = sorted({t.scored_first - lo for t in here} - {0})
        scores = synchrony.combine(asd_of, sync_of, evidence_of, breaks)
        for i, run in enumerate(group):
            for t in run:
                combined[t.index] = scores[i][t.scored_first - lo:t.scored_first - lo + len(t.asd)]
    for t in tracks:
        t.score = np.full(len(t.boxes), np.nan, np.float32)
        if t.index in combined:
            a_of = np.clip(np.round(np.arange(t.first, t.last + 1) * FPS / t.fps).astype(np.int64),
                           t.scored_first, t.scored_first + len(t.asd) - 1)
            t.score = combined[t.index][a_of - t.scored_first].astype(np.float32)
            t.raw = t.asd[a_of - t.scored_first].astype(np.float32)


def find_tracks(info: media.MediaInfo, detectors: Callable[[int], object], opts: SpeakerOptions,
                clock=None, limit: int | None = None,
                scoring: _Scoring | None = None) -> tuple[list[Track], list[int], int, tuple[int, int]]:
    """Every face of the clip, shot by shot: (tracks, shot starts, frame count, analysis frame
    size), over its first `limit` frames (None: all), in one decode. Boxes are in full-frame
    pixels; with `scoring`, every track's speaking scores too (see _TrackScorer); `clock` (a
    timing.StageClock or None) counts the time of each stage."""
    fps = float(info.video.fps)
    size = analysis_size(info.video.width, info.video.height)
    scale = info.video.width / size[0], info.video.height / size[1]
    shots = ShotDetector(fps)
    collector = _TrackCollector(detectors, opts, fps, clock)
    scorer = None if scoring is None else _TrackScorer(scoring, collector, fps, scale, clock)
    held: deque[tuple[int, np.ndarray]] = deque()  # frames waiting until their shot is known
    starts: set[int] = {0}
    shot, shot_first = -1, 0

    def release(final: bool):
        """Hand on the frames whose shot, and whether the next frame starts another, is known."""
        nonlocal shot, shot_first
        known = n if final else n - shots.delay - 1
        while held and held[0][0] < known:
            index, frame = held.popleft()
            if index in starts:
                shot, shot_first = shot + 1, index
            last = (index + 1) in starts or (final and index == n - 1)
            collector.add(index, frame, shot, shot_first, last)
            if scorer:
                scorer.push(index, frame)

    n = 0
    for chunk in media.FrameReader(info, chunk=32, size=size):
        if limit is not None and n + len(chunk) > limit:
            chunk = chunk[:max(0, limit - n)]
            if not len(chunk):
                break
        t = time.perf_counter()
        for frame in chunk:
            starts.update(shots.push(frame))
            held.append((n, frame))
            n += 1
        if clock:
            clock.add("shots", t)
        release(final=False)
    if n == 0:
        raise InputError(f"{info.path}: no frame could be decoded")
    starts.update(shots.flush())
    release(final=True)
    collector.run()
    if scorer:
        scorer.push(n - 1, None, frames=n)
    shot_starts = sorted(starts)
    tracks, ids = [], []
    for tid, (frames, boxes) in collector.seen.items():
        k = collector.shot_of[tid]
        shot_len = (shot_starts[k + 1] if k + 1 < len(shot_starts) else n) - shot_starts[k]
        length = frames[-1] - frames[0] + 1
        if length < min(MIN_TRACK_FRAMES, max(2, shot_len - 2 * collector.every)):
            continue
        b = np.array(boxes, np.float64)
        span = np.arange(frames[0], frames[-1] + 1)
        filled = np.stack([np.interp(span, frames, b[:, c]) for c in range(4)], axis=1)
        filled *= np.array([scale[0], scale[1], scale[0], scale[1]])
        track = Track(index=-1, first=frames[0], boxes=filled.astype(np.float32), shot=k, fps=fps)
        if tid in collector.turns:  # roll and the head's own box, filled in between its readings alike
            turns = np.array(collector.turns[tid], np.float64)
            read = np.isfinite(turns[:, 0])
            at = np.asarray(frames)[read]
            track.roll = np.interp(span, at, turns[read, 0]).astype(np.float32)
            heads = np.stack([np.interp(span, at, turns[read, c]) for c in range(1, 5)], axis=1)
            track.heads = (heads * np.array([scale[0], scale[1], scale[0], scale[1]])).astype(np.float32)
        tracks.append(track)
        ids.append(tid)
    order = sorted(range(len(tracks)), key=lambda i: (tracks[i].first, tracks[i].box()[0] + tracks[i].box()[2]))
    tracks, ids = [tracks[i] for i in order], [ids[i] for i in order]
    for i, t in enumerate(tracks):
        t.index = i
    if scorer:
        scorer.apply(tracks, ids, n)
    return tracks, shot_starts, n, size


# ----------------------------------------------------------------------------------------------
# 2. Same-place runs


SAME_PLACE_IOU = 0.5  # a track that starts a shot where one ended the shot before, this close: a jump cut


def same_place_runs(tracks: Sequence[Track]) -> list[list[Track]]:
    """The tracks (scored, on the 25 fps timeline) grouped into runs of consecutive shots with a
    face at the same place: one that starts on the frame after another ended, at a cut, its first
    box overlapping the other's last by SAME_PLACE_IOU (a jump cut in one framing; one to one).
    The synchrony cues measure a mouth against the speech over seconds: over such a run they keep
    their context, where a track alone would start from nothing at every jump cut. Boxes, Light-ASD
    and smoothing stay within each shot."""
    from .track import iou

    ordered = sorted(tracks, key=lambda t: t.scored_first)
    starting: dict[int, list[Track]] = {}  # scored frame -> the tracks that start there
    for t in ordered:
        starting.setdefault(t.scored_first, []).append(t)
    follows: dict[int, Track] = {}
    taken: set[int] = set()
    for t in ordered:
        nexts = [u for u in starting.get(t.scored_first + len(t.asd), ()) if u.shot == t.shot + 1
                 and u.index not in taken and iou(t.boxes[-1], u.boxes[0]) >= SAME_PLACE_IOU]
        if nexts:
            u = max(nexts, key=lambda u: iou(t.boxes[-1], u.boxes[0]))
            follows[t.index] = u
            taken.add(u.index)
    runs = []
    for t in ordered:
        if t.index in taken:
            continue
        run = [t]
        while run[-1].index in follows:
            run.append(follows[run[-1].index])
        runs.append(run)
    return runs


def same_place_groups(tracks: Sequence[Track], runs: Sequence[Sequence[Track]]) -> list[list[list[Track]]]:
    """The tracks (scored) by stretches of consecutive shots joined by jump cuts that keep every
    face at its place: shots s and s + 1 are joined when each track of s is followed in s + 1 (its
    same-place run, `runs`) and each track of s + 1 follows one of s. Per stretch, its faces: each
    a list of tracks, one per shot. A shot joined to no other is a stretch of its own."""
    run_of = {t.index: k for k, run in enumerate(runs) for t in run}
    shots: dict[int, list[Track]] = {}
    for t in tracks:
        shots.setdefault(t.shot, []).append(t)
    groups: list[list[int]] = []
    for shot in sorted(shots):
        if groups and groups[-1][-1] == shot - 1:
            before, now = shots[shot - 1], shots[shot]
            pairs = {run_of[t.index] for t in before}
            if len(before) == len(now) == len(pairs) and pairs == {run_of[t.index] for t in now}:
                groups[-1].append(shot)
                continue
        groups.append([shot])
    out = []
    for group in groups:
        faces: dict[int, list[Track]] = {}
        for shot in group:
            for t in sorted(shots[shot], key=lambda t: t.index):
                faces.setdefault(run_of[t.index], []).append(t)
        out.append(list(faces.values()))
    return out


def _runs_on_timeline(run: Sequence[Track], lo: int, hi: int, field: str) -> np.ndarray:
    """One face's scores (the Track attribute `field`) over its tracks, on the timeline [lo, hi)."""
    out = np.full(hi - lo, np.nan, np.float32)
    for t in run:
        v = np.asarray(getattr(t, field), np.float32)
        a = t.scored_first - lo
        out[a:a + len(v)] = v[:max(0, hi - lo - a)]
    return out


# ----------------------------------------------------------------------------------------------
# 3. Decisions


def has_speech(samples_16k: np.ndarray, envelope: np.ndarray) -> bool:
    """Whether the sound holds speech to compare faces with: louder than digital silence and hiss
    (synchrony.SILENCE_DBFS + 15 dB) and at least MIN_SPEECH_SECONDS of it speech to a voice
    activity detector (music, noise and silence are not)."""
    from ..audio import speech_seconds

    e = np.asarray(envelope, np.float64)
    if not e.size or float(np.percentile(e, 95)) <= synchrony.SILENCE_DBFS + 15.0:
        return False
    return speech_seconds(samples_16k, enough=MIN_SPEECH_SECONDS) >= MIN_SPEECH_SECONDS


def decide(tracks: Sequence[Track], frames: int, fps: float, shots: Sequence[int], envelope: np.ndarray | None = None,
           window: int = FPS) -> list[tuple[int, ...]]:
    """The tracks to dub per frame, shot by shot (sets .speaking from .score); `envelope`: the
    speech's loudness per frame of the clip (synchrony.speech_envelope at its rate), which tells
    a pause from a voice heard off screen and places the changes of speaker at the pauses, up to
    `window` (the longest Light-ASD window, 25 fps frames) plus the score's mean filter before them.
    See the module docstring."""
    per = fps / FPS  # clip frames per 25 fps frame
    min_run, min_pause = int(round(MIN_RUN_SECONDS * fps)), int(round(MIN_PAUSE_SECONDS * fps))
    for t in tracks:
        score = t.score if t.score is not None else np.full(len(t.boxes), np.nan, np.float32)
        t.speaking = clean_runs(np.nan_to_num(score, nan=-1.0) > 0, min_run, min_pause)
    # where a turn meets nobody else's (a voice off screen, a pause), its ends follow Light-ASD's
    # own score; a change between two faces is placed at the speech's pause below instead
    talking = np.zeros(frames + 1, np.int32)
    for t in tracks:
        talking[t.first:t.first + len(t.speaking)] += t.speaking[:max(0, frames - t.first)]
    for t in tracks:
        if t.raw is not None:
            alone = talking[t.first:t.first + len(t.speaking)] - t.speaking <= 0
            trim_to_raw(t.speaking, t.raw, int(round(synchrony.ASD_SMOOTH // 2 * per)), alone)
    present = faces_per_frame(tracks, frames)
    speaking = faces_per_frame(tracks, frames, lambda t: t.speaking)
    voiced = synchrony.voiced_frames(envelope) if envelope is not None else np.zeros(frames, bool)
    voiced = np.pad(voiced, (0, max(0, frames - len(voiced))))[:frames]
    off_screen, turn_pause = int(round(OFF_SCREEN_SECONDS * fps)), int(round(TURN_PAUSE_SECONDS * fps))
    dubbed: list[tuple[int, ...]] = []
    ends = list(shots[1:]) + [frames]
    by_index = {t.index: t for t in tracks}
    in_shot: dict[int, list[Track]] = {}  # shot start -> its tracks (a track never crosses a shot)
    for t in tracks:
        in_shot.setdefault(shots[bisect.bisect_right(shots, t.first) - 1], []).append(t)

    def spoke(faces: tuple[int, ...], i: int, j: int):
        """Faces found to speak a voice Light-ASD gave nobody (clip frames i..j): speaking there
        in the report too."""
        for k in faces:
            t = by_index[k]
            if t.speaking is not None:
                t.speaking[max(0, i - t.first):max(0, j - t.first)] = True

    for a, b in zip(shots, ends):
        here = present[a:b]
        chosen = turns_in_shot(speaking[a:b], here, voiced[a:b], off_screen, turn_pause,
                               owner=lambda i, j, a=a: voice_owner(in_shot.get(a, []), a + i, a + j),
                               lead_in=int(round(LEAD_IN_SECONDS * fps)),
                               spoke=lambda k, i, j, a=a: spoke(k, a + i, a + j))
        if envelope is not None:
            chosen = place_turns_at_pauses(chosen, here, voiced[a:b],
                                           reach_back=int(round((window + synchrony.ASD_SMOOTH // 2 + 1) * per)),
                                           reach_ahead=int(round(TURN_AHEAD_SECONDS * fps)),
                                           min_pause=int(round(TURN_PAUSE_SECONDS * fps)),
                                           faint=synchrony.louder_than(envelope, synchrony.ONSET_BELOW_PEAK_DB)[a:b])
        dubbed += chosen
    return dubbed


def voice_owner(tracks: Sequence[Track], a: int, b: int) -> int | None:
    """The face whose mouth follows a voice heard over clip frames a..b (end exclusive) while
    Light-ASD calls every face silent: among the faces there all along with synchrony cues (at
    least two: the others' cue is the level a mouth reaches by chance), the one whose mean cue
    is above VOICE_OWNER_SYNC and ahead of every other by VOICE_OWNER_AHEAD; else None (a voice
    off screen, a narrator: nobody's mouth follows it more than the others')."""
    means = {}
    frames = np.arange(a, b)
    for t in tracks:
        if t.sync is None or not (t.first <= a and b - 1 <= t.last):
            continue
        k = np.round(frames * FPS / t.fps).astype(np.int64) - t.scored_first
        k = k[(k >= 0) & (k < len(t.sync))]
        if len(k):
            means[t.index] = float(np.nanmean(t.sync[k])) if np.isfinite(t.sync[k]).any() else 0.0
    if len(means) < 2:
        return None
    ranked = sorted(means.items(), key=lambda kv: kv[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    if top > VOICE_OWNER_SYNC and top - second >= VOICE_OWNER_AHEAD:
        return best
    return None


def turns_in_shot(speaking: Sequence[tuple[int, ...]], present: Sequence[tuple[int, ...]], voiced: np.ndarray,
                  off_screen: int, min_pause: int = 0,
                  owner: Callable[[int, int], int | None] | None = None, lead_in: int = 0,
                  spoke: Callable[[tuple[int, ...], int, int], None] | None = None) -> list[tuple[int, ...]]:
    """One shot's faces to dub per frame: those speaking; where none speaks, nobody while a voice
    is heard for at least `off_screen` frames (someone off screen; its dips shorter than
    `min_pause` bridged), unless `owner(a, b)` names a face whose mouth follows that voice over
    frames a..b (its speaker, missed by Light-ASD: it speaks there), or the voice runs without a
    pause into a turn and lasts at most `lead_in` frames while two faces or more are there (the
    turn's first words: Light-ASD's verdict comes up to a window late, most of all at a change of
    speaker; with one face, an off-screen question answered at once stays off screen); else (a
    pause, or a voice too short to be another's) the last speakers of the shot still present, or
    before the shot's first turn, or after a voice off screen, the next ones. `spoke(faces, a, b)`
    hears of every voice given to faces that way."""
    n = len(speaking)
    speaking = list(speaking)
    label = ["turn" if s else ("voice" if voiced[i] else "pause") for i, s in enumerate(speaking)]
    # one voice goes on through its own short dips; only then is it measured against off_screen
    heard = np.array([x != "turn" for x in label], bool) & np.asarray(voiced, bool)
    nobody = np.array([x != "turn" for x in label], bool)
    for a, b in synchrony.runs(nobody):
        heard[a:b] = clean_runs(heard[a:b], 0, min_pause)

    def claim(a: int, b: int, faces: tuple[int, ...]):
        heard[a:b] = False
        speaking[a:b] = [faces] * (b - a)
        label[a:b] = ["turn"] * (b - a)
        if spoke is not None:
            spoke(faces, a, b)

    for a, b in synchrony.runs(heard):
        if b - a < off_screen and (a > 0 or b < n):
            heard[a:b] = False
        elif owner is not None and (k := owner(a, b)) is not None:
            claim(a, b, (k,))
        elif (b - a <= lead_in and b < n and label[b] == "turn"
              and all(len(present[i]) >= 2 and set(speaking[b]) <= set(present[i]) for i in range(a, b))):
            claim(a, b, speaking[b])
    label = ["turn" if x == "turn" else ("voice" if heard[i] else "pause") for i, x in enumerate(label)]
    out: list[tuple[int, ...]] = [()] * n
    last: tuple[int, ...] = ()
    after_voice = False
    for i in range(n):
        if label[i] == "turn":
            out[i] = last = speaking[i]
            after_voice = False
        elif label[i] == "voice":
            after_voice = True
        elif last and not after_voice:
            out[i] = tuple(k for k in last if k in present[i])
    # before a turn, after nothing or after a voice: the pause leads up to that turn's speakers
    nxt: tuple[int, ...] = ()
    for i in range(n - 1, -1, -1):
        if label[i] == "turn":
            nxt = speaking[i]
        elif label[i] == "voice":
            nxt = ()
        elif not out[i] and nxt:
            out[i] = tuple(k for k in nxt if k in present[i])
    return out


def place_turns_at_pauses(dubbed: Sequence[tuple[int, ...]], present: Sequence[tuple[int, ...]],
                          voiced: np.ndarray, reach_back: int, reach_ahead: int,
                          min_pause: int, faint: np.ndarray | None = None) -> list[tuple[int, ...]]:
    """Each change from one set of faces to another (none in both) moved to the end of the pause
    (a run of at least min_pause unvoiced frames) whose end is nearest to it, among the pauses
    that start from reach_back frames before the change to reach_ahead after it: there the new
    speaker's speech begins, from its first `faint` frames (bool, the voice's quiet start) that
    lead up to the pause's end. Frames where the face to take over is absent stay as they were."""
    out = list(dubbed)
    n = min(len(out), len(voiced))
    pauses = [(a, b) for a, b in synchrony.runs(~np.asarray(voiced[:n], bool)) if b - a >= min_pause and b < n]
    changes = [c for c in range(1, n) if out[c] and out[c - 1] and not set(out[c]) & set(out[c - 1])]
    for c in changes:
        near = [(a, b) for a, b in pauses if c - reach_back <= a <= c + reach_ahead]
        if not near:
            continue
        start, onset = min(near, key=lambda p: abs(p[1] - c))
        while faint is not None and onset - 1 > start and faint[onset - 1]:
            onset -= 1
        before, after = dubbed[c - 1], dubbed[c]
        if onset > c:  # the old speaker keeps the face through the pause
            span, was, now = range(c, onset), after, before
        else:  # the new speaker from its first voiced frame
            span, was, now = range(onset, c), before, after
        for i in span:
            if out[i] == was and all(k in present[i] for k in now):
                out[i] = now
    return out


def find_speakers(video: str, audio: str | None, opts: SpeakerOptions, *, score: bool = True,
                  seconds: float | None = None, net: light_asd.LightASD | None = None,
                  detectors: Callable[[int], object] | None = None) -> SpeakerReport:
    """The shots and faces of `video` and who speaks when against the speech of `audio` (None:
    the video's own track), over its first `seconds` (None: all of it; a dub shorter than its
    video uses no more). `score` False: the shots and face tracks only (no speech needed; nobody
    marked speaking). Raises InputError for a still image or a video without frames, and when
    there is no speech to compare with."""
    from .. import audio as audio_mod
    from ..device import give_back_free_memory
    from ..timing import StageClock

    started = time.perf_counter()
    clock = StageClock()
    info = media.probe(video)
    if info.video is None:
        raise InputError(f"{video}: no video stream")
    if info.video.is_still:
        raise InputError(f"{video}: a still image: nobody speaks in it")
    speech = audio if audio is not None else (video if info.audio is not None else None)
    if speech is None and score:
        raise InputError(f"{video}: the video has no audio track: give the speech to compare with as AUDIO")
    if detectors is None:
        detectors = DetectorPool(opts.detector, opts.device, opts.s3fd_weights)
    fps = float(info.video.fps)
    limit = None if seconds is None else max(1, int(math.ceil(seconds * fps)))
    scoring, spoken, loudness = None, True, None
    if score:  # the speech first: without any, nobody is scored and the pass only tracks faces
        t0 = time.perf_counter()
        samples = audio_mod.load_audio(speech).samples
        # the frames to come, as the probe counts them (the speech past the picture is not heard)
        heard = limit or info.video.frame_count or int(math.ceil(info.video.duration * fps)) or None
        if heard is None:
            heard = int(math.ceil(len(samples) / 16000 * fps))
        # every feature of the speech now, for more frames than the clip can have, and the samples
        # let go before the frames are decoded: what stays is a few numbers per frame
        ahead = max(heard, int(math.ceil(len(samples) / 16000 * fps))) + int(math.ceil(fps))
        loudness = synchrony.speech_loudness(samples, ahead, fps=fps)
        spoken = has_speech(samples[:int(math.ceil(heard / fps * 16000))], synchrony.clip_loudness(loudness[:heard]))
        clock.add("audio", t0)
        if spoken:
            if net is None:
                net = load_detector(opts.weights, opts.device, opts.precision)
            t0 = time.perf_counter()
            scored = int(math.ceil(ahead * FPS / fps)) + FPS
            scoring = _Scoring(net, light_asd.mfcc_for(samples, frames=scored),
                               synchrony.speech_loudness(samples, scored, fps=FPS), opts.windows, _precision(opts))
            clock.add("audio features", t0)
        del samples
    tracks, shots, frames, size = find_tracks(info, detectors, opts, clock, limit, scoring)
    dubbed: list[tuple[int, ...]] = [()] * frames
    if score:
        envelope = synchrony.clip_loudness(_extended(loudness, frames))
        window = max(int(round(d * FPS)) for d in opts.windows)
        dubbed = decide(tracks, frames, fps, shots, envelope if spoken else None, window=window)
    give_back_free_memory()  # what the analysis freed, before the frames are dubbed
    return SpeakerReport(video=video, audio=speech if score else None, weights=opts.weights, frames=frames,
                         fps=info.video.fps, width=info.video.width, height=info.video.height, tracks=tracks,
                         shots=shots, dubbed=dubbed, speech=spoken, seconds=time.perf_counter() - started,
                         stage_seconds=clock.seconds)


def _precision(opts: SpeakerOptions) -> str:
    if opts.precision != "auto":
        return opts.precision
    from ..device import auto_precision, resolve_device

    return auto_precision(resolve_device(opts.device))


def load_detector(weights: str, device: str = "cpu", precision: str = "auto") -> light_asd.LightASD:
    """Light-ASD from a registry name (light_asd_talkset ships in the package) or a file; on the
    CPU with its visual encoder in ONNX Runtime where possible (light_asd.use_onnx_visual), in
    int8 unless `precision` is fp32: the same speakers found, at half the cost
    (benchmarks/speakers.md)."""
    from ..weights import resolve_checkpoint

    path = resolve_checkpoint(weights)
    net = light_asd.LightASD.from_file(path).to(device)
    if str(device) == "cpu":
        light_asd.use_onnx_visual(net, path, int8=precision != "fp32")
    return net


# ----------------------------------------------------------------------------------------------
# The faces to dub


@dataclass
class FacePlan:
    """Which faces to regenerate in each frame of the clip, and where, under one policy:

    - "auto": who speaks (`report.dubbed`); when the sound holds no speech or the report was not
      scored, the largest face of every frame;
    - "largest": the largest face in the frame (a track's size is its median box's area, so the
      choice does not flicker within a shot);
    - "all": every face;
    - a track index as text ("3"): that track, as `lipsync speakers` lists it;
    - `face_index` n (with "largest"): the n-th face from the left in the frame (negative: from
      the right), the faces ordered by their track's median box.

    `boxes(j)` gives {track index: box} for frame j, boxes smoothed over each track (never across
    a shot: a track ends at its shot's boundary; nor across a jump of the face, a cut the shot
    detector missed: track.jump_starts)."""

    report: SpeakerReport
    mode: str = "auto"
    face_index: int | None = None
    smooth: bool = True
    chosen: list[tuple[int, ...]] = field(default_factory=list)
    smoothed: dict[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        report = self.report
        self.tracks = {t.index: t for t in report.tracks}
        window = SMOOTH_WINDOW if self.smooth else 1
        self.turns: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # track -> (heads, applied roll), smoothed alike
        for t in report.tracks:
            jumps = jump_starts(t.boxes) if self.smooth else []
            self.smoothed[t.index] = np.array(smooth_boxes([tuple(b) for b in t.boxes], window, jumps), np.float32)
            if t.roll is not None and t.heads is not None:
                # the roll smoothed as the boxes are (smooth_boxes averages 4-tuples)
                roll = np.array([r[0] for r in smooth_boxes([(float(r),) * 4 for r in t.roll], window, jumps)])
                applied = np.array([align.applied_roll(r) for r in roll], np.float32)
                if applied.any():
                    heads = np.array(smooth_boxes([tuple(h) for h in t.heads], window, jumps), np.float32)
                    # the head's own box where it leans, the plain box where it does not, a blend in between
                    share = np.clip(np.abs(applied) / np.maximum(np.abs(roll), 1e-6), 0, 1)[:, None].astype(np.float32)
                    b = self.smoothed[t.index]
                    plain = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0],
                                      b[:, 3] - b[:, 1]], axis=1)
                    self.turns[t.index] = (plain + share * (heads - plain), applied)
        self.present = faces_per_frame(report.tracks, report.frames)
        area = {t.index: box_area(t.box()) for t in report.tracks}
        centre = {t.index: (t.box()[0] + t.box()[2]) / 2 for t in report.tracks}
        self.by_speech = self.mode == "auto" and report.audio is not None and report.speech
        if self.by_speech:
            self.chosen = list(report.dubbed)
        elif self.mode == "all":
            self.chosen = list(self.present)
        elif self.mode not in ("auto", "largest"):
            i = int(self.mode)
            self.chosen = [(i,) if i in p else () for p in self.present]
        elif self.face_index is not None:
            self.chosen = []
            for p in self.present:
                ordered = sorted(p, key=lambda k: centre[k])
                ok = -len(ordered) <= self.face_index < len(ordered)
                self.chosen.append((ordered[self.face_index],) if ok else ())
        else:
            self.chosen = [(max(p, key=lambda k: area[k]),) if p else () for p in self.present]

    def boxes(self, j: int) -> dict[int, Box]:
        if j >= len(self.chosen):
            return {}
        return {i: tuple(float(v) for v in self.smoothed[i][j - self.tracks[i].first]) for i in self.chosen[j]}

    def turned(self, j: int) -> dict[int, tuple[float, float, float, float, float]]:
        """The faces to dub in frame j whose crop turns with the head: {track index: (cx, cy, w, h,
        roll)}, the box in the face's own axes and the roll to turn it by (align.applied_roll;
        faces that do not lean are left out: their crop is the upright box of `boxes`)."""
        out = {}
        for i in self.chosen[j] if j < len(self.chosen) else ():
            if i in self.turns:
                heads, applied = self.turns[i]
                k = j - self.tracks[i].first
                if applied[k]:
                    out[i] = (*(float(v) for v in heads[k]), float(applied[k]))
        return out

    def has_faces(self, j: int) -> bool:
        """Whether frame j shows a face at all (dubbed or not)."""
        return j < len(self.present) and bool(self.present[j])

    def dubbed_seconds(self, source_frames: Sequence[int]) -> dict[int, float]:
        """Per track, how long the output shows it dubbed: `source_frames` are the source frame
        of each output frame (a replayed clip shows some twice)."""
        frames: dict[int, int] = {}
        for j in source_frames:
            for i in self.boxes(j):
                frames[i] = frames.get(i, 0) + 1
        return {i: round(n / float(self.report.fps), 2) for i, n in sorted(frames.items())}

    def untouched_seconds(self, source_frames: Sequence[int]) -> float:
        """Seconds of faces in the output left as they were (counted per face: two faces for a
        second count two)."""
        left = 0
        for j in source_frames:
            if j < len(self.present):
                left += len(self.present[j]) - len(self.chosen[j])
        return round(left / float(self.report.fps), 2)


# ----------------------------------------------------------------------------------------------


def faces_per_frame(tracks: Sequence[Track], frames: int,
                    where: Callable[[Track], np.ndarray] | None = None) -> list[tuple[int, ...]]:
    """Per frame of the clip (`frames` of them), the indices of the tracks in it, in the order of
    `tracks`; with `where`, only where its (T,) bool mask is true."""
    out: list[list[int]] = [[] for _ in range(frames)]
    for t in tracks:
        mask = where(t) if where is not None else None
        for k in range(min(len(t.boxes), frames - t.first)):
            if mask is None or mask[k]:
                out[t.first + k].append(t.index)
    return [tuple(p) for p in out]


def _extended(loudness: np.ndarray, frames: int) -> np.ndarray:
    """The first `frames` of a speech_loudness, silence (-120 dB, as it gives past the samples)
    beyond its end."""
    if len(loudness) >= frames:
        return loudness[:frames]
    return np.concatenate([loudness, np.full(frames - len(loudness), -120.0)])


def trim_to_raw(speaking: np.ndarray, raw: np.ndarray, reach: int, alone: np.ndarray | None = None) -> None:
    """Each speaking run's ends pulled in, by up to `reach` frames, over frames where Light-ASD's
    own score is not above 0: the mean over ASD_SMOOTH frames that decides who speaks spreads a
    loud turn's end (and start) into the voice that follows (or precedes) it. Only the ends whose
    frames beyond are `alone` (bool: no other face speaks there; None: all). In place."""
    n = len(speaking)
    for a, b in synchrony.runs(speaking):
        end = b
        if alone is None or b >= n or alone[b]:
            while end - 1 > a and b - end < reach and not raw[end - 1] > 0:
                end -= 1
        start = a
        if alone is None or a == 0 or alone[a - 1]:
            while start + 1 < end and start - a < reach and not raw[start] > 0:
                start += 1
        speaking[a:start] = False
        speaking[end:b] = False


def clean_runs(mask: np.ndarray, min_run: int, min_pause: int) -> np.ndarray:
    """Pauses shorter than min_pause inside speech bridged, then runs shorter than min_run dropped."""
    out = np.asarray(mask, bool).copy()
    runs = synchrony.runs(out)
    for (_, end), (start, _) in zip(runs, runs[1:]):
        if start - end < min_pause:
            out[end:start] = True
    for start, end in synchrony.runs(out):
        if end - start < min_run:
            out[start:end] = False
    return out


__all__ = ["FacePlan", "SpeakerOptions", "SpeakerReport", "Track", "analysis_size", "clean_runs", "decide",
           "faces_per_frame", "find_speakers", "find_tracks", "has_speech", "load_detector", "place_turns_at_pauses", "same_place_groups", "same_place_runs",
           "combine_scores",
           "trim_to_raw", "turns_in_shot"]
