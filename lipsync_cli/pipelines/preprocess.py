"""`lipsync preprocess`: raw talking videos -> the training layout (datasets.py reads it).

For every video under SRC: the faces found by dub's own face pipeline (faces/speakers.py: shots,
every face tracked within its shot, boxes smoothed; every frame detected), the largest face of
each frame, and the pauses of its speech (Silero VAD); the video is cut into clips of one face, 1
to 6 s long (pipelines/clips.py: at shot boundaries, around frames without a face or where
another face takes over, at pauses of the speech). Frames are decoded as a stream and resampled
to 25 fps, each clip frame's face box cropped and resized to SIZE x SIZE (a leaning head along
its tilt, as dub crops it, unless --no-align), and each clip's speech written as 16 kHz mono
audio.wav. With a sync model (our lip-sync expert or syncnet_v2), clips whose mouth and sound
are more than max_offset frames apart are left out, their offset in the report.

Output: DATA/<speaker>/<video>/<clip>/{0..n-1}.jpg + audio.wav, DATA/<speaker>/<video>/clips.json
(each clip's time span in its source video, its sync, what was left out and why),
DATA/filelists/{train,val}.txt, and DATA/preprocess_report.jsonl (a line per video: done or
skipped and why, its clips; then a line saying how the split was made). The speaker is the
video's parent folder. Each video is written into a temporary folder and renamed when complete,
so a rerun keeps finished videos and redoes interrupted ones.

The split (`split_clips`): LRS2's layout (SRC/main/<speaker>/<clip>.mp4 with SRC/train.txt,
val.txt, test.txt listing `<speaker>/<clip>`) is read as it is: its lists become ours. Otherwise,
with several speakers, by speaker, deterministically (a hash of the name), --val of them going to
val; with one speaker (a flat folder included), by time: the end of its footage, videos in name
order, about --val of its seconds. Either way at least one clip goes to val (and one to train)
when there are two or more: the training loops evaluate on val.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .. import audio as audio_mod
from .. import media, outputs
from ..errors import InputError, LipsyncError
from ..faces import DEFAULT_PADS, DetectorPool, pad_box
from ..faces.align import turned_crop_area
from ..faces.speakers import FacePlan, SpeakerOptions, find_speakers
from . import clips as cutting

CLIPS_FILE = "clips.json"  # in each video's folder: its clips and what was left out
RATE = float(media.FPS)  # the training layout's frame rate
SAMPLES_PER_FRAME = audio_mod.SAMPLE_RATE // int(media.FPS)  # 640


@dataclass
class PreprocessOptions:
    size: int = 96
    detector: str = "retinaface"
    detect_size: int = 320
    pads: tuple[int, int, int, int] = DEFAULT_PADS
    s3fd_weights: str | None = None
    device: str = "cpu"
    val_share: float = 0.1
    jpeg_quality: int = 95
    align: bool = True  # crop a leaning head along its tilt, as dub does (faces.align)
    sync_model: str | None = None  # a lip-sync expert or syncnet_v2 checkpoint: leave out clips out of sync
    max_offset: int = cutting.MAX_OFFSET


def find_videos(src: Path) -> list[tuple[str, Path]]:
    """(video key `<speaker>/<video>`, path) for every video under src, sorted; LRS2's main/ is its root."""
    root = src / "main" if (src / "main").is_dir() else src
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in media.VIDEO_SUFFIXES and not path.name.startswith("."):
            rel = path.relative_to(root).with_suffix("")
            speaker = rel.parent.as_posix() if rel.parent != Path(".") else "_"
            out.append((f"{speaker}/{rel.name}", path))
    return out


# ----------------------------------------------------------------------------------------------
# The split


def lrs2_split(src: Path) -> dict[str, str] | None:
    """LRS2's own lists, when SRC has them: video key -> split (test counts as val here)."""
    lists = {s: src / f"{s}.txt" for s in ("train", "val", "test")}
    if not lists["train"].exists():
        return None
    split = {}
    for name, path in lists.items():
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    split[line.split()[0]] = "train" if name == "train" else "val"
    return split


def _speaker_hash(speaker: str) -> float:
    return int(hashlib.sha256(speaker.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def speaker_of(key: str) -> str:
    """The speaker of a video key `<speaker>/<video>` (or of a clip key below it: `.../<clip>`)."""
    return key.rsplit("/", 1)[0]


def speaker_split(key: str, val_share: float) -> str:
    return "val" if _speaker_hash(speaker_of(key)) < val_share else "train"


@dataclass(frozen=True)
class ClipSpan:
    """One clip as the split sees it: its key, its video's key and its time span there (seconds)."""

    key: str
    video: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Split:
    rule: str  # "lrs2 lists", "speaker" or "time"
    why: str  # in words, for the report and the summary
    of_clip: dict[str, str]  # clip key -> "train" | "val"
    gap: float | None = None  # time split: seconds between the last train clip and the first val clip (same video)


def split_clips(clips: list[ClipSpan], val_share: float, lists: dict[str, str] | None = None) -> Split:
    """Which clips go to train and which to val (see the module docstring)."""
    if lists is not None:
        speakers = {speaker_of(c.video) for c in clips if c.video not in lists}
        of = {c.key: lists.get(c.video) or speaker_split(c.video, val_share) for c in clips}
        why = "by LRS2's lists (test counts as val)" + (", videos not listed by speaker" if speakers else "")
        return Split("lrs2 lists", why, of)
    speakers = sorted({speaker_of(c.video) for c in clips})
    if len(speakers) >= 2:
        return _by_speaker(clips, speakers, val_share)
    return _by_time(clips, val_share)


def _by_speaker(clips: list[ClipSpan], speakers: list[str], val_share: float) -> Split:
    val = {s for s in speakers if _speaker_hash(s) < val_share}
    if not val:  # too few speakers for the share to pick one: the one the hash ranks first
        val = {min(speakers, key=_speaker_hash)}
    if val == set(speakers):  # and one stays to train on
        val.discard(max(speakers, key=_speaker_hash))
    why = f"by speaker: {len(val)} of {len(speakers)} speakers to val"
    return Split("speaker", why, {c.key: "val" if speaker_of(c.video) in val else "train" for c in clips})


def _by_time(clips: list[ClipSpan], val_share: float) -> Split:
    ordered = sorted(clips, key=lambda c: (c.video, c.start))
    n = len(ordered)
    if n < 2:
        why = "by time (one speaker): " + ("one clip, none to hold out" if n else "no clips")
        return Split("time", why, {c.key: "train" for c in ordered})
    total = sum(c.seconds for c in ordered)
    # the last k clips, k from 1 to n - 1, whose seconds come closest to the share
    tail, best = 0.0, None
    for k in range(1, n):
        tail += ordered[n - k].seconds
        if best is None or abs(tail - val_share * total) < best[0]:
            best = (abs(tail - val_share * total), k)
    k = best[1]
    of = {c.key: "val" if i >= n - k else "train" for i, c in enumerate(ordered)}
    last_train, first_val = ordered[n - k - 1], ordered[n - k]
    gap = first_val.start - last_train.end if last_train.video == first_val.video else None
    where = f"{gap:.2f} s after the last train clip" if gap is not None else "in videos of their own"
    why = f"by time (one speaker): the end of the footage to val, {where}"
    return Split("time", why, of, gap)


# ----------------------------------------------------------------------------------------------
# One video


class NoClips(InputError):
    """A video that gave no clip; `record` says what was left out and why."""

    def __init__(self, message: str, record: dict):
        super().__init__(message)
        self.record = record


class _SyncCheck:
    """The sync model's offset of each clip: our lip-sync expert on the clip's crops and mel, or
    syncnet_v2 on the published pipeline's 224x224 crops and MFCC (eval/lse.py)."""

    def __init__(self, path: str, device: str, max_offset: int):
        from ..eval import lse

        self.lse, self.device, self.max_offset = lse, device, max_offset
        self.kind, net = lse.load_sync_model(path)
        self.net = net.to(device)
        self.v2 = self.kind == "syncnet_v2_evaluation"

    def measure(self, crops: list[np.ndarray], crops224: list[np.ndarray], samples: np.ndarray, name: str) -> dict:
        if self.v2:
            r = self.lse.syncnet_v2_sync_of_crops(self.net, np.stack(crops224), samples, name, device=self.device)
        else:
            r = self.lse.expert_sync_of_crops(self.net, np.stack(crops), audio_mod.melspectrogram(samples), name,
                                              device=self.device)
        return {"offset": r.offset, "confidence": round(r.lse_c, 3), "distance": round(r.lse_d, 3)}


def _process_video(path: Path, key: str, dest: Path, opts: PreprocessOptions, detectors: DetectorPool,
                   sync: _SyncCheck | None) -> dict:
    """Cut one video into clips written into dest (a temporary folder); returns its clips.json record."""
    info = media.probe(path)
    if info.video is None or info.video.frame_count == 0:
        raise InputError("no video frames")
    if info.audio is None:
        raise InputError("no audio track")
    sound = audio_mod.load_audio(str(path)).samples
    # the one face pipeline of dub (shots, every face tracked within its shot), the largest face
    # of each frame, detected on every frame; its boxes are on the clip's own timeline
    report = find_speakers(str(path), None, SpeakerOptions(detector=opts.detector, detect_size=opts.detect_size,
                                                           detect_every=1, device=opts.device,
                                                           s3fd_weights=opts.s3fd_weights, align=opts.align),
                           score=False, detectors=detectors)
    if report.frames == 0:
        raise InputError("no video frames")
    plan = FacePlan(report, "largest")
    scale = float(info.video.fps) / RATE  # clip frames per 25 fps frame
    frames = max(1, int(round(report.frames / scale)))  # 25 fps frames, as the decoder's fps filter gives them
    source = [min(report.frames - 1, int(round(n * scale))) for n in range(frames)]
    track = np.array([plan.chosen[j][0] if plan.chosen[j] else -1 for j in source])
    detected = np.zeros((frames, 4))  # the followed face's box as detected (not smoothed): its jumps
    for n, (t, j) in enumerate(zip(track, source)):
        if t >= 0:
            detected[n] = plan.tracks[t].boxes[j - plan.tracks[t].first]
    track = cutting.split_at_jumps(track, detected)
    voiced = cutting.voiced_frames(audio_mod.speech_spans(sound), frames)
    cut = cutting.cut_clips(track, voiced, len(sound) // SAMPLES_PER_FRAME)

    digits = max(3, len(str(len(cut.clips) - 1)))
    names = [f"{i:0{digits}d}" for i in range(len(cut.clips))]
    params = [cv2.IMWRITE_JPEG_QUALITY, opts.jpeg_quality]
    kept: list[dict] = []
    k, n = 0, 0  # the clip being written, the frame
    crops: list[np.ndarray] = []  # the clip's crops so far (what the expert measures)
    crops224: list[np.ndarray] = []  # with syncnet_v2: the published pipeline's crops
    geometry = None
    offsets: dict[int, dict] = {}  # first frame -> the sync of a clip left out of sync

    def finish():
        """Clip k's frames are written: its sound, its sync, or its folder removed."""
        first, end = cut.clips[k]
        written = len(crops)
        folder = dest / names[k]
        if written < int(cutting.MIN_CLIP_SECONDS * media.FPS):  # the video had fewer frames than probed
            shutil.rmtree(folder, ignore_errors=True)
            cut.leave_out(cutting.TOO_SHORT, first, end, listed=True)
            return
        tail = min(len(sound), (first + written + cutting.TAIL_FRAMES) * SAMPLES_PER_FRAME)
        samples = sound[first * SAMPLES_PER_FRAME:tail]
        record = {"clip": f"{key}/{names[k]}", "start": round(first / RATE, 3),
                  "end": round((first + written) / RATE, 3), "frames": written}
        if sync is not None:
            record["sync"] = sync.measure(crops, crops224, samples, record["clip"])
            if abs(record["sync"]["offset"]) > sync.max_offset:
                shutil.rmtree(folder, ignore_errors=True)
                cut.leave_out(cutting.OUT_OF_SYNC, first, first + written, listed=True)
                offsets[first] = record["sync"]
                return
        audio_mod.write_wav(folder / "audio.wav", samples)
        kept.append(record)

    reader = media.FrameReader(info, chunk=32, fps=media.FPS)
    try:
        for chunk in reader:
            for frame in chunk:
                while k < len(cut.clips) and n >= cut.clips[k][1]:
                    finish()
                    k, crops, crops224 = k + 1, [], []
                if k >= len(cut.clips):
                    break
                first = cut.clips[k][0]
                if n >= first:
                    if n == first:
                        (dest / names[k]).mkdir()
                        if sync is not None and sync.v2:  # the published pipeline's smoothed boxes, over the clip
                            boxes = [next(iter(plan.boxes(source[m]).values())) for m in range(first, cut.clips[k][1])]
                            geometry = sync.lse.crop_geometry(boxes)
                    crops.append(_crop(frame, plan, source[n], opts, info.video.width, info.video.height))
                    ok, data = cv2.imencode(".jpg", crops[-1], params)
                    (dest / names[k] / f"{n - first}.jpg").write_bytes(data.tobytes())
                    if geometry is not None:
                        crops224.append(sync.lse.crop_224(frame, *geometry[n - first]))
                n += 1
            if k >= len(cut.clips):
                break  # the rest of the video holds no clip
    finally:
        reader.close()
    while k < len(cut.clips):  # the decoder gave fewer frames than the probe counted
        if (dest / names[k]).is_dir():
            finish()
        else:
            cut.leave_out(cutting.TOO_SHORT, *cut.clips[k], listed=True)
        k, crops, crops224 = k + 1, [], []

    seconds = {reason: round(v / RATE, 2) for reason, v in sorted(cut.left_out.items())}
    spans = [{"start": round(a / RATE, 3), "end": round(b / RATE, 3), "reason": reason,
              **({"sync": offsets[a]} if reason == cutting.OUT_OF_SYNC else {})} for a, b, reason in sorted(cut.skipped)]
    record = {"video": key, "source": os.path.abspath(path), "duration": round(frames / RATE, 3),
              "clips": kept, "left_out_seconds": seconds, "left_out": spans,
              **({"sync_model": {"kind": sync.kind, "max_offset": sync.max_offset}} if sync else {})}
    if not kept:
        why = ", ".join(f"{r} {s:g} s" for r, s in seconds.items()) or "nothing"
        raise NoClips(f"no usable clip (left out: {why})", record)
    return record


def _crop(frame: np.ndarray, plan: FacePlan, j: int, opts: PreprocessOptions, width: int, height: int) -> np.ndarray:
    """The training crop of the face followed in source frame j."""
    (t, box), = plan.boxes(j).items()
    turned = plan.turned(j).get(t)
    if turned is not None:  # a leaning head, cropped along its tilt as dub crops it
        return turned_crop_area(frame, turned[:4], turned[4], opts.pads, opts.size)
    x1, y1, x2, y2 = pad_box(box, opts.pads, width, height)
    return cv2.resize(frame[y1:y2, x1:x2], (opts.size, opts.size), interpolation=cv2.INTER_AREA)


def _finished_clips(folder: Path, key: str) -> list[ClipSpan]:
    """The clips of a finished video folder, from its clips.json (a folder an earlier version wrote,
    the crops directly in it, is one clip)."""
    meta = folder / CLIPS_FILE
    if meta.exists():
        return [ClipSpan(c["clip"], key, c["start"], c["end"]) for c in json.loads(meta.read_text())["clips"]]
    frames = sum(1 for _ in folder.glob("*.jpg"))
    return [ClipSpan(key, key, 0.0, frames / RATE)] if frames else []


# ----------------------------------------------------------------------------------------------


def preprocess(src: str | os.PathLike, data: str | os.PathLike, opts: PreprocessOptions,
               progress: Callable[[int, int, str], None] | None = None) -> dict:
    src, data = Path(src), Path(data)
    if not src.is_dir():
        raise InputError(f"{src}: not a folder of videos")
    outputs.refuse_overlap(data, src, "the data folder", "the source folder")
    videos = find_videos(src)
    if not videos:
        raise InputError(f"{src}: no videos found")
    sync = None
    if opts.sync_model:
        from ..weights import resolve_checkpoint

        sync = _SyncCheck(resolve_checkpoint(opts.sync_model, flag="--sync-filter"), opts.device, opts.max_offset)
    data.mkdir(parents=True, exist_ok=True)
    report_path = data / "preprocess_report.jsonl"
    lists = lrs2_split(src)
    detectors = DetectorPool(opts.detector, opts.device, opts.s3fd_weights)
    counts = {"done": 0, "skipped": 0, "kept": 0}
    for i, (key, path) in enumerate(videos, 1):
        final = data / key
        if final.is_dir():  # finished in an earlier run
            counts["kept"] += 1
            if progress:
                progress(i, len(videos), key)
            continue
        for leftover in outputs.leftover_partials(final):  # of an interrupted or killed earlier run
            shutil.rmtree(leftover, ignore_errors=True)
        started = time.perf_counter()
        try:
            with outputs.atomic_folder(final) as tmp:  # removed on any failure, Ctrl-C or SIGTERM included
                record = _process_video(path, key, tmp, opts, detectors, sync)
                (tmp / CLIPS_FILE).write_text(json.dumps(record, indent=1))
            record = {"video": key, "state": "done", **record, "seconds": round(time.perf_counter() - started, 3)}
            counts["done"] += 1
        except (LipsyncError, OSError) as exc:
            details = exc.record if isinstance(exc, NoClips) else {"source": os.path.abspath(path)}
            record = {"video": key, "state": "skipped", "reason": str(exc), **details}
            counts["skipped"] += 1
        with open(report_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if progress:
            progress(i, len(videos), key)

    clips = [c for key, _ in videos if (data / key).is_dir() for c in _finished_clips(data / key, key)]
    split = split_clips(clips, opts.val_share, lists)
    keys = {"train": [c.key for c in clips if split.of_clip[c.key] == "train"],
            "val": [c.key for c in clips if split.of_clip[c.key] == "val"]}
    seconds = {s: round(sum(c.seconds for c in clips if split.of_clip[c.key] == s), 2) for s in keys}
    (data / "filelists").mkdir(exist_ok=True)
    for name, chosen in keys.items():
        outputs.atomic_write_text(data / "filelists" / f"{name}.txt", "".join(f"{k}\n" for k in chosen))
    summary = {"split": split.rule, "why": split.why, "val_share": opts.val_share,
               "train": {"clips": len(keys["train"]), "seconds": seconds["train"]},
               "val": {"clips": len(keys["val"]), "seconds": seconds["val"]}}
    if split.gap is not None:
        summary["gap_seconds"] = round(split.gap, 3)
    with open(report_path, "a") as f:
        f.write(json.dumps(summary) + "\n")
    return {**counts, "clips": len(clips), "split": split.rule, "why": split.why,
            "train": len(keys["train"]), "val": len(keys["val"]),
            "train_seconds": seconds["train"], "val_seconds": seconds["val"]}
