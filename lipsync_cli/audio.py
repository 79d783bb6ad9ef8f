"""Audio front end: decoding any audio to 16 kHz mono, and Wav2Lip's mel spectrogram.

The mel parameters are those the published Wav2Lip / AttnWav2Lip checkpoints were trained with
(16 kHz, preemphasis 0.97, n_fft 800, hop 200, 80 mels 55-7600 Hz, dB with ref 20 / min -100,
symmetric normalisation to [-4, 4]). 80 mel frames per second of audio.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from fractions import Fraction
from typing import Iterator

import numpy as np

from .errors import InputError, LipsyncError
from .outputs import atomic_output

SAMPLE_RATE = 16000
N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0
MAX_ABS_VALUE = 4.0
MEL_FPS = SAMPLE_RATE // HOP  # 80 mel frames per second
MEL_STEP = 16  # mel frames per generator window (0.2 s)


@dataclass
class Audio:
    samples: np.ndarray  # float32 mono at SAMPLE_RATE
    source_rate: int
    source_channels: int

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def load_audio(path: str) -> Audio:
    """Decode the first audio stream of any file ffmpeg reads (wav, mp3, m4a, a video's track).

    Decoding keeps the native rate and channels; the downmix is the mean of the channels and the
    resampling is soxr "high quality": exactly what librosa.load does, so the mel matches the
    reference implementation for the same file.
    """
    info, chunks = _decoded(path)
    seconds = info.video.duration if info.video is not None and info.video.duration else 60.0  # grows if longer
    expected = int(seconds * 1.01 * SAMPLE_RATE) + 10 * SAMPLE_RATE  # a track often runs a little longer
    out, n = np.empty(max(expected, HOP), np.float32), 0
    for chunk in chunks:
        out, n = _append(out, n, chunk)
    mono = np.ascontiguousarray(out[:n], dtype=np.float32)
    _check_length(path, len(mono))
    return Audio(mono, info.audio.rate, info.audio.channels)


_TAIL = SAMPLE_RATE  # samples held back while decoding, to set the final length at the end


def _decoded(path: str):
    """(probe info, the sound as float32 16 kHz mono chunks in order): decoded, downmixed and
    resampled a piece at a time, so that an hour never sits in memory at 48 kHz or in stereo.
    soxr's stream gives the very samples its one-shot resample gives; the length is librosa's
    (ceil of the native length times the ratio), set on the last second, which is held back."""
    from . import media  # local import: media imports nothing from here, keeps audio light

    info = media.probe(path)
    if info.audio is None:
        raise InputError(f"{path}: no audio stream found")
    rate, channels = info.audio.rate, info.audio.channels

    def chunks():
        stream = None
        if rate != SAMPLE_RATE:
            import soxr  # what librosa.resample(res_type="soxr_hq") calls, without librosa's slow import

            stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        native, given = 0, 0
        tail, pending = np.empty(0, np.float32), None
        for chunk in media.decode_audio_mono(path, channels):
            native += len(chunk)
            if stream is None:
                piece = chunk
            else:  # one chunk behind, so the last one is fed with last=True
                piece, pending = (stream.resample_chunk(pending) if pending is not None else None), chunk
            if piece is not None and len(piece):
                tail = np.concatenate([tail, piece])
                if len(tail) > _TAIL:
                    yield tail[:-_TAIL]
                    given += len(tail) - _TAIL
                    tail = tail[-_TAIL:].copy()
        if stream is not None and pending is not None:
            tail = np.concatenate([tail, stream.resample_chunk(pending, last=True)])
        if native == 0:
            raise InputError(f"{path}: the audio stream is empty")
        if stream is not None:
            want = int(np.ceil(native * SAMPLE_RATE / rate)) - given  # librosa's length convention
            if want < 0:  # a second held back covers soxr's few extra samples many times over
                raise LipsyncError(f"{path}: the resampled sound is {-want} samples longer than expected")
            tail = tail[:want] if len(tail) >= want else np.pad(tail, (0, want - len(tail)))
        if len(tail):
            yield tail

    return info, chunks()


def _check_length(path: str, n: int):
    if n < HOP:
        raise InputError(f"{path}: the audio is too short ({n / SAMPLE_RATE * 1000:.0f} ms)")


def _append(out: np.ndarray, n: int, chunk: np.ndarray) -> tuple[np.ndarray, int]:
    """`chunk` written into `out` from n on, `out` grown by half when it is full."""
    if n + len(chunk) > len(out):
        bigger = np.empty(max(n + len(chunk), len(out) * 3 // 2), np.float32)
        bigger[:n] = out[:n]
        out = bigger
    out[n:n + len(chunk)] = chunk
    return out, n + len(chunk)


def write_wav(path, samples: np.ndarray):
    """16 kHz mono 16-bit PCM: the training layout's audio.wav."""
    import soundfile

    soundfile.write(str(path), samples, SAMPLE_RATE, subtype="PCM_16")


_MEL_BASIS: np.ndarray | None = None


def _mel_basis() -> np.ndarray:
    """librosa's Slaney mel filter bank for our parameters. Importing librosa's filters costs about
    a second (scipy.signal, numba) at every start, so the bank is cached on disk after first use."""
    global _MEL_BASIS
    if _MEL_BASIS is None:
        import os
        from pathlib import Path

        cache = Path(os.environ.get("LIPSYNC_CACHE", Path.home() / ".cache" / "lipsync"))
        path = cache / f"mel_basis_{SAMPLE_RATE}_{N_FFT}_{N_MELS}_{FMIN:g}_{FMAX:g}.npy"
        try:
            basis = np.load(path)
            if basis.shape != (N_MELS, N_FFT // 2 + 1):
                raise ValueError("stale cache")
        except (OSError, ValueError):
            import librosa

            basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)
            try:
                cache.mkdir(parents=True, exist_ok=True)
                with atomic_output(path, force=True) as tmp:
                    np.save(tmp, basis)
            except (OSError, LipsyncError):
                pass  # a read-only home only costs the second again next time
        _MEL_BASIS = basis
    return _MEL_BASIS


def _preemphasis(x: np.ndarray) -> np.ndarray:
    """y[n] = x[n] - 0.97 x[n-1] (a first-order FIR filter from rest, as scipy's lfilter gives)."""
    y = np.empty_like(x)
    y[0] = x[0]
    np.subtract(x[1:], PREEMPHASIS * x[:-1], out=y[1:])
    return y


STFT_BLOCK = 2048  # STFT frames computed at once (25 s of audio, about 30 MB of float64 in flight)


def _emphasized(x: np.ndarray, lo: int, hi: int, offset: int = 0, n: int | None = None) -> np.ndarray:
    """Samples lo..hi-1 (float64) of the pre-emphasised signal padded by reflection at both ends
    (indices below 0 or from n on mirror it), as np.pad(_preemphasis(x), mode="reflect") holds
    them: the centred STFT's input, a piece at a time. `x` may be a stretch of the signal that
    starts at sample `offset` (holding every index asked for); n is the whole signal's length."""
    n = offset + len(x) if n is None else n
    if n <= N_FFT:  # short: the padding may reflect more than once; np.pad does that
        whole = np.pad(_preemphasis(x[:n].astype(np.float64)), N_FFT // 2, mode="reflect")
        return whole[lo + N_FFT // 2:hi + N_FFT // 2]
    idx = np.arange(lo, hi)
    idx = np.where(idx < 0, -idx, idx)
    idx = np.where(idx >= n, 2 * (n - 1) - idx, idx)
    cur = x[idx - offset].astype(np.float64)
    prev = x[np.maximum(idx - 1, 0) - offset].astype(np.float64)
    return np.where(idx == 0, cur, cur - PREEMPHASIS * prev)


def _stft_magnitude(x: np.ndarray, first: int, last: int, offset: int = 0, n: int | None = None) -> np.ndarray:
    """|STFT| frames first..last-1 of the signal: a centred STFT with a periodic Hann window and
    reflection padding, as librosa.stft with pad_mode="reflect" computes it; plain numpy, which
    spares the second of import time that librosa's STFT costs on first use."""
    padded = _emphasized(x, first * HOP - N_FFT // 2, (last - 1) * HOP + N_FFT - N_FFT // 2, offset, n)
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(last - first, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0])
    )
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WIN) / WIN)
    return np.abs(np.fft.rfft(frames * window, axis=1)).T


def _mel_block(x: np.ndarray, first: int, last: int, offset: int = 0, n: int | None = None) -> np.ndarray:
    """Mel frames first..last-1, normalised: (80, last - first) float32."""
    min_level = np.exp(MIN_LEVEL_DB / 20.0 * np.log(10.0))
    mel = _mel_basis() @ _stft_magnitude(x, first, last, offset, n)
    db = 20.0 * np.log10(np.maximum(min_level, mel)) - REF_LEVEL_DB
    norm = (2.0 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE
    return np.clip(norm, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def melspectrogram(wav: np.ndarray) -> np.ndarray:
    """Wav2Lip's normalised log-mel spectrogram, shape (80, n_frames), values in [-4, 4].

    The STFT pads with reflection as librosa did when the published models were trained (librosa
    0.10 changed its default to zeros, which shifts the first and last frames). It is computed
    STFT_BLOCK frames at a time: the whole STFT of an hour of speech would take 5 GB at once.
    """
    x = np.asarray(wav).reshape(-1)
    n_frames = 1 + len(x) // HOP
    out = np.empty((N_MELS, n_frames), np.float32)
    for first in range(0, n_frames, STFT_BLOCK):
        last = min(n_frames, first + STFT_BLOCK)
        out[:, first:last] = _mel_block(x, first, last)
    return out


class _MelBlocks:
    """melspectrogram's blocks, computed as the samples arrive: a block as soon as every sample
    it reads has come (none past the end, so the end's reflection is not needed yet), the rest
    once the length is known. Holds only the samples the next block reads."""

    def __init__(self):
        self.samples, self.offset, self.n, self.next = np.empty(0, np.float32), 0, 0, 0

    def feed(self, chunk: np.ndarray) -> Iterator[np.ndarray]:
        self.samples = np.concatenate([self.samples, chunk])
        self.n += len(chunk)
        while (self.next + STFT_BLOCK - 1) * HOP + N_FFT - N_FFT // 2 <= self.n:
            first, self.next = self.next, self.next + STFT_BLOCK
            yield _mel_block(self.samples, first, self.next, self.offset)
            keep = self.next * HOP - N_FFT // 2 - 1  # the next block's first sample and the one before it
            self.samples = self.samples[keep - self.offset:].copy()
            self.offset = keep

    def finish(self) -> Iterator[np.ndarray]:
        n_frames = 1 + self.n // HOP
        for first in range(self.next, n_frames, STFT_BLOCK):
            yield _mel_block(self.samples, first, min(n_frames, first + STFT_BLOCK), self.offset, self.n)
        self.next = n_frames


class MelFile:
    """Wav2Lip's mel spectrogram of a file's sound, exactly melspectrogram(load_audio(path).samples),
    computed while the sound decodes and kept in an unnamed temporary file: an hour's is 92 MB,
    which a dub would otherwise hold to its end. Windows are read back as the frames need them."""

    def __init__(self, path: str):
        import tempfile

        info, chunks = _decoded(path)
        self.source_rate, self.source_channels = info.audio.rate, info.audio.channels
        self._file = tempfile.TemporaryFile(prefix="lipsync-mel-")  # unlinked at once: nothing left by any signal
        blocks = _MelBlocks()
        try:
            for chunk in chunks:
                for block in blocks.feed(chunk):
                    self._write(block)
            _check_length(path, blocks.n)
            for block in blocks.finish():
                self._write(block)
            self._file.flush()  # read back with os.pread, below Python's buffer
        except BaseException:
            self._file.close()
            raise
        self.samples, self.frames = blocks.n, blocks.next

    def _write(self, block: np.ndarray):
        self._file.write(np.ascontiguousarray(block.T).data)  # frame by frame: a window is one read

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE

    def read(self, first: int, last: int) -> np.ndarray:
        """Mel frames first..last-1 as (80, last - first)."""
        size = N_MELS * 4
        data = os.pread(self._file.fileno(), (last - first) * size, first * size)  # no shared file position
        return np.frombuffer(data, np.float32).reshape(last - first, N_MELS).T

    def windows(self, fps: Fraction | float, frame_indices) -> np.ndarray:
        """mel_windows of the whole spectrogram, reading only the frames they span."""
        frame_indices = list(frame_indices)
        if self.frames < MEL_STEP:
            return mel_windows(self.read(0, self.frames), fps, frame_indices)
        starts = [window_start(i, fps, self.frames) for i in frame_indices]
        lo = min(starts)
        span = self.read(lo, max(starts) + MEL_STEP)
        return np.stack([span[:, s - lo:s - lo + MEL_STEP] for s in starts])

    def close(self):
        self._file.close()


def window_start(frame_index: int, fps: Fraction | float, n_mel_frames: int) -> int:
    """First mel frame of the 16-frame window that drives video frame `frame_index`.

    int(i * 80 / fps) with the true (possibly fractional) frame rate, in floating point exactly as
    the reference inference computes it; windows past the end use the final 16 frames.
    """
    start = int(frame_index * (MEL_FPS / float(fps)))
    return max(0, min(start, n_mel_frames - MEL_STEP))


def mel_windows(mel: np.ndarray, fps: Fraction | float, frame_indices) -> np.ndarray:
    """Stack the (80, 16) windows for the given output frame indices -> (n, 80, 16)."""
    n = mel.shape[1]
    if n < MEL_STEP:  # very short audio: pad with silence-level values so a window exists
        mel = np.pad(mel, ((0, 0), (0, MEL_STEP - n)), constant_values=-MAX_ABS_VALUE)
        n = MEL_STEP
    return np.stack([mel[:, s : s + MEL_STEP] for s in (window_start(i, fps, n) for i in frame_indices)])


def output_frame_count(duration_s: float, fps: Fraction | float) -> int:
    """Frames needed so that the video lasts as long as the audio (to the nearest frame)."""
    return max(1, int(round(duration_s * float(fps))))


# The MFCC of python_speech_features' defaults (the front end of the evaluation SyncNet, DAVS and
# Light-ASD): 25 ms frames every 10 ms, 512-point power spectrum, 26 mel filters 0-8 kHz, log,
# orthonormal DCT-II, 13 cepstra, lifter 22, the first replaced by the frame's log energy.
MFCC_WINDOW, MFCC_HOP, MFCC_NFFT = 400, 160, 512
MFCC_FILTERS, MFCC_CEPSTRA, MFCC_LIFTER, MFCC_PREEMPHASIS = 26, 13, 22, 0.97


def mfcc_100hz(samples: np.ndarray) -> np.ndarray:
    """(13, n) MFCC at 100 Hz of 16 kHz audio, on 16-bit sample values, as python_speech_features
    computes it with its defaults (tests/test_audio.py checks it against that package). Computed
    here in numpy: the package imports scipy.fft for its one DCT, a quarter of a second at the
    start of every dub, and is no longer maintained. Frames past the end are zero-padded, the
    last one included (n = 1 + ceil((len - 400) / 160))."""
    x = np.asarray(samples).reshape(-1)
    if x.size == 0:
        x = np.zeros(1)
    count = 1 if len(x) <= MFCC_WINDOW else 1 + int(math.ceil((len(x) - MFCC_WINDOW) / MFCC_HOP))
    out = np.empty((MFCC_CEPSTRA, count), np.float32)
    lift = 1 + (MFCC_LIFTER / 2) * np.sin(np.pi * np.arange(MFCC_CEPSTRA) / MFCC_LIFTER)
    tiny = np.finfo(np.float64).eps  # a silent frame: log of the smallest step, not of zero
    for first in range(0, count, STFT_BLOCK):  # a block of frames at a time: an hour at once took 3.7 GB
        last = min(count, first + STFT_BLOCK)
        lo = first * MFCC_HOP
        hi = (last - 1) * MFCC_HOP + MFCC_WINDOW
        pcm = np.clip(np.round(x[max(0, lo - 1):min(len(x), hi)].astype(np.float64) * 32768.0), -32768, 32767)
        if lo == 0:
            emphasized = np.concatenate([pcm[:1], pcm[1:] - MFCC_PREEMPHASIS * pcm[:-1]])
        else:  # the sample before the block is there for the pre-emphasis
            emphasized = pcm[1:] - MFCC_PREEMPHASIS * pcm[:-1]
        padded = np.zeros(hi - lo)  # past the end: zeros, the last frame included
        padded[:len(emphasized)] = emphasized
        frames = np.lib.stride_tricks.sliding_window_view(padded, MFCC_WINDOW)[::MFCC_HOP]
        power = np.square(np.abs(np.fft.rfft(frames, MFCC_NFFT))) * (1.0 / MFCC_NFFT)
        energy = power.sum(axis=1)
        energy[energy == 0] = tiny
        bands = power @ _mfcc_filters().T
        bands[bands == 0] = tiny
        cepstra = (np.log(bands) @ _mfcc_dct()) * lift
        cepstra[:, 0] = np.log(energy)
        out[:, first:last] = cepstra.T
    return out


@lru_cache(maxsize=1)
def _mfcc_filters() -> np.ndarray:
    """(26, 257) triangular filters on FFT bins, their corners evenly spaced in mels from 0 to 8 kHz,
    each corner at floor(513 * hz / 16000)."""
    top = 2595 * np.log10(1 + (SAMPLE_RATE / 2) / 700)
    hz = 700 * (10 ** (np.linspace(0.0, top, MFCC_FILTERS + 2) / 2595) - 1)
    corner = np.floor((MFCC_NFFT + 1) * hz / SAMPLE_RATE)
    bins = np.arange(MFCC_NFFT // 2 + 1, dtype=np.float64)
    filters = np.zeros((MFCC_FILTERS, len(bins)))
    for j in range(MFCC_FILTERS):
        lo, mid, hi = corner[j], corner[j + 1], corner[j + 2]
        rising = (bins >= lo) & (bins < mid)
        falling = (bins >= mid) & (bins < hi)
        filters[j, rising] = (bins[rising] - lo) / (mid - lo)
        filters[j, falling] = (hi - bins[falling]) / (hi - mid)
    return filters


@lru_cache(maxsize=1)
def _mfcc_dct() -> np.ndarray:
    """(26, 13): the first 13 rows of the orthonormal DCT-II, as a matrix to multiply by."""
    n = np.arange(MFCC_FILTERS)[:, None]
    k = np.arange(MFCC_CEPSTRA)[None, :]
    scale = np.where(k == 0, np.sqrt(1.0 / MFCC_FILTERS), np.sqrt(2.0 / MFCC_FILTERS))
    return np.cos(np.pi * k * (2 * n + 1) / (2 * MFCC_FILTERS)) * scale


DAVS_MFCC_STEPS = 20  # 0.2 s of MFCC per video frame
MFCC_FPS = 100


def davs_mfcc_windows(samples: np.ndarray, n_frames: int, fps: float = 25.0) -> np.ndarray:
    """(n_frames, 12, 20): for each video frame, cepstra 1..12 (c0, the loudness, dropped) over the
    20 MFCC steps centred on the frame's middle; steps before the start or past the end repeat
    the first or last one."""
    ceps = mfcc_100hz(samples)[1:]
    n = ceps.shape[1]
    centres = ((np.arange(n_frames) + 0.5) * MFCC_FPS / fps).round().astype(int)
    idx = np.clip(centres[:, None] - DAVS_MFCC_STEPS // 2 + np.arange(DAVS_MFCC_STEPS)[None], 0, n - 1)
    return np.ascontiguousarray(ceps[:, idx].transpose(1, 0, 2))


VAD_CHUNK_SECONDS = 60  # the voice activity detector reads this much at a time


def speech_spans(samples: np.ndarray, enough: float | None = None) -> list[tuple[float, float]]:
    """The stretches of 16 kHz mono `samples` that are speech, (start, end) in seconds, in order, by
    Silero VAD (MIT; its ONNX network ships inside the silero-vad package, run by ONNX Runtime):
    speech, not music, noise or silence, which the loudness alone cannot tell apart; the gaps
    between them are the pauses. About 15 ms per second of sound on a CPU. Read VAD_CHUNK_SECONDS
    at a time (it copies what it reads; a stretch that crosses a chunk's end comes as two that
    touch), and no further once `enough` seconds of speech are found."""
    from silero_vad import get_speech_timestamps

    x = np.asarray(samples).reshape(-1)
    spans: list[tuple[float, float]] = []
    found = 0.0
    step = VAD_CHUNK_SECONDS * SAMPLE_RATE
    for lo in range(0, len(x), step):
        piece = np.ascontiguousarray(x[lo:lo + step], np.float32)
        if piece.size < SAMPLE_RATE // 10:
            break
        for s in get_speech_timestamps(piece, _voice_activity_detector(), sampling_rate=SAMPLE_RATE):
            spans.append(((lo + s["start"]) / SAMPLE_RATE, (lo + s["end"]) / SAMPLE_RATE))
            found += (s["end"] - s["start"]) / SAMPLE_RATE
        if enough is not None and found >= enough:
            break
    return spans


def speech_seconds(samples: np.ndarray, enough: float | None = None) -> float:
    """How many seconds of 16 kHz mono `samples` are speech (`speech_spans`), reading no further
    once `enough` seconds are found."""
    return sum(b - a for a, b in speech_spans(samples, enough))


@lru_cache(maxsize=1)
def _voice_activity_detector():
    """Silero VAD's network, loaded once per process."""
    from silero_vad import load_silero_vad

    return load_silero_vad(onnx=True)
