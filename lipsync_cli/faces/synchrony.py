"""Audio-visual synchrony: does this face's mouth move with the speech?

Light-ASD sees *talking*, not *synchrony*: with two or three faces that all move their lips and
one speech track, its TalkSet weights call every one of them speaking (about half of the frames
right on such composites). Model-free cues tell them apart: how much the lower face moves, frame
to frame, and how dark the mouth is (open: its dark inside shows) rise and fall with the loudness
of the speech.

- `lower_face_motion(crops)`: Light-ASD's (T, 112, 112) grey crops -> (T,) motion of the mouth
  and jaw (mean absolute frame difference, at half resolution, each frame's mean brightness
  removed), less half the motion of the eyes and brow (the head's own motion and blinks move both
  regions, speech mostly the lower one). motion[t] is the change from crop t-1 to crop t, so a
  long track can be done in pieces (each piece with the previous piece's last crop in front,
  dropping the first value). A crop repeating the previous one (frame-rate conversion duplicates
  frames) is NaN: `synchrony` spreads the next change over the repeated frames.
- `speech_envelope(samples_16k, frames)`: (T,) loudness in dB of the speech band (300-3400 Hz),
  80 ms Hann windows centred between frames t-1 and t (the interval of motion[t]); clipped 50 dB
  below the loudest frame and at -65 dBFS, so silence is flat.
- `synchrony(motion, envelope)`: (T,) Pearson correlation of the two (each smoothed over 3
  frames) over a 3 s window centred on each frame (cut at the track's ends), the best of the lags
  -1..+1 frame (40 ms either way). No evidence (0): a window whose loudness deviates by less than
  1 dB (silence, a steady tone), a face that does not move, fewer than 25 usable frames.
- `voiced_frames(envelope)`: (T,) bool, speech rather than a pause (within 30 dB of the
  speech's loud level); `louder_than(envelope, db)` the same without closing one-frame dips (at
  40 dB: where a voice's faint start rises out of a pause).
- `mouth_darkness(crops)`: (T,) how much darker than the crop the mouth is: an open mouth shows
  its dark inside, and it opens on the loud part of each syllable.
- `evidence(motion, darkness, envelope)`: (T,) per frame, a product of standardised signals whose
  mean over a stretch is a correlation: MOTION_SHARE x motion against loudness (standardised over
  10 s) plus mouth darkness against amplitude (standardised over 2 s, so that each turn is
  measured against its own level). Motion tells speech from pauses over seconds; the opening
  follows the syllables, which is what tells two talking faces apart within a 2 s turn.
- `leaders(evidence, allowed)`: the face with the most evidence per frame, as the path through
  the frames that maximises the evidence less SWITCH_COST per change (Viterbi): a turn is followed
  from the frame where the evidence turns, and a short lucky stretch does not win the mouth.
- `combine(asd, sync, evidence)`: the cues as one speaking score per track and frame (above 0:
  speaking), on one timeline (NaN where the track is absent).

The rule of `combine`, per frame. A face *competes* when its Light-ASD score averaged over 9
frames (0.36 s: a stray frame does not count) is above 0.
- No other face competes: the face keeps that averaged Light-ASD score. Light-ASD is right about
  a lone talking face beside still ones, and a still face is never made to speak (its score stays
  below 0 whatever the cues say: a still mouth correlates with speech by chance as often as not).
- Several compete: Light-ASD cannot tell them apart, the evidence decides. Over each stretch of
  such frames, `leaders` picks one competing face per frame; over each run of one leader, with r
  each face's mean evidence there, the leader scores GAIN x (r - IN_SYNC) (it speaks if its
  mouth follows the speech at all: leading faces that all ignore the speech is not speaking);
  another competing face scores GAIN x min(r - r_leader + MARGIN, r - BOTH): it speaks too only
  while itself in sync (above BOTH) and within MARGIN of the leader (two people talking at once
  over one mixed track both follow it; a face talking to other speech mostly does not). GAIN
  puts the scores in Light-ASD's range. When no competing face has synchrony evidence (silence:
  the 3 s `synchrony` cue 0), the averaged Light-ASD scores stand.
- A face that does not compete keeps its own (negative) averaged Light-ASD score.

On the composites of benchmarks/speakers.md (TalkSet weights), the share of frames right against
the 3 s `synchrony` cue alone deciding (the rule before `evidence`): two talking faces, one speech,
83.3% -> 85.6%; three, 82.4% -> 93.4%; turns of 2 s while every face keeps talking, 60.1% ->
80.9%; interview turns, 91.2% -> 93.7%; a speaker beside still faces unchanged at 100%.

Measured for the 3 s `synchrony` cue (a research harness, not shipped: crop-level composites of the
real clips talk1..talk5 at 25 fps, RetinaFace boxes, face A with its own speech beside faces that
talk to other speech, every ordered pair (20) and triple (30); Light-ASD TalkSet weights, one 1 s
window), the share of frames whose highest score is the speaker's: Light-ASD alone 0.52 (pairs)
and 0.35 (triples); synchrony alone 0.93 and 0.88; combined 0.93 and 0.88; the speaker alone
above 0 (every other face at most 0): 0.86 and 0.76 (Light-ASD alone: 0.02, 0.00). A talking face
beside a still one (silent_long, silent_tall): 0.99, as Light-ASD alone, the still face never
above 0. With a 2 s window the hard case drops to 0.88 / 0.80. Weak spots: two people talking
at once over the sum of their speech are both above 0 in only 0.31 of frames (the mixed track
correlates with each face less than its own speech would, and about as well as other speech
does with a talking face); speech from off screen with two talking faces leaves one of them
above 0 in 0.70 of frames (Light-ASD alone: 1.00); the AVA weights, which miss more of the
speaker's frames (0.73 above 0), leave a wrong lone face there: combined 0.75 / 0.68. The cue
costs about 4 ms per second of video per face on one core (Light-ASD with one window: 400 ms).
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np

FPS = 25
SAMPLE_RATE = 16000

# Regions of Light-ASD's 112 x 112 crop, as shares of its height and width: the mouth and jaw,
# and the eyes and brow (the crop holds the face from the brow to below the chin).
LOWER = ((0.55, 0.93), (0.25, 0.75))
UPPER = ((0.07, 0.45), (0.14, 0.86))
MOUTH = ((0.60, 0.85), (0.30, 0.70))  # the lips and the mouth's inside, for `mouth_darkness`
UPPER_WEIGHT = 0.5  # share of the upper face's motion taken off the lower face's
REPEATED = 0.1  # a crop within this mean absolute difference (grey levels) of the previous: repeated

SPEECH_BAND = (300.0, 3400.0)  # Hz
ENVELOPE_FRAMES = 2.0  # the loudness window, in frame intervals (80 ms at 25 fps)
FLOOR_DB = 50.0  # the envelope is clipped this far below its loudest frame ...
SILENCE_DBFS = -65.0  # ... and never below this level (digital silence, hiss)
VOICED_BELOW_PEAK_DB = 30.0  # `voiced_frames`: louder than the speech's loud level less this
ONSET_BELOW_PEAK_DB = 40.0  # a voice's first, faint frames: louder than the loud level less this

WINDOW = 75  # frames of the sliding correlation (3 s at 25 fps)
MAX_LAG = 1  # frames either way (40 ms)
MIN_FRAMES = 25  # usable frames a window needs (1 s); fewer: no evidence
FLAT_DB = 1.0  # a window whose loudness deviates less than this (dB): no evidence

ASD_SMOOTH = 9  # frames of the mean over Light-ASD's score that decides who competes
COMPETES = 0.0  # ... above this
GAIN = 10.0  # combined score per unit of correlation
MARGIN = 0.15  # a face this close to the best synchrony may speak too ...
BOTH = 0.25  # ... when its own synchrony is above this
IN_SYNC = 0.1  # a competing face with less synchrony than this does not speak, lead or not
NO_EVIDENCE = 0.02  # |synchrony| at most this: no evidence

# `evidence` and the choice among competing faces (see the module's docstring)
MOTION_NORM = 250  # frames (10 s) over which motion and loudness are standardised ...
OPENING_NORM = 50  # ... and mouth darkness and amplitude (2 s: a turn's own level)
MOTION_SHARE = 0.25  # weight of the motion term beside the opening term
SWITCH_COST = 6.0  # evidence (frames x correlation) a change of leader must gain


def _region(shape: tuple[int, int], share: tuple[tuple[float, float], tuple[float, float]]) -> tuple[slice, slice]:
    (r0, r1), (c0, c1) = share
    h, w = shape
    return slice(int(round(r0 * h)), int(round(r1 * h))), slice(int(round(c0 * w)), int(round(c1 * w)))


def _half_resolution(crops: np.ndarray) -> np.ndarray:
    """(T, H, W) grey crops -> (T, H/2, W/2) float32, each crop's mean brightness removed (a global
    change of brightness is neither motion nor an opening mouth)."""
    import cv2

    crops = np.asarray(crops)
    if crops.ndim != 3 or min(crops.shape[1:]) < 8:
        raise ValueError(f"crops must be (T, H, W) grey images; got {crops.shape}")
    size = (crops.shape[2] // 2, crops.shape[1] // 2)
    grey = np.stack([cv2.resize(np.asarray(c, np.float32), size, interpolation=cv2.INTER_AREA) for c in crops])
    grey -= grey.mean(axis=(1, 2), keepdims=True)
    return grey


def mouth_darkness(crops: np.ndarray) -> np.ndarray:
    """(T, H, W) uint8 grey face crops of one track -> (T,) float32: how much darker than the
    crop's mean the mouth is (grey levels, at half resolution). An open mouth shows its dark inside,
    and a mouth opens on the loud part of a syllable: this follows the speech's amplitude syllable
    by syllable, where motion (`lower_face_motion`) mostly tells speech from pauses."""
    if len(np.asarray(crops)) == 0:
        return np.zeros(0, np.float32)
    grey = _half_resolution(crops)
    rows, cols = _region(grey.shape[1:], MOUTH)
    return (-grey[:, rows, cols].mean(axis=(1, 2))).astype(np.float32)


def lower_face_motion(crops: np.ndarray) -> np.ndarray:
    """(T, H, W) uint8 grey face crops of one track (Light-ASD's, 112 x 112) -> (T,) float32: how
    much the lower face moves from the previous crop, less half of the upper face's motion (grey
    levels, at half resolution, each crop's mean brightness removed). The first value repeats the
    second's; NaN where the crop repeats the previous one (see `synchrony`)."""
    crops = np.asarray(crops)
    if crops.ndim != 3 or min(crops.shape[1:]) < 8:
        raise ValueError(f"crops must be (T, H, W) grey images; got {crops.shape}")
    t = len(crops)
    out = np.zeros(t, np.float32)
    if t < 2:
        return out
    grey = _half_resolution(crops)
    step = np.abs(np.diff(grey, axis=0))
    lo, up = _region(grey.shape[1:], LOWER), _region(grey.shape[1:], UPPER)
    out[1:] = step[:, lo[0], lo[1]].mean(axis=(1, 2)) - UPPER_WEIGHT * step[:, up[0], up[1]].mean(axis=(1, 2))
    same = np.abs(np.diff(crops.astype(np.int16), axis=0)).mean(axis=(1, 2)) < REPEATED
    out[1:][same] = np.nan
    out[0] = out[1]
    return out


def speech_envelope(samples_16k: np.ndarray, frames: int, fps: float = FPS) -> np.ndarray:
    """16 kHz mono samples -> (frames,) float32 loudness per video frame: dB of the speech band's
    power in an 80 ms Hann window centred on the interval between frames t-1 and t (that of
    `lower_face_motion`'s value t), clipped FLOOR_DB below the loudest frame and at SILENCE_DBFS.
    Past the end of the samples: silence."""
    return clip_loudness(speech_loudness(samples_16k, frames, fps))


def speech_loudness(samples_16k: np.ndarray, frames: int, fps: float = FPS) -> np.ndarray:
    """`speech_envelope` before its clipping (float64 dB; silence past the samples: -120): what
    can be computed for more frames than a clip turns out to have, and the samples let go;
    `clip_loudness(speech_loudness(x, n)[:frames])` equals `speech_envelope(x, frames)`."""
    x = np.asarray(samples_16k, dtype=np.float32).reshape(-1)
    if frames <= 0:
        return np.zeros(0, np.float64)
    n = int(round(ENVELOPE_FRAMES * SAMPLE_RATE / fps))
    taper = np.hanning(n + 2)[1:-1].astype(np.float32)
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    band = (freqs >= SPEECH_BAND[0]) & (freqs <= SPEECH_BAND[1])
    norm = 2.0 / (n * float((taper ** 2).sum()))  # a full-scale sine in the band: about 0 dB
    starts = np.round((np.arange(frames) - 0.5) * SAMPLE_RATE / fps - n / 2).astype(np.int64)
    out = np.empty(frames, np.float64)
    for lo in range(0, frames, 2048):  # bounded memory for long clips
        idx = starts[lo:lo + 2048, None] + np.arange(n)[None]
        inside = (idx >= 0) & (idx < len(x))  # silence before and after the samples
        window = np.where(inside, x[np.clip(idx, 0, max(0, len(x) - 1))] if len(x) else 0.0, 0.0).astype(np.float32)
        spec = np.fft.rfft(window * taper, axis=1)
        out[lo:lo + 2048] = 10 * np.log10((np.abs(spec[:, band]) ** 2).sum(axis=1) * norm + 1e-12)
    return out


def clip_loudness(loudness: np.ndarray) -> np.ndarray:
    """Raw dB per frame -> the envelope: clipped FLOOR_DB below the loudest frame and at SILENCE_DBFS."""
    out = np.asarray(loudness, np.float64)
    if not out.size:
        return np.zeros(0, np.float32)
    return np.maximum(out, max(out.max() - FLOOR_DB, SILENCE_DBFS)).astype(np.float32)


def louder_than(envelope: np.ndarray, below_peak_db: float) -> np.ndarray:
    """(T,) `speech_envelope` -> (T,) bool: frames within below_peak_db of the speech's loud level
    (its 95th percentile, so a few loud peaks do not set it)."""
    e = np.asarray(envelope, np.float64).reshape(-1)
    if e.size == 0:
        return np.zeros(0, bool)
    return e > np.percentile(e, 95) - below_peak_db


def voiced_frames(envelope: np.ndarray, below_peak_db: float = VOICED_BELOW_PEAK_DB) -> np.ndarray:
    """(T,) `speech_envelope` -> (T,) bool: speech rather than a pause: `louder_than` below_peak_db,
    single-frame dips closed."""
    voiced = louder_than(envelope, below_peak_db)
    dips = np.flatnonzero(~voiced[1:-1] & voiced[:-2] & voiced[2:]) + 1
    voiced[dips] = True
    return voiced


def _spread_repeats(m: np.ndarray) -> np.ndarray:
    """NaN values (repeated crops) and the change after them share that change equally; NaN
    values at the end stay NaN."""
    m = np.asarray(m, np.float64).copy()
    t = len(m)
    gap = ~np.isfinite(m)
    if not gap.any():
        return m
    idx = np.arange(t)
    nxt = np.minimum.accumulate(np.where(gap, t, idx)[::-1])[::-1]  # the next finite index (t: none)
    prev = np.maximum.accumulate(np.where(gap, -1, idx))  # the last finite index at or before
    before = np.r_[-1, prev[:-1]]  # the last finite index strictly before
    count = idx - before  # for a finite index: itself and the repeats in front of it
    has = nxt < t
    m[has] = m[nxt[has]] / count[nxt[has]]
    return m


def _smooth(v: np.ndarray) -> np.ndarray:
    p = np.pad(v, 1, mode="edge")
    return 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]


def _window_sums(v: np.ndarray, window: int) -> np.ndarray:
    """Sum of v over the `window` frames centred on each frame (cut at the ends)."""
    c = np.r_[0.0, np.cumsum(v)]
    t = len(v)
    i = np.arange(t)
    lo = np.clip(i - window // 2, 0, t)
    hi = np.clip(i + (window - window // 2), 0, t)
    return c[hi] - c[lo]


def synchrony(motion: np.ndarray, envelope: np.ndarray, window: int = WINDOW, max_lag: int = MAX_LAG) -> np.ndarray:
    """(T,) `lower_face_motion` and (T,) `speech_envelope` of the same frames -> (T,) float32 in
    [-1, 1]: their correlation over `window` frames centred on each frame, the best of the lags
    -max_lag..max_lag (motion frame t + lag against loudness frame t), each signal smoothed over
    3 frames first. 0 where there is no evidence: the loudness in the window deviates less than
    FLAT_DB (silence), the face does not move, fewer than MIN_FRAMES usable frames (track edges of
    short tracks). NaN in the motion: repeated crops (their change is spread), or unusable frames;
    NaN in the envelope: unusable frames."""
    m = _spread_repeats(np.asarray(motion, dtype=np.float64).reshape(-1))
    e = np.asarray(envelope, dtype=np.float64).reshape(-1)
    if len(m) != len(e):
        raise ValueError(f"{len(m)} motion values but {len(e)} envelope values")
    if window < 3 or max_lag < 0:
        raise ValueError(f"window must be at least 3 frames and max_lag at least 0; got {window}, {max_lag}")
    t = len(m)
    best = np.zeros(t)
    if t == 0:
        return best.astype(np.float32)
    ok_m, ok_e = np.isfinite(m), np.isfinite(e)
    m = _smooth(np.where(ok_m, m, np.nanmean(m) if ok_m.any() else 0.0))
    e = _smooth(np.where(ok_e, e, np.nanmin(e) if ok_e.any() else 0.0))
    best[:] = -np.inf
    for lag in range(-max_lag, max_lag + 1):
        ms = np.zeros(t)
        valid = np.zeros(t)
        lo, hi = max(0, -lag), min(t, t - lag)  # envelope frames with a motion frame at + lag
        if hi > lo:
            ms[lo:hi] = m[lo + lag:hi + lag]
            valid[lo:hi] = ok_m[lo + lag:hi + lag] & ok_e[lo:hi]
        n = _window_sums(valid, window)
        with np.errstate(invalid="ignore", divide="ignore"):
            mx = _window_sums(ms * valid, window) / n
            me = _window_sums(e * valid, window) / n
            vm = _window_sums(ms * ms * valid, window) / n - mx * mx
            ve = _window_sums(e * e * valid, window) / n - me * me
            cov = _window_sums(ms * e * valid, window) / n - mx * me
            r = cov / np.sqrt(vm * ve)
        usable = (n >= min(MIN_FRAMES, window)) & (ve >= FLAT_DB ** 2) & (vm > 1e-6) & np.isfinite(r)
        best = np.maximum(best, np.where(usable, np.clip(r, -1.0, 1.0), -np.inf))
    best[~np.isfinite(best)] = 0.0
    return best.astype(np.float32)


def _nan_mean_filter(v: np.ndarray, n: int) -> np.ndarray:
    """Mean of the finite values over n frames centred on each (NaN stays NaN)."""
    ok = np.isfinite(v)
    if n <= 1:
        return v.copy()
    num = _window_sums(np.where(ok, v, 0.0), n)
    den = _window_sums(ok.astype(np.float64), n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, num / den, np.nan)


def _moving_moments(v: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the variance of v over the n frames centred on each frame (cut at the ends)."""
    count = _window_sums(np.ones_like(v), n)
    mean = _window_sums(v, n) / count
    return mean, np.maximum(_window_sums(v * v, n) / count - mean * mean, 0.0)


def _standardised(v: np.ndarray, n: int) -> np.ndarray:
    """v less its mean over the n frames centred on each frame, over its standard deviation there
    (0 where v does not vary)."""
    mean, var = _moving_moments(v, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 1e-6, (v - mean) / np.sqrt(var), 0.0)


def _aligned_product(visual: np.ndarray, audio: np.ndarray, n: int, max_lag: int) -> np.ndarray:
    """Per frame, the product of the two signals standardised over n frames: its mean over a
    stretch is their correlation there. At the lag of -max_lag..max_lag with the largest total over
    the track (the lag is the recording's, not the moment's)."""
    zv, za = _standardised(_smooth(visual), n), _standardised(_smooth(audio), n)
    t = len(zv)
    best, total = np.zeros(t), -np.inf
    for lag in range(-max_lag, max_lag + 1):
        p = np.zeros(t)
        lo, hi = max(0, -lag), min(t, t - lag)
        if hi > lo:
            p[lo:hi] = zv[lo + lag:hi + lag] * za[lo:hi]
        if p.sum() > total:
            best, total = p, p.sum()
    return best


def evidence(motion: np.ndarray, darkness: np.ndarray, envelope: np.ndarray, max_lag: int = MAX_LAG) -> np.ndarray:
    """(T,) `lower_face_motion`, `mouth_darkness` and `speech_envelope` of one track's frames ->
    (T,) float32, per frame, how much this face's mouth follows the speech: MOTION_SHARE x motion
    against loudness (dB, standardised over MOTION_NORM frames) plus mouth darkness against
    amplitude (standardised over OPENING_NORM frames, so a turn is measured against its own level),
    each a per-frame product whose mean over a stretch is a correlation. 0 where the loudness is
    flat (silence, a steady tone: FLAT_DB over WINDOW frames)."""
    m = _spread_repeats(np.asarray(motion, dtype=np.float64).reshape(-1))
    d = np.asarray(darkness, dtype=np.float64).reshape(-1)
    e = np.asarray(envelope, dtype=np.float64).reshape(-1)
    if not len(m) == len(d) == len(e):
        raise ValueError(f"{len(m)} motion, {len(d)} darkness and {len(e)} envelope values")
    t = len(e)
    if t == 0:
        return np.zeros(0, np.float32)

    def filled(v):
        ok = np.isfinite(v)
        return np.where(ok, v, np.mean(v[ok]) if ok.any() else 0.0)

    m, d, e = filled(m), filled(d), filled(e)
    out = MOTION_SHARE * _aligned_product(m, e, MOTION_NORM, max_lag)
    out += _aligned_product(d, 10.0 ** (e / 20.0), OPENING_NORM, max_lag)
    out[_moving_moments(e, WINDOW)[1] < FLAT_DB ** 2] = 0.0
    return out.astype(np.float32)


def leaders(scores: np.ndarray, allowed: np.ndarray, switch_cost: float = SWITCH_COST) -> np.ndarray:
    """(K, T) per-frame evidence of K faces and (K, T) bool where each may lead -> (T,) the index of
    the leading face per frame: the path through the frames with the most evidence, less
    switch_cost for every change of face (Viterbi). A frame in which no face may lead keeps the
    path's face."""
    scores = np.asarray(scores, np.float64)
    k, t = scores.shape
    if t == 0:
        return np.zeros(0, np.int64)
    gain = np.where(allowed, scores, -1e9)
    total = gain[:, 0].copy()
    back = np.zeros((k, t), np.int64)
    faces = np.arange(k)
    for i in range(1, t):
        best = int(total.argmax())
        stay = total >= total[best] - switch_cost
        back[:, i] = np.where(stay, faces, best)
        total = np.where(stay, total, total[best] - switch_cost) + gain[:, i]
    path = np.zeros(t, np.int64)
    path[-1] = int(total.argmax())
    for i in range(t - 1, 0, -1):
        path[i - 1] = back[path[i], i]
    return path


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index pairs (end exclusive) of the True runs of a boolean array."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _pieces(path: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of the runs of equal values of path (end exclusive)."""
    cuts = np.r_[0, np.flatnonzero(np.diff(path)) + 1, len(path)]
    return list(zip(cuts[:-1].tolist(), cuts[1:].tolist()))


def combine(asd: Mapping[Hashable, np.ndarray], sync: Mapping[Hashable, np.ndarray],
            evidence: Mapping[Hashable, np.ndarray], breaks: Sequence[int] = ()) -> dict[Hashable, np.ndarray]:
    """Per face (the same keys in all three), Light-ASD's (T,) score, the (T,) `synchrony` cue and
    the (T,) per-frame `evidence`, on one timeline (NaN where the face is absent) -> (T,) float32
    combined speaking scores, above 0 speaking, NaN where the face is absent. The rule is in the
    module's docstring. `breaks`: frames where a jump cut starts a new shot with every face at its
    place (each key one face on both sides): the mean over Light-ASD's score stops there, the
    choice of the leading face and its runs go across (as the evidence itself does)."""
    keys = list(asd)
    if set(keys) != set(sync) or set(keys) != set(evidence):
        raise ValueError(f"asd, sync and evidence must hold the same tracks; got {sorted(map(str, asd))}, "
                         f"{sorted(map(str, sync))} and {sorted(map(str, evidence))}")
    if not keys:
        return {}
    a = np.stack([np.asarray(asd[k], np.float64).reshape(-1) for k in keys])
    s = np.stack([np.asarray(sync[k], np.float64).reshape(-1) for k in keys])
    ev = np.stack([np.asarray(evidence[k], np.float64).reshape(-1) for k in keys])
    if not a.shape == s.shape == ev.shape:
        lengths = sorted({len(np.asarray(v).reshape(-1)) for v in (*asd.values(), *sync.values(), *evidence.values())})
        raise ValueError(f"every score must be on one timeline; got lengths {lengths}")
    present = np.isfinite(a)
    s = np.where(present & np.isfinite(s), s, 0.0)
    ev = np.where(present & np.isfinite(ev), ev, 0.0)
    edges = [0, *sorted(b for b in set(breaks) if 0 < b < a.shape[1]), a.shape[1]]
    looks = np.concatenate([np.stack([_nan_mean_filter(v, ASD_SMOOTH) for v in a[:, lo:hi]])
                            for lo, hi in zip(edges[:-1], edges[1:])], axis=1)
    competes = present & (looks > COMPETES)
    several = competes.sum(axis=0) >= 2
    has_evidence = (competes & (np.abs(s) > NO_EVIDENCE)).any(axis=0)
    out = looks.copy()
    for lo, hi in runs(several & has_evidence):
        path = leaders(ev[:, lo:hi], competes[:, lo:hi])
        for p0, p1 in _pieces(path):
            leader, span = int(path[p0]), slice(lo + p0, lo + p1)
            run = ev[:, span].mean(axis=1)  # each face's correlation over the leader's run
            for i in range(len(keys)):
                if i == leader:
                    score = GAIN * (run[i] - IN_SYNC)
                else:  # speaks too only when in sync and close to the leader (two at once)
                    score = GAIN * min(run[i] - run[leader] + MARGIN, run[i] - BOTH)
                out[i, span] = np.where(competes[i, span], score, out[i, span])
    out[~present] = np.nan
    return {k: out[i].astype(np.float32) for i, k in enumerate(keys)}
