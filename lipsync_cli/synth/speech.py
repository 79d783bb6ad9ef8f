"""Speech-like audio with known phoneme timings, from numpy and scipy alone.

A small source-filter synthesiser: voiced sounds are a glottal pulse train (per-speaker pitch with
declination and jitter, a spectral tilt) through three formant resonators whose frequencies are
scaled per speaker; fricatives are band-passed noise, plosives a closure then a burst, pauses
silence. Each phoneme carries a viseme: the mouth shape (opening, width, rounding) a face makes
while saying it. It is not intelligible speech; it is audio whose spectrum changes with the
phonemes the way speech does, which is what a lip-sync model has to learn to follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from ..audio import SAMPLE_RATE


@dataclass(frozen=True)
class Phoneme:
    kind: str  # vowel, nasal, approximant, fricative, plosive, pause
    formants: tuple[float, float, float] = (500.0, 1500.0, 2500.0)  # voiced sounds
    band: tuple[float, float] = (0.0, 0.0)  # noise band of fricatives and bursts (Hz)
    voiced: bool = True
    duration: float = 0.1  # seconds at rate 1
    viseme: tuple[float, float, float] = (0.3, 0.5, 0.2)  # mouth opening, width, rounding in [0, 1]


def _v(f1, f2, f3, dur, viseme):
    return Phoneme("vowel", (f1, f2, f3), duration=dur, viseme=viseme)


PHONEMES: dict[str, Phoneme] = {
    # vowels: formants of an adult male voice; visemes from open/spread/rounded articulation
    "AA": _v(730, 1090, 2440, 0.14, (0.95, 0.60, 0.10)),
    "AE": _v(660, 1720, 2410, 0.13, (0.75, 0.75, 0.00)),
    "AH": _v(640, 1190, 2390, 0.10, (0.60, 0.55, 0.10)),
    "AO": _v(570, 840, 2410, 0.14, (0.70, 0.40, 0.65)),
    "EH": _v(530, 1840, 2480, 0.11, (0.50, 0.72, 0.00)),
    "IH": _v(390, 1990, 2550, 0.09, (0.32, 0.78, 0.00)),
    "IY": _v(270, 2290, 3010, 0.12, (0.22, 0.90, 0.00)),
    "UH": _v(440, 1020, 2240, 0.09, (0.38, 0.38, 0.65)),
    "UW": _v(300, 870, 2240, 0.13, (0.25, 0.25, 0.95)),
    "ER": _v(490, 1350, 1690, 0.12, (0.35, 0.45, 0.50)),
    "OW": _v(500, 900, 2300, 0.15, (0.55, 0.32, 0.85)),
    "EY": _v(480, 2000, 2600, 0.14, (0.45, 0.80, 0.00)),
    "AY": _v(700, 1400, 2500, 0.16, (0.85, 0.65, 0.05)),
    # nasals and approximants: voiced, weaker
    "M": Phoneme("nasal", (250, 1100, 2200), duration=0.08, viseme=(0.00, 0.50, 0.30)),
    "N": Phoneme("nasal", (250, 1500, 2500), duration=0.07, viseme=(0.22, 0.60, 0.10)),
    "NG": Phoneme("nasal", (250, 1900, 2600), duration=0.08, viseme=(0.30, 0.55, 0.10)),
    "L": Phoneme("approximant", (360, 1300, 2700), duration=0.07, viseme=(0.38, 0.60, 0.10)),
    "R": Phoneme("approximant", (420, 1300, 1600), duration=0.07, viseme=(0.30, 0.40, 0.60)),
    "W": Phoneme("approximant", (300, 700, 2200), duration=0.06, viseme=(0.18, 0.22, 1.00)),
    "Y": Phoneme("approximant", (280, 2200, 2900), duration=0.06, viseme=(0.25, 0.82, 0.00)),
    # fricatives: noise bands; voiced ones add a voice source
    "F": Phoneme("fricative", band=(1500, 7000), voiced=False, duration=0.10, viseme=(0.10, 0.55, 0.15)),
    "V": Phoneme("fricative", (300, 1200, 2400), band=(1500, 7000), duration=0.08, viseme=(0.10, 0.55, 0.15)),
    "TH": Phoneme("fricative", band=(2500, 7500), voiced=False, duration=0.09, viseme=(0.20, 0.60, 0.05)),
    "S": Phoneme("fricative", band=(4000, 7800), voiced=False, duration=0.11, viseme=(0.14, 0.78, 0.00)),
    "Z": Phoneme("fricative", (300, 1600, 2500), band=(4000, 7800), duration=0.09, viseme=(0.14, 0.78, 0.00)),
    "SH": Phoneme("fricative", band=(2000, 5000), voiced=False, duration=0.11, viseme=(0.22, 0.42, 0.75)),
    "HH": Phoneme("fricative", band=(500, 4000), voiced=False, duration=0.06, viseme=(0.50, 0.60, 0.10)),
    # plosives: closure (silence) then a burst in the band
    "P": Phoneme("plosive", band=(500, 3000), voiced=False, duration=0.09, viseme=(0.00, 0.50, 0.30)),
    "B": Phoneme("plosive", (300, 1000, 2200), band=(300, 2500), duration=0.08, viseme=(0.00, 0.50, 0.30)),
    "T": Phoneme("plosive", band=(3000, 7000), voiced=False, duration=0.08, viseme=(0.22, 0.62, 0.05)),
    "D": Phoneme("plosive", (300, 1700, 2600), band=(2500, 6000), duration=0.07, viseme=(0.22, 0.62, 0.05)),
    "K": Phoneme("plosive", band=(1500, 4000), voiced=False, duration=0.09, viseme=(0.35, 0.55, 0.10)),
    "G": Phoneme("plosive", (300, 1900, 2500), band=(1200, 3500), duration=0.08, viseme=(0.35, 0.55, 0.10)),
    # silence between words; the mouth rests nearly closed
    "_": Phoneme("pause", voiced=False, duration=0.08, viseme=(0.04, 0.50, 0.20)),
}

# The vocabulary: 60 words as phoneme sequences (ARPAbet-like, simplified).
VOCABULARY: dict[str, tuple[str, ...]] = {w: tuple(p.split()) for w, p in {
    "about": "AH B AY T", "after": "AE F T ER", "again": "AH G EH N", "always": "AO L W EY Z",
    "answer": "AE N S ER", "before": "B IH F AO R", "below": "B IH L OW", "bring": "B R IH NG",
    "called": "K AO L D", "change": "SH EY N D", "close": "K L OW Z", "could": "K UH D",
    "every": "EH V R IY", "family": "F AE M L IY", "father": "F AA TH ER", "friend": "F R EH N D",
    "garden": "G AA R D AH N", "government": "G AH V ER M AH N T", "happy": "HH AE P IY", "house": "HH AY S",
    "important": "IH M P AO R T AH N T", "large": "L AA R D", "later": "L EY T ER", "little": "L IH T AH L",
    "money": "M AH N IY", "morning": "M AO R N IH NG", "mother": "M AH TH ER", "music": "M Y UW Z IH K",
    "never": "N EH V ER", "number": "N AH M B ER", "people": "P IY P AH L", "perhaps": "P ER HH AE P S",
    "place": "P L EY S", "point": "P OW IY N T", "question": "K W EH S SH AH N", "really": "R IY L IY",
    "right": "R AY T", "school": "S K UW L", "second": "S EH K AH N D", "should": "SH UH D",
    "small": "S M AO L", "something": "S AH M TH IH NG", "start": "S T AA R T", "still": "S T IH L",
    "system": "S IH S T AH M", "today": "T AH D EY", "together": "T AH G EH TH ER", "under": "AH N D ER",
    "very": "V EH R IY", "water": "W AO T ER", "weather": "W EH TH ER", "where": "W EH R",
    "without": "W IH TH AY T", "woman": "W UH M AH N", "world": "W ER L D", "would": "W UH D",
    "yellow": "Y EH L OW", "yesterday": "Y EH S T ER D EY", "young": "Y AH NG", "zero": "Z IY R OW",
}.items()}
WORDS: tuple[str, ...] = tuple(sorted(VOCABULARY))


@dataclass(frozen=True)
class Voice:
    """A speaker: pitch, vocal-tract size (formant scale), speaking rate, loudness, breathiness."""

    pitch: float  # Hz
    formant_scale: float
    rate: float  # > 1 speaks faster
    loudness: float  # peak amplitude, 0..1
    breathiness: float  # noise mixed into the voice source, 0..1


def make_voice(rng: np.random.Generator) -> Voice:
    female = rng.random() < 0.5
    pitch = rng.uniform(165, 255) if female else rng.uniform(85, 155)
    scale = rng.uniform(1.08, 1.2) if female else rng.uniform(0.88, 1.02)
    return Voice(float(pitch), float(scale), float(rng.uniform(0.8, 1.25)), float(rng.uniform(0.3, 0.9)),
                 float(rng.uniform(0.0, 0.35)))


@dataclass(frozen=True)
class Span:
    label: str
    start: float  # seconds
    end: float


def _resonate(x: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    """A two-pole formant resonator with unit gain at its centre frequency."""
    r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    theta = 2 * np.pi * min(freq, SAMPLE_RATE * 0.45) / SAMPLE_RATE
    a = [1.0, -2 * r * np.cos(theta), r * r]
    gain = (1 - r) * np.sqrt(1 - 2 * r * np.cos(2 * theta) + r * r)
    return signal.lfilter([gain], a, x)


def _voice_source(n: int, f0: np.ndarray, voice: Voice, rng, phase0: float) -> tuple[np.ndarray, float]:
    """A glottal pulse train (a sawtooth softened by a one-pole low-pass) plus breath noise."""
    phase = phase0 + np.cumsum(f0 / SAMPLE_RATE)
    saw = 2 * (phase % 1.0) - 1
    pulses = signal.lfilter([1.0], [1.0, -0.9], np.diff(saw, prepend=saw[0]) * -1)  # tilt: -6 dB/octave
    noise = rng.standard_normal(n) * voice.breathiness * 0.3
    return pulses + noise, float(phase[-1] % 1.0) if n else phase0


def _band_noise(n: int, band: tuple[float, float], rng) -> np.ndarray:
    lo, hi = band
    sos = signal.butter(2, [lo / (SAMPLE_RATE / 2), min(hi, SAMPLE_RATE * 0.49) / (SAMPLE_RATE / 2)],
                        btype="band", output="sos")
    return signal.sosfilt(sos, rng.standard_normal(n))


def _segment(ph: Phoneme, n: int, voice: Voice, f0: np.ndarray, rng, phase: float) -> tuple[np.ndarray, float]:
    out = np.zeros(n)
    if ph.kind == "pause" or n == 0:
        return out, phase
    if ph.voiced:
        src, phase = _voice_source(n, f0, voice, rng, phase)
        voiced = sum(_resonate(src, f * voice.formant_scale, bw) * g
                     for f, bw, g in zip(ph.formants, (80, 110, 160), (1.0, 0.7, 0.35)))
        level = {"vowel": 1.0, "nasal": 0.45, "approximant": 0.6, "fricative": 0.35, "plosive": 0.4}[ph.kind]
        out += voiced * level
    if ph.kind == "fricative":
        out += _band_noise(n, ph.band, rng) * (0.25 if ph.voiced else 0.45)
    elif ph.kind == "plosive":
        closure = int(n * 0.55)
        out[:closure] *= 0.1  # the lips or tongue close: (nearly) silence
        burst = min(n - closure, int(0.025 * SAMPLE_RATE))
        env = np.exp(-np.linspace(0, 5, burst))
        out[closure:closure + burst] += _band_noise(burst, ph.band, rng) * env * 0.8
    return out, phase


def synthesize(words: list[str], voice: Voice, rng: np.random.Generator, lead: float = 0.1,
               tail: float = 0.1) -> tuple[np.ndarray, list[Span], list[Span]]:
    """Float32 mono samples at 16 kHz, the phoneme spans and the word spans (seconds).

    Words are separated by short pauses of random length; the audio starts and ends with silence
    of about `lead` and `tail` seconds."""
    phones: list[tuple[str, float, str | None]] = [("_", lead, None)]
    for k, word in enumerate(words):
        if k:
            phones.append(("_", float(rng.uniform(0.03, 0.15)) / voice.rate, None))
        for p in VOCABULARY[word]:
            base = PHONEMES[p].duration
            phones.append((p, base * float(rng.uniform(0.8, 1.25)) / voice.rate, word))
    phones.append(("_", tail, None))

    spans: list[Span] = []
    word_spans: list[Span] = []
    pieces = []
    t = 0.0
    total = sum(d for _, d, _ in phones)
    phase = 0.0
    fade = int(0.008 * SAMPLE_RATE)
    for p, dur, word in phones:
        start = int(round(t * SAMPLE_RATE))
        end = int(round((t + dur) * SAMPLE_RATE))
        n = end - start
        # pitch: declination over the utterance, a slow wobble, cycle-to-cycle jitter
        times = (start + np.arange(n)) / SAMPLE_RATE
        f0 = voice.pitch * (1.1 - 0.2 * times / max(total, 1e-6)) * (1 + 0.03 * np.sin(2 * np.pi * 3.0 * times))
        f0 *= 1 + rng.normal(0, 0.01)
        seg, phase = _segment(PHONEMES[p], n, voice, f0, rng, phase)
        if n > 2 * fade:  # short fades so segment joins do not click
            ramp = np.linspace(0, 1, fade)
            seg[:fade] *= ramp
            seg[-fade:] *= ramp[::-1]
        pieces.append(seg)
        spans.append(Span(p, t, t + dur))
        if word is not None and (not word_spans or word_spans[-1].label != word or word_spans[-1].end < t - 1e-9):
            word_spans.append(Span(word, t, t + dur))
        elif word is not None:
            word_spans[-1] = Span(word, word_spans[-1].start, t + dur)
        t += dur
    audio = np.concatenate(pieces)
    peak = np.max(np.abs(audio)) or 1.0
    audio = (audio / peak * voice.loudness).astype(np.float32)
    return audio, spans, word_spans


def viseme_track(spans: list[Span], times: np.ndarray, smoothing: float = 0.035) -> np.ndarray:
    """Mouth (opening, width, rounding) at each time: the visemes of the phonemes as targets,
    smoothed over time (coarticulation: the mouth moves towards the next shape early and leaves
    the last one late). `smoothing` is the Gaussian's sigma in seconds."""
    step = 0.002
    grid = np.arange(0.0, spans[-1].end + step, step)
    targets = np.zeros((len(grid), 3))
    for sp in spans:
        targets[(grid >= sp.start) & (grid < sp.end)] = PHONEMES[sp.label].viseme
    targets[grid >= spans[-1].end] = PHONEMES[spans[-1].label].viseme
    radius = int(3 * smoothing / step)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) * step / smoothing) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(targets, ((radius, radius), (0, 0)), mode="edge")
    smooth = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(3)], axis=1)
    return np.stack([np.interp(times, grid, smooth[:, c]) for c in range(3)], axis=1)
