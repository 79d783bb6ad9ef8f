"""Active-speaker detection (`lipsync speakers`) on composites of real clips with known per-frame truth.

    python benchmarks/bench_speakers.py --dry                      # build the composites, print them and their truth
    python benchmarks/bench_speakers.py --dry --look               # ... and a contact sheet PNG per composite
    python benchmarks/bench_speakers.py                            # every case, both weight files
    python benchmarks/bench_speakers.py --cases turns,hard --weights light_asd_ava
    python benchmarks/bench_speakers.py --reuse                    # re-score the JSON of an earlier run

The composites are side-by-side panels (hstack) cut from ../shared/media (see its SOURCES.md), all
at 25 fps, every panel scaled to the same height (--height, 360 px) so that the faces are of
similar size: the square talking clips talk1..talk5 whole, the two portrait clips cropped to a
square around the face (silent_long: 400x400 at (88, 60); silent_tall: 640x640 at (32, 80)), and
once silent_tall uncropped (a portrait panel 208 px wide, a smaller face). talk1 (variable rate)
and talk4 (30 fps) are resampled to 25 fps by ffmpeg's fps filter from t = 0, as their audio.
The audio track (AAC, 44.1 kHz mono) is always real speech of one of the talking clips, aligned
with the footage it came from. Composites are cached in --work (outside the repository) and
rebuilt only when their recipe changes.

Cases and their truth (`truth[i]`: the set of panels that speak in frame i):

    easy    talkX beside a face that does not speak (silent_long, silent_tall, either side), talkX's
            audio. truth = {talkX's panel} in every frame, pauses included.
    three   silent_long, silent_tall and talkX, the speaker at each position in turn. Same truth.
    turns   an interview: panels A and B, turns A B A B. Each clip is split in a pause of its
            speech (the quietest 0.2 s between 2.0 and 2.9 s): A plays its first part, then B its
            first part, A its second, B its second, each with its own speech from the same moments.
            In its listening turns a panel shows its clip's pause frame (a resting mouth) held with a
            slight breathing motion (sub-pixel scale, shift and rotation, no lip motion); the cuts
            at the split are seamless, the others (B's first turn, A's last listening turn) are
            jump cuts within the panel, as in an edited interview. truth = {the turn-holder}.
    hard    every face moves its lips. talkX | talkY (| talkZ) playing their own footage, the audio
            of one of them only: truth = {that panel}; and turns of 2 s in which every face keeps
            talking (footage looped every 4.8 s) while the audio is the turn-holder's own speech
            from the same moment of its footage: truth = {the turn-holder}.

Metrics, per composite and per case, for each weight file (`lipsync speakers VIDEO --json
--weights W`, one process per run, timed from the outside):

    accuracy      share of frames where `dubbed` (its track indices mapped to panels by the x of the
                  box centre) equals the truth set exactly
    voiced acc.   the same over the frames where the audio is voiced (a 40 ms RMS above the clip's
                  95th percentile - 30 dB), since nobody speaks in a pause between sentences
    wrong face    share of frames in which a face that does not speak (not in the truth set) is dubbed
    missed        share of frames in which the speaker is not dubbed
    switch lag    per turn change: seconds from the change to the first frame from which `dubbed`
                  is exactly {the new turn-holder} for 0.5 s (13 frames, or to the turn's end); "never" when
                  that does not happen within the turn. "from onset": from the turn's first voiced
                  frame instead. Target: at most 0.5 s. A * marks a change whose new speaker was
                  already the face dubbed in the frame before it (a switch that cost nothing, or
                  a face that was never left).
    cost          the process's wall seconds and the JSON's `seconds` per second of video
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MEDIA = Path(os.environ.get("LIPSYNC_MEDIA", HERE.parent.parent / "shared" / "media"))
# Weight files by name where the registry has no local copy (light_asd_talkset ships in the package;
# light_asd_ava is a download, also kept in ../shared/weights): --weights NAME runs with this file.
WEIGHTS_DIR = Path(os.environ.get("LIPSYNC_WEIGHTS_DIR", HERE.parent.parent / "shared" / "weights"))
PACKAGED = {"light_asd_talkset"}
FPS = 25
SR = 44100
SPF = SR // FPS  # audio samples per video frame (1764)
WEIGHTS = ("light_asd_talkset", "light_asd_ava")
CASES = ("easy", "three", "turns", "hard")
TALK = ("talk1", "talk2", "talk3", "talk4", "talk5")
HOLD_FRAMES = 13  # a switch counts once `dubbed` holds the new speaker this long (0.52 s) or to the turn's end
RECIPE_VERSION = 2  # bump when the way composites are built changes (rebuilds the cache)

# Source -> (file, crop "w:h:x:y" or None, whether the panel is square). Crops are in source pixels.
SOURCES = {
    **{t: (f"{t}.mp4", None, True) for t in TALK},
    "silent_long": ("silent_long.mp4", "400:400:88:60", True),
    "silent_tall": ("silent_tall.mp4", "640:640:32:80", True),
    "silent_tall_full": ("silent_tall.mp4", None, False),
}
SHORT = {"silent_long": "SL", "silent_tall": "ST", "silent_tall_full": "STfull"}


def short(src: str) -> str:
    return SHORT.get(src, src.replace("talk", "T"))


def ffmpeg() -> str:
    env = os.environ.get("LIPSYNC_FFMPEG")
    if env:
        return env
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# ----------------------------------------------------------------------------------------------
# Sources, decoded once per run at 25 fps and the panel size


class Media:
    def __init__(self, height: int):
        self.height = height
        self._video: dict[str, np.ndarray] = {}
        self._audio: dict[str, np.ndarray] = {}

    def panel_width(self, src: str) -> int:
        return self.video(src).shape[2]

    def video(self, src: str) -> np.ndarray:
        """(frames, H, W, 3) uint8 RGB at 25 fps, frame i at i / 25 s of the source."""
        if src not in self._video:
            file, crop, square = SOURCES[src]
            h = self.height
            chain = ["fps=25:start_time=0"]  # pads with the first frame if the stream starts after 0 (talk1)
            if crop:
                chain.append(f"crop={crop}")
            chain.append(f"scale={h}:{h}:flags=bicubic" if square else f"scale=-2:{h}:flags=bicubic")
            chain.append("format=rgb24")
            proc = subprocess.run([ffmpeg(), "-v", "error", "-nostdin", "-threads", "1", "-i", str(MEDIA / file), "-an",
                                   "-vf", ",".join(chain), "-f", "rawvideo", "-"], stdout=subprocess.PIPE, check=True)
            raw = np.frombuffer(proc.stdout, np.uint8)
            w = h if square else int(round(h * 704 / 1216 / 2)) * 2
            if raw.size % (h * w * 3):
                raise SystemExit(f"{src}: decoded size {raw.size} is not a multiple of {w}x{h}x3")
            self._video[src] = raw.reshape(-1, h, w, 3)
        return self._video[src]

    def audio(self, src: str) -> np.ndarray:
        """float32 mono at 44.1 kHz from t = 0."""
        if src not in self._audio:
            proc = subprocess.run([ffmpeg(), "-v", "error", "-nostdin", "-i", str(MEDIA / SOURCES[src][0]), "-vn",
                                   "-ac", "1", "-ar", str(SR), "-f", "f32le", "-"], stdout=subprocess.PIPE, check=True)
            self._audio[src] = np.frombuffer(proc.stdout, np.float32).copy()
        return self._audio[src]

    def frames(self, src: str) -> int:
        """Frames with both footage and a full frame of audio."""
        n = len(self.video(src))
        if src in TALK:
            n = min(n, len(self.audio(src)) // SPF)
        return n


def frame_db(samples: np.ndarray) -> np.ndarray:
    """RMS level in dB of each 40 ms video frame of a 44.1 kHz track."""
    n = len(samples) // SPF
    x = samples[: n * SPF].reshape(n, SPF).astype(np.float64)
    return 10 * np.log10(np.mean(x * x, axis=1) + 1e-12)


def voiced_mask(samples: np.ndarray) -> np.ndarray:
    db = frame_db(samples)
    if not len(db):
        return np.zeros(0, bool)
    v = db > np.percentile(db, 95) - 30.0
    # close gaps of one frame, then drop isolated voiced frames
    v = v | (np.roll(v, 1) & np.roll(v, -1))
    v = v & (np.roll(v, 1) | np.roll(v, -1))
    return v


def pause_frame(media: Media, src: str, lo: float = 2.0, hi: float = 2.9) -> int:
    """The centre of the quietest 0.2 s (5 frames) between lo and hi seconds of a talking clip."""
    db = frame_db(media.audio(src))
    smooth = np.convolve(db, np.ones(5) / 5, mode="same")
    a, b = int(lo * FPS), int(hi * FPS) + 1
    return a + int(np.argmin(smooth[a:b]))


# ----------------------------------------------------------------------------------------------
# Composites: per output frame, what each panel shows and whose audio plays


@dataclass
class Shot:
    src: str
    frame: int
    hold: int = -1  # >= 0: the k-th frame of a held (listening) stretch; the breathing motion's phase
    hold_len: int = 0


@dataclass
class Composite:
    name: str
    case: str
    panels: list[str]  # source of each panel, left to right
    shots: list[list[Shot]]  # shots[panel][frame]
    sound: list[tuple[str, int] | None]  # per frame: (source, source frame) of the audio, or silence
    truth: list[frozenset[int]]  # per frame: the panels that speak
    changes: list[tuple[int, int]] = field(default_factory=list)  # (frame, new speaker panel) per turn change
    note: str = ""

    @property
    def frames(self) -> int:
        return len(self.truth)

    def recipe(self) -> str:
        data = [RECIPE_VERSION, self.panels, [[(s.src, s.frame, s.hold, s.hold_len) for s in p] for p in self.shots],
                self.sound]
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:16]


def play(src: str, start: int, n: int) -> list[Shot]:
    return [Shot(src, start + k) for k in range(n)]


def hold(src: str, frame: int, n: int) -> list[Shot]:
    return [Shot(src, frame, k, n) for k in range(n)]


def looped(src: str, n: int, period: int) -> list[Shot]:
    return [Shot(src, k % period) for k in range(n)]


def single_speaker(name, case, panels, speaker, media, offsets=None, note="") -> Composite:
    """One talking panel with its own audio; the others play from their offsets (in frames)."""
    talker = panels[speaker]
    n = media.frames(talker)
    for p, src in enumerate(panels):
        n = min(n, media.frames(src) - (offsets or {}).get(p, 0))
    shots = [play(src, (offsets or {}).get(p, 0), n) for p, src in enumerate(panels)]
    sound = [(talker, k) for k in range(n)]
    return Composite(name, case, list(panels), shots, sound, [frozenset([speaker])] * n, note=note)


def case_easy(media: Media) -> list[Composite]:
    out = []
    for k, t in enumerate(TALK):
        for silent in ("silent_long", "silent_tall"):
            room = media.frames(silent) - media.frames(t)
            off = (k * 75 + (40 if silent == "silent_tall" else 0)) % max(1, room)
            out.append(single_speaker(f"easy-{short(t)}|{short(silent)}", "easy", [t, silent], 0, media, {1: off}))
            out.append(single_speaker(f"easy-{short(silent)}|{short(t)}", "easy", [silent, t], 1, media, {0: off}))
    out.append(single_speaker("easy-T2|STfull", "easy", ["talk2", "silent_tall_full"], 0, media, {1: 100},
                              note="silent_tall uncropped: portrait panel, smaller face"))
    return out


def case_three(media: Media) -> list[Composite]:
    out = []
    for k, (t, pos) in enumerate(zip(TALK, (1, 0, 2, 1, 2))):
        silents = ["silent_long", "silent_tall"] if k % 2 == 0 else ["silent_tall", "silent_long"]
        panels = silents[:pos] + [t] + silents[pos:]
        offs = {p: (k * 60 + 17 * p) % max(1, media.frames(s) - media.frames(t))
                for p, s in enumerate(panels) if s != t}
        name = "three-" + "|".join(short(s) for s in panels)
        out.append(single_speaker(name, "three", panels, pos, media, offs))
    return out


def interview(name: str, a: str, b: str, media: Media) -> Composite:
    """Turns A B A B, each clip split at a pause; the listener holds a frame with breathing motion."""
    na, nb = media.frames(a), media.frames(b)
    sa, sb = pause_frame(media, a), pause_frame(media, b)
    turns = [(0, a, 0, sa), (1, b, 0, sb), (0, a, sa, na), (1, b, sb, nb)]  # (panel, source, first, end) frames
    shots: list[list[Shot]] = [[], []]
    sound, truth, changes = [], [], []
    pause = {0: sa, 1: sb}  # a listener holds its pause frame: a closed or resting mouth
    for panel, src, first, end in turns:
        n = end - first
        if truth:
            changes.append((len(truth), panel))
        other = 1 - panel
        shots[panel] += play(src, first, n)
        shots[other] += hold((a, b)[other], pause[other], n)
        sound += [(src, first + k) for k in range(n)]
        truth += [frozenset([panel])] * n
    note = f"turns {sa / FPS:.2f}+{sb / FPS:.2f}+{(na - sa) / FPS:.2f}+{(nb - sb) / FPS:.2f} s"
    return Composite(name, "turns", [a, b], shots, sound, truth, changes, note)


def case_turns(media: Media) -> list[Composite]:
    pairs = [("talk2", "talk3"), ("talk3", "talk5"), ("talk1", "talk4"), ("talk5", "talk2")]
    return [interview(f"turns-{short(a)}|{short(b)}", a, b, media) for a, b in pairs]


def talking_turns(name: str, panels: list[str], order: list[int], media: Media, turn: int = 50,
                  period: int = 120) -> Composite:
    """Every panel plays its own footage (looped every `period` frames); the audio is the turn-holder's."""
    n = turn * len(order)
    shots = [looped(src, n, period) for src in panels]
    sound, truth, changes = [], [], []
    for k, p in enumerate(order):
        if k:
            changes.append((k * turn, p))
        sound += [(panels[p], (k * turn + j) % period) for j in range(turn)]
        truth += [frozenset([p])] * turn
    return Composite(name, "hard", list(panels), shots, sound, truth, changes,
                     f"{len(order)} turns of {turn / FPS:.1f} s, footage looped every {period / FPS:.1f} s")


def case_hard(media: Media) -> list[Composite]:
    out = []
    for x in TALK:
        for y in TALK:
            if x != y:
                out.append(single_speaker(f"hard-{short(x)}|{short(y)} audio {short(x)}", "hard", [x, y], 0, media))
    tri = ["talk2", "talk3", "talk5"]
    for p, t in enumerate(tri):
        out.append(single_speaker(f"hard-T2|T3|T5 audio {short(t)}", "hard", tri, p, media))
    for a, b in [("talk2", "talk3"), ("talk5", "talk4"), ("talk1", "talk3")]:
        out.append(talking_turns(f"hard-turns-{short(a)}|{short(b)}", [a, b], [0, 1, 0, 1, 0], media))
    out.append(talking_turns("hard-turns-T2|T3|T5", tri, [0, 1, 2, 0, 1], media))
    return out


BUILDERS = {"easy": case_easy, "three": case_three, "turns": case_turns, "hard": case_hard}


# ----------------------------------------------------------------------------------------------
# Rendering


def breathing(img: np.ndarray, k: int, n: int) -> np.ndarray:
    """A held frame with a slight head motion: sub-pixel scale (+-0.8%), shift (+-1.5 px) and
    rotation (+-0.5 degrees), eased in and out over 0.3 s so that the cuts to footage are seamless."""
    import cv2

    t = k / FPS
    env = min(1.0, k / 7, (n - 1 - k) / 7) if n > 1 else 0.0
    scale = 1 + env * 0.008 * math.sin(2 * math.pi * t / 3.7)
    dx = env * 1.5 * math.sin(2 * math.pi * t / 5.3 + 0.7)
    dy = env * (1.0 * math.sin(2 * math.pi * t / 3.7) + 0.4 * math.sin(2 * math.pi * t / 1.9))
    angle = env * 0.5 * math.sin(2 * math.pi * t / 6.1 + 1.3)
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h * 0.45), angle, scale)
    m[0, 2] += dx
    m[1, 2] += dy
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def panel_frame(media: Media, shot: Shot) -> np.ndarray:
    img = media.video(shot.src)[shot.frame]
    return breathing(img, shot.hold, shot.hold_len) if shot.hold >= 0 else img


def render_audio(comp: Composite, media: Media) -> np.ndarray:
    out = np.zeros(comp.frames * SPF, np.float32)
    fade = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, 88, dtype=np.float32))  # 2 ms ramps at every cut
    prev = None
    for i, s in enumerate(comp.sound):
        if s is None:
            prev = None
            continue
        src, f = s
        chunk = media.audio(src)[f * SPF:(f + 1) * SPF].copy()
        if prev != (src, f - 1):  # a cut: fade in here, fade out the previous chunk
            chunk[: len(fade)] *= fade
            if i:
                out[i * SPF - len(fade): i * SPF] *= fade[::-1]
        out[i * SPF: i * SPF + len(chunk)] = chunk
        prev = s
    return out


def spans(comp: Composite, media: Media) -> list[tuple[int, int]]:
    x, out = 0, []
    for src in comp.panels:
        w = media.panel_width(src)
        out.append((x, x + w))
        x += w
    return out


def build(comp: Composite, media: Media, work: Path) -> Path:
    folder = work / "composites"
    folder.mkdir(parents=True, exist_ok=True)
    stem = comp.name.replace("|", "_").replace(" ", "_")
    video, meta = folder / f"{stem}.mp4", folder / f"{stem}.json"
    recipe = f"{comp.recipe()}-h{media.height}"
    if video.exists() and meta.exists() and json.loads(meta.read_text()).get("recipe") == recipe:
        return video
    import soundfile

    wav = folder / f"{stem}.wav"
    samples = render_audio(comp, media)
    soundfile.write(wav, samples, SR, subtype="PCM_16")
    width = sum(media.panel_width(s) for s in comp.panels)
    h = media.height
    tmp = video.with_suffix(".part.mp4")
    enc = subprocess.Popen([ffmpeg(), "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                            "-s", f"{width}x{h}", "-r", str(FPS), "-i", "-", "-i", str(wav), "-map", "0:v", "-map", "1:a",
                            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-threads", "1",
                            "-c:a", "aac", "-b:a", "128k", "-shortest", str(tmp)], stdin=subprocess.PIPE)
    for i in range(comp.frames):
        row = np.concatenate([panel_frame(media, comp.shots[p][i]) for p in range(len(comp.panels))], axis=1)
        enc.stdin.write(np.ascontiguousarray(row).tobytes())
    enc.stdin.close()
    if enc.wait() != 0:
        raise SystemExit(f"encoding {comp.name} failed")
    tmp.replace(video)
    meta.write_text(json.dumps(truth_record(comp, media) | {"recipe": recipe}, indent=1))
    return video


def truth_record(comp: Composite, media: Media) -> dict:
    voiced = voiced_mask(render_audio(comp, media))
    return {"name": comp.name, "case": comp.case, "panels": comp.panels, "spans": spans(comp, media),
            "frames": comp.frames, "fps": FPS, "truth": [sorted(t) for t in comp.truth],
            "voiced": voiced.astype(int).tolist(), "changes": comp.changes, "note": comp.note}


def contact_sheet(video: Path, out: Path, frames: int):
    """Six frames spread over the composite, stacked, a third of the size."""
    step = max(1, frames // 6)
    subprocess.run([ffmpeg(), "-v", "error", "-nostdin", "-y", "-i", str(video), "-vf",
                    f"select='not(mod(n\\,{step}))',scale=iw/3:-2,tile=1x6", "-frames:v", "1", str(out)], check=True)


# ----------------------------------------------------------------------------------------------
# Running `lipsync speakers` and scoring it


def weights_arg(weights: str) -> str:
    """A registry name, or for a name the package does not ship, the file of that name in
    WEIGHTS_DIR where there is one (the registry's own download location may be empty)."""
    if os.sep in weights or weights in PACKAGED:
        return weights
    local = WEIGHTS_DIR / f"{weights}.model"
    return str(local) if local.exists() else weights


def run_speakers(video: Path, weights: str, extra: list[str], timeout: float) -> dict:
    """One `lipsync speakers VIDEO --json --weights W` process: its JSON, wall and CPU seconds;
    {"error": ...} instead of "result" when it fails (the benchmark goes on with the next run)."""
    cmd = [sys.executable, "-m", "lipsync_cli.cli", "speakers", str(video), "--json", "--weights", weights_arg(weights),
           *extra]
    code = code_version()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"wall": time.perf_counter() - t0, "cpu": 0.0, "command": shlex.join(cmd[2:]), "code": code,
                "error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    run = {"wall": wall, "cpu": cpu, "command": shlex.join(cmd[2:]), "code": code}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stderr[-3000:]}", file=sys.stderr)
        return run | {"error": f"exit {proc.returncode}: {tail[:200]}"}
    out = proc.stdout.strip()
    try:
        run["result"] = json.loads(out)
    except json.JSONDecodeError:
        try:
            run["result"] = json.loads(out[out.index("{"):])
        except ValueError:
            return run | {"error": "no JSON on stdout: " + out[-200:]}
    return run


def panel_of(box, span_list) -> int | None:
    cx = (box[0] + box[2]) / 2
    for k, (a, b) in enumerate(span_list):
        if a <= cx < b:
            return k
    return None


def score(meta: dict, run: dict) -> dict:
    if "error" in run:
        return {"error": run["error"], "frames": 0, "duration": meta["frames"] / FPS, "wall": run["wall"],
                "cpu": run["cpu"]}
    res = run["result"]
    span_list = meta["spans"]
    truth = [frozenset(t) for t in meta["truth"]]
    voiced = np.array(meta["voiced"], bool)
    track_panel = {t["index"]: panel_of(t["box"], span_list) for t in res["tracks"]}
    dubbed_raw = res["dubbed"]
    T = min(len(truth), len(dubbed_raw))
    # a track off every panel (None) is a wrong face too
    dubbed = [frozenset(track_panel.get(i, -1) if track_panel.get(i) is not None else -1 for i in d)
              for d in dubbed_raw[:T]]
    exact = np.array([dubbed[i] == truth[i] for i in range(T)])
    # The rule: between turns the last speaker keeps the face until the next one starts,
    # so in the pause at a turn's start (the cut to its first voiced frame) the previous
    # turn-holder is right too
    keeps = exact.copy()
    for (c, _), (_, before) in zip(meta["changes"][1:], meta["changes"][:-1]):
        i = c
        while i < T and not voiced[i]:
            keeps[i] |= dubbed[i] == frozenset([before])
            i += 1
    wrong = np.array([bool(dubbed[i] - truth[i]) for i in range(T)])
    missed = np.array([not truth[i] <= dubbed[i] for i in range(T)])
    v = voiced[:T]
    lags, onset_lags, early = [], [], []
    changes = meta["changes"]
    ends = [c for c, _ in changes[1:]] + [T]
    for (c, p), end in zip(changes, ends):
        end = min(end, T)
        want = frozenset([p])
        lag = None
        for j in range(c, end):
            stop = min(end, j + HOLD_FRAMES)
            if all(dubbed[i] == want for i in range(j, stop)):
                lag = j
                break
        early.append(c > 0 and dubbed[c - 1] == want)  # the new speaker was already the dubbed face
        on = next((i for i in range(c, end) if v[i]), c)
        lags.append(None if lag is None else (lag - c) / FPS)
        onset_lags.append(None if lag is None else max(0, lag - on) / FPS)
    per_panel = {}
    for t in res["tracks"]:
        k = track_panel[t["index"]]
        per_panel.setdefault(k, []).append(t)
    mean_scores = []
    for k in range(len(span_list)):
        ts = per_panel.get(k, [])
        vals = [s for t in ts for s in t["scores"] if s is not None]
        mean_scores.append(float(np.mean(vals)) if vals else None)
    duration = res.get("duration") or meta["frames"] / FPS
    return {
        "frames": T, "frames_json": res.get("frames"), "frames_truth": len(truth),
        "tracks": len(res["tracks"]), "tracks_per_panel": [len(per_panel.get(k, [])) for k in range(len(span_list))],
        "stray_tracks": len(per_panel.get(None, [])),
        "accuracy": float(exact.mean()) if T else 0.0,
        "keeps_accuracy": float(keeps.mean()) if T else 0.0,
        "voiced_accuracy": float(exact[v].mean()) if v.any() else None, "voiced_frames": int(v.sum()),
        "wrong": float(wrong.mean()) if T else 0.0, "missed": float(missed.mean()) if T else 0.0,
        "empty": float(np.mean([not d for d in dubbed])) if T else 0.0,
        "lags": lags, "onset_lags": onset_lags, "early": early, "mean_scores": mean_scores,
        "duration": duration, "wall": run["wall"], "cpu": run["cpu"], "seconds": res.get("seconds"),
        "stage_seconds": res.get("stage_seconds") or {},
    }


# ----------------------------------------------------------------------------------------------
# Tables


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def fmt_lags(lags, early=None) -> str:
    """Per turn change; * where the new speaker was already the one dubbed before the change."""
    if not lags:
        return "-"
    early = early or [False] * len(lags)
    return ", ".join(("never" if x is None else f"{x:.2f}") + ("*" if e else "") for x, e in zip(lags, early))


def fmt_scores(scores) -> str:
    return " / ".join("-" if s is None else f"{s:.2f}" for s in scores)


def case_table(rows: list[tuple[str, str, dict]], turns: bool) -> str:
    head = ["composite", "weights", "frames", "tracks per panel", "mean score per panel", "accuracy", "voiced acc.",
            "wrong face", "missed", "none dubbed"]
    if turns:
        head += ["pauses to the last speaker", "switch lag s", "from onset s"]
    head += ["wall s / s", "`seconds` / s"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for name, w, s in rows:
        if "error" in s:
            lines.append("| " + " | ".join([name.replace("|", "\\|"), w.replace("light_asd_", ""),
                                            "failed: " + s["error"].replace("|", "\\|")]
                                           + [""] * (len(head) - 3)) + " |")
            continue
        cells = [name.replace("|", "\\|"), w.replace("light_asd_", ""),
                 str(s["frames"]) + ("" if s["frames_json"] == s["frames_truth"] else f" (json {s['frames_json']})"),
                 " / ".join(map(str, s["tracks_per_panel"])) + (f" +{s['stray_tracks']} stray" if s["stray_tracks"] else ""),
                 fmt_scores(s["mean_scores"]), pct(s["accuracy"]), pct(s["voiced_accuracy"]), pct(s["wrong"]),
                 pct(s["missed"]), pct(s["empty"])]
        if turns:
            cells += [pct(s.get("keeps_accuracy", s["accuracy"])), fmt_lags(s["lags"], s["early"]),
                      fmt_lags(s["onset_lags"], s["early"])]
        sec = "-" if s["seconds"] is None else f"{s['seconds'] / s['duration']:.2f}"
        cells += [f"{s['wall'] / s['duration']:.2f}", sec]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def group_of(comp: Composite) -> str:
    """The summary's rows: the hard case split into its three kinds."""
    if comp.case != "hard":
        return comp.case
    if comp.changes:
        return "hard: talking turns"
    return "hard: three faces" if len(comp.panels) == 3 else "hard: pairs"


def pair_matrix(rows: list[tuple[str, dict]]) -> str:
    """Accuracy of the two-face single-speech composites 'hard-TX|TY audio TX' as a table."""
    cells = {}
    for name, s in rows:
        parts = name.removeprefix("hard-").split(" audio ")
        faces = parts[0].split("|")
        if len(faces) != 2 or len(parts) != 2 or parts[1] != faces[0]:
            continue
        cells[tuple(faces)] = "failed" if "error" in s else pct(s["accuracy"])
    if not cells:
        return ""
    names = sorted({f for pair in cells for f in pair})
    lines = ["| speech of \\ other face | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for x in names:
        lines.append(f"| {x} | " + " | ".join(cells.get((x, y), "") for y in names) + " |")
    return "\n".join(lines)


def lag_cells(lags: list) -> list[str]:
    """'median / max' and 'k of n' within 0.5 s; a switch that never happened counts as the longest."""
    if not lags:
        return ["-", "-"]
    known = sorted(x for x in lags if x is not None)
    ranked = known + [math.inf] * (len(lags) - len(known))
    med = statistics.median(ranked)
    mx = "never" if len(known) < len(lags) else f"{known[-1]:.2f}"
    return [f"{'never' if med == math.inf else f'{med:.2f}'} / {mx}", f"{sum(1 for x in known if x <= 0.5)} of {len(lags)}"]


def summary_table(results: dict) -> str:
    head = ["composites", "weights", "n", "frames", "accuracy", "pauses to the last speaker", "voiced acc.", "wrong face", "missed",
            "turn changes (already dubbed)", "switch lag median / max s", "<= 0.5 s", "from onset: median / max s", "<= 0.5 s",
            "wall s / s", "`seconds` / s", "CPU s / s"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for case, by_w in results.items():
        for w, rows in by_w.items():
            if not rows:
                continue
            failed = sum(1 for _, s in rows if "error" in s)
            ss = [s for _, s in rows if "error" not in s]
            if not ss:
                lines.append("| " + " | ".join([case, w.replace("light_asd_", ""), f"{failed} failed"]
                                               + [""] * (len(head) - 3)) + " |")
                continue
            fr = sum(s["frames"] for s in ss)
            vf = sum(s["voiced_frames"] for s in ss)
            wavg = lambda key: sum(s[key] * s["frames"] for s in ss) / fr
            vacc = sum((s["voiced_accuracy"] or 0) * s["voiced_frames"] for s in ss) / vf if vf else None
            lags = [x for s in ss for x in s["lags"]]
            onset = [x for s in ss for x in s["onset_lags"]]
            dur = sum(s["duration"] for s in ss)
            secs = [s["seconds"] for s in ss]
            keeps = sum(s.get("keeps_accuracy", s["accuracy"]) * s["frames"] for s in ss) / fr
            cells = [case, w.replace("light_asd_", ""), str(len(ss)) + (f" ({failed} failed)" if failed else ""), str(fr),
                     pct(wavg("accuracy")), pct(keeps) if lags else "-", pct(vacc),
                     pct(wavg("wrong")), pct(wavg("missed")),
                     f"{len(lags)} ({sum(x for s in ss for x in s['early'])})" if lags else "-",
                     *lag_cells(lags), *lag_cells(onset),
                     f"{sum(s['wall'] for s in ss) / dur:.2f}",
                     "-" if None in secs else f"{sum(secs) / dur:.2f}", f"{sum(s['cpu'] for s in ss) / dur:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stage_table(results: dict) -> str:
    """Each stage's seconds (the JSON's stage_seconds) per second of video, over every composite run."""
    per_w: dict[str, dict[str, float]] = {}
    dur: dict[str, float] = {}
    for by_w in results.values():
        for w, rows in by_w.items():
            for _, s in rows:
                if "error" in s:
                    continue
                dur[w] = dur.get(w, 0.0) + s["duration"]
                for k, v in s["stage_seconds"].items():
                    per_w.setdefault(w, {})[k] = per_w.setdefault(w, {}).get(k, 0.0) + v
    stages = sorted({k for d in per_w.values() for k in d}, key=lambda k: -max(d.get(k, 0) for d in per_w.values()))
    if not stages:
        return ""
    head = ["weights", "video s"] + stages
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for w, d in per_w.items():
        lines.append("| " + " | ".join([w.replace("light_asd_", ""), f"{dur[w]:.1f}"]
                                       + [f"{d.get(k, 0.0) / dur[w]:.3f}" for k in stages]) + " |")
    return "\n".join(lines)


def code_version() -> str:
    def git(*a):
        return subprocess.run(["git", "-C", str(HERE.parent), *a], capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "lipsync_cli")
    return f"lipsync at {head}" + (" with uncommitted changes in lipsync_cli/" if dirty else "")


def machine() -> str:
    cpu = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    try:
        torch = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch = "?"
    return f"{cpu}, {os.cpu_count()} cores, torch {torch}, Python {platform.python_version()}"


def dry_summary(comps: list[Composite], media: Media, videos: dict[str, Path]) -> str:
    from lipsync_cli.media import probe

    head = ["composite", "panels (x spans)", "frames", "duration s", "probe: frames / s / fps", "audio", "voiced",
            "truth"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for c in comps:
        rec = json.loads(videos[c.name].with_suffix(".json").read_text())
        info = probe(videos[c.name])
        v = info.video
        span_txt = ", ".join(f"{short(s)} {a}-{b}" for s, (a, b) in zip(c.panels, rec["spans"]))
        audio_srcs = sorted({s[0] for s in c.sound if s})
        if c.changes:
            bounds = [0] + [f for f, _ in c.changes] + [c.frames]
            who = [next(iter(c.truth[b])) for b in bounds[:-1]]
            truth = "turns: " + ", ".join(f"{short(c.panels[p])} {a / FPS:.2f}-{b / FPS:.2f}"
                                          for p, a, b in zip(who, bounds[:-1], bounds[1:]))
        else:
            truth = f"panel {next(iter(c.truth[0]))} ({short(c.panels[next(iter(c.truth[0]))])}) every frame"
        if c.note:
            truth += f"; {c.note}"
        lines.append("| " + " | ".join([
            c.name.replace("|", "\\|"), span_txt, str(c.frames), f"{c.frames / FPS:.2f}",
            f"{v.frame_count} / {v.duration:.2f} / {v.fps}" + ("" if info.audio else " NO AUDIO"),
            ", ".join(short(s) for s in audio_srcs), pct(float(np.mean(rec["voiced"]))), truth]) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ",".join(CASES))
    ap.add_argument("--weights", default=",".join(WEIGHTS), help="comma-separated weight names or paths")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lipsync-speakers"), help="cache of composites and results")
    ap.add_argument("--height", type=int, default=360, help="panel height in pixels")
    ap.add_argument("--only", default="", help="only composites whose name contains this")
    ap.add_argument("--dry", action="store_true", help="build the composites and print them with their truth")
    ap.add_argument("--look", action="store_true", help="write a contact sheet PNG of every composite (in WORK/look)")
    ap.add_argument("--reuse", action="store_true", help="score the saved JSON of an earlier run where there is one")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one `lipsync speakers` run may take")
    ap.add_argument("extra", nargs="*", help="after --: extra arguments for `lipsync speakers`")
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    for c in cases:
        if c not in BUILDERS:
            ap.error(f"unknown case {c!r}")
    weights = [w for w in args.weights.split(",") if w]

    media = Media(args.height)
    comps: list[Composite] = []
    for c in cases:
        comps += [x for x in BUILDERS[c](media) if args.only in x.name]
    videos = {}
    for comp in comps:
        videos[comp.name] = build(comp, media, args.work)
        if args.look:
            (args.work / "look").mkdir(parents=True, exist_ok=True)
            contact_sheet(videos[comp.name], args.work / "look" / (videos[comp.name].stem + ".png"), comp.frames)

    print("# `lipsync speakers` on composites with known truth\n")
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}; {code_version()}")
    print(f"`python benchmarks/bench_speakers.py {shlex.join(argv if argv is not None else sys.argv[1:])}`\n")
    if args.dry:
        for c in cases:
            sub = [x for x in comps if x.case == c]
            if sub:
                print(f"## {c}\n\n{dry_summary(sub, media, videos)}\n")
        return

    results: dict[str, dict[str, list]] = {c: {w: [] for w in weights} for c in cases}
    groups: dict[str, dict[str, list]] = {}
    when: list[float] = []
    codes: set[str] = set()
    rdir = args.work / "results"
    rdir.mkdir(parents=True, exist_ok=True)
    for w in weights:
        wtag = Path(w).stem if os.sep in w else w
        for comp in comps:
            video = videos[comp.name]
            meta = json.loads(video.with_suffix(".json").read_text())
            saved = rdir / f"{video.stem}.{wtag}.json"
            run = None
            if args.reuse and saved.exists():
                run = json.loads(saved.read_text())
                run.setdefault("when", saved.stat().st_mtime - run["wall"])
                if run.get("recipe") != meta["recipe"]:
                    run = None
            if run is None:
                run = run_speakers(video, w, args.extra, args.timeout) | {"recipe": meta["recipe"], "when": time.time()}
                if "error" not in run:
                    saved.write_text(json.dumps(run))
            when.append(run["when"])
            codes.add(run.get("code", "?"))
            s = score(meta, run)
            results[comp.case][w].append((comp.name, s))
            groups.setdefault(group_of(comp), {x: [] for x in weights})[w].append((comp.name, s))
            said = s["error"] if "error" in s else f"accuracy {s['accuracy']:.3f}"
            print(f"<!-- {comp.name} {wtag}: {said}, wall {s['wall']:.1f} s -->", flush=True)
    utc = datetime.timezone.utc
    print(f"\nRuns made {datetime.datetime.fromtimestamp(min(when), utc):%Y-%m-%d %H:%M}"
          f"-{datetime.datetime.fromtimestamp(max(when), utc):%H:%M} UTC; code: {'; '.join(sorted(codes))}.")
    print("\n## Summary\n\n" + summary_table(groups) + "\n")
    stages = stage_table(results)
    if stages:
        print("Stage seconds per second of video (the JSON's `stage_seconds`), all composites:\n\n" + stages + "\n")
    for c in cases:
        rows = [(n, w, s) for w in weights for n, s in results[c][w]]
        if rows:
            print(f"## {c}\n\n" + case_table(rows, turns=any(s.get("lags") for _, _, s in rows)) + "\n")
        if c == "hard" and rows:
            for w in weights:
                mat = pair_matrix(results[c][w])
                if mat:
                    print(f"Two talking faces, {w}: accuracy by the face whose speech plays (row) and the other "
                          f"face (column)\n\n{mat}\n")


if __name__ == "__main__":
    main()
