"""`lipsync animate`: a still portrait driven by speech (or by a driving video) through DAVS.

The photo's face is found (with its landmarks) and aligned to DAVS's template; its person-ID
feature is taken once. Speech gives one 12 x 20 MFCC window per output frame (25 fps by default)
and so one word-ID feature per frame (with `--driver`, the word-ID features of the driving video's
aligned faces instead). The features are smoothed over time (a Gaussian of `smooth` frames), the
decoder draws one face per frame, and each face is pasted back into the photo through the inverse
alignment with a soft elliptical mask (or written alone with `crop`). The speech (or the driver's
sound) is muxed in; the video lasts as long as the audio (or the driver). The output is written
under a temporary name and renamed only when complete.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from .. import audio as audio_mod
from .. import media, outputs
from ..errors import InputError


@dataclass
class AnimateOptions:
    checkpoint: str
    driver: str | None = None  # a talking video whose mouth drives the photo instead of the speech
    fps: Fraction = media.FPS
    detector: str = "retinaface"
    device: str = "auto"
    smooth: float = 1.0  # sigma in frames of the temporal smoothing of word-ID features; 0: none
    crop: bool = False  # write the aligned face alone instead of pasting it into the photo
    batch_size: int = 32


@dataclass
class AnimateResult:
    output: str
    frames: int
    fps: Fraction
    width: int
    height: int
    driven_by: str  # "audio" or "video"
    seconds: float = 0.0
    stage_seconds: dict = field(default_factory=dict)


def _read_photo(path: str) -> np.ndarray:
    if not Path(path).exists():
        raise InputError(f"{path}: no such file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: not an image that can be read (use a JPEG or PNG photo)")
    return image


def _detect_one(detector, image: np.ndarray, what: str):
    from ..faces import select_face

    det = select_face(detector.detect([image])[0])
    if det is None:
        raise InputError(f"{what}: no face found")
    return det


def smooth_features(features: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along time (axis 0), edges held; sigma 0 returns the input."""
    if sigma <= 0 or len(features) < 2:
        return features
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(features, sigma, axis=0, mode="nearest")


@torch.no_grad()
def _encode_batches(encoder, inputs: np.ndarray, batch: int, device) -> np.ndarray:
    out = []
    for s in range(0, len(inputs), batch):
        out.append(encoder(torch.from_numpy(inputs[s:s + batch]).to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 256), np.float32)


def _driver_faces(path: str, opts: AnimateOptions, detector, size: int) -> np.ndarray:
    """The driving video's faces at opts.fps, aligned like the photo: (n, 3, size, size) in [0, 1].
    Key points are followed through the video and averaged over 5 frames against jitter."""
    from ..faces import FaceTracker, align

    info = media.probe(path)
    if info.video is None or info.video.frame_count == 0:
        raise InputError(f"{path}: no video frames to drive the photo with")
    tracker = FaceTracker(None)
    frames, points = [], []
    for chunk in media.FrameReader(info, chunk=16, fps=opts.fps):
        dets = detector.detect(list(chunk))
        for frame, frame_dets in zip(chunk, dets):
            box = tracker.step(frame_dets)
            det = None
            if box is not None:
                det = min(frame_dets, key=lambda d: np.abs(np.subtract(d.box, box)).sum()) if frame_dets else None
            frames.append(frame)
            points.append(align.key_points(det) if det is not None else None)
    known = [i for i, p in enumerate(points) if p is not None]
    if not known:
        raise InputError(f"{path}: no face found in the driving video")
    filled = np.stack([points[min(known, key=lambda j: abs(j - i))] for i in range(len(points))])
    kernel = np.ones(5) / 5
    padded = np.concatenate([filled[:1].repeat(2, 0), filled, filled[-1:].repeat(2, 0)])
    smoothed = np.stack([np.apply_along_axis(lambda v: np.convolve(v, kernel, "valid"), 0, padded[:, k])
                         for k in range(3)], axis=1)
    faces = np.stack([align.align(f, align.alignment(p, size), size) for f, p in zip(frames, smoothed)])
    return np.ascontiguousarray(faces.transpose(0, 3, 1, 2)).astype(np.float32) / 255.0


def animate(photo: str, audio_path: str | None, output: str, opts: AnimateOptions, force: bool = False,
            progress: Callable[[int, int], None] | None = None) -> AnimateResult:
    from ..faces import align, make_detector
    from ..faces.paste import AlignedPaster
    from ..device import resolve_device
    from ..checkpoints import load_davs

    started = time.perf_counter()
    stages: dict[str, float] = {}
    image = _read_photo(photo)
    if audio_path is None and opts.driver is None:
        raise InputError("give the speech (AUDIO) or a driving video (--driver)")
    for path in (audio_path, opts.driver):
        if path is not None and not Path(path).exists():
            raise InputError(f"{path}: no such file")
    sound_source = audio_path or opts.driver
    sound_info = media.probe(sound_source)
    if sound_info.audio is None:
        raise InputError(f"{sound_source}: no audio stream (the output needs the speech to mux)")
    # fails now, before any work, if the output may not be written
    out = outputs.AtomicFile(output, force, inputs=(photo, audio_path, opts.driver, opts.checkpoint))
    try:
        t = time.perf_counter()
        device = resolve_device(opts.device)
        net = load_davs(opts.checkpoint, device)
        size = net.cfg.size
        detector = make_detector(opts.detector, str(device))
        det = _detect_one(detector, image, photo)
        matrix = align.alignment(align.key_points(det), size)
        face = align.align(image, matrix, size)
        with torch.no_grad():
            f_p = net.person_encoder(torch.from_numpy(face).permute(2, 0, 1)[None].float().div(255).to(device))
        stages["load"] = time.perf_counter() - t

        t = time.perf_counter()
        if opts.driver is not None:
            faces = _driver_faces(opts.driver, opts, detector, size)
            f_w = _encode_batches(net.video_word_encoder, faces, opts.batch_size, device)
            driven_by = "video"
        else:
            samples = audio_mod.load_audio(audio_path).samples
            n = max(1, math.ceil(len(samples) / audio_mod.SAMPLE_RATE * float(opts.fps) - 1e-6))
            windows = audio_mod.davs_mfcc_windows(samples, n, float(opts.fps))[:, None]  # (n, 1, 12, 20)
            f_w = _encode_batches(net.audio_word_encoder, windows, opts.batch_size, device)
            driven_by = "audio"
        f_w = smooth_features(f_w, opts.smooth)
        stages["features"] = time.perf_counter() - t

        t = time.perf_counter()
        height, width = (size, size) if opts.crop else image.shape[:2]
        paster = None if opts.crop else AlignedPaster(image, matrix, size)
        extra = {"shortest": None} if driven_by == "video" else None
        writer = media.FrameWriter(str(out.tmp), width, height, opts.fps, sound_source, extra_output_args=extra)
        try:
            for s in range(0, len(f_w), opts.batch_size):
                w = torch.from_numpy(f_w[s:s + opts.batch_size]).to(device)
                with torch.no_grad():
                    g = net.decoder(f_p.expand(len(w), -1), w).float().clamp(0, 1)
                faces_out = (g * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
                for generated in faces_out:
                    writer.write(generated if paster is None else paster.paste(generated))
                if progress:
                    progress(min(len(f_w), s + opts.batch_size), len(f_w))
            writer.close()
        except BaseException:
            writer.abort()
            raise
        stages["generate_and_encode"] = time.perf_counter() - t
        out.commit()
    finally:
        out.discard()
    return AnimateResult(output, len(f_w), opts.fps, width - width % 2, height - height % 2, driven_by,
                         time.perf_counter() - started, stages)
