"""`lipsync dub`: re-sync the mouth of a talking-head video (or a still image) to new speech.

Data flows one way through stages joined by bounded queues, so memory does not grow with the
length of the video:

    decode (ffmpeg) -> detect + track + smooth  [thread]
        -> crop 96x96, mel windows, generator   [main thread: the costly part]
        -> paste mouths back, encode (ffmpeg)   [thread]

Timing: the output has as many frames as the audio needs (its duration to the nearest frame);
frame i is driven by the 16-step mel window starting at int(80 * i / fps). When the audio is
longer than the video, the video plays on back and forth (ping-pong) or, with loop, from the
start again; decoded frames are replayed from a raw spill file on disk, never held in memory.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterator

import cv2
import numpy as np

from .. import audio as audio_mod
from .. import media
from ..detect import DEFAULT_PADS, BoxSmoother, FaceTracker, make_detector, pad_box
from ..errors import InputError
from ..models.inference import FACE_SIZE, GeneratorRunner
from .stages import threaded

PASTE_MODES = ("feather", "hard")
REPLAY_MODES = ("pingpong", "loop")


@dataclass
class DubOptions:
    checkpoint: str
    model: str | None = None  # override the architecture read from the checkpoint
    detector: str = "retinaface"  # or "s3fd"
    box: tuple[int, int, int, int] | None = None  # fixed (y1, y2, x1, x2): skip detection
    pads: tuple[int, int, int, int] = DEFAULT_PADS  # (top, bottom, left, right)
    face_index: int | None = None  # None: largest face
    detect_max_side: int = 320
    detect_every: int = 2  # detect on every n-th frame, interpolate the boxes between
    s3fd_weights: str | None = None
    smooth: bool = True
    on_no_face: str = "skip"  # or "error"
    paste: str = "feather"
    replay: str = "pingpong"
    still_fps: Fraction = Fraction(25)
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None
    crf: int = 18
    preset: str = "veryfast"


@dataclass
class DubResult:
    output: str
    frames: int
    fps: Fraction
    duration: float
    frames_without_face: int
    model: str
    device: str
    seconds: float
    precision: str = "fp32"
    stage_seconds: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "output": self.output, "frames": self.frames, "fps": str(self.fps), "fps_float": float(self.fps),
            "duration": round(self.duration, 4), "frames_without_face": self.frames_without_face,
            "model": self.model, "device": self.device, "precision": self.precision, "seconds": round(self.seconds, 3),
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
        }


def source_index(j: int, n_src: int, replay: str) -> int:
    """Which source frame output frame j shows when the output outlasts the source."""
    if j < n_src or n_src == 1:
        return min(j, n_src - 1)
    if replay == "loop":
        return j % n_src
    period = 2 * n_src - 2
    k = j % period
    return k if k < n_src else period - k


@dataclass
class _Item:
    index: int  # output frame index
    frame: np.ndarray  # BGR, full resolution
    box: tuple[int, int, int, int] | None  # (y1, y2, x1, x2) or None when no face


class _Clock:
    """Wall time spent per stage (threads overlap, so the sum can exceed the total)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, t0: float):
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


def _validate(opts: DubOptions):
    if opts.paste not in PASTE_MODES:
        raise InputError(f"--paste {opts.paste}: choose {' or '.join(PASTE_MODES)}")
    if opts.replay not in REPLAY_MODES:
        raise InputError(f"unknown replay mode {opts.replay}")
    if opts.detect_every < 1:
        raise InputError("--detect-every must be 1 or more")
    if opts.on_no_face not in ("skip", "error"):
        raise InputError(f"--on-no-face {opts.on_no_face}: choose skip or error")


def _fixed_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    y1, y2, x1, x2 = (int(v) for v in box)
    y1, x1 = max(0, y1), max(0, x1)
    y2, x2 = min(height, y2), min(width, x2)
    if y2 - y1 < 2 or x2 - x1 < 2:
        raise InputError(f"--box {' '.join(map(str, box))}: empty inside a {width}x{height} frame")
    return y1, y2, x1, x2


class _BoxFinder:
    """Per-frame face boxes for a stream of frame chunks: detection, tracking, smoothing, padding.

    Smoothing looks ahead, so boxes come out a few frames after their frames went in; frames wait
    in a small deque meanwhile."""

    def __init__(self, opts: DubOptions, width: int, height: int, clock: _Clock, device: str):
        self.opts, self.width, self.height, self.clock = opts, width, height, clock
        self.detector = None if opts.box else make_detector(
            opts.detector, device, max_side=opts.detect_max_side, s3fd_weights=opts.s3fd_weights
        )
        self.device = device
        self.fallback = None
        self.tracker = FaceTracker(opts.face_index)
        self.smoother = BoxSmoother() if opts.smooth else BoxSmoother(1)
        self.waiting: deque[np.ndarray] = deque()

    def _finish(self, boxes) -> list[tuple[np.ndarray, tuple | None]]:
        out = []
        for b in boxes:
            frame = self.waiting.popleft()
            out.append((frame, None if b is None else pad_box(b, self.opts.pads, self.width, self.height)))
        return out

    def push(self, frames: np.ndarray) -> list[tuple[np.ndarray, tuple | None]]:
        if self.opts.box is not None:
            box = _fixed_box(self.opts.box, self.width, self.height)
            return [(f, box) for f in frames]
        t0 = time.perf_counter()
        n = len(frames)
        # Detect on every `detect_every`-th frame and on the chunk's last one; the frames between
        # take boxes interpolated between their detected neighbours.
        sampled = list(range(0, n, self.opts.detect_every))
        if sampled[-1] != n - 1:
            sampled.append(n - 1)
        dets = self.detector.detect([frames[k] for k in sampled])
        missed = [i for i, d in enumerate(dets) if not d]
        if missed and self.opts.detect_max_side and max(self.width, self.height) > self.opts.detect_max_side:
            # A small face can vanish in the downscaled frame: look again at twice the size.
            if self.fallback is None:
                self.fallback = make_detector(self.opts.detector, self.device, max_side=2 * self.opts.detect_max_side,
                                              s3fd_weights=self.opts.s3fd_weights)
            for i, d in zip(missed, self.fallback.detect([frames[sampled[i]] for i in missed])):
                dets[i] = d
        tracked = self.tracker.update(dets)
        raw = [None] * n
        for (a, box_a), (b, box_b) in zip(zip(sampled, tracked), zip(sampled[1:], tracked[1:])):
            raw[a] = box_a
            if box_a is not None and box_b is not None:
                for k in range(a + 1, b):
                    w = (k - a) / (b - a)
                    raw[k] = tuple((1 - w) * u + w * v for u, v in zip(box_a, box_b))
        raw[sampled[-1]] = tracked[-1]
        self.waiting.extend(frames)
        out = self._finish(self.smoother.push(raw))
        self.clock.add("detect", t0)
        return out

    def flush(self) -> list[tuple[np.ndarray, tuple | None]]:
        if self.opts.box is not None:
            return []
        return self._finish(self.smoother.flush())


def _feather_mask(h: int, w: int) -> np.ndarray:
    """Blend weights for the generated face inside its box: the lower face (where the mouth is
    regenerated) fully, fading out towards the eyes and the box edges so no seam shows."""
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]

    def ramp(v, a, b):
        t = np.clip((v - a) / (b - a), 0.0, 1.0)
        return t * t * (3 - 2 * t)

    vertical = ramp(y, 0.40, 0.58) * (1.0 - ramp(y, 0.94, 1.0))
    horizontal = ramp(x, 0.0, 0.12) * (1.0 - ramp(x, 0.88, 1.0))
    return np.ascontiguousarray(vertical * horizontal)


class _Paster:
    def __init__(self, mode: str):
        self.mode = mode
        self._masks: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, frame: np.ndarray, box, face: np.ndarray) -> np.ndarray:
        y1, y2, x1, x2 = box
        patch = cv2.resize(face, (x2 - x1, y2 - y1))  # bilinear, as the reference
        out = frame.copy()
        if self.mode == "hard":
            out[y1:y2, x1:x2] = patch
            return out
        key = (y2 - y1, x2 - x1)
        if key not in self._masks:
            m = _feather_mask(*key)
            self._masks[key] = (m, 1.0 - m)
        m, inv = self._masks[key]
        out[y1:y2, x1:x2] = cv2.blendLinear(patch, out[y1:y2, x1:x2], m, inv)
        return out


def dub(video: str, audio_path: str, output: str, opts: DubOptions, force: bool = False,
        progress: Callable[[int, int], None] | None = None) -> DubResult:
    """Dub `video` (or a still image) with `audio_path` into `output`. See the module docstring."""
    from ..checkpoints import load_generator

    _validate(opts)
    started = time.perf_counter()
    clock = _Clock()

    info = media.probe(video)
    if info.video is None:
        raise InputError(f"{video}: no video stream (not a video or image)")
    still = info.video.is_still
    if info.video.frame_count == 0:
        raise InputError(f"{video}: the video has no frames")
    fps = opts.still_fps if still else info.video.fps
    still_frame = None
    if still:  # OpenCV applies a photo's EXIF orientation; ffmpeg decodes anything else
        use_cv2 = video.lower().endswith(tuple(media.IMAGE_SUFFIXES))
        still_frame = media.read_image(video) if use_cv2 else next(iter(media.FrameReader(info, chunk=1)))[0]
    height, width = still_frame.shape[:2] if still else (info.video.height, info.video.width)

    def prepare_audio():
        t0 = time.perf_counter()
        sound = audio_mod.load_audio(audio_path)
        mel = audio_mod.melspectrogram(sound.samples)
        clock.add("audio", t0)
        return sound, mel

    # The audio front end and the model load overlap: each spends about a second at start-up.
    with ThreadPoolExecutor(1, thread_name_prefix="audio") as pool:
        audio_job = pool.submit(prepare_audio)
        t0 = time.perf_counter()
        net, model_name = load_generator(opts.checkpoint, opts.model)
        # The reference mode reproduces the reference computation, so it stays in fp32 unless told.
        precision = "fp32" if (opts.paste == "hard" and opts.precision == "auto") else opts.precision
        runner = GeneratorRunner(net, opts.device, precision, opts.batch_size, take_ownership=True)
        del net
        finder = _BoxFinder(opts, width, height, clock, runner.device.type)
        clock.add("load", t0)
        sound, mel = audio_job.result()
    n_out = audio_mod.output_frame_count(sound.duration, fps)
    paster = _Paster(opts.paste)
    batch = runner.batch_size

    n_src_est = 1 if still else info.video.frame_count
    need_replay = not still and n_out > n_src_est
    stats = {"no_face": 0}

    def source_items() -> Iterator[_Item]:
        """Output frames in order with their boxes; runs in its own thread."""
        if still:
            placed = finder.push(still_frame[None]) + finder.flush()
            frame, box = placed[0]
            for j in range(n_out):
                yield _Item(j, frame, box)
            return

        spill = media.FrameSpill(width, height) if need_replay else None
        boxes: list = []  # per source frame; tiny, kept for the replay passes
        j = 0
        try:
            reader = media.FrameReader(info, chunk=batch)
            for chunk in _timed(reader, clock, "decode"):
                if spill is not None:
                    spill.append(chunk)
                for frame, box in finder.push(chunk):
                    boxes.append(box)
                    if j < n_out:
                        yield _Item(j, frame, box)
                    j += 1
                if j >= n_out and spill is None:
                    break
            for frame, box in finder.flush():
                boxes.append(box)
                if j < n_out:
                    yield _Item(j, frame, box)
                j += 1
            n_src = len(boxes)
            if n_src == 0:
                raise InputError(f"{video}: no frame could be decoded")
            while j < n_out:
                if spill is not None:  # replay from the spill file
                    s = source_index(j, n_src, opts.replay)
                    yield _Item(j, spill.read(s), boxes[s])
                else:  # the decoder gave a frame or two fewer than probed: hold the last one
                    yield _Item(j, frame, boxes[-1])
                j += 1
        finally:
            if spill is not None:
                spill.close()

    def generated() -> Iterator[tuple[list[_Item], np.ndarray | None]]:
        """Groups of items with their generated faces; the generator runs here (main thread)."""
        pending: list[_Item] = []

        def run(items: list[_Item]):
            with_face = [it for it in items if it.box is not None]
            if not with_face:
                return items, None
            t = time.perf_counter()
            crops = np.stack([cv2.resize(it.frame[y1:y2, x1:x2], (FACE_SIZE, FACE_SIZE))
                              for it in with_face for (y1, y2, x1, x2) in [it.box]])
            windows = audio_mod.mel_windows(mel, fps, [it.index for it in with_face])
            clock.add("prepare", t)
            t = time.perf_counter()
            faces = runner(windows, crops, round_output=opts.paste != "hard")
            clock.add("generator", t)
            return items, faces

        for item in threaded(source_items, maxsize=2 * batch, name="decode+detect"):
            if item.box is None:
                stats["no_face"] += 1
                if opts.on_no_face == "error":
                    raise InputError(f"{video}: no face found in frame {item.index} (t={item.index / float(fps):.2f}s)")
            pending.append(item)
            if len(pending) >= batch:
                yield run(pending)
                pending = []
        if pending:
            yield run(pending)

    with media.atomic_output(output, force=force) as tmp:
        writer = media.FrameWriter(tmp, width, height, fps, audio_path, crf=opts.crf, preset=opts.preset)
        try:
            written = 0
            for written in _write_behind(generated(), writer, paster, clock, progress, n_out):
                pass
            t = time.perf_counter()
            writer.close()
            clock.add("encode-finish", t)
        except BaseException:
            writer.abort()
            raise

    return DubResult(
        output=output, frames=written, fps=fps, duration=written / float(fps), frames_without_face=stats["no_face"],
        model=model_name, device=str(runner.device), precision=runner.precision, seconds=time.perf_counter() - started,
        stage_seconds=clock.seconds,
    )


def _timed(iterable, clock: _Clock, stage: str):
    it = iter(iterable)
    try:
        while True:
            t = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            clock.add(stage, t)
            yield item
    finally:
        close = getattr(it, "close", None)
        if close:
            close()


def _write_behind(groups, writer: media.FrameWriter, paster: _Paster, clock: _Clock, progress, total: int):
    """Paste and encode in a thread while the generator works on the next batch; yields the
    running count of frames written."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=2)
    errors: list[BaseException] = []
    done_count = [0]

    def work():
        while True:
            group = q.get()
            if group is None:
                return
            if errors:  # keep draining so the producer never blocks on a dead consumer
                continue
            try:
                items, faces = group
                t = time.perf_counter()
                k = 0
                for it in items:
                    if it.box is not None and faces is not None:
                        frame = paster(it.frame, it.box, faces[k])
                        k += 1
                    else:
                        frame = it.frame
                    writer.write(frame)
                done_count[0] += len(items)
                clock.add("paste+encode", t)
                if progress:
                    progress(done_count[0], total)
            except BaseException as exc:
                errors.append(exc)

    thread = threading.Thread(target=work, name="paste+encode", daemon=True)
    thread.start()
    try:
        for group in groups:
            if errors:
                break
            q.put(group)
            yield done_count[0]
    finally:
        q.put(None)
        thread.join()
    if errors:
        raise errors[0]
    yield done_count[0]
