"""`lipsync preprocess`: raw talking videos -> the training layout (datasets.py reads it).

For every video under SRC: the faces found by dub's own face pipeline (faces/speakers.py: shots,
every face tracked within its shot, boxes smoothed; every frame detected), the largest face of
each frame; frames decoded as a stream and resampled to 25 fps, each frame's face box cropped and
resized to SIZE x SIZE (a leaning head along its tilt, as dub crops it, unless --no-align), and
the speech written as 16 kHz mono audio.wav. A clip where some frame has no face is skipped, with the reason in the report: the
training windows need every frame of a span.

Output: DATA/<speaker>/<clip>/{0..n-1}.jpg + audio.wav, DATA/filelists/{train,val}.txt, and
DATA/preprocess_report.jsonl (one line per video: done or skipped, and why). The speaker is the
video's parent folder. Each clip is written into a temporary folder and renamed when complete,
so a rerun skips finished clips and redoes interrupted ones.

LRS2's layout (SRC/main/<speaker>/<clip>.mp4 with SRC/train.txt, val.txt, test.txt listing
`<speaker>/<clip>`) is read as it is: its lists become ours. Otherwise the split is by speaker,
deterministically (a hash of the name), --val of them going to val.
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

from .. import audio as audio_mod
from .. import media, outputs
from ..errors import InputError, LipsyncError
from ..faces import DEFAULT_PADS, DetectorPool, pad_box
from ..faces.align import turned_crop_area
from ..faces.speakers import FacePlan, SpeakerOptions, find_speakers



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


def find_videos(src: Path) -> list[tuple[str, Path]]:
    """(clip key `<speaker>/<clip>`, path) for every video under src, sorted; LRS2's main/ is its root."""
    root = src / "main" if (src / "main").is_dir() else src
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in media.VIDEO_SUFFIXES and not path.name.startswith("."):
            rel = path.relative_to(root).with_suffix("")
            speaker = rel.parent.as_posix() if rel.parent != Path(".") else "_"
            out.append((f"{speaker}/{rel.name}", path))
    return out


def lrs2_split(src: Path) -> dict[str, str] | None:
    """LRS2's own lists, when SRC has them: clip key -> split (test counts as val here)."""
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


def speaker_split(key: str, val_share: float) -> str:
    speaker = key.rsplit("/", 1)[0]
    h = int(hashlib.sha256(speaker.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_share else "train"


def _process_clip(path: Path, dest: Path, opts: PreprocessOptions, detectors: DetectorPool) -> int:
    """Write one clip's crops and audio into dest (a temporary folder); returns the frame count."""
    info = media.probe(path)
    if info.video is None or info.video.frame_count == 0:
        raise InputError("no video frames")
    if info.audio is None:
        raise InputError("no audio track")
    sound = audio_mod.load_audio(str(path))
    # the one face pipeline of dub (shots, every face tracked within its shot), the largest face
    # of each frame, detected on every frame; its boxes are on the clip's own timeline
    report = find_speakers(str(path), None, SpeakerOptions(detector=opts.detector, detect_size=opts.detect_size,
                                                           detect_every=1, device=opts.device,
                                                           s3fd_weights=opts.s3fd_weights, align=opts.align),
                           score=False, detectors=detectors)
    plan = FacePlan(report, "largest")
    params = [cv2.IMWRITE_JPEG_QUALITY, opts.jpeg_quality]
    scale = float(info.video.fps) / float(media.FPS)  # clip frames per 25 fps frame
    n = 0
    for chunk in media.FrameReader(info, chunk=32, fps=media.FPS):
        for frame in chunk:
            j = min(report.frames - 1, int(round(n * scale)))
            boxes = plan.boxes(j)
            if not boxes:
                raise InputError(f"no face in frame {n}")
            (track, box), = boxes.items()
            turned = plan.turned(j).get(track)
            if turned is not None:  # a leaning head, cropped along its tilt as dub crops it
                crop = turned_crop_area(frame, turned[:4], turned[4], opts.pads, opts.size)
            else:
                x1, y1, x2, y2 = pad_box(box, opts.pads, info.video.width, info.video.height)
                crop = cv2.resize(frame[y1:y2, x1:x2], (opts.size, opts.size), interpolation=cv2.INTER_AREA)
            ok, data = cv2.imencode(".jpg", crop, params)
            (dest / f"{n}.jpg").write_bytes(data.tobytes())
            n += 1
    audio_mod.write_wav(dest / "audio.wav", sound.samples)
    return n


def preprocess(src: str | os.PathLike, data: str | os.PathLike, opts: PreprocessOptions,
               progress: Callable[[int, int, str], None] | None = None) -> dict:
    src, data = Path(src), Path(data)
    if not src.is_dir():
        raise InputError(f"{src}: not a folder of videos")
    outputs.refuse_overlap(data, src, "the data folder", "the source folder")
    videos = find_videos(src)
    if not videos:
        raise InputError(f"{src}: no videos found")
    data.mkdir(parents=True, exist_ok=True)
    report_path = data / "preprocess_report.jsonl"
    splits = lrs2_split(src)
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
                frames = _process_clip(path, tmp, opts, detectors)
            record = {"clip": key, "state": "done", "frames": frames, "seconds": round(time.perf_counter() - started, 3)}
            counts["done"] += 1
        except (LipsyncError, OSError) as exc:
            record = {"clip": key, "state": "skipped", "reason": str(exc), "video": str(path)}
            counts["skipped"] += 1
        with open(report_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if progress:
            progress(i, len(videos), key)

    lists: dict[str, list[str]] = {"train": [], "val": []}
    for key, _ in videos:
        if (data / key).is_dir():
            split = (splits or {}).get(key) or speaker_split(key, opts.val_share)
            lists[split].append(key)
    (data / "filelists").mkdir(exist_ok=True)
    for split, keys in lists.items():
        outputs.atomic_write_text(data / "filelists" / f"{split}.txt", "".join(f"{k}\n" for k in keys))
    return {**counts, "train": len(lists["train"]), "val": len(lists["val"])}
