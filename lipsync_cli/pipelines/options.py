"""The options of a dub, declared once.

`DubOptions` holds the engine's settings; each field is named as its command-line flag
(`detect_size` is `--detect-size`), so the CLI builds `DubOptions(**flags)`. `PER_CLIP_OPTIONS`
is the table of the options that one clip of a batch may set for itself (a manifest row's
columns, a ClipRequest's overrides): name, parser from text, help and valid range, read by the
manifest parser and by the CLI's flags alike.

Boxes are (x1, y1, x2, y2) everywhere inside the code; users write `--box Y1 Y2 X1 X2` (Wav2Lip's
order, also the manifest's `box` column), converted by `parse_box` where the text is read.

This module imports nothing heavy: the CLI reads it to build its help.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable

from ..faces.track import DEFAULT_PADS
from ..media import FPS, parse_frame_rate

NO_FACE_ACTIONS = ("skip", "error")
SPEAKER_MODES = ("auto", "largest", "all")  # or a track index, as `lipsync speakers` lists them


@dataclass
class DubOptions:
    checkpoint: str  # a file; weights.resolve_checkpoint turns a registry name into one
    model: str | None = None  # override the architecture read from the checkpoint
    detector: str = "retinaface"  # or "s3fd"
    box: tuple[int, int, int, int] | None = None  # fixed (x1, y1, x2, y2): skip detection
    pads: tuple[int, int, int, int] = DEFAULT_PADS  # (top, bottom, left, right)
    face_index: int | None = None  # None: the largest face
    speaker: str = "auto"  # which faces to dub: auto (who speaks), largest, all, or a track index
    speaker_audio: str | None = None  # the original speech for `auto` when the video has no audio track
    speaker_weights: str = "light_asd_talkset"  # the active speaker detector: a registry name or a file
    on_no_face: str = "skip"  # or "error"
    paste: str = "feather"  # or "hard"
    loop: bool = False  # audio longer than the video: replay it from the start (False: back and forth)
    fps: Fraction = FPS  # the frame rate given to a still image
    smooth: bool = True  # smooth the face boxes over time
    align: bool = True  # crop a leaning face along its head, paste back along it (feather paste only)
    detect_size: int = 320  # detect on frames downscaled to this longer side (0: full size)
    detect_every: int = 2  # detect on every n-th frame, interpolate the boxes between
    s3fd_weights: str | os.PathLike | None = None
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None  # None: the runner's default for the device
    crf: int = 18
    preset: str = "veryfast"
    enhance: str = "none"  # or "gfpgan": restore the dubbed mouths (pipelines/enhance.py)
    enhance_weights: str = "gfpgan_v1.4"  # the restoration network: a registry name or a file
    enhance_region: str = "mouth"  # blend the restored lower face only, or "face": the whole face


# ----------------------------------------------------------------------------------------------
# Parsers: a value as a manifest holds it (text, or a JSON number, list or boolean) -> the
# option's value. They raise ValueError with the reason; the caller adds where it was.


def _whole(v: Any) -> int:
    if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError(v)
    return int(v)


def parse_ints(value: Any, n: int) -> tuple[int, ...]:
    parts = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
    try:
        ints = tuple(_whole(v) for v in parts)
    except (TypeError, ValueError):
        ints = ()
    if len(ints) != n:
        raise ValueError(f"must be {n} whole numbers, got {value!r}" if n > 1 else f"must be a whole number, got {value!r}")
    return ints


def parse_int(value: Any) -> int:
    return parse_ints(value, 1)[0]


def parse_box(value: Any) -> tuple[int, int, int, int]:
    """The user's Y1 Y2 X1 X2 -> (x1, y1, x2, y2)."""
    y1, y2, x1, x2 = parse_ints(value, 4)
    if y2 <= y1 or x2 <= x1:
        raise ValueError(f"must be Y1 Y2 X1 X2 with Y1 < Y2 and X1 < X2, got {y1} {y2} {x1} {x2}")
    return x1, y1, x2, y2


def parse_pads(value: Any) -> tuple[int, int, int, int]:
    return parse_ints(value, 4)  # type: ignore[return-value]


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y"):
        return True
    if text in ("0", "false", "no", "n", ""):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def parse_fps(value: Any) -> Fraction:
    try:
        return parse_frame_rate(str(value))
    except ValueError:
        raise ValueError(f"must be a frame rate above 0 (e.g. 25, 29.97 or 30000/1001), got {value!r}") from None


def parse_speaker(value: Any) -> str:
    """auto, largest, all, or a track index (a whole number from 0) kept as text."""
    text = str(value).strip().lower()
    if text in SPEAKER_MODES:
        return text
    try:
        index = _whole(text)
    except ValueError:
        index = -1
    if index < 0:
        raise ValueError(f"must be {', '.join(SPEAKER_MODES)} or a track index (0, 1, ...), got {value!r}")
    return str(index)


def parse_path(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("must be a file path")
    return text


def parse_choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip()
        if text not in choices:
            raise ValueError(f"must be {' or '.join(choices)}, got {value!r}")
        return text

    return parse


# ----------------------------------------------------------------------------------------------
# The per-clip options


@dataclass(frozen=True)
class ClipOption:
    """An option one clip may set for itself. `name` is the DubOptions field, the manifest column
    and (with dashes) the flag; `low` / `high` bound every number of its value (inclusive)."""

    name: str
    parse: Callable[[Any], Any]
    help: str
    low: int | None = None
    high: int | None = None

    def read(self, value: Any) -> Any:
        """The option's value from text (or a JSON value); ValueError says what is wrong."""
        parsed = self.parse(value)
        numbers = parsed if isinstance(parsed, tuple) else (parsed,)
        if any(isinstance(v, (int, float, Fraction)) and not isinstance(v, bool) and not self.in_range(v)
               for v in numbers):
            raise ValueError(f"must be {self.range_text()}, got {value!r}")
        return parsed

    def in_range(self, v) -> bool:
        return (self.low is None or v >= self.low) and (self.high is None or v <= self.high)

    def range_text(self) -> str:
        if self.low is not None and self.high is not None:
            return f"from {self.low} to {self.high}"
        return f"{self.low} or more" if self.low is not None else f"{self.high} or less"


PER_CLIP_OPTIONS: tuple[ClipOption, ...] = (
    ClipOption("box", parse_box, "Fixed face box Y1 Y2 X1 X2 in pixels: skips detection."),
    ClipOption("pads", parse_pads, "Padding of the detected box: TOP BOTTOM LEFT RIGHT pixels (negative: smaller)."),
    ClipOption("face_index", parse_int, "Which face when there are several, counted left to right from 0, negative "
                                        "from the right (default: the largest)."),
    ClipOption("speaker", parse_speaker, "With several faces: auto (who speaks in the video's own sound, turn by turn), "
                                         "largest, all, or a track of `lipsync speakers`."),
    ClipOption("speaker_audio", parse_path, "The original speech for --speaker auto when the video has no audio track."),
    ClipOption("loop", parse_bool, "When the audio is longer than the video, repeat the video from the start "
                                   "(default: play it back and forth)."),
    ClipOption("fps", parse_fps, "Frame rate of the output for a still image."),
    ClipOption("crf", parse_int, "H.264 quality (lower is better).", low=0, high=51),
    ClipOption("on_no_face", parse_choice(*NO_FACE_ACTIONS),
               "Frames without a face: skip (left unchanged, counted) or error (the clip fails)."),
    ClipOption("smooth", parse_bool, "Smooth face boxes over time."),
)
PER_CLIP = {option.name: option for option in PER_CLIP_OPTIONS}

# A batch manifest's columns: the paths, then one per per-clip option.
MANIFEST_PATHS = ("video", "audio", "output")
MANIFEST_COLUMNS = MANIFEST_PATHS + tuple(option.name for option in PER_CLIP_OPTIONS)
