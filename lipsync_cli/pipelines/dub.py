"""`lipsync dub`: re-sync the mouth of a talking-head video (or a still image) to new speech.

Data flows one way through stages joined by bounded queues, so memory does not grow with the
length of the video:

    decode (ffmpeg) -> the faces to dub in each frame (faces.FacePlan), padded  [thread]
        -> crop (96x96, or the generator's face size), mel windows, generator  [main thread: the costly part]
        -> paste mouths back (faces.BoxPaster), encode (ffmpeg)  [thread]

Before a video's frames stream, a low-resolution pass (faces/speakers.py, in the decode thread)
finds its shots, follows every face within its shot and, with `--speaker auto` and speech to
compare with, who speaks when; the plan then gives each frame's faces to dub under one policy
(auto, largest, all, a track, the n-th face from the left). A frame may hold several faces to
regenerate, or none. A still image and a fixed --box take faces.FaceBoxes instead.

Timing: the output has as many frames as the audio needs (its duration to the nearest frame);
frame i is driven by the 16-step mel window starting at int(80 * i / fps). When the audio is
longer than the video, the video plays on back and forth (ping-pong) or, with loop, from the
start again; decoded frames are replayed from a raw spill file on disk, never held in memory.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
import torch

from .. import audio as audio_mod
from .. import media, outputs
from ..errors import InputError, LipsyncError
from ..faces import PASTE_MODES, BoxPaster, DetectorPool, FaceBoxes, first_blended_row, pad_box
from ..faces.align import head_warp, turned_crop
from ..device import auto_precision, resolve_device
from ..models.inference import GeneratorRunner, batch_size_for, generator_workers
from .enhance import ENHANCE_MODES, ENHANCE_REGIONS, FaceRestorer, restore_precision
from .options import NO_FACE_ACTIONS, PER_CLIP_OPTIONS, DubOptions, parse_speaker
from ..timing import StageClock
from .stages import threaded

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
    face_size: int = 96  # the generator's face, pixels
    isa: str = ""  # the instructions the precision was chosen for: AMX, AVX-512 VNNI, AVX2..., CUDA
    stage_seconds: dict = field(default_factory=dict)
    speaker: str = "largest"  # how the faces were chosen: largest, auto, all, or a track index
    dubbed_tracks: dict = field(default_factory=dict)  # track index -> seconds dubbed (with several faces)
    notes: list = field(default_factory=list)  # what the user should know (a fallback taken)
    enhance: str = "none"  # the restoration stage: none, or gfpgan (precision, region)
    enhanced_faces: int = 0
    shots: int = 1  # shots found in the part of the video shown
    silent_faces_seconds: float = 0.0  # faces left untouched because they did not speak (--speaker auto)

    def as_dict(self) -> dict:
        return {
            "output": self.output, "frames": self.frames, "fps": str(self.fps), "fps_float": float(self.fps),
            "duration": round(self.duration, 4), "frames_without_face": self.frames_without_face,
            "model": self.model, "face_size": self.face_size, "device": self.device, "precision": self.precision,
            "isa": self.isa,
            "seconds": round(self.seconds, 3),
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "speaker": self.speaker, "dubbed_tracks": {str(k): v for k, v in self.dubbed_tracks.items()},
            "notes": list(self.notes), "enhance": self.enhance, "enhanced_faces": self.enhanced_faces,
            "shots": self.shots, "silent_faces_seconds": self.silent_faces_seconds,
        }


def source_index(j: int, n_src: int, loop: bool) -> int:
    """Which source frame output frame j shows when the output outlasts the source: from the
    start again (loop), or back and forth."""
    if j < n_src or n_src == 1:
        return min(j, n_src - 1)
    if loop:
        return j % n_src
    period = 2 * n_src - 2
    k = j % period
    return k if k < n_src else period - k


@dataclass
class _Item:
    index: int  # output frame index
    frame: np.ndarray  # BGR, full resolution
    boxes: tuple[tuple[int, int, int, int], ...]  # the faces to dub, (x1, y1, x2, y2); () when none
    seen: bool = True  # a face is in the frame (dubbed or, not speaking, left as it is)
    # per box: None (cropped upright) or (cx, cy, w, h, roll): cropped along a leaning head (faces.align)
    heads: tuple = ()


def _validate(opts: DubOptions):
    if opts.paste not in PASTE_MODES:
        raise InputError(f"--paste {opts.paste}: choose {' or '.join(PASTE_MODES)}")
    if opts.detect_every < 1:
        raise InputError("--detect-every must be 1 or more")
    if opts.on_no_face not in NO_FACE_ACTIONS:
        raise InputError(f"--on-no-face {opts.on_no_face}: choose {' or '.join(NO_FACE_ACTIONS)}")
    try:
        parse_speaker(opts.speaker)
    except ValueError as exc:
        raise InputError(f"--speaker: {exc}") from None
    if opts.speaker not in ("auto", "largest") and (opts.box is not None or opts.face_index is not None):
        raise InputError(f"--speaker {opts.speaker} chooses the faces itself: give it, or --box / --face-index, not both")
    if opts.enhance not in ENHANCE_MODES:
        raise InputError(f"--enhance {opts.enhance}: choose {' or '.join(ENHANCE_MODES)}")
    if opts.enhance_region not in ENHANCE_REGIONS:
        raise InputError(f"--enhance-region {opts.enhance_region}: choose {' or '.join(ENHANCE_REGIONS)}")


@dataclass
class ClipRequest:
    """One clip to dub. `overrides` replaces per-clip fields of the Dubber's options (the names
    of options.PER_CLIP_OPTIONS); `key` is the caller's tag."""

    video: str
    audio: str
    output: str
    force: bool = False
    overrides: dict = field(default_factory=dict)
    key: object = None


class _Clip:
    """A planned clip: probed, its audio turned into mel, its output reserved. Built in the
    decode thread, so the next clip is planned while the generator works on the current one."""

    def __init__(self, request: ClipRequest, opts: DubOptions):
        self.request, self.opts = request, opts
        self.started = time.perf_counter()
        self.clock = StageClock()
        self.no_face = 0
        self.written = 0
        self.speaker = "largest"
        self.dubbed_tracks: dict = {}
        self.notes: list[str] = []
        self.enhance = "none"
        self.enhanced_faces = 0
        self.shots = 1
        self.silent_faces_seconds = 0.0
        self.failure: BaseException | None = None
        self.cancelled = False  # set when the clip failed downstream: stop decoding it
        self.out: outputs.AtomicFile | None = None
        self.writer: media.FrameWriter | None = None
        self.mel: audio_mod.MelFile | None = None
        video, audio_path = request.video, request.audio

        info = media.probe(video)
        if info.video is None:
            raise InputError(f"{video}: no video stream (not a video or image)")
        if info.video.frame_count == 0:
            raise InputError(f"{video}: the video has no frames")
        self.info = info
        self.still = info.video.is_still
        self.fps = opts.fps if self.still else info.video.fps
        self.still_frame = None
        if self.still:  # OpenCV applies a photo's EXIF orientation; ffmpeg decodes anything else
            use_cv2 = video.lower().endswith(tuple(media.IMAGE_SUFFIXES))
            self.still_frame = media.read_image(video) if use_cv2 else next(iter(media.FrameReader(info, chunk=1)))[0]
            self.height, self.width = self.still_frame.shape[:2]
        else:
            self.height, self.width = info.video.height, info.video.width
        t0 = time.perf_counter()
        self.mel = audio_mod.MelFile(audio_path)  # on disk: an hour's would stay in memory to the end
        self.clock.add("audio", t0)
        self.n_out = audio_mod.output_frame_count(self.mel.duration, self.fps)
        try:
            self.out = outputs.AtomicFile(request.output, force=request.force,
                                          inputs=(video, audio_path, opts.checkpoint, opts.speaker_audio,
                                                  opts.enhance_weights if opts.enhance != "none" else None))
        except BaseException:
            self.close_quietly()
            raise

    def result(self, model: str, device: str, precision: str, isa: str = "", face_size: int = 96) -> DubResult:
        return DubResult(
            output=self.request.output, frames=self.written, fps=self.fps, duration=self.written / float(self.fps),
            frames_without_face=self.no_face, model=model, device=device, precision=precision, isa=isa,
            face_size=face_size,
            seconds=time.perf_counter() - self.started, stage_seconds=self.clock.seconds,
            speaker=self.speaker, dubbed_tracks=self.dubbed_tracks, notes=self.notes,
            enhance=self.enhance, enhanced_faces=self.enhanced_faces, shots=self.shots,
            silent_faces_seconds=self.silent_faces_seconds,
        )

    def close_quietly(self):
        if self.mel is not None:
            self.mel.close()
            self.mel = None
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        if self.out is not None:
            self.out.discard()


# Events flowing from the decode thread through the generator to the writer thread.
_START, _ITEM, _END, _FAIL = "start", "item", "end", "fail"


class Dubber:
    """The dubbing engine: handed the loaded generator, it builds the face detectors once, then
    clips stream through it. Decoding and detection run in one thread, the generator in the calling thread,
    pasting and encoding in another; clip boundaries do not stop the stream, so the next clip is
    decoded while the last one's tail is generated and encoded.

    `model` is the loaded generator (load_model_for(opts), or lipsync_cli.load_model): it brings
    its device, precision and batch size, so those fields of `opts` are not read here. It may
    also be a Future of one (`start_loading(opts)`): the first clip's face analysis, which does
    not need the generator, then runs while it loads, and those fields of `opts` say what it
    will be.

    A clip that fails (bad input, no face with on_no_face=error, an encoder error) is reported to
    `on_result` and leaves no output; the others go on. Ctrl-C and failures of the engine itself
    (a checkpoint that does not load among them) propagate, after every temporary output has been
    removed."""

    def __init__(self, model: GeneratorRunner | Future, opts: DubOptions, restorer: FaceRestorer | None = None):
        _validate(opts)
        self._model, self.opts = model, opts
        loaded = isinstance(model, GeneratorRunner)
        self.device = model.device if loaded else resolve_device(opts.device)
        self.precision = model.precision if loaded else generator_precision(opts, self.device)
        self.batch_size = model.batch_size if loaded else batch_size_for(self.device, opts.batch_size)
        self.paster = BoxPaster(opts.paste)
        self.detectors = DetectorPool(opts.detector, str(self.device), opts.s3fd_weights)
        if restorer is None and opts.enhance != "none":
            restorer = load_restorer(opts, str(self.device))
        self.restorer = restorer  # `--enhance`: a stage of its own between the generator and the encoder
        self._speaker_nets: dict = {}  # Light-ASD by weights, loaded when a clip first needs one
        self._open: set[_Clip] = set()  # clips holding a temporary output, removed on an interruption
        self._open_lock = threading.Lock()

    @property
    def runner(self) -> GeneratorRunner:
        """The generator, once loaded (waits for a load in progress; raises its error)."""
        if isinstance(self._model, Future):
            self._model = self._model.result()
        return self._model

    # -- the decode + detect thread ---------------------------------------------------------

    def _events(self, requests: Iterable[ClipRequest]):
        for request in requests:
            # A clip's own failure (bad file, unreadable audio, a detector error) is that clip's
            # alone: it is reported and the stream goes on with the next one.
            try:
                unknown = set(request.overrides) - {o.name for o in PER_CLIP_OPTIONS}
                if unknown:
                    raise InputError(f"options that cannot change per clip: {', '.join(sorted(unknown))}")
                clip_opts = replace(self.opts, **{k: v for k, v in request.overrides.items() if v is not None})
                _validate(clip_opts)
                clip = _Clip(request, clip_opts)
            except Exception as exc:
                yield (_FAIL, request, _as_clip_error(exc))
                continue
            with self._open_lock:
                self._open.add(clip)
            yield (_START, clip, None)
            try:
                for item in self._clip_items(clip):
                    yield (_ITEM, clip, item)
                    if clip.cancelled:
                        break
            except Exception as exc:
                clip.failure = clip.failure or _as_clip_error(exc)
            yield (_END, clip, None)

    def _face_plan(self, clip: _Clip):
        """The faces to dub in each frame of a video (faces/speakers.py: shots, every face tracked
        within its shot, the choice by `--speaker` / `--face-index`), or None for a still image and
        a fixed --box (FaceBoxes). Records the choice, the shots and any fallback in the clip."""
        from ..faces.speakers import FacePlan, SpeakerOptions, find_speakers, load_detector

        opts = clip.opts
        if clip.still or opts.box is not None:
            return None
        mode = "largest" if opts.face_index is not None else opts.speaker
        own = clip.request.video if clip.info.audio is not None else None
        speech = str(opts.speaker_audio) if opts.speaker_audio else own
        scored = mode == "auto" and speech is not None
        if mode == "auto" and speech is None:
            clip.notes.append("the video has no speech of its own to find who speaks in (--speaker-audio gives it): "
                              "dubbed the largest face in every shot")
        t = time.perf_counter()
        try:
            device = str(self.device)
            sopts = SpeakerOptions(weights=opts.speaker_weights, detector=opts.detector, detect_size=opts.detect_size,
                                   detect_every=opts.detect_every, device=device, s3fd_weights=opts.s3fd_weights,
                                   precision="fp32" if self.precision == "fp32" else "auto",
                                   align=opts.align and opts.paste != "hard")
            if scored and opts.speaker_weights not in self._speaker_nets:
                self._speaker_nets[opts.speaker_weights] = load_detector(opts.speaker_weights, device, sopts.precision)
            # the frames the output shows (the whole clip when it replays, else as long as the audio);
            # a track index is read on the whole clip, so it means what `speakers` lists
            replays = clip.n_out > clip.info.video.frame_count
            shown = clip.n_out / float(clip.fps) if not replays and mode in ("auto", "largest", "all") else None
            report = find_speakers(clip.request.video, speech, sopts, score=scored, seconds=shown,
                                   detectors=self.detectors, net=self._speaker_nets.get(opts.speaker_weights))
        finally:
            clip.clock.add("faces", t)
        if mode not in ("auto", "largest", "all") and int(mode) >= len(report.tracks):
            n = len(report.tracks)
            listed = f"0 to {n - 1}" if n > 1 else ("only 0" if n == 1 else "none")
            raise InputError(f"--speaker {mode}: the clip has {n} face track{'s' if n != 1 else ''} "
                             f"({listed}; `lipsync speakers {clip.request.video}` lists them)")
        plan = FacePlan(report, mode, face_index=opts.face_index, smooth=opts.smooth)
        if scored and not report.speech:
            clip.notes.append("the video's own sound holds no speech: dubbed the largest face in every shot")
        elif plan.by_speech and report.tracks and not any(report.dubbed):
            clip.notes.append("nobody on screen speaks in the video's own sound (a narrator, a voice off screen): "
                              "no face dubbed; --speaker largest dubs the largest face anyway")
        clip.speaker = mode if opts.face_index is None else f"face {opts.face_index} from the left"
        clip.shots = len(report.shots)
        n_src = clip.info.video.frame_count
        shown_frames = [source_index(j, n_src, opts.loop) for j in range(clip.n_out)]
        clip.dubbed_tracks = plan.dubbed_seconds(shown_frames)
        if plan.by_speech:
            clip.silent_faces_seconds = plan.untouched_seconds(shown_frames)
        return plan

    def _clip_items(self, clip: _Clip) -> Iterator[_Item]:
        """Output frames of one clip in order with their face boxes."""
        opts, n_out = clip.opts, clip.n_out
        plan = self._face_plan(clip)
        faces = FaceBoxes(self.detectors, clip.width, clip.height, box=opts.box, pads=opts.pads,
                          face_index=opts.face_index, detect_size=opts.detect_size, detect_every=opts.detect_every,
                          smooth=opts.smooth) if plan is None else None
        spill = None
        boxes: list = []  # per source frame (the boxes to dub, whether a face is there), for the replay passes only
        n_src, found = 0, None
        j = 0

        def framed(pairs):
            """(frame, box) from FaceBoxes -> (frame, (the boxes to dub, a face there))."""
            for frame, box in pairs:
                yield frame, ((), False) if box is None else ((box,), True)

        def planned(chunk, first):
            for k, frame in enumerate(chunk):
                chosen = plan.boxes(first + k)
                turned = plan.turned(first + k)
                yield frame, (tuple(pad_box(b, opts.pads, clip.width, clip.height) for b in chosen.values()),
                              plan.has_faces(first + k), tuple(turned.get(i) for i in chosen))

        try:
            if clip.still:
                [(frame, found)] = list(framed(faces.push(clip.still_frame[None]) + faces.flush()))
                for j in range(n_out):
                    yield _Item(j, frame, *found)
                return
            if n_out > clip.info.video.frame_count:
                spill = media.FrameSpill(clip.width, clip.height)
            reader = media.FrameReader(clip.info, chunk=self.batch_size)
            decoded = 0
            for chunk in clip.clock.timed(reader, "decode"):
                if spill is not None:
                    spill.append(chunk)
                pairs = framed(faces.push(chunk)) if plan is None else planned(chunk, decoded)
                decoded += len(chunk)
                for frame, found in pairs:
                    n_src += 1
                    if spill is not None:
                        boxes.append(found)
                    if j < n_out:
                        yield _Item(j, frame, *found)
                    j += 1
                if (j >= n_out and spill is None) or clip.cancelled:
                    break
            if clip.cancelled:
                return
            for frame, found in (framed(faces.flush()) if plan is None else ()):
                n_src += 1
                if spill is not None:
                    boxes.append(found)
                if j < n_out:
                    yield _Item(j, frame, *found)
                j += 1
            if n_src == 0:
                raise InputError(f"{clip.request.video}: no frame could be decoded")
            while j < n_out:
                if spill is not None:  # replay from the spill file
                    s = source_index(j, n_src, opts.loop)
                    yield _Item(j, spill.read(s), *boxes[s])
                else:  # the decoder gave a frame or two fewer than probed: hold the last one
                    yield _Item(j, frame, *found)
                j += 1
        finally:
            if faces is not None and faces.seconds:
                clip.clock.record("detect", faces.seconds)
            if spill is not None:
                spill.close()

    # -- the generator (calling thread) -------------------------------------------------------

    def _generated(self, requests: Iterable[ClipRequest]):
        """The event stream with items grouped into generator batches and their faces attached."""
        batch = self.batch_size
        pending: list[_Item] = []

        def run(clip: _Clip, items: list[_Item]):
            faces_in = [(it, box, it.heads[k] if it.heads else None) for it in items for k, box in enumerate(it.boxes)]
            if not faces_in:
                return items, None
            t = time.perf_counter()
            size = self.runner.face_size
            crops = np.stack([cv2.resize(it.frame[y1:y2, x1:x2], (size, size)) if head is None
                              else turned_crop(it.frame, head_warp(head[:4], head[4], self.opts.pads, size), size)
                              for it, (x1, y1, x2, y2), head in faces_in])
            windows = clip.mel.windows(clip.fps, [it.index for it, _, _ in faces_in])
            clip.clock.add("prepare", t)
            t = time.perf_counter()
            faces = self.runner(windows, crops, round_output=self.opts.paste != "hard",
                                first_row=first_blended_row(self.opts.paste, size))
            clip.clock.add("generator", t)
            return items, faces

        # On a CPU, one batch per core, each on one thread: at the layers' barriers a generator
        # spread over all cores waits for whichever core the decoder or the encoder took; whole
        # batches side by side do not wait for each other. On a GPU, one batch at a time.
        # (with --enhance on a CPU, GFPGAN is the costly part: it keeps every core's thread)
        workers = 1 if self.restorer is not None and self.device.type == "cpu" else generator_workers(self.device)
        pool = ThreadPoolExecutor(workers, thread_name_prefix="generator") if workers > 1 else None
        ahead: collections.deque = collections.deque()  # events in order; batches as futures

        def submit(clip, items):
            if pool is None:
                return run(clip, items)
            return pool.submit(run, clip, items)

        def ready(drain: bool = False):
            """Hand on the events at the head; wait for a batch only when `workers` are in flight."""
            while ahead:
                head = ahead[0][2]
                if (isinstance(head, Future) and not head.done() and not drain
                        and sum(isinstance(e, Future) for _, _, e in ahead) <= workers):
                    return
                kind, clip, entry = ahead.popleft()
                yield kind, clip, entry.result() if isinstance(entry, Future) else entry

        threads_before = torch.get_num_threads()
        if pool is not None:
            torch.set_num_threads(1)
        try:
            for kind, clip, item in threaded(lambda: self._events(requests), maxsize=2 * batch, name="decode+detect"):
                self.runner  # the decode thread is at work: wait for a generator still loading (or its error) here
                if kind == _ITEM:
                    if clip.cancelled:
                        continue
                    if not item.seen:
                        clip.no_face += 1
                        if clip.opts.on_no_face == "error":
                            clip.failure = InputError(f"{clip.request.video}: no face found in frame {item.index} "
                                                      f"(t={item.index / float(clip.fps):.2f}s)")
                            clip.cancelled = True
                            pending = []
                            continue
                    pending.append(item)
                    if len(pending) >= batch:
                        ahead.append(("group", clip, submit(clip, pending)))
                        pending = []
                        yield from ready()
                    continue
                if kind == _END and pending and not clip.cancelled:
                    ahead.append(("group", clip, submit(clip, pending)))
                if kind == _END:
                    pending = []
                ahead.append((kind, clip, item))
                yield from ready()
            yield from ready(drain=True)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                torch.set_num_threads(threads_before)

    # -- paste + encode (writer thread) -----------------------------------------------------

    def _pasted(self, items: list[_Item], faces) -> list[np.ndarray]:
        """Each item's frame with its generated faces pasted in (several: each into the last's result)."""
        out, k = [], 0
        for it in items:
            frame = it.frame
            for n, box in enumerate(it.boxes):
                head = it.heads[n] if it.heads else None
                if head is None:
                    frame = self.paster(frame, box, faces[k])
                else:  # back along the head, through the crop's inverse warp
                    size = faces[k].shape[0]
                    frame = self.paster.turned(frame, head_warp(head[:4], head[4], self.opts.pads, size), faces[k])
                k += 1
            out.append(frame)
        return out

    def run(self, requests: Iterable[ClipRequest],
            on_result: Callable[[ClipRequest, DubResult | None, BaseException | None], None],
            progress: Callable[[ClipRequest, int, int], None] | None = None,
            before_commit: Callable[[ClipRequest, str], None] | None = None) -> None:
        """Dub every request in order. `on_result(request, result, error)` is called once per
        request, from one thread, after its output was committed (or discarded). `before_commit
        (request, temporary_path)` runs just before the rename (a job log records the checksum)."""
        q: queue.Queue = queue.Queue(maxsize=2)
        fatal: list[BaseException] = []
        abandoned = threading.Event()  # interrupted: what is still queued is neither written nor committed

        def finish(clip: _Clip):
            if clip.failure is None:
                try:
                    t = time.perf_counter()
                    clip.writer.close()
                    clip.writer = None
                    clip.clock.add("encode-finish", t)
                    if before_commit:
                        before_commit(clip.request, str(clip.out.tmp))
                    clip.out.commit()
                except LipsyncError as exc:
                    clip.failure = exc
            clip.close_quietly()
            with self._open_lock:
                self._open.discard(clip)
            if clip.failure is not None:
                on_result(clip.request, None, clip.failure)
            else:
                runner = self.runner
                on_result(clip.request, clip.result(runner.name, str(runner.device), runner.precision, runner.isa,
                                                    runner.face_size), None)

        def work():
            while True:
                event = q.get()
                if event is None:
                    return
                if fatal or abandoned.is_set():  # keep draining so the producer never blocks on a dead consumer
                    continue
                kind, clip, payload = event
                try:
                    if kind == _FAIL:
                        on_result(clip, None, payload)
                    elif kind == _START:
                        clip.writer = media.FrameWriter(str(clip.out.tmp), clip.width, clip.height, clip.fps,
                                                        clip.request.audio, crf=clip.opts.crf, preset=clip.opts.preset)
                    elif kind in ("group", "enhanced"):
                        if clip.failure is not None:
                            continue
                        items, faces = payload
                        t = time.perf_counter()
                        frames = faces if kind == "enhanced" else self._pasted(items, faces)
                        for frame in frames:
                            clip.writer.write(frame)
                        clip.written += len(items)
                        clip.clock.add("paste+encode", t)
                        if progress:
                            progress(clip.request, clip.written, clip.n_out)
                    elif kind == _END:
                        finish(clip)
                except LipsyncError as exc:  # this clip's encoder failed: the clip fails alone
                    clip.failure = clip.failure or exc
                    clip.cancelled = True
                except BaseException as exc:
                    fatal.append(exc)

        def enhance():
            """Paste and restore each batch's faces, then hand the frames to the encoder."""
            while True:
                event = q_in.get()
                if event is None:
                    q.put(None)
                    return
                if fatal or abandoned.is_set():
                    continue
                kind, clip, payload = event
                try:
                    if kind == "group" and clip.failure is None:
                        t = time.perf_counter()
                        items, faces = payload
                        pasted = self._pasted(items, faces)
                        k = [i for i, it in enumerate(items) if it.boxes]
                        better = self.restorer.enhance([(items[i].frame, pasted[i], items[i].boxes) for i in k])
                        for i, frame in zip(k, better):
                            pasted[i] = frame
                        clip.enhanced_faces += sum(len(items[i].boxes) for i in k)
                        clip.enhance = self.restorer.describe()
                        clip.clock.add("enhance", t)
                        event = ("enhanced", clip, (items, pasted))
                    q.put(event)
                except BaseException as exc:
                    fatal.append(exc)

        thread = threading.Thread(target=work, name="paste+encode", daemon=True)
        thread.start()
        q_in = q
        stage = None
        if self.restorer is not None:
            q_in = queue.Queue(maxsize=2)
            stage = threading.Thread(target=enhance, name="enhance", daemon=True)
            stage.start()
        events = self._generated(requests)
        try:
            for event in events:
                if fatal:
                    break
                q_in.put(event)
        except BaseException:
            abandoned.set()
            raise
        finally:
            events.close()  # stops the decode thread first: no clip opens an output after this
            q_in.put(None)
            if stage is not None:
                stage.join()
            thread.join()
            with self._open_lock:
                leftovers, self._open = list(self._open), set()
            for clip in leftovers:  # interrupted mid-clip: nothing half-written stays
                clip.close_quietly()
        if fatal:
            raise fatal[0]


def load_restorer(opts: DubOptions, device: str) -> FaceRestorer:
    """The face-restoration stage `opts.enhance` names, its network on `device` (fp16 on CUDA)."""
    from .. import weights
    from ..faces import make_detector
    from ..models.gfpgan import load_gfpgan

    path = weights.resolve_checkpoint(opts.enhance_weights, default="gfpgan_v1.4", flag="--enhance-weights")
    model = load_gfpgan(path)
    precision = restore_precision(device, opts.precision)
    # RetinaFace finds the landmarks that align each face (around its box: a small image)
    detector = make_detector("retinaface", device, max_side=160)
    return FaceRestorer(model, device, precision, region=opts.enhance_region, detector=detector)


def _as_clip_error(exc: Exception) -> LipsyncError:
    """A clip's failure as a one-line error (unexpected ones keep their type in the message)."""
    if isinstance(exc, LipsyncError):
        return exc
    error = LipsyncError(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def generator_precision(opts: DubOptions, device: torch.device) -> str:
    """The precision the generator runs in under `opts` on `device`. With --paste hard,
    --precision auto stays fp32: that mode reproduces the reference computation."""
    precision = "fp32" if (opts.paste == "hard" and opts.precision == "auto") else opts.precision
    return auto_precision(device) if precision == "auto" else precision


def load_model_for(opts: DubOptions) -> GeneratorRunner:
    """The generator `opts` names, loaded on its device in its precision (generator_precision)."""
    from ..models.inference import load_model

    _validate(opts)
    return load_model(opts.checkpoint, opts.device, generator_precision(opts, resolve_device(opts.device)), opts.model,
                      opts.batch_size)


def start_loading(opts: DubOptions) -> Future:
    """load_model_for(opts) in a thread of its own: a Future that Dubber and `dub` take in place of
    the generator, so that reading the checkpoint (half a second for the published one, with its
    int8 weights on a CPU) overlaps the first clip's face analysis. The options are checked here."""
    _validate(opts)
    future: Future = Future()

    def load():
        try:
            future.set_result(load_model_for(opts))
        except BaseException as exc:  # handed to whoever waits for the generator
            future.set_exception(exc)

    threading.Thread(target=load, name="load generator", daemon=True).start()
    return future


def dub(model: GeneratorRunner | Future, video: str, audio_path: str, output: str, opts: DubOptions, force: bool = False,
        progress: Callable[[int, int], None] | None = None) -> DubResult:
    """Dub `video` (or a still image) with `audio_path` into `output` with the loaded `model` (or a
    Future of it: start_loading). See the module docstring."""
    started = time.perf_counter()
    outcome: list = []
    checkpoint = model.checkpoint if isinstance(model, GeneratorRunner) else opts.checkpoint
    outputs.refuse_inputs(output, (video, audio_path, checkpoint))  # before any work
    request = ClipRequest(video, audio_path, output, force=force)
    Dubber(model, opts).run([request], lambda req, result, error: outcome.append((result, error)),
                            progress=(lambda req, done, total: progress(done, total)) if progress else None)
    result, error = outcome[0]
    if error is not None:
        raise error
    result.seconds = time.perf_counter() - started
    return result
