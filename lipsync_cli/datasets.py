"""Datasets on disk, read as they are: the preprocessed Wav2Lip layout and DAVS's words layout, for
the training loops, the evaluations and preprocess alike (nothing here imports train/).

The layout is what `lipsync preprocess` writes and what `lipsync synth --layout train` makes:

    DATA/filelists/{train,val,test}.txt    one clip folder per line, relative to DATA
    DATA/<speaker>/<clip>/0.jpg ...        one face crop per video frame (25 fps), numbered from 0
    DATA/<speaker>/<clip>/audio.wav        the clip's speech (16 kHz mono; resampled if not)

Frame i goes with the 16-step mel window starting at int(80 * i / 25), the alignment `dub` uses at
inference, so a model trained here is driven the same way it was trained.

Samples are drawn from (seed, index): the same index always gives the same sample, so a run that
resumes at step s sees exactly the batches it would have seen.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from . import audio as audio_mod
from .errors import InputError
from .media import FPS
from .models.syncnet import lower_half_stack

FACE = 96
SYNC_T = 5  # frames per expert window (0.2 s, the span of one mel window)


@dataclass(frozen=True)
class ClipEntry:
    folder: Path
    frames: int


def _count_frames(folder: Path) -> int:
    n = 0
    while (folder / f"{n}.jpg").exists():
        n += 1
    return n


class PreprocessedData:
    """The clips of one split. Mel spectrograms are computed on first use and kept (they are small)."""

    def __init__(self, root: str | Path, split: str = "train", min_frames: int = 3 * SYNC_T):
        self.root = Path(root)
        listing = self.root / "filelists" / f"{split}.txt"
        if not listing.exists():
            raise InputError(f"{listing}: no such file list (is {self.root} a preprocessed data folder?)")
        clips = []
        for line in listing.read_text().splitlines():
            if not line.strip():
                continue
            folder = self.root / line.split()[0]
            n = _count_frames(folder)
            if n >= min_frames and (folder / "audio.wav").exists():
                clips.append(ClipEntry(folder, n))
        if not clips:
            raise InputError(f"{listing}: no usable clips (each needs {min_frames}+ frames and audio.wav)")
        self.clips = clips
        self.split = split
        self._mels: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.clips)

    def mel(self, k: int) -> np.ndarray:
        if k not in self._mels:
            mel = audio_mod.melspectrogram(_read_speech(self.clips[k].folder / "audio.wav"))
            with self._lock:
                self._mels[k] = mel
        return self._mels[k]

    def mel_frames(self, k: int) -> int:
        """The length of clip k's mel spectrogram, from the wav header when it is 16 kHz (a run
        over tens of thousands of clips starts without computing them all first)."""
        if k in self._mels:
            return self._mels[k].shape[1]
        import soundfile

        try:
            info = soundfile.info(str(self.clips[k].folder / "audio.wav"))
        except RuntimeError:
            info = None
        if info is None or info.samplerate != audio_mod.SAMPLE_RATE:
            return self.mel(k).shape[1]
        return 1 + info.frames // audio_mod.HOP  # the centred STFT's frame count

    def usable_frames(self, k: int, span: int) -> int:
        """How many start frames have `span` frames and every mel window they need."""
        n_mel = self.mel_frames(k)
        last_by_audio = (n_mel - audio_mod.MEL_STEP) * FPS // audio_mod.MEL_FPS  # window start must fit
        return max(0, min(self.clips[k].frames - span, int(last_by_audio) - span + 1) + 1)

    def frames(self, k: int, start: int, count: int, size: int = FACE) -> np.ndarray:
        """(count, size, size, 3) uint8 BGR: the crops resized to `size` (area to shrink, cubic
        to enlarge) when they are not that size already."""
        out = np.empty((count, size, size, 3), np.uint8)
        for i in range(count):
            path = self.clips[k].folder / f"{start + i}.jpg"
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise InputError(f"{path}: cannot read the frame")
            if img.shape[:2] != (size, size):
                img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_CUBIC)
            out[i] = img
        return out

    def mel_window(self, k: int, frame: int) -> np.ndarray:
        """The (80, 16) window of frame `frame`."""
        mel = self.mel(k)
        start = audio_mod.window_start(frame, FPS, mel.shape[1])
        return mel[:, start:start + audio_mod.MEL_STEP]


def _read_speech(path: Path) -> np.ndarray:
    """A clip's audio.wav as 16 kHz mono float32: read directly when it is 16 kHz (the layout's
    own format, and much faster than a decoder process per clip), else decoded and resampled."""
    import soundfile

    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except RuntimeError:
        rate = None
    if rate != audio_mod.SAMPLE_RATE:
        return audio_mod.load_audio(str(path)).samples
    return np.ascontiguousarray(samples.mean(axis=1, dtype=np.float32))


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float in [0, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div_(255.0)


class _Windows(torch.utils.data.Dataset):
    """Spans of `span` frames drawn by (seed, index) from the clips long enough to have two."""

    def __init__(self, data: PreprocessedData, seed: int, span: int, length: int, size: int = FACE):
        self.data, self.seed, self.span, self.length, self.size = data, seed, span, length, size
        self.usable = [data.usable_frames(k, span) for k in range(len(data))]
        self.clips = [k for k, n in enumerate(self.usable) if n >= 2]
        if not self.clips:
            raise InputError(f"no clip is long enough for windows of {span} frames")

    def __len__(self) -> int:
        return self.length

    def _pick(self, index: int) -> tuple[np.random.Generator, int, int]:
        """(the sample's generator, clip, start frame)."""
        rng = np.random.default_rng([self.seed, index])
        k = self.clips[int(rng.integers(len(self.clips)))]
        return rng, k, int(rng.integers(self.usable[k]))

    def _other_start(self, rng: np.random.Generator, k: int, start: int) -> int:
        """Any other start frame of the same clip."""
        other = int(rng.integers(self.usable[k] - 1))
        return other + (other >= start)


class SyncPairs(_Windows):
    """Samples for the lip-sync expert: 5 consecutive faces' lower halves and a mel window that is
    theirs (label 1) or that of another window of the same clip (label 0), half and half."""

    def __init__(self, data: PreprocessedData, seed: int = 0, length: int = 10 ** 9, size: int = FACE):
        super().__init__(data, seed, SYNC_T, length, size)

    def __getitem__(self, index: int):
        rng, k, start = self._pick(index)
        in_sync = bool(rng.random() < 0.5)
        audio_frame = start if in_sync else self._other_start(rng, k, start)
        faces = to_tensor(self.data.frames(k, start, SYNC_T, self.size))  # (3, T, S, S)
        stacked = lower_half_stack(faces[None])[0]  # (15, S/2, S)
        mel = torch.from_numpy(self.data.mel_window(k, audio_frame)).unsqueeze(0)  # (1, 80, 16)
        return stacked, mel, torch.tensor(float(in_sync))


class GeneratorWindows(_Windows):
    """Samples for the generator: T consecutive frames (the targets), a reference window of T
    other frames of the same clip, the mel window of each target frame, and the mel window of the
    whole T-frame span for the expert. Wav2Lip's setting: T = 5."""

    def __init__(self, data: PreprocessedData, seed: int = 0, t: int = SYNC_T, length: int = 10 ** 9,
                 size: int = FACE):
        super().__init__(data, seed, t, length, size)
        self.t = t

    def __getitem__(self, index: int):
        rng, k, start = self._pick(index)
        ref = self._other_start(rng, k, start)
        target = to_tensor(self.data.frames(k, start, self.t, self.size))  # (3, T, S, S)
        reference = to_tensor(self.data.frames(k, ref, self.t, self.size))
        masked = target.clone()
        masked[:, :, self.size // 2:] = 0.0
        faces_in = torch.cat([masked, reference], dim=0)  # (6, T, S, S): the generator's input
        mels = torch.stack([torch.from_numpy(self.data.mel_window(k, start + i)) for i in range(self.t)]).unsqueeze(1)
        sync_mel = torch.from_numpy(self.data.mel_window(k, start)).unsqueeze(0)
        return faces_in, mels, sync_mel, target


class WordClips(torch.utils.data.Dataset):
    """Samples for DAVS from the words layout (`lipsync synth --layout words`: one word per clip,
    file-list lines `<clip folder> <word index> <person index>`): T consecutive faces resized to
    `size`, the 12 x 20 MFCC window of each, the clip's word and person, and one more face of the
    same clip (the identity frame the decoder draws from). Drawn by (seed, index) like _Windows."""

    def __init__(self, root: str | Path, split: str, size: int, clip_frames: int, seed: int = 0,
                 length: int = 10 ** 9):
        self.data = PreprocessedData(root, split, min_frames=clip_frames)
        listing = (self.data.root / "filelists" / f"{split}.txt").read_text().split("\n")
        labels = {}
        for line in listing:
            parts = line.split()
            if len(parts) < 3:
                continue
            labels[(self.data.root / parts[0]).resolve()] = (int(parts[1]), int(parts[2]))
        missing = [c.folder for c in self.data.clips if c.folder.resolve() not in labels]
        if missing:
            raise InputError(f"{missing[0]}: no word and person labels in {split}.txt (is this the words layout?)")
        self.labels = [labels[c.folder.resolve()] for c in self.data.clips]
        words_file = self.data.root / "words.txt"
        self.words = words_file.read_text().split() if words_file.exists() else []
        self.size, self.t, self.seed, self.length = size, clip_frames, seed, length
        self._mfcc: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def class_counts(self) -> tuple[int, int]:
        """(word classes, person classes): words.txt (else the labels), and 1 + the largest person index."""
        words = len(self.words) or 1 + max(w for w, _ in self.labels)
        return words, 1 + max(p for _, p in self.labels)

    def clip_mfcc(self, k: int) -> np.ndarray:
        """(frames, 12, 20) MFCC windows of clip k, one per video frame."""
        if k not in self._mfcc:
            samples = _read_speech(self.data.clips[k].folder / "audio.wav")
            self._mfcc[k] = audio_mod.davs_mfcc_windows(samples, self.data.clips[k].frames, float(FPS))
        return self._mfcc[k]

    def faces(self, k: int, start: int, count: int) -> np.ndarray:
        """(count, size, size, 3) uint8 BGR."""
        frames = self.data.frames(k, start, count)
        if frames.shape[1] == self.size:
            return frames
        return np.stack([cv2.resize(f, (self.size, self.size), interpolation=cv2.INTER_AREA) for f in frames])

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, index])
        k = int(rng.integers(len(self.data)))
        n = self.data.clips[k].frames
        start = int(rng.integers(n - self.t + 1))
        identity_frame = int(rng.integers(n))
        frames = torch.from_numpy(self.faces(k, start, self.t)).permute(0, 3, 1, 2).float().div_(255.0)
        identity = torch.from_numpy(self.faces(k, identity_frame, 1)[0]).permute(2, 0, 1).float().div_(255.0)
        mfcc = torch.from_numpy(self.clip_mfcc(k)[start:start + self.t]).unsqueeze(1)  # (T, 1, 12, 20)
        word, person = self.labels[k]
        return frames, mfcc, identity, torch.tensor(word), torch.tensor(person)
