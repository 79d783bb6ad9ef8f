"""Media I/O over ffmpeg: probing, streaming frame decode and encode, audio decode.

ffmpeg commands are built with ffmpeg-python and run against whichever ffmpeg binary is found:
$LIPSYNC_FFMPEG, then `ffmpeg` on PATH, then the static binary of the imageio-ffmpeg wheel (so a
plain `pip install` works on machines with no system ffmpeg). Only the ffmpeg binary is needed:
probing reads ffmpeg's stream header and a packet listing (framemd5 with stream copy), which gives
exact timestamps without ffprobe and without decoding.

Frames are uint8 BGR arrays (H, W, 3), the colour order the published Wav2Lip models were trained on.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import ffmpeg  # ffmpeg-python
import numpy as np

from .errors import InputError, LipsyncError

# Colour conversion that survives a decode -> encode round trip: chroma is upsampled by repetition
# on decode and averaged back on encode, which restores the source's 4:2:0 chroma exactly. With
# ffmpeg's defaults the untouched background lost ~2 grey levels per pixel (mean) to the round trip
# alone; with these flags 0.02 (tests/test_media.py).
DECODE_SWS_FLAGS = "neighbor+accurate_rnd+full_chroma_int"
ENCODE_SWS_FLAGS = "area+accurate_rnd"

# What folders of inputs are searched for (by file name; ffmpeg reads more)
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".flv", ".mpg", ".mpeg", ".ts", ".wmv", ".3gp"}
AUDIO_SUFFIXES = {".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", ".wma", ".aif", ".aiff"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}

FPS = Fraction(25)  # the training rate (Wav2Lip, DAVS, LSE) and a still image's default rate


FFMPEG_FIX = "pip install imageio-ffmpeg"  # a static ffmpeg in a wheel; or install the system's ffmpeg


def find_ffmpeg() -> tuple[str, str]:
    """The ffmpeg binary to run and where it was found: "LIPSYNC_FFMPEG" (the variable, which is
    taken as given), "PATH", or "imageio-ffmpeg" (the wheel's static binary). LipsyncError when
    there is none."""
    env = os.environ.get("LIPSYNC_FFMPEG")
    if env:
        return env, "LIPSYNC_FFMPEG"
    found = shutil.which("ffmpeg")
    if found:
        return found, "PATH"
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe(), "imageio-ffmpeg"
    except Exception as exc:  # only without the wheel
        raise LipsyncError(f"ffmpeg not found: install ffmpeg or `{FFMPEG_FIX}`") from exc


def ffmpeg_binary() -> str:
    return find_ffmpeg()[0]


# ----------------------------------------------------------------------------------------------
# Probing


@dataclass(frozen=True)
class VideoInfo:
    width: int  # as displayed (rotation applied), which is what decoding yields
    height: int
    rotation: int  # degrees from the container's display matrix
    fps: Fraction  # exact frame rate; for variable-rate input the average rate
    frame_count: int
    duration: float
    variable_rate: bool
    codec: str

    @property
    def is_still(self) -> bool:
        return self.frame_count == 1


@dataclass(frozen=True)
class AudioInfo:
    rate: int
    channels: int
    codec: str


@dataclass(frozen=True)
class MediaInfo:
    path: str
    format_name: str
    video: VideoInfo | None
    audio: AudioInfo | None


_LAYOUT_CHANNELS = {
    "mono": 1, "stereo": 2, "2.1": 3, "3.0": 3, "3.0(back)": 3, "4.0": 4, "quad": 4, "quad(side)": 4,
    "3.1": 4, "5.0": 5, "5.0(side)": 5, "4.1": 5, "5.1": 6, "5.1(side)": 6, "6.0": 6, "6.0(front)": 6,
    "hexagonal": 6, "6.1": 7, "6.1(back)": 7, "6.1(front)": 7, "7.0": 7, "7.0(front)": 7, "7.1": 8,
    "7.1(wide)": 8, "7.1(wide-side)": 8, "octagonal": 8, "downmix": 2,
}


# Every ffmpeg runs in its own process group: a Ctrl-C typed in the terminal (sent to the whole
# foreground group) reaches lipsync alone, which stops its children itself after cleaning up.
# Otherwise ffmpeg ended first and the failure looked like a broken clip ("the encoder stopped"),
# logged as failed by a batch instead of interrupted.
OWN_PROCESS_GROUP = {"process_group": 0}


def _run_ffmpeg(args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ffmpeg_binary(), "-hide_banner", "-nostdin", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, **OWN_PROCESS_GROUP,
    )


def probe(path: str | os.PathLike) -> MediaInfo:
    """Streams, exact frame rate and frame count of a media file. Raises InputError for files
    that do not exist or that ffmpeg cannot read."""
    path = str(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not a media file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")
    # One pass: the header (stderr) and a listing of every video packet with its timestamps
    # (stdout). Stream copy means nothing is decoded, so this is fast even for long files.
    proc = _run_ffmpeg(["-i", path, "-map", "0:v:0?", "-c", "copy", "-f", "framemd5", "pipe:1"])
    header = proc.stderr.decode("utf-8", "replace")
    m = re.search(r"Input #0, ([^,]+(?:,[^,\s]+)*), from", header)
    if m is None:
        reason = header.strip().splitlines()[-1] if header.strip() else "unknown error"
        raise InputError(f"{path}: not a media file ffmpeg can read ({reason.split(': ')[-1]})")
    format_name = m.group(1)
    return MediaInfo(path, format_name, _parse_video(header, proc.stdout.decode("ascii", "replace")), _parse_audio(header))


def _stream_line(header: str, kind: str) -> str | None:
    for line in header.splitlines():
        if re.match(rf"\s*Stream #0:\d+.*?: {kind}: ", line):
            return line
    return None


def _parse_audio(header: str) -> AudioInfo | None:
    line = _stream_line(header, "Audio")
    if line is None:
        return None
    m = re.search(r"Audio: (\w+).*?, (\d+) Hz, ([^,]+)", line)
    if m is None:
        return None
    layout = m.group(3).strip()
    n = re.match(r"(\d+) channels", layout)
    channels = int(n.group(1)) if n else _LAYOUT_CHANNELS.get(layout, 0)
    if channels == 0:
        return None
    return AudioInfo(rate=int(m.group(2)), channels=channels, codec=m.group(1))


_COMMON_RATES = [Fraction(r) for r in ("24000/1001", "24", "25", "30000/1001", "30", "48", "50",
                                         "60000/1001", "60", "100", "120000/1001", "120")]


def _snap_rate(estimate: Fraction) -> Fraction:
    """A rate measured from rounded timestamps, snapped to the standard rate within 0.2% of it."""
    nearest = min(_COMMON_RATES, key=lambda rate: abs(estimate - rate))
    return nearest if abs(estimate - nearest) / nearest < Fraction(2, 1000) else estimate


def parse_frame_rate(text: str) -> Fraction:
    """A frame rate typed by a user: 25, 30000/1001, or a rounded decimal such as 29.97 or 23.976,
    which means the NTSC rate it rounds (30000/1001), not 2997/100. Raises ValueError."""
    try:
        value = Fraction(str(text).strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{text!r} is not a frame rate (e.g. 25, 29.97 or 30000/1001)") from None
    if value <= 0:
        raise ValueError("the frame rate must be positive")
    if "." in str(text):
        value = _snap_rate(value)
    return value.limit_denominator(1001)


def _parse_video(header: str, listing: str) -> VideoInfo | None:
    line = _stream_line(header, "Video")
    if line is None:
        return None
    size = re.search(r", (\d{1,5})x(\d{1,5})", line)
    codec = re.search(r"Video: (\w+)", line)
    if size is None:
        return None
    width, height = int(size.group(1)), int(size.group(2))
    rot = re.search(r"rotation of (-?[\d.]+) degrees", header, re.IGNORECASE) or re.search(r"rotate\s*:\s*(-?\d+)", header)
    rotation = int(round(float(rot.group(1)))) % 360 if rot else 0
    if rotation in (90, 270):
        width, height = height, width

    tb_match = re.search(r"#tb 0: (\d+)/(\d+)", listing)
    pts, durations = [], []
    for row in listing.splitlines():
        if row.startswith("#") or not row.strip():
            continue
        cols = [c.strip() for c in row.split(",")]
        if len(cols) >= 4 and cols[0] == "0":
            pts.append(int(cols[2]))
            durations.append(int(cols[3]))
    if tb_match is None or not pts:
        return VideoInfo(width, height, rotation, FPS, 0, 0.0, False, codec.group(1) if codec else "?")
    tb = Fraction(int(tb_match.group(1)), int(tb_match.group(2)))
    pts.sort()
    steps = np.diff(pts) if len(pts) > 1 else np.array([], dtype=np.int64)
    known = [d for d in durations if d > 0]
    if len(pts) == 1:
        fps = FPS
        duration = float(known[0] * tb) if known else float(1 / FPS)
        return VideoInfo(width, height, rotation, fps, 1, duration, False, codec.group(1) if codec else "?")
    typical = int(np.median(steps))
    last = known[-1] if known else typical
    span = (pts[-1] - pts[0] + last) * tb
    # Steps that differ by one tick are rounding (Matroska stores whole milliseconds, so 29.97 fps
    # alternates 33 and 34 ms): constant rate, taken over the whole run of frames.
    variable = bool(np.any(np.abs(steps - typical) > max(1, typical // 100)))
    if not variable and typical > 0:
        exact = bool(np.all(steps == typical))
        fps = 1 / (typical * tb) if exact else _snap_rate(Fraction(len(pts)) / span)
    else:  # variable frame rate: resample to the average rate when decoding
        fps = Fraction(len(pts)) / span
    fps = fps.limit_denominator(1001)
    return VideoInfo(width, height, rotation, fps, len(pts), float(span), variable, codec.group(1) if codec else "?")


# ----------------------------------------------------------------------------------------------
# Decoding


AUDIO_CHUNK_FRAMES = 1 << 18  # samples per channel read at once (5.5 s at 48 kHz)


def decode_audio_mono(path: str, channels: int) -> Iterator[np.ndarray]:
    """The first audio stream at its native rate as float32 mono chunks, the mean of its channels:
    a piece at a time, since an hour of 48 kHz stereo is 1.4 GB in one piece (and twice that while
    a pipe's output is joined). Raises InputError when ffmpeg cannot decode it."""
    args = ffmpeg.input(path).output("pipe:1", format="f32le", acodec="pcm_f32le", map="0:a:0", ac=channels).get_args()
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen([ffmpeg_binary(), "-hide_banner", "-nostdin", "-v", "error", *args],
                            stdout=subprocess.PIPE, stderr=err, bufsize=0, **OWN_PROCESS_GROUP)
    frame = 4 * channels
    try:
        buf = np.empty(AUDIO_CHUNK_FRAMES * channels, np.float32)
        view = memoryview(buf).cast("B")
        while True:
            got = _read_into(proc.stdout, view)
            whole = got - got % frame
            if whole:
                yield buf[:whole // 4].reshape(-1, channels).mean(axis=1, dtype=np.float32)
            if got < len(view):
                break
        if proc.wait() != 0:
            err.seek(0)
            msg = err.read().decode("utf-8", "replace").strip().splitlines()
            raise InputError(f"{path}: cannot decode audio ({msg[-1] if msg else 'ffmpeg failed'})")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        err.close()


def read_image(path: str) -> np.ndarray:
    """A still image as BGR, with its EXIF orientation applied."""
    import cv2

    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{path}: cannot read the image")
    return img


class FrameReader:
    """Streams decoded BGR frames from the first video stream, `chunk` frames at a time.

    Variable-frame-rate input is resampled to `info.fps` (its average rate) so frame i sits at
    i / fps on the output timeline and audio windows stay in sync. Rotation is applied by ffmpeg.
    """

    def __init__(self, info: MediaInfo, chunk: int = 16, fps: Fraction | None = None,
                 size: tuple[int, int] | None = None):
        assert info.video is not None
        self.info = info
        self.video = info.video
        self.chunk = chunk
        self.fps = fps  # resample to this rate (training data is 25 fps); None: keep the source's
        # (width, height) to scale to, e.g. a cheap low-resolution pass; None: the video's own
        self.size = None if size is None or tuple(size) == (self.video.width, self.video.height) else tuple(size)
        self.width, self.height = self.size or (self.video.width, self.video.height)
        self.frame_bytes = self.width * self.height * 3
        self._proc: subprocess.Popen | None = None
        self._stderr = tempfile.TemporaryFile()

    def _command(self) -> list[str]:
        video = ffmpeg.input(self.info.path)["v:0"]
        if self.fps is not None and (self.fps != self.video.fps or self.video.variable_rate):
            video = video.filter("fps", fps=str(self.fps))
        elif self.video.variable_rate:
            video = video.filter("fps", fps=str(self.video.fps))
        if self.size is not None:
            video = video.filter("scale", self.size[0], self.size[1], flags="area")
        args = ffmpeg.output(video, "pipe:1", format="rawvideo", pix_fmt="bgr24", sws_flags=DECODE_SWS_FLAGS).get_args()
        return [ffmpeg_binary(), "-hide_banner", "-nostdin", "-v", "error", *args]

    def __iter__(self) -> Iterator[np.ndarray]:
        self._proc = subprocess.Popen(self._command(), stdout=subprocess.PIPE, stderr=self._stderr, bufsize=0,
                                      **OWN_PROCESS_GROUP)
        _lower_priority(self._proc.pid)
        shape = (self.chunk, self.height, self.width, 3)
        self.frames_read = 0
        try:
            while True:
                chunk = np.empty(shape, np.uint8)  # ffmpeg's bytes land here directly, no copies
                got = _read_into(self._proc.stdout, memoryview(chunk).cast("B"))
                n = got // self.frame_bytes
                if n == 0:
                    break
                self.frames_read += n
                yield chunk[:n]
                if n < self.chunk:
                    break
            rc = self._proc.wait()
            if rc != 0 and self.frames_read == 0:
                self._stderr.seek(0)
                lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
                raise InputError(f"{self.info.path}: cannot decode video ({lines[-1] if lines else 'ffmpeg failed'})")
        finally:
            self.close()

    def close(self):
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc.stdout.close()
            self._proc = None


def _lower_priority(pid: int):
    """Run an ffmpeg process at a lower CPU priority than the generator. On a small CPU the
    generator's threads wait for each other at every layer, so a core taken by the encoder at the
    wrong moment stalls both; niced, ffmpeg fills the gaps instead and the pipelined run gets faster.

    Set after the start rather than in a preexec_fn: a preexec_fn makes Python fork() instead of
    posix_spawn, and fork runs OpenBLAS's atfork handlers, which restart its thread pool under any
    other thread that is inside a numpy matrix product at that moment: that thread then spins
    forever (seen: a batch hung in the next clip's mel spectrogram while an encoder started)."""
    if os.environ.get("LIPSYNC_FFMPEG_NICE", "1") != "0":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, int(os.environ.get("LIPSYNC_FFMPEG_NICE_LEVEL", "10")))


def _read_into(pipe, view: memoryview) -> int:
    """Fill `view` from the pipe; returns the number of bytes read (less only at the end)."""
    got = 0
    while got < len(view):
        k = pipe.readinto(view[got:])
        if not k:
            break
        got += k
    return got


# ----------------------------------------------------------------------------------------------
# Encoding


class FrameWriter:
    """Encodes BGR frames (fed in order) plus the audio of `audio_path` into one file in a single
    ffmpeg pass: H.264 yuv420p + AAC, nothing lossy in between. Odd sizes lose their last row or
    column (yuv420p needs even dimensions)."""

    def __init__(self, path: str, width: int, height: int, fps: Fraction, audio_path: str | None,
                 crf: int = 18, preset: str = "veryfast", audio_bitrate: str = "192k",
                 extra_output_args: dict | None = None):
        video_in = ffmpeg.input("pipe:0", format="rawvideo", pix_fmt="bgr24", s=f"{width}x{height}", r=str(fps))
        v = video_in.video
        if width % 2 or height % 2:
            v = v.filter("crop", width - width % 2, height - height % 2, 0, 0)
        streams = [v]
        out_kwargs = dict(vcodec="libx264", pix_fmt="yuv420p", crf=crf, preset=preset, r=str(fps), sws_flags=ENCODE_SWS_FLAGS)
        if audio_path is not None:
            streams.append(ffmpeg.input(audio_path).audio)
            out_kwargs.update(acodec="aac", audio_bitrate=audio_bitrate)
        if path.lower().endswith((".mp4", ".mov", ".m4v")):
            out_kwargs["movflags"] = "+faststart"
        out_kwargs.update(extra_output_args or {})
        args = ffmpeg.output(*streams, path, **out_kwargs).global_args("-y").get_args()
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [ffmpeg_binary(), "-hide_banner", "-nostdin", "-v", "error", *args],
            stdin=subprocess.PIPE, stderr=self._stderr, **OWN_PROCESS_GROUP,
        )
        _lower_priority(self._proc.pid)
        self.frames_written = 0

    def write(self, frame: np.ndarray):
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except BrokenPipeError:
            raise LipsyncError(f"the encoder stopped: {self._error_text()}") from None
        self.frames_written += 1

    def _error_text(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "ffmpeg failed"

    def close(self):
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()
        rc = self._proc.wait()
        if rc != 0:
            raise LipsyncError(f"encoding failed: {self._error_text()}")

    def abort(self):
        if self._proc.poll() is None:
            self._proc.kill()
        with contextlib.suppress(Exception):
            self._proc.stdin.close()
        self._proc.wait()


# ----------------------------------------------------------------------------------------------
# Replay


class FrameSpill:
    """Raw frames kept on disk (not in memory) so a short video can be replayed, forwards or
    backwards, when the audio is longer than the video."""

    def __init__(self, width: int, height: int):
        self.shape = (height, width, 3)
        self.frame_bytes = width * height * 3
        self._file = tempfile.TemporaryFile(prefix="lipsync-frames-")
        self._lock = threading.Lock()
        self.count = 0

    def append(self, frames: np.ndarray):
        with self._lock:
            self._file.seek(self.count * self.frame_bytes)
            self._file.write(np.ascontiguousarray(frames).data)
            self.count += len(frames)

    def read(self, index: int) -> np.ndarray:
        with self._lock:
            self._file.seek(index * self.frame_bytes)
            data = self._file.read(self.frame_bytes)
        return np.frombuffer(data, dtype=np.uint8).reshape(self.shape)

    def close(self):
        self._file.close()
