"""Who speaks when, in a video with several faces: `lipsync speakers`, and the plan that
`dub --speaker` follows.

The analysis runs on its own 25 fps timeline (Light-ASD's rate; other rates are resampled by
ffmpeg) over frames decoded at most ANALYSIS_SIDE pixels on their longer side, and streams:

1. faces: detection on every `detect_every`-th frame, every face followed by
   faces.MultiFaceTracker, each track's boxes filled in between its detections; a track shorter
   than MIN_TRACK_FRAMES is taken for a false detection and dropped. Only the boxes are kept,
   in full-frame pixels (four numbers per frame and face).
2. scores: the frames decoded a second time (at low resolution that costs less than holding
   them); each track's Light-ASD crops are cut as its frames go by and scored block by block.
   A block is BLOCK_SECONDS long or the nearest multiple of every window length, so the scores equal those
   of the whole track at once while memory stays flat in the clip's length. The same crops give
   each face's lower-face motion and mouth opening, which faces.synchrony compares with the
   speech's loudness.
3. decisions: the cues combined per frame (faces.synchrony.combine: above 0, speaking);
   speaking runs shorter than MIN_RUN_SECONDS dropped and pauses shorter than MIN_PAUSE_SECONDS
   bridged; then the faces to dub in each frame: the speaking ones, and between turns the last
   speaker until the next one starts (before the first turn, the first speaker). Light-ASD gives
   one verdict per window (its scores barely change inside one), so a change from one face to
   another shows up at a window's edge, up to a window (plus the 9-frame mean) after the new
   speaker began: each such change moves to the end of the nearest pause of the speech (at least
   TURN_PAUSE_SECONDS unvoiced) from a window before it to TURN_AHEAD_SECONDS after it, where the
   new speaker's speech starts (from its first faint frames, 40 dB below the speech's loud
   level); with no pause there it stays. On the interview composites of
   benchmarks/speakers.md this is what puts a switch within a few frames of the new voice.

Why two low-resolution passes rather than a look-ahead buffer of frames: Light-ASD's crops follow
a median filter of the track's boxes over 13 frames, and a track is known to have ended only
max_lost frames after its last detection, so a look-ahead would hold about a second of frames
per face; a second decode at 640 pixels costs a few hundredths of a second per second of video.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Sequence

import numpy as np

from .. import media
from ..errors import InputError
from ..faces import MultiFaceTracker, smooth_boxes
from ..faces import synchrony
from ..faces.detectors import DetectorPool
from ..models import light_asd
from .stages import StageClock

FPS = light_asd.FPS  # the analysis timeline
ANALYSIS_SIDE = 640  # longer side of the frames the analysis decodes
MIN_TRACK_FRAMES = 10  # shorter tracks are false detections (the reference's minimum too)
MAX_LOST_FRAMES = 25  # a face unseen for longer ends its track
BLOCK_SECONDS = 10  # Light-ASD scores a track in blocks of about this length (a multiple of every window)
MIN_RUN_SECONDS = 0.2  # shorter speaking runs are noise
MIN_PAUSE_SECONDS = 0.3  # shorter pauses inside a face's speech do not end its turn
TURN_PAUSE_SECONDS = 0.2  # a change of speaker moves to the end of a pause at least this long ...
TURN_AHEAD_SECONDS = 0.3  # ... from a Light-ASD window before the change to this after it
DEFAULT_WINDOWS = (1.0,)  # Light-ASD window lengths (seconds) averaged; see benchmarks/speakers.md


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


@dataclass
class Track:
    """One face followed through the clip, on the analysis timeline."""

    index: int  # as `lipsync speakers` lists it: by first frame, then left to right
    first: int  # analysis frame of its first box
    boxes: np.ndarray  # (T, 4) float32 (x1, y1, x2, y2) full-frame pixels, frames first .. first + T - 1
    asd: np.ndarray | None = None  # (T,) Light-ASD's score
    sync: np.ndarray | None = None  # (T,) the synchrony cue over a 3 s window
    evidence: np.ndarray | None = None  # (T,) per-frame synchrony evidence (faces.synchrony.evidence)
    score: np.ndarray | None = None  # (T,) the combined score: above 0, speaking
    speaking: np.ndarray | None = None  # (T,) bool, after the run and pause rules

    @property
    def last(self) -> int:
        return self.first + len(self.boxes) - 1

    def __contains__(self, frame: int) -> bool:
        return self.first <= frame <= self.last

    @property
    def start(self) -> float:
        return self.first / FPS

    @property
    def end(self) -> float:
        return (self.last + 1) / FPS

    @property
    def speaking_seconds(self) -> float:
        return float(self.speaking.sum()) / FPS if self.speaking is not None else 0.0

    def box(self) -> tuple[float, float, float, float]:
        """The median box over the track."""
        return tuple(float(v) for v in np.median(self.boxes, axis=0))  # type: ignore[return-value]

    def segments(self) -> list[tuple[float, float]]:
        """Speaking segments, (start, end) seconds on the clip's timeline."""
        if self.speaking is None:
            return []
        return [((self.first + a) / FPS, (self.first + b) / FPS) for a, b in synchrony.runs(self.speaking)]


@dataclass
class SpeakerReport:
    video: str
    audio: str | None  # None: no speech to compare with (tracks only)
    weights: str
    frames: int  # analysis frames
    width: int
    height: int
    tracks: list[Track]
    dubbed: list[tuple[int, ...]]  # per analysis frame: the tracks `--speaker auto` dubs
    seconds: float = 0.0
    stage_seconds: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.frames / FPS

    def as_dict(self) -> dict:
        def number(v):
            return None if v is None or not math.isfinite(v) else round(float(v), 3)

        tracks = []
        for t in self.tracks:
            timeline = [None] * self.frames
            if t.score is not None:
                timeline[t.first:t.last + 1] = [number(v) for v in t.score]
            tracks.append({
                "index": t.index, "first_frame": t.first, "last_frame": t.last,
                "start": round(t.start, 3), "end": round(t.end, 3),
                "box": [round(v, 1) for v in t.box()],
                "mean_score": number(np.mean(t.score)) if t.score is not None else None,
                "speaking_seconds": round(t.speaking_seconds, 3),
                "segments": [[round(a, 3), round(b, 3)] for a, b in t.segments()],
                "scores": timeline,
            })
        return {"video": self.video, "audio": self.audio, "fps": float(FPS), "frames": self.frames,
                "duration": round(self.duration, 3), "weights": self.weights, "tracks": tracks,
                "dubbed": [list(d) for d in self.dubbed], "seconds": round(self.seconds, 3),
                "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()}}


# ----------------------------------------------------------------------------------------------
# The analysis


def analysis_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the analysis frames: longer side at most ANALYSIS_SIDE, even numbers."""
    scale = min(1.0, ANALYSIS_SIDE / max(width, height))
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def find_tracks(info: media.MediaInfo, detectors: Callable[[int], object], opts: SpeakerOptions,
                clock: StageClock | None = None, limit: int | None = None) -> tuple[list[Track], int, tuple[int, int]]:
    """Every face of the clip followed on the analysis timeline: (tracks, analysis frame count,
    analysis frame size), over the first `limit` analysis frames (None: all). Boxes are in
    full-frame pixels."""
    size = analysis_size(info.video.width, info.video.height)
    scale = info.video.width / size[0], info.video.height / size[1]
    every = max(1, opts.detect_every)
    tracker = MultiFaceTracker(max_lost=max(1, MAX_LOST_FRAMES // every))
    detector = detectors(opts.detect_size)
    seen: dict[int, dict[int, tuple]] = {}  # track id -> analysis frame -> box, sampled frames only
    n = 0
    reader = media.FrameReader(info, chunk=32, fps=Fraction(FPS), size=size)
    last_frame = None
    for chunk in reader:
        if limit is not None and n + len(chunk) > limit:
            chunk = chunk[:max(0, limit - n)]
            if not len(chunk):
                break
        picks = [k for k in range(len(chunk)) if (n + k) % every == 0]
        t = time.perf_counter()
        for k, found in zip(picks, tracker.tracks(detector.detect([chunk[k] for k in picks]))):
            for tid, box in found.items():
                seen.setdefault(tid, {})[n + k] = box
        if clock:
            clock.add("detect", t)
        n += len(chunk)
        last_frame = chunk[-1]
    if n == 0:
        raise InputError(f"{info.path}: no frame could be decoded")
    if (n - 1) % every:  # the last frame is always looked at, so tracks reach the end
        for tid, box in tracker.step(detector.detect([last_frame])[0]).items():
            seen.setdefault(tid, {})[n - 1] = box
    tracks = []
    for tid, samples in seen.items():
        frames = sorted(samples)
        if frames[-1] - frames[0] + 1 < MIN_TRACK_FRAMES:
            continue
        boxes = np.array([samples[f] for f in frames], np.float64)
        span = np.arange(frames[0], frames[-1] + 1)
        filled = np.stack([np.interp(span, frames, boxes[:, c]) for c in range(4)], axis=1)
        filled *= np.array([scale[0], scale[1], scale[0], scale[1]])
        tracks.append(Track(index=-1, first=frames[0], boxes=filled.astype(np.float32)))
    tracks.sort(key=lambda t: (t.first, t.box()[0] + t.box()[2]))
    for i, t in enumerate(tracks):
        t.index = i
    return tracks, n, size


def score_tracks(info: media.MediaInfo, tracks: Sequence[Track], samples_16k: np.ndarray, frames: int,
                 size: tuple[int, int], net: light_asd.LightASD, windows: Sequence[float],
                 clock: StageClock | None = None, precision: str = "fp32") -> np.ndarray:
    """Light-ASD's score and the synchrony cues of every track (sets .asd, .sync and .evidence), from a second
    decode of the analysis frames; crops are held for one block per track at most. Returns the
    speech's (frames,) loudness (synchrony.speech_envelope)."""
    if not tracks:
        return synchrony.speech_envelope(samples_16k, frames, fps=FPS)
    import torch

    from ..device import autocast

    device = next(net.parameters()).device
    # On a CPU the visual encoder, nine tenths of the work, runs in ONNX Runtime when it can (fp32
    # three times faster than PyTorch; the shipped weights' int8 copy twice as fast again, scores
    # within 0.14 of fp32 on the talk clips); else bf16 where the CPU has AMX: 1.5 times faster
    # than fp32, scores within 0.04 of fp32 (the same sign)
    dtype = None if net.visual_in_onnx(device) else {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    t0 = time.perf_counter()
    mfcc = light_asd.mfcc_for(samples_16k, frames=frames)
    envelope = synchrony.speech_envelope(samples_16k, frames, fps=FPS)
    if clock:
        clock.add("audio features", t0)
    scale = size[0] / info.video.width, size[1] / info.video.height
    lengths = [max(1, int(round(d * FPS))) for d in windows]
    block = math.lcm(*lengths) * max(1, round(BLOCK_SECONDS * FPS / math.lcm(*lengths)))
    geometry = {t.index: light_asd.crop_geometry(t.boxes * np.array([scale[0], scale[1], scale[0], scale[1]]))
                for t in tracks}
    pending: dict[int, list[np.ndarray]] = {t.index: [] for t in tracks}
    done: dict[int, int] = {t.index: 0 for t in tracks}  # frames of the track scored so far
    asd: dict[int, list[np.ndarray]] = {t.index: [] for t in tracks}
    motion: dict[int, list[np.ndarray]] = {t.index: [] for t in tracks}
    darkness: dict[int, list[np.ndarray]] = {t.index: [] for t in tracks}
    previous: dict[int, np.ndarray | None] = {t.index: None for t in tracks}

    def score(t: Track, final: bool = False):
        while len(pending[t.index]) >= block or (final and pending[t.index]):
            score_block(t, pending[t.index][:block])  # exactly one block: windows start at its edges
            del pending[t.index][:block]

    def score_block(t: Track, crops: list[np.ndarray]):
        stack = np.stack(crops)
        t1 = time.perf_counter()
        first = 4 * (t.first + done[t.index])
        with autocast(device, dtype):
            asd[t.index].append(light_asd.speaking_scores(net, stack, mfcc[first:first + 4 * len(stack)], windows))
        if clock:
            clock.add("light-asd", t1)
        t1 = time.perf_counter()
        lead = previous[t.index]
        moved = synchrony.lower_face_motion(stack if lead is None else np.concatenate([lead[None], stack]))
        motion[t.index].append(moved if lead is None else moved[1:])
        darkness[t.index].append(synchrony.mouth_darkness(stack))
        previous[t.index] = stack[-1]
        done[t.index] += len(stack)
        if clock:
            clock.add("synchrony", t1)

    n = 0
    reader = media.FrameReader(info, chunk=32, fps=Fraction(FPS), size=size)
    for chunk in reader:
        chunk = chunk[:max(0, frames - n)]
        if not len(chunk):
            break
        t1 = time.perf_counter()
        for k, frame in enumerate(chunk):
            a = n + k
            for t in tracks:
                if a in t:
                    cx, cy, half = geometry[t.index][a - t.first]
                    pending[t.index].append(light_asd.crop_face(frame, cx, cy, half))
        if clock:
            clock.add("crops", t1)
        for t in tracks:
            score(t)
        n += len(chunk)
    for t in tracks:
        score(t, final=True)
        got = sum(len(s) for s in asd[t.index])
        t.asd = np.concatenate(asd[t.index]) if got else np.zeros(0, np.float32)
        t.boxes = t.boxes[:got]  # the second decode may give a frame or two fewer: the track ends there
        t1 = time.perf_counter()
        moved = np.concatenate(motion[t.index]) if got else np.zeros(0, np.float32)
        dark = np.concatenate(darkness[t.index]) if got else np.zeros(0, np.float32)
        loudness = envelope[t.first:t.first + len(t.asd)]
        t.sync = synchrony.synchrony(moved, loudness)
        t.evidence = synchrony.evidence(moved, dark, loudness)
        if clock:
            clock.add("synchrony", t1)
    return envelope


def decide(tracks: Sequence[Track], frames: int, envelope: np.ndarray | None = None,
           window: int = FPS) -> list[tuple[int, ...]]:
    """Combine the cues (sets .score and .speaking) and choose the tracks to dub per frame;
    the speech's `envelope` (frames,) places the changes of speaker at its pauses, up to `window`
    (the longest Light-ASD window, frames) plus the score's mean filter before them."""
    live = [t for t in tracks if t.asd is not None and len(t.asd)]
    asd, sync, evidence = {}, {}, {}
    for t in live:
        asd[t.index] = _on_timeline(t, t.asd, frames)
        sync[t.index] = _on_timeline(t, t.sync, frames)
        evidence[t.index] = _on_timeline(t, t.evidence, frames)
    combined = synchrony.combine(asd, sync, evidence) if live else {}
    min_run, min_pause = int(round(MIN_RUN_SECONDS * FPS)), int(round(MIN_PAUSE_SECONDS * FPS))
    for t in live:
        t.score = combined[t.index][t.first:t.last + 1].astype(np.float32)
        t.speaking = clean_runs(np.nan_to_num(t.score, nan=-1.0) > 0, min_run, min_pause)
    speaking_at = [tuple(t.index for t in live if a in t and t.speaking[a - t.first]) for a in range(frames)]
    present = [tuple(t.index for t in tracks if a in t) for a in range(frames)]
    dubbed = keep_last_speaker(speaking_at, present)
    if envelope is None:
        return dubbed
    return place_turns_at_pauses(dubbed, present, synchrony.voiced_frames(envelope),
                                 reach_back=window + synchrony.ASD_SMOOTH // 2 + 1,
                                 reach_ahead=int(round(TURN_AHEAD_SECONDS * FPS)),
                                 min_pause=int(round(TURN_PAUSE_SECONDS * FPS)),
                                 faint=synchrony.louder_than(envelope, synchrony.ONSET_BELOW_PEAK_DB))


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


def keep_last_speaker(speaking: Sequence[tuple[int, ...]], present: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Per frame, the tracks to dub: those speaking; in a frame where nobody speaks, the last
    speakers (those still in the frame); before the first speech, the first speakers."""
    out: list[tuple[int, ...]] = []
    last: tuple[int, ...] = next((s for s in speaking if s), ())
    for now, here in zip(speaking, present):
        if now:
            last = now
        out.append(now or tuple(i for i in last if i in here))
    return out


def find_speakers(video: str, audio: str | None, opts: SpeakerOptions, *, score: bool = True,
                  seconds: float | None = None, net: light_asd.LightASD | None = None,
                  detectors: Callable[[int], object] | None = None) -> SpeakerReport:
    """Who speaks when in `video`, against the speech of `audio` (None: the video's own track),
    over its first `seconds` (None: all of it; a dub shorter than its video uses no more).
    `score` False: the face tracks only (no speech needed; nobody marked speaking). Raises
    InputError for a still image or a video without frames, and when there is no speech to
    compare with."""
    from .. import audio as audio_mod

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
    limit = None if seconds is None else max(1, int(math.ceil(seconds * FPS)))
    tracks, frames, size = find_tracks(info, detectors, opts, clock, limit)
    dubbed: list[tuple[int, ...]] = [()] * frames
    if score:
        t0 = time.perf_counter()
        samples = audio_mod.load_audio(speech).samples
        clock.add("audio", t0)
        if net is None:
            net = load_detector(opts.weights, opts.device, opts.precision)
        envelope = score_tracks(info, tracks, samples, frames, size, net, opts.windows, clock, _precision(opts))
        dubbed = decide(tracks, frames, envelope, window=max(int(round(d * FPS)) for d in opts.windows))
    return SpeakerReport(video=video, audio=speech if score else None, weights=opts.weights, frames=frames,
                         width=info.video.width, height=info.video.height, tracks=tracks, dubbed=dubbed,
                         seconds=time.perf_counter() - started, stage_seconds=clock.seconds)


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
# The plan that dub follows


@dataclass
class SpeakerPlan:
    """Which faces `dub` regenerates in each frame of the source video, and where they are.

    `boxes(j)` gives, for source frame j at the source's rate, {track index: box}: the faces to
    dub in that frame, boxes smoothed over time as dub smooths its single face."""

    report: SpeakerReport
    mode: str  # auto, all, or a track index as text
    source_fps: Fraction
    smooth: bool = True
    smoothed: dict[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        from ..faces import SMOOTH_WINDOW

        for t in self.report.tracks:
            boxes = smooth_boxes([tuple(b) for b in t.boxes], SMOOTH_WINDOW if self.smooth else 1)
            self.smoothed[t.index] = np.array(boxes, np.float32)
        by_index = {t.index: t for t in self.report.tracks}
        frames = self.report.frames
        if self.mode == "auto":
            self.chosen = self.report.dubbed
        elif self.mode == "all":
            self.chosen = [tuple(t.index for t in self.report.tracks if a in t) for a in range(frames)]
        else:
            track = by_index[int(self.mode)]
            self.chosen = [(track.index,) if a in track else () for a in range(frames)]
        self.tracks = by_index

    def analysis_frame(self, j: int) -> int:
        return min(self.report.frames - 1, int(round(j * FPS / float(self.source_fps))))

    def boxes(self, j: int) -> dict[int, tuple[float, float, float, float]]:
        a = self.analysis_frame(j)
        return {i: tuple(float(v) for v in self.smoothed[i][a - self.tracks[i].first]) for i in self.chosen[a]
                if a - self.tracks[i].first < len(self.smoothed[i])}

    def dubbed_seconds(self, source_frames: Sequence[int]) -> dict[int, float]:
        """Per track, how long the output shows it dubbed: `source_frames` are the source frame
        of each output frame (a replayed clip shows some twice)."""
        frames: dict[int, int] = {}
        for j in source_frames:
            for i in self.chosen[self.analysis_frame(j)]:
                frames[i] = frames.get(i, 0) + 1
        return {i: round(n / float(self.source_fps), 2) for i, n in sorted(frames.items())}


def count_faces(info: media.MediaInfo, detectors: Callable[[int], object], detect_size: int,
                samples: int = 16) -> int:
    """The most faces seen at once on the clip's keyframes (at most `samples` of them, spread
    over the clip, decoded at low resolution): a glance that tells a one-face clip from one with
    several for the price of a few frames (a whole-clip decode cost 10 times more)."""
    size = analysis_size(info.video.width, info.video.height)
    # Keep every stride-th keyframe, doubling the stride whenever 2 * samples are held: memory stays
    # bounded when every frame is a keyframe (MJPEG, ProRes, DNxHD), and the kept ones spread evenly.
    frames: list[np.ndarray] = []
    stride, seen = 1, 0
    for chunk in media.FrameReader(info, chunk=8, size=size, keyframes=True):
        for f in chunk:
            if seen % stride == 0:
                frames.append(f.copy())
                if len(frames) >= 2 * samples:
                    frames, stride = frames[::2], stride * 2
            seen += 1
    if len(frames) > samples:
        frames = [frames[round(k * (len(frames) - 1) / (samples - 1))] for k in range(samples)]
    if not frames:
        return 0
    return max(len(d) for d in detectors(detect_size).detect(frames))


# ----------------------------------------------------------------------------------------------


def _on_timeline(t: Track, values: np.ndarray, frames: int) -> np.ndarray:
    out = np.full(frames, np.nan, np.float32)
    out[t.first:t.first + len(values)] = values
    return out


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


# ----------------------------------------------------------------------------------------------
# The preview

SPEAKING_BGR = (80, 220, 60)  # green: speaking
SILENT_BGR = (60, 60, 230)  # red: in the frame, not speaking
DUBBED_THICKNESS, OTHER_THICKNESS = 4, 2  # the box `--speaker auto` would dub is drawn thicker


def write_preview(report: SpeakerReport, output: str, force: bool = False, crf: int = 23) -> int:
    """The video with every track's box drawn, green while it speaks and red while it does not,
    thicker for the face `dub --speaker auto` would dub, labelled with the track index and
    score; with the speech the analysis compared against. Written atomically; returns frames."""
    import cv2

    from .. import outputs

    info = media.probe(report.video)
    fps = info.video.fps
    out = outputs.AtomicFile(output, force=force, inputs=(report.video, report.audio))
    writer = media.FrameWriter(str(out.tmp), info.video.width, info.video.height, fps, report.audio,
                               crf=crf, preset="veryfast")
    line = max(1, round(max(info.video.width, info.video.height) / 640))
    written = 0
    try:
        for chunk in media.FrameReader(info, chunk=16):
            for frame in chunk:
                a = min(report.frames - 1, int(round(written * FPS / float(fps))))
                frame = frame.copy()
                for t in report.tracks:
                    if a not in t:
                        continue
                    k = a - t.first
                    speaking = t.speaking is not None and bool(t.speaking[k])
                    colour = SPEAKING_BGR if speaking else SILENT_BGR
                    thick = (DUBBED_THICKNESS if t.index in report.dubbed[a] else OTHER_THICKNESS) * line
                    x1, y1, x2, y2 = (int(round(v)) for v in t.boxes[k])
                    cv2.rectangle(frame, (x1, y1), (x2, y2), colour, thick)
                    label = f"#{t.index}" + (f" {t.score[k]:+.1f}" if t.score is not None and np.isfinite(t.score[k]) else "")
                    cv2.putText(frame, label, (x1, max(12 * line, y1 - 6 * line)), cv2.FONT_HERSHEY_SIMPLEX,
                                0.6 * line, colour, max(1, line), cv2.LINE_AA)
                writer.write(frame)
                written += 1
        writer.close()
        writer = None
        out.commit()
    finally:
        if writer is not None:
            writer.abort()
        out.discard()
    return written
