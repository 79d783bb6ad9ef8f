"""The synthetic talking-face corpus: deterministic clips with known truth, in the layouts the
training and dubbing code read.

Every clip is drawn from its own seed (corpus seed, clip index), so a corpus is byte-identical for
the same seed whatever the number of workers, and any clip can be made again alone. Identities
(faces) and voices are separate pools, each split 80/10/10 into train / val / test; a clip takes
its face and its voice from its split's pools, so the splits are disjoint in identity and in voice.

Layouts (`lipsync synth OUT --layout ...`):

- `train`: the preprocessed Wav2Lip layout that `lipsync preprocess` writes: OUT/<id>/<clip>/
  with 0.jpg ... (n-1).jpg face crops (size x size), audio.wav (16 kHz mono) and truth.json, and
  OUT/filelists/{train,val,test}.txt listing `<id>/<clip>`. Clips of a few words.
- `words`: the word-level layout for DAVS: the same per-clip folders, one word per clip, and
  filelists whose lines are `<id>/<clip> <word index> <person index>`; words.txt lists the words.
- `videos`: full-frame talking videos with audio (OUT/videos/<clip>.mp4, the face somewhere in a
  larger scene, for `lipsync dub` end to end), the speech alone (OUT/audio/<clip>.wav) and the
  truth (OUT/videos/<clip>.json, with the face box of every frame).

truth.json: fps, frame count, duration, per-frame mouth (opening, width, rounding) and blink, the
phoneme and word spans (seconds), the word (words layout), identity, voice, split, the face box
(x1, y1, x2, y2) of every frame in the image's pixels, as a detector would give it, and the face's
placement (centre x, centre y, radius in pixels per face unit, rotation in degrees). Frame i shows
the mouth at i / fps.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..audio import write_wav
from .. import outputs
from ..errors import InputError
from .face import Identity, crop_placement, dark_mouth_area, face_box, make_identity, render
from .speech import SAMPLE_RATE, WORDS, Span, Voice, make_voice, synthesize, viseme_track

FPS = 25
LAYOUTS = ("train", "words", "videos")
SPLITS = ("train", "val", "test")
SPLIT_SHARES = (0.8, 0.1, 0.1)
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CorpusSpec:
    clips: int
    seed: int = 0
    layout: str = "train"
    identities: int = 120
    voices: int = 48
    size: int = 96  # face crop side (train, words)
    scene: tuple[int, int] = (256, 256)  # frame (height, width) of the videos layout
    min_words: int = 2  # words per clip (train, videos); the words layout has one
    max_words: int = 4
    jpeg_quality: int = 95

    def check(self):
        if self.layout not in LAYOUTS:
            raise InputError(f"--layout {self.layout}: choose {', '.join(LAYOUTS)}")
        if self.clips < 1:
            raise InputError("--clips must be 1 or more")
        if self.identities < 3 or self.voices < 3:
            raise InputError("--identities and --voices must be 3 or more (one at least per split)")
        if self.size < 32 or self.size > 1024:
            raise InputError("--size must be from 32 to 1024")
        if not 1 <= self.min_words <= self.max_words:
            raise InputError("words per clip: 1 <= min <= max")


def split_members(n: int) -> dict[str, list[int]]:
    """Indices 0..n-1 split 80/10/10, each split getting at least one."""
    n_val = max(1, int(round(n * SPLIT_SHARES[1])))
    n_test = max(1, int(round(n * SPLIT_SHARES[2])))
    n_train = n - n_val - n_test
    return {"train": list(range(n_train)), "val": list(range(n_train, n_train + n_val)),
            "test": list(range(n_train + n_val, n))}


@dataclass(frozen=True)
class ClipPlan:
    index: int
    name: str
    split: str
    identity: int
    voice: int
    words: tuple[str, ...]

    @property
    def folder(self) -> str:
        return f"id{self.identity:04d}/{self.name}"


def plan_clip(spec: CorpusSpec, index: int) -> ClipPlan:
    rng = np.random.default_rng([spec.seed, 1, index])
    split = SPLITS[int(rng.choice(3, p=SPLIT_SHARES))]
    ident = int(rng.choice(split_members(spec.identities)[split]))
    voice = int(rng.choice(split_members(spec.voices)[split]))
    k = 1 if spec.layout == "words" else int(rng.integers(spec.min_words, spec.max_words + 1))
    words = tuple(str(w) for w in rng.choice(WORDS, size=k))
    return ClipPlan(index, f"c{index:06d}", split, ident, voice, words)


_IDENTITIES: dict = {}
_VOICES: dict = {}


def identity_of(spec: CorpusSpec, j: int) -> Identity:
    key = (spec.seed, j)
    if key not in _IDENTITIES:
        _IDENTITIES[key] = make_identity(np.random.default_rng([spec.seed, 2, j]))
    return _IDENTITIES[key]


def voice_of(spec: CorpusSpec, j: int) -> Voice:
    key = (spec.seed, j)
    if key not in _VOICES:
        _VOICES[key] = make_voice(np.random.default_rng([spec.seed, 3, j]))
    return _VOICES[key]


@dataclass
class Clip:
    plan: ClipPlan
    audio: np.ndarray  # float32 at 16 kHz
    frames: np.ndarray  # (n, H, W, 3) uint8 BGR
    truth: dict


def _blinks(rng, n: int) -> np.ndarray:
    """Eyelid closure per frame: blinks of ~0.15 s every ~3 s on average."""
    out = np.zeros(n)
    t = rng.exponential(3.0) * 0.5
    while t * FPS < n:
        centre = t * FPS
        for i in range(max(0, int(centre - 3)), min(n, int(centre + 4))):
            out[i] = max(out[i], max(0.0, 1 - abs(i - centre) / 2.0))
        t += 1.0 + rng.exponential(2.5)
    return out


def _motion(rng, n: int, amplitude: float) -> np.ndarray:
    """Slow head motion per frame: (dx, dy) in units of the face radius, scale factor, rotation (deg)."""
    t = np.arange(n) / FPS

    def wave(amp):
        f, phase = rng.uniform(0.15, 0.6), rng.uniform(0, 2 * math.pi)
        return amp * np.sin(2 * math.pi * f * t + phase)

    return np.stack([wave(0.06 * amplitude), wave(0.05 * amplitude), 1 + wave(0.035 * amplitude),
                     wave(4.0 * amplitude)], axis=1)


def render_clip(spec: CorpusSpec, plan: ClipPlan) -> Clip:
    rng = np.random.default_rng([spec.seed, 4, plan.index])
    identity, voice = identity_of(spec, plan.identity), voice_of(spec, plan.voice)
    audio, phones, words = synthesize(list(plan.words), voice, rng)
    duration = len(audio) / SAMPLE_RATE
    n = max(1, int(round(duration * FPS)))
    mouth = viseme_track(phones, np.arange(n) / FPS)
    blink = _blinks(rng, n)
    motion = _motion(rng, n, float(rng.uniform(0.3, 1.0)))

    if spec.layout == "videos":
        h, w = spec.scene
        base_r = float(rng.uniform(0.16, 0.26)) * min(h, w)
        cx0 = float(rng.uniform(0.3, 0.7)) * w
        cy0 = float(rng.uniform(0.35, 0.6)) * h
        size = (h, w)
    else:
        (cx0, cy0), base_r = crop_placement(spec.size)
        size = (spec.size, spec.size)
    frames = np.empty((n, *size, 3), np.uint8)
    boxes, placements = [], []
    for i in range(n):
        dx, dy, scale, rot = motion[i]
        r = base_r * scale
        centre = (cx0 + dx * base_r, cy0 + dy * base_r)
        frames[i] = render(identity, tuple(mouth[i]), float(blink[i]), size, centre, r, float(rot))
        boxes.append(face_box(centre, r, identity))
        placements.append([round(centre[0], 3), round(centre[1], 3), round(r, 3), round(float(rot), 3)])

    truth = {
        "format": FORMAT_VERSION, "clip": plan.name, "index": plan.index, "split": plan.split,
        "identity": plan.identity, "voice": plan.voice, "fps": FPS, "frames": n, "duration": round(duration, 6),
        "words": [[s.label, round(s.start, 4), round(s.end, 4)] for s in words],
        "phonemes": [[s.label, round(s.start, 4), round(s.end, 4)] for s in phones],
        "mouth": np.round(mouth, 4).tolist(), "blink": np.round(blink, 3).tolist(),
        "boxes": [list(b) for b in boxes], "placement": placements,
    }
    if spec.layout == "words":
        truth["word"] = plan.words[0]
        truth["word_index"] = WORDS.index(plan.words[0])
    return Clip(plan, audio, frames, truth)


def truth_opening(truth: dict) -> np.ndarray:
    """The visible mouth opening (dark interior area) per frame that a clip's audio implies:
    what sync.mouth_opening reads from the frames, up to scale."""
    return np.array([dark_mouth_area(m) for m in truth["mouth"]])


def truth_spans(truth: dict) -> list[Span]:
    return [Span(p, s, e) for p, s, e in truth["phonemes"]]


def write_clip(root: Path, spec: CorpusSpec, clip: Clip) -> None:
    plan = clip.plan
    if spec.layout == "videos":
        from .. import media

        wav = root / "audio" / f"{plan.name}.wav"
        write_wav(wav, clip.audio)
        h, w = spec.scene
        writer = media.FrameWriter(str(root / "videos" / f"{plan.name}.mp4"), w, h, FPS, str(wav), crf=18,
                                   extra_output_args={"threads": 1, "fflags": "+bitexact", "flags": "+bitexact"})
        for frame in clip.frames:
            writer.write(frame)
        writer.close()
        (root / "videos" / f"{plan.name}.json").write_text(json.dumps(clip.truth, sort_keys=True))
        return
    folder = root / plan.folder
    folder.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality]
    for i, frame in enumerate(clip.frames):
        ok, data = cv2.imencode(".jpg", frame, params)
        (folder / f"{i}.jpg").write_bytes(data.tobytes())
    write_wav(folder / "audio.wav", clip.audio)
    (folder / "truth.json").write_text(json.dumps(clip.truth, sort_keys=True))


def _make_one(args) -> tuple[int, str, str]:
    spec, index, root = args
    plan = plan_clip(spec, index)
    write_clip(Path(root), spec, render_clip(spec, plan))
    return index, plan.split, _list_line(spec, plan)


def _list_line(spec: CorpusSpec, plan: ClipPlan) -> str:
    if spec.layout == "words":
        return f"{plan.folder} {WORDS.index(plan.words[0])} {plan.identity}"
    if spec.layout == "videos":
        return f"videos/{plan.name}.mp4"
    return plan.folder


MARKER = ".lipsync-synth"  # in every corpus: `--force` replaces a folder holding it, and no other


def make_corpus(spec: CorpusSpec, out: str | os.PathLike, workers: int = 1, force: bool = False,
                progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the corpus into `out`, atomically: it is built beside it and renamed at the end.
    An existing `out` is replaced only when it is empty, or with `force` when synth made it."""
    spec.check()
    out = Path(out)
    target = Path(os.path.realpath(out))  # "." has no name to build a temporary folder beside
    if target.exists():
        if not target.is_dir():
            raise InputError(f"{out}: already exists and is not a folder")
        if any(target.iterdir()):
            if not (target / MARKER).is_file():
                raise InputError(f"{out}: already exists and is not a corpus made by `lipsync synth`; "
                                 "it is never replaced: choose another folder")
            if not force:
                raise InputError(f"{out}: already exists (use --force to replace it)")
    if not target.parent.exists():
        raise InputError(f"{target.parent}: output folder does not exist")
    with outputs.atomic_folder(target, replace=True) as tmp:
        if spec.layout == "videos":
            (tmp / "videos").mkdir()
            (tmp / "audio").mkdir()
        lists: dict[str, list[tuple[int, str]]] = {s: [] for s in SPLITS}
        jobs = [(spec, i, str(tmp)) for i in range(spec.clips)]
        if workers > 1:
            import multiprocessing as mp

            with mp.get_context("fork").Pool(workers) as pool:
                results = pool.imap_unordered(_make_one, jobs, chunksize=8)
                for done, (index, split, line) in enumerate(results, 1):
                    lists[split].append((index, line))
                    if progress:
                        progress(done, spec.clips)
        else:
            for done, job in enumerate(jobs, 1):
                index, split, line = _make_one(job)
                lists[split].append((index, line))
                if progress:
                    progress(done, spec.clips)
        (tmp / "filelists").mkdir()
        for split, rows in lists.items():
            (tmp / "filelists" / f"{split}.txt").write_text("".join(f"{line}\n" for _, line in sorted(rows)))
        if spec.layout == "words":
            (tmp / "words.txt").write_text("".join(f"{w}\n" for w in WORDS))
        meta = {"format": FORMAT_VERSION, "spec": asdict(spec), "fps": FPS, "sample_rate": SAMPLE_RATE,
                "words": list(WORDS), "identities": split_members(spec.identities),
                "voices": split_members(spec.voices), "clips": {s: len(v) for s, v in lists.items()}}
        (tmp / "corpus.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        (tmp / MARKER).write_text("made by `lipsync synth`: `lipsync synth --force` may replace this folder\n")
    return out
