"""Edited composites with known per-frame truth, for measuring `dub` on edited footage.

Real clips cut together the way an editor would (jump cuts, b-roll, reaction shots, two-shots,
fades, dissolves, pans, zooms) into 1280x720, 25 fps, H.264 yuv420p clips with one AAC speech
track, and for every frame: where each face is (canvas pixels), whether it must be dubbed, and
where the true cuts are.

A :class:`Recipe` is a timeline of :class:`Shot` s and a list of :class:`Sound` segments.
A shot shows :class:`Layer` s (a source clip, a crop of it, where it goes on the stage, held or
playing) for some frames, seen through a camera window on the stage that may move (a pan) or
shrink (a zoom); it begins with a hard cut, a fade through black, a dissolve from the shot before,
or seamlessly (the same shot going on). The sound is pieces of the sources' own audio, in whole
frames (40 ms), so a talking layer and its speech come from the same moments of its clip.

The truth follows from the recipe, not from the composite's pixels:

- faces: RetinaFace (the project's detector) on each layer's own pixels before any fade or
  dissolve, mapped through the layer's place and the camera to canvas pixels;
- a face must be dubbed in frame i when the sound of frame i is its own clip's audio of the very
  source frame the layer shows there (lips and sound agree); a held frame never speaks, nor does a
  face under someone else's voice;
- cuts: a hard cut is the first frame of the new shot; a fade is the span from the first frame
  of the fade-out to the end of the fade-in, a dissolve its overlap; frames of those spans are
  marked `transition` (either left undubbed or dubbed at a true face place is acceptable there).

Sources are given by name -> path (:class:`Sources`), so the same recipes run on the sample media
(``SHARED_CAST``) and on the small clips in ``examples/`` (``EXAMPLES_CAST``, for tests):

    from lipsync_cli.synth.edits import Sources, EXAMPLES_CAST, make_recipes, build
    src = Sources({"talk": "examples/talk.mp4", "talk2": "examples/talk2.mp4",
                   "listener": "examples/listener.mp4", "speech": "examples/speech.wav"})
    for recipe in make_recipes(["jump", "reaction"], src, EXAMPLES_CAST):
        truth = build(recipe, src, f"/tmp/edits/{recipe.name}.mp4")   # writes .mp4 and .json
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

W, H = 1280, 720
FPS = 25
SR = 44100
SPF = SR // FPS  # audio samples per frame (1764)
VERSION = 1  # bump when the rendering changes (invalidates cached composites)

Rect = tuple  # (x, y, w, h)


# ----------------------------------------------------------------------------------------------
# Recipes


@dataclass(frozen=True)
class Layer:
    """A source clip on the stage: its frame `start + j` in the shot's frame j (or frame `start`
    throughout when `hold`, with a slight breathing motion and still lips), `crop` (x, y, w, h in
    source pixels; None: the whole frame) scaled into `place` (x, y, w, h on the stage)."""

    source: str
    start: int = 0
    crop: Rect | None = None
    place: Rect = (0, 0, W, H)
    hold: bool = False


@dataclass(frozen=True)
class Shot:
    """`frames` frames of `layers` over the backdrop of a `stage` (w, h), seen through the
    `camera` window (x, y, w, h on the stage, 16:9; None: the whole stage), which moves linearly
    to `camera_end` over the shot. `enter`: how the shot begins: "cut", "fade" (the previous
    shot's last `enter_frames` fade to black, this one's first `enter_frames` fade up), "dissolve"
    (the two overlap for `enter_frames`), "seamless" (no edit: the same shot goes on)."""

    frames: int
    layers: tuple = ()
    enter: str = "cut"
    enter_frames: int = 0
    stage: tuple = (W, H)
    camera: Rect | None = None
    camera_end: Rect | None = None


@dataclass(frozen=True)
class Sound:
    """`frames` frames (40 ms each) of `source`'s audio from its frame `start`; None: silence."""

    source: str | None
    start: int
    frames: int


@dataclass(frozen=True)
class Recipe:
    name: str
    kind: str
    shots: tuple
    sound: tuple
    note: str = ""

    def starts(self) -> list[int]:
        """Output frame at which each shot begins (a dissolve starts before the last one ends)."""
        t, out = 0, []
        for k, s in enumerate(self.shots):
            if k and s.enter == "dissolve":
                t -= s.enter_frames
            out.append(t)
            t += s.frames
        return out

    @property
    def frames(self) -> int:
        return self.starts()[-1] + self.shots[-1].frames

    def key(self, sources: "Sources") -> str:
        used = sorted({lay.source for s in self.shots for lay in s.layers} | {x.source for x in self.sound if x.source})
        files = [(n, os.path.basename(str(sources.paths[n])), os.path.getsize(sources.paths[n])) for n in used]
        blob = json.dumps([VERSION, asdict(self), files], default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# Truth


@dataclass
class Face:
    box: tuple  # x1, y1, x2, y2 in canvas pixels
    dub: bool  # must be dubbed (speaks in the clip's sound here)
    source: str
    shot: int

    def as_list(self):
        return {"box": [round(v, 1) for v in self.box], "dub": self.dub, "source": self.source, "shot": self.shot}


@dataclass
class Truth:
    name: str
    kind: str
    frames: int
    faces: list  # per frame: list[Face]
    transition: list  # per frame: in a fade or dissolve span
    cuts: list  # {"type": "cut", "frame": f} or {"type": "fade"|"dissolve", "start", "end", "frame"}
    sound: list  # per frame: the source whose audio plays, or None
    key: str = ""
    note: str = ""
    width: int = W
    height: int = H
    fps: int = FPS
    filled: int = 0  # face boxes taken from a neighbouring frame where the detector missed

    def must_dub(self, i: int) -> list:
        return [f for f in self.faces[i] if f.dub]

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("name", "kind", "frames", "width", "height", "fps", "key", "note",
                                           "cuts", "sound", "filled")}
        d["transition"] = [int(x) for x in self.transition]
        d["faces"] = [[f.as_list() for f in fr] for fr in self.faces]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Truth":
        faces = [[Face(tuple(f["box"]), bool(f["dub"]), f["source"], int(f["shot"])) for f in fr] for fr in d["faces"]]
        return cls(d["name"], d["kind"], d["frames"], faces, [bool(x) for x in d["transition"]], d["cuts"], d["sound"],
                   d.get("key", ""), d.get("note", ""), d.get("width", W), d.get("height", H), d.get("fps", FPS),
                   d.get("filled", 0))

    @classmethod
    def load(cls, path) -> "Truth":
        return cls.from_dict(json.loads(Path(path).read_text()))


# ----------------------------------------------------------------------------------------------
# Sources


def _ffmpeg() -> str:
    from ..media import ffmpeg_binary

    return ffmpeg_binary()


class Sources:
    """Named source files (videos, audio files), decoded on demand: video at 25 fps from t = 0
    (variable or other rates resampled by ffmpeg's fps filter), audio at 44.1 kHz mono."""

    def __init__(self, paths: Mapping[str, str | os.PathLike], detector=None):
        self.paths = {k: Path(v) for k, v in paths.items()}
        self._video: dict[str, np.ndarray] = {}
        self._audio: dict[str, np.ndarray | None] = {}
        self._face: dict[str, tuple] = {}
        self._detector = detector

    @property
    def detector(self):
        if self._detector is None:
            from ..faces import make_detector

            self._detector = make_detector("retinaface", "cpu", max_side=320)
        return self._detector

    def video(self, name: str) -> np.ndarray:
        """(frames, h, w, 3) uint8 BGR."""
        if name not in self._video:
            from ..media import probe

            v = probe(self.paths[name]).video
            if v is None:
                raise ValueError(f"{name}: no video stream in {self.paths[name]}")
            w, h = (v.height, v.width) if v.rotation in (90, 270) else (v.width, v.height)
            proc = subprocess.run([_ffmpeg(), "-v", "error", "-nostdin", "-i", str(self.paths[name]), "-an",
                                   "-vf", "fps=25:start_time=0,format=bgr24", "-f", "rawvideo", "-"],
                                  stdout=subprocess.PIPE, check=True)
            self._video[name] = np.frombuffer(proc.stdout, np.uint8).reshape(-1, h, w, 3)
        return self._video[name]

    def audio(self, name: str) -> np.ndarray | None:
        """float32 mono samples at 44.1 kHz from t = 0; None without an audio stream."""
        if name not in self._audio:
            from ..media import probe

            if probe(self.paths[name]).audio is None:
                self._audio[name] = None
            else:
                proc = subprocess.run([_ffmpeg(), "-v", "error", "-nostdin", "-i", str(self.paths[name]), "-vn",
                                       "-ac", "1", "-ar", str(SR), "-f", "f32le", "-"], stdout=subprocess.PIPE, check=True)
                self._audio[name] = np.frombuffer(proc.stdout, np.float32).copy()
        return self._audio[name]

    def size(self, name: str) -> tuple[int, int]:
        v = self.video(name)
        return v.shape[2], v.shape[1]

    def frames(self, name: str) -> int:
        """Frames with footage, and with a full frame of audio where the source has audio."""
        n = len(self.video(name))
        a = self.audio(name)
        return n if a is None else min(n, len(a) // SPF)

    def audio_frames(self, name: str) -> int:
        a = self.audio(name)
        return 0 if a is None else len(a) // SPF

    def face(self, name: str, frame: int = 0) -> tuple:
        """The largest face's box (x1, y1, x2, y2) in one source frame."""
        if (name, frame) not in self._face:
            dets = self.detector.detect([np.ascontiguousarray(self.video(name)[frame])])[0]
            if not dets:
                raise ValueError(f"{name}: no face in frame {frame}")
            best = max(dets, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
            self._face[(name, frame)] = tuple(float(v) for v in best.box)
        return self._face[(name, frame)]

    def frame_db(self, name: str) -> np.ndarray:
        a = self.audio(name)
        n = len(a) // SPF
        x = a[: n * SPF].reshape(n, SPF).astype(np.float64)
        return 10 * np.log10(np.mean(x * x, axis=1) + 1e-12)

    def pause_frame(self, name: str, lo: float, hi: float) -> int:
        """Centre of the quietest 0.2 s (5 frames) between fractions lo and hi of the clip."""
        db = np.convolve(self.frame_db(name), np.ones(5) / 5, mode="same")
        n = self.frames(name)
        a, b = max(2, int(lo * n)), max(3, min(n - 2, int(hi * n)))
        return a + int(np.argmin(db[a:b]))


# ----------------------------------------------------------------------------------------------
# Rendering


def backdrop(w: int, h: int, seed: int = 7) -> np.ndarray:
    """A static studio backdrop: a vertical slate gradient with a soft texture and faint bars
    (structure enough that a pan is visible and a change of it is measurable)."""
    import cv2

    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    base = (1 - y) * np.array([70, 62, 55], np.float32) + y * np.array([35, 30, 28], np.float32)
    noise = rng.normal(0, 1, (h // 24 + 2, w // 24 + 2)).astype(np.float32)
    noise = cv2.resize(cv2.GaussianBlur(noise, (0, 0), 1.2), (w, h), interpolation=cv2.INTER_CUBIC)
    bars = 6 * np.cos(2 * np.pi * np.arange(w, dtype=np.float32) / 160.0)[None, :]
    img = base + (10 * noise + bars)[:, :, None]
    return np.clip(img, 0, 255).astype(np.uint8)


def breathing(img: np.ndarray, k: int, n: int) -> np.ndarray:
    """A held frame made to look alive: sub-pixel scale (+-0.5%) and shift (+-1.2 px), eased in
    and out over 6 frames so that the first and last frames of a hold are the frame itself."""
    import cv2

    if n <= 1:
        return img
    env = min(1.0, k / 6, (n - 1 - k) / 6)
    t = k / FPS
    s = 1 + env * 0.005 * math.sin(2 * math.pi * t / 3.3)
    dx = env * 1.2 * math.sin(2 * math.pi * t / 4.7 + 0.4)
    dy = env * 0.8 * math.sin(2 * math.pi * t / 3.1 + 1.0)
    h, w = img.shape[:2]
    m = np.array([[s, 0, (1 - s) * w / 2 + dx], [0, s, (1 - s) * h * 0.45 + dy]], np.float32)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _patch(src: Sources, lay: Layer, j: int) -> np.ndarray:
    """The layer's crop of its source frame for shot frame j, scaled to its place (no breathing)."""
    import cv2

    frames = src.video(lay.source)
    f = frames[min(lay.start if lay.hold else lay.start + j, len(frames) - 1)]
    if lay.crop is not None:
        x, y, w, h = (int(round(v)) for v in lay.crop)
        f = f[max(0, y): y + h, max(0, x): x + w]
    pw, ph = int(round(lay.place[2])), int(round(lay.place[3]))
    interp = cv2.INTER_AREA if f.shape[1] > pw else cv2.INTER_CUBIC
    return cv2.resize(f, (pw, ph), interpolation=interp)


def _camera(shot: Shot, j: int) -> tuple:
    cam = shot.camera or (0, 0, shot.stage[0], shot.stage[1])
    end = shot.camera_end or cam
    t = j / (shot.frames - 1) if shot.frames > 1 else 0.0
    return tuple(a + (b - a) * t for a, b in zip(cam, end))


def _render_shot(src: Sources, shot: Shot, j: int, backs: dict) -> np.ndarray:
    import cv2

    if shot.stage not in backs:
        backs[shot.stage] = backdrop(*shot.stage)
    stage = backs[shot.stage].copy()
    for lay in shot.layers:
        p = _patch(src, lay, j)
        if lay.hold:
            p = breathing(p, j, shot.frames)
        x, y = int(round(lay.place[0])), int(round(lay.place[1]))
        x0, y0, x1, y1 = max(0, x), max(0, y), min(stage.shape[1], x + p.shape[1]), min(stage.shape[0], y + p.shape[0])
        stage[y0:y1, x0:x1] = p[y0 - y: y1 - y, x0 - x: x1 - x]
    cx, cy, cw, ch = _camera(shot, j)
    if (cx, cy, cw, ch) == (0, 0, W, H) and shot.stage == (W, H):
        return stage
    s = W / cw
    m = np.array([[s, 0, -cx * s], [0, s, -cy * s]], np.float32)
    return cv2.warpAffine(stage, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _fade(recipe: Recipe, k: int, j: int) -> float:
    """Brightness factor of shot k's frame j (fades through black)."""
    shots = recipe.shots
    f = 1.0
    if shots[k].enter == "fade" and j < shots[k].enter_frames:
        f = min(f, j / shots[k].enter_frames)
    if k + 1 < len(shots) and shots[k + 1].enter == "fade":
        n = shots[k + 1].enter_frames
        left = shots[k].frames - 1 - j
        if left < n:
            f = min(f, left / n)
    return f


def _active(recipe: Recipe, i: int) -> list[tuple[int, int, float]]:
    """(shot, shot frame, weight) of what output frame i shows: one shot, or two in a dissolve."""
    starts = recipe.starts()
    out = []
    for k, (t, s) in enumerate(zip(starts, recipe.shots)):
        if t <= i < t + s.frames:
            out.append((k, i - t))
    if len(out) == 2:
        (ka, ja), (kb, jb) = out
        a = (jb + 1) / (recipe.shots[kb].enter_frames + 1)
        return [(ka, ja, 1 - a), (kb, jb, a)]
    return [(k, j, 1.0) for k, j in out]


def render_frame(recipe: Recipe, src: Sources, i: int, backs: dict | None = None) -> np.ndarray:
    backs = {} if backs is None else backs
    acc = None
    for k, j, wgt in _active(recipe, i):
        img = _render_shot(src, recipe.shots[k], j, backs).astype(np.float32) * (wgt * _fade(recipe, k, j))
        acc = img if acc is None else acc + img
    return np.clip(acc + 0.5, 0, 255).astype(np.uint8)


def render_audio(recipe: Recipe, src: Sources) -> np.ndarray:
    """The sound track: the segments end to end, 2 ms ramps at every join (no clicks)."""
    out = np.zeros(recipe.frames * SPF, np.float32)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, 88, dtype=np.float32))
    t = 0
    for seg in recipe.sound:
        n = seg.frames * SPF
        chunk = np.zeros(n, np.float32)
        if seg.source is not None:
            a = src.audio(seg.source)
            piece = a[seg.start * SPF: seg.start * SPF + n]
            chunk[: len(piece)] = piece
            r = min(88, n // 2)
            chunk[:r] *= ramp[:r]
            chunk[n - r:] *= ramp[::-1][88 - r:]
        m = min(n, len(out) - t * SPF)
        out[t * SPF: t * SPF + m] = chunk[:m]
        t += seg.frames
    return out


def sound_timeline(recipe: Recipe) -> list:
    """Per output frame: (source, source frame) of the audio, or None."""
    out = []
    for seg in recipe.sound:
        out += [None if seg.source is None else (seg.source, seg.start + k) for k in range(seg.frames)]
    out = out[: recipe.frames]
    return out + [None] * (recipe.frames - len(out))


# ----------------------------------------------------------------------------------------------
# Truth from the recipe


def _layer_boxes(src: Sources, lay: Layer, n: int) -> tuple[list[list[tuple]], int]:
    """Per shot frame, the face boxes found on the layer's own pixels (place coordinates on the
    stage), largest first; a miss between frames with a face takes the nearest frame's boxes."""
    det = src.detector
    frames = [0] if lay.hold else list(range(n))
    found: list[list[tuple]] = []
    for a in range(0, len(frames), 16):
        batch = [np.ascontiguousarray(_patch(src, lay, j)) for j in frames[a: a + 16]]
        for dets in det.detect(batch):
            boxes = [tuple(float(v) for v in d.box) for d in dets]
            boxes.sort(key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
            found.append([(b[0] + lay.place[0], b[1] + lay.place[1], b[2] + lay.place[0], b[3] + lay.place[1])
                          for b in boxes])
    if lay.hold:
        return found * n, 0
    filled = 0
    have = [j for j in range(n) if found[j]]
    if have and len(have) < n:
        for j in range(n):
            if not found[j]:
                near = min(have, key=lambda h: abs(h - j))
                if abs(near - j) <= 5:
                    found[j] = found[near]
                    filled += 1
    return found, filled


def _to_canvas(box: tuple, cam: tuple) -> tuple | None:
    """Stage box through the camera window to canvas pixels; None when less than half of it shows."""
    cx, cy, cw, _ = cam
    s = W / cw
    x1, y1, x2, y2 = ((box[0] - cx) * s, (box[1] - cy) * s, (box[2] - cx) * s, (box[3] - cy) * s)
    area = (x2 - x1) * (y2 - y1)
    c = (max(0.0, x1), max(0.0, y1), min(float(W), x2), min(float(H), y2))
    if c[2] <= c[0] or c[3] <= c[1] or (c[2] - c[0]) * (c[3] - c[1]) < 0.5 * area:
        return None
    return c


def truth_of(recipe: Recipe, src: Sources) -> Truth:
    sound = sound_timeline(recipe)
    starts = recipe.starts()
    total = recipe.frames
    faces: list[list[Face]] = [[] for _ in range(total)]
    filled = 0
    for k, (t, shot) in enumerate(zip(starts, recipe.shots)):
        for lay in shot.layers:
            boxes, nf = _layer_boxes(src, lay, shot.frames)
            filled += nf
            for j in range(shot.frames):
                i = t + j
                if not boxes[j]:
                    continue
                cam = _camera(shot, j)
                speaks = not lay.hold and sound[i] == (lay.source, lay.start + j)
                for r, b in enumerate(boxes[j]):
                    c = _to_canvas(b, cam)
                    if c is not None:
                        faces[i].append(Face(c, speaks and r == 0, lay.source, k))
    transition = [False] * total
    cuts = []
    for k, (t, shot) in enumerate(zip(starts, recipe.shots)):
        if k == 0 or shot.enter == "seamless":
            continue
        n = shot.enter_frames
        if shot.enter == "cut":
            cuts.append({"type": "cut", "frame": t})
        elif shot.enter == "fade":
            cuts.append({"type": "fade", "start": t - n, "end": t + n, "frame": t})
            for i in range(t - n, t + n):
                transition[i] = True
        elif shot.enter == "dissolve":
            cuts.append({"type": "dissolve", "start": t, "end": t + n, "frame": t + n // 2})
            for i in range(t, t + n):
                transition[i] = True
        else:
            raise ValueError(f"unknown shot entrance {shot.enter!r}")
    return Truth(recipe.name, recipe.kind, total, faces, transition, cuts, [None if s is None else s[0] for s in sound],
                 recipe.key(src), recipe.note, filled=filled)


# ----------------------------------------------------------------------------------------------
# Building


def build(recipe: Recipe, src: Sources, out: str | os.PathLike, force: bool = False,
          crf: int = 18) -> Truth:
    """Write the composite (H.264 yuv420p, AAC) to `out` and its truth to `out` with .json; an
    existing pair made from the same recipe and source files is kept unless `force`."""
    out = Path(out)
    meta = out.with_suffix(".json")
    key = recipe.key(src)
    if not force and out.exists() and meta.exists():
        old = json.loads(meta.read_text())
        if old.get("key") == key:
            return Truth.from_dict(old)
    out.parent.mkdir(parents=True, exist_ok=True)
    truth = truth_of(recipe, src)
    samples = render_audio(recipe, src)
    tmp = out.with_name(out.stem + ".part.mp4")
    with tempfile.NamedTemporaryFile(suffix=".f32", dir=out.parent) as wav:
        wav.write(samples.tobytes())
        wav.flush()
        enc = subprocess.Popen([_ffmpeg(), "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
                                "-s", f"{W}x{H}", "-r", str(FPS), "-i", "-", "-f", "f32le", "-ar", str(SR), "-ac", "1",
                                "-i", wav.name, "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryfast",
                                "-crf", str(crf), "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(tmp)],
                               stdin=subprocess.PIPE)
        backs: dict = {}
        try:
            for i in range(recipe.frames):
                enc.stdin.write(render_frame(recipe, src, i, backs).tobytes())
        finally:
            enc.stdin.close()
            code = enc.wait()
    if code != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"encoding {recipe.name} failed (ffmpeg exit {code})")
    tmp.replace(out)
    meta.write_text(json.dumps(truth.to_dict()))
    return truth


# ----------------------------------------------------------------------------------------------
# The kinds of edit


@dataclass(frozen=True)
class Cast:
    """Which sources play which role: talkers (clips with their own speech, square or not),
    listeners (faces that do not speak, no audio needed), narration (an audio file)."""

    talkers: tuple
    listeners: tuple
    narration: str
    scale: float = 1.0  # shot lengths: 1.0 for the sample media (2 s shots); smaller for short clips

    def talker(self, k: int) -> str:
        return self.talkers[k % len(self.talkers)]

    def listener(self, k: int) -> str:
        return self.listeners[k % len(self.listeners)]


SHARED_MEDIA = Path(__file__).resolve().parents[2].parent / "shared" / "media"
SHARED_CAST = Cast(("talk1", "talk2", "talk3", "talk4", "talk5"), ("silent_long", "silent_tall"), "speech_long")
EXAMPLES_CAST = Cast(("talk", "talk2"), ("listener",), "speech", scale=0.5)


def shared_sources(media: str | os.PathLike = SHARED_MEDIA, detector=None) -> Sources:
    m = Path(media)
    names = list(SHARED_CAST.talkers) + list(SHARED_CAST.listeners)
    paths = {n: m / f"{n}.mp4" for n in names} | {a: m / f"{a}.wav" for a in ("speech1", "speech_long")}
    return Sources(paths, detector)


def example_sources(examples: str | os.PathLike, detector=None) -> Sources:
    e = Path(examples)
    return Sources({"talk": e / "talk.mp4", "talk2": e / "talk2.mp4", "listener": e / "listener.mp4",
                    "speech": e / "speech.wav"}, detector)


CENTER = (280, 0, 720, 720)
LEFT = (20, 60, 600, 600)
RIGHT = (660, 60, 600, 600)


def square(src: Sources, name: str) -> Rect:
    """The largest square of the frame, centred on the face across its width or height."""
    w, h = src.size(name)
    x1, y1, x2, y2 = src.face(name)
    side = min(w, h)
    x = min(max(0, (x1 + x2) / 2 - side / 2), w - side)
    y = min(max(0, (y1 + y2) / 2 - side / 2), h - side)
    return (int(x), int(y), side, side)


def face_crop(src: Sources, name: str, k: float, frame: int = 0) -> Rect:
    """A square of k face heights around the face (a little above its centre), inside the frame."""
    w, h = src.size(name)
    x1, y1, x2, y2 = src.face(name, frame)
    side = int(min(w, h, k * (y2 - y1)))
    x = min(max(0, (x1 + x2) / 2 - side / 2), w - side)
    y = min(max(0, (y1 + y2) / 2 - 0.45 * side), h - side)
    return (int(x), int(y), side, side)


def background_crop(src: Sources, name: str) -> Rect:
    """A 16:9 corner of the frame (a third of its width) away from the face: b-roll of the room."""
    w, h = src.size(name)
    x1, y1, x2, y2 = src.face(name)
    cw = int(w * 0.3)
    ch = int(cw * 9 / 16)
    gx, gy = 0.3 * (x2 - x1), 0.3 * (y2 - y1)
    for x, y in ((0, 0), (w - cw, 0), (0, h - ch), (w - cw, h - ch)):
        if x + cw < x1 - gx or x > x2 + gx or y + ch < y1 - gy or y > y2 + gy:
            return (x, y, cw, ch)
    return (0, 0, cw, ch)


def frames_of(cast: Cast, seconds: float) -> int:
    return max(4, int(round(seconds * FPS * cast.scale)))


def own(name: str, start: int, n: int) -> Sound:
    return Sound(name, start, n)


def kind_jump(src: Sources, cast: Cast) -> list[Recipe]:
    """Close-ups of different people at the same place, hard cuts, each with its own speech."""
    shots, sound = [], []
    for k in range(min(5, max(2, len(cast.talkers)))):
        t = cast.talker(k)
        off = frames_of(cast, 0.4) if k < len(cast.talkers) else frames_of(cast, 0.4) + frames_of(cast, 2.0)
        n = min(frames_of(cast, 2.0), src.frames(t) - off)
        shots.append(Shot(n, (Layer(t, off, square(src, t), CENTER),)))
        sound.append(own(t, off, n))
    return [Recipe("jump", "jump", tuple(shots), tuple(sound), "close-ups at the centre, a cut every 2 s")]


def kind_leftright(src: Sources, cast: Cast) -> list[Recipe]:
    """Five 2 s shots alternating between the left and the right half of the frame."""
    shots, sound = [], []
    used: dict[str, int] = {}
    for k in range(5):
        t = cast.talker(k)
        off = used.get(t, frames_of(cast, 0.4))
        if src.frames(t) - off < frames_of(cast, 1.0):  # a short clip seen again: from its start
            off = frames_of(cast, 0.4)
        n = min(frames_of(cast, 2.0), src.frames(t) - off)
        used[t] = off + n
        shots.append(Shot(n, (Layer(t, off, square(src, t), LEFT if k % 2 == 0 else RIGHT),)))
        sound.append(own(t, off, n))
    return [Recipe("leftright", "leftright", tuple(shots), tuple(sound), "2 s shots, left and right half in turn")]


def kind_broll(src: Sources, cast: Cast) -> list[Recipe]:
    """A speaker, 1.6 s of b-roll (a drifting crop of the room, no face), the same person at the
    other side; the person's own speech throughout. Twice (two people)."""
    shots, sound = [], []
    for k, t in enumerate((cast.talker(3), cast.talker(1))):
        n = src.frames(t)
        b = frames_of(cast, 1.6)
        a = int(0.42 * (n - b))
        places = (LEFT, RIGHT) if k == 0 else (RIGHT, LEFT)
        stage = (int(W * 1.1), int(H * 1.1))
        roll = Layer(t, a, background_crop(src, t), (0, 0, stage[0], stage[1]))
        shots += [Shot(a, (Layer(t, 0, square(src, t), places[0]),)),
                  Shot(b, (roll,), stage=stage, camera=(0, 0, W, H), camera_end=(stage[0] - W, stage[1] - H, W, H)),
                  Shot(n - a - b, (Layer(t, a + b, square(src, t), places[1]),))]
        sound.append(own(t, 0, n))
    return [Recipe("broll", "broll", tuple(shots), tuple(sound), "speaker, b-roll of the room, speaker elsewhere; x2")]


def kind_reaction(src: Sources, cast: Cast) -> list[Recipe]:
    """A speaker, a cut to a listener alone in the frame while the voice goes on, back. Twice."""
    shots, sound = [], []
    for k, t in enumerate((cast.talker(1), cast.talker(2))):
        lis = cast.listener(k)
        n = src.frames(t)
        r = frames_of(cast, 1.5)
        a = int(0.42 * (n - r))
        off = min(src.frames(lis) - r, frames_of(cast, 4.0) * (k + 1))
        shots += [Shot(a, (Layer(t, 0, square(src, t), CENTER),)),
                  Shot(r, (Layer(lis, off, face_crop(src, lis, 2.4, off), CENTER),)),
                  Shot(n - a - r, (Layer(t, a + r, square(src, t), CENTER),))]
        sound.append(own(t, 0, n))
    return [Recipe("reaction", "reaction", tuple(shots), tuple(sound), "speaker / listener's reaction / speaker; x2")]


def kind_twoshot(src: Sources, cast: Cast) -> list[Recipe]:
    """Two-shot (speaker and listener side by side), close-up of the speaker, close-up of the
    listener (the voice goes on), the two-shot again. Twice, the sides swapped."""
    shots, sound = [], []
    for k, t in enumerate((cast.talker(1), cast.talker(4))):
        lis = cast.listener(k)
        n = src.frames(t)
        a, b, c = int(0.32 * n), int(0.28 * n), int(0.24 * n)
        d = n - a - b - c
        off = min(src.frames(lis) - n, frames_of(cast, 2.0) + frames_of(cast, 6.0) * k)
        sp, lp = (LEFT, RIGHT) if k == 0 else (RIGHT, LEFT)
        two = lambda j: (Layer(t, j, square(src, t), sp), Layer(lis, off + j, face_crop(src, lis, 3.2, off), lp))
        shots += [Shot(a, two(0)),
                  Shot(b, (Layer(t, a, face_crop(src, t, 1.9), CENTER),)),
                  Shot(c, (Layer(lis, off + a + b, face_crop(src, lis, 2.2, off), CENTER),)),
                  Shot(d, two(a + b + c))]
        sound.append(own(t, 0, n))
    return [Recipe("twoshot", "twoshot", tuple(shots), tuple(sound), "two-shot / speaker / listener / two-shot; x2")]


def kind_offscreen(src: Sources, cast: Cast) -> list[Recipe]:
    """One continuous shot: a person talks, listens with still lips (a frame of a pause of its
    speech held, breathing) while another voice is heard, talks again."""
    t, other = cast.talker(3), cast.talker(2)
    n = src.frames(t)
    p = src.pause_frame(t, 0.35, 0.6)
    hold = min(frames_of(cast, 2.8), src.frames(other) - frames_of(cast, 0.4))
    crop = square(src, t)
    shots = (Shot(p, (Layer(t, 0, crop, CENTER),)),
             Shot(hold, (Layer(t, p, crop, CENTER, hold=True),), enter="seamless"),
             Shot(n - p, (Layer(t, p, crop, CENTER),), enter="seamless"))
    sound = (own(t, 0, p), own(other, frames_of(cast, 0.4), hold), own(t, p, n - p))
    return [Recipe("offscreen", "offscreen", shots, sound,
                   f"{t} talks, holds its pause frame {p} under {other}'s voice for {hold} frames, talks on")]


def kind_narrator(src: Sources, cast: Cast) -> list[Recipe]:
    """A face that does not speak, under a narrator's voice."""
    lis = cast.listener(0)
    n = min(frames_of(cast, 10.0), src.frames(lis), src.audio_frames(cast.narration))
    off = min(src.frames(lis) - n, frames_of(cast, 4.0))
    shots = (Shot(n, (Layer(lis, off, face_crop(src, lis, 3.0, off), CENTER),)),)
    return [Recipe("narrator", "narrator", shots, (Sound(cast.narration, 0, n),), f"{lis} under {cast.narration}")]


def kind_fade(src: Sources, cast: Cast) -> list[Recipe]:
    """Speaker A fades to black, speaker B fades up elsewhere: 0.6 s each way, and 1 s each way."""
    out = []
    for a, b, pa, pb, sec in ((cast.talker(1), cast.talker(4), LEFT, RIGHT, 0.6),
                              (cast.talker(2), cast.talker(0), CENTER, LEFT, 1.0)):
        f = frames_of(cast, sec)
        off = frames_of(cast, 0.4)
        na, nb = src.frames(a) - off, src.frames(b)
        shots = (Shot(na, (Layer(a, off, square(src, a), pa),)),
                 Shot(nb, (Layer(b, 0, square(src, b), pb),), enter="fade", enter_frames=f))
        out.append(Recipe(f"fade-{a}-{b}", "fade", shots, (own(a, off, na), own(b, 0, nb)),
                          f"fade through black, {f} + {f} frames"))
    return out


def kind_dissolve(src: Sources, cast: Cast) -> list[Recipe]:
    """1 s cross-dissolves between two speakers at different places; the sound switches at the middle."""
    out = []
    for a, b, pa, pb in ((cast.talker(2), cast.talker(0), LEFT, RIGHT), (cast.talker(3), cast.talker(4), RIGHT, LEFT)):
        d = frames_of(cast, 1.0)
        na, nb = src.frames(a), src.frames(b)
        shots = (Shot(na, (Layer(a, 0, square(src, a), pa),)),
                 Shot(nb, (Layer(b, 0, square(src, b), pb),), enter="dissolve", enter_frames=d))
        half = d // 2
        sound = (own(a, 0, na - d + half), own(b, half, nb - half))
        out.append(Recipe(f"dissolve-{a}-{b}", "dissolve", shots, sound,
                          f"{d}-frame cross-dissolve, sound switching at its middle"))
    return out


def kind_pan(src: Sources, cast: Cast) -> list[Recipe]:
    """One continuous shot each, the camera panning steadily across a wider stage."""
    out = []
    t = cast.talker(3)
    stage = (W + W // 2, H)
    out.append(Recipe(f"pan-{t}", "pan", (Shot(src.frames(t), (Layer(t, 0, square(src, t), (600, 0, 720, 720)),),
                                                stage=stage, camera=(0, 0, W, H), camera_end=(W // 2, 0, W, H)),),
                      (own(t, 0, src.frames(t)),), "pan right to left by 640 px"))
    t = cast.talker(0)
    stage = (1600, 900)
    out.append(Recipe(f"pan-{t}", "pan", (Shot(src.frames(t), (Layer(t, 0, square(src, t), (500, 100, 800, 800)),),
                                                stage=stage, camera=(0, 0, W, H), camera_end=(320, 180, W, H)),),
                      (own(t, 0, src.frames(t)),), "diagonal pan by 320 x 180 px"))
    return out


def kind_zoom(src: Sources, cast: Cast) -> list[Recipe]:
    """One continuous shot each, the camera zooming in slowly on the face."""
    out = []
    for t, z in ((cast.talker(1), 1.5), (cast.talker(2), 1.35)):
        crop = square(src, t)
        x1, y1, x2, y2 = src.face(t)
        s = CENTER[2] / crop[2]
        fx = CENTER[0] + ((x1 + x2) / 2 - crop[0]) * s
        fy = CENTER[1] + ((y1 + y2) / 2 - crop[1]) * s
        cw, ch = W / z, H / z
        end = (min(max(0, fx - cw / 2), W - cw), min(max(0, fy - ch / 2), H - ch), cw, ch)
        out.append(Recipe(f"zoom-{t}", "zoom", (Shot(src.frames(t), (Layer(t, 0, crop, CENTER),), camera=(0, 0, W, H),
                                                     camera_end=end),),
                          (own(t, 0, src.frames(t)),), f"zoom in to {z}x on the face"))
    return out


KINDS: dict[str, Callable[[Sources, Cast], list[Recipe]]] = {
    "jump": kind_jump, "leftright": kind_leftright, "broll": kind_broll, "reaction": kind_reaction,
    "twoshot": kind_twoshot, "offscreen": kind_offscreen, "narrator": kind_narrator, "fade": kind_fade,
    "dissolve": kind_dissolve, "pan": kind_pan, "zoom": kind_zoom,
}


def make_recipes(kinds: Sequence[str], src: Sources, cast: Cast = SHARED_CAST) -> list[Recipe]:
    out = []
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown kind {k!r}; choose from {', '.join(KINDS)}")
        out += KINDS[k](src, cast)
    return out


def build_all(kinds: Sequence[str], src: Sources, folder: str | os.PathLike, cast: Cast = SHARED_CAST,
              force: bool = False) -> dict[str, tuple[Path, Truth]]:
    """Every recipe of the kinds into `folder` (NAME.mp4 and NAME.json), cached."""
    out = {}
    for r in make_recipes(kinds, src, cast):
        path = Path(folder) / f"{r.name}.mp4"
        out[r.name] = (path, build(r, src, path, force=force))
    return out


__all__ = [
    "Cast", "EXAMPLES_CAST", "Face", "KINDS", "Layer", "Recipe", "SHARED_CAST", "Shot", "Sound", "Sources", "Truth",
    "build", "build_all", "example_sources", "make_recipes", "render_audio", "render_frame", "shared_sources",
    "truth_of",
]
