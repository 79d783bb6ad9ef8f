"""Light-ASD, the active speaker detector: is the face of this track speaking, frame by frame?

Liao, Duan, Feng, Zhao, Yang, Chen, "A Light Weight Model for Active Speaker Detection", CVPR 2023
(MIT; github.com/Junhua-Liao/Light-ASD). Written here from the paper and the facts of the
reference implementation; the published checkpoints load unchanged.

Inputs, as the published weights were trained on: a face track at 25 fps, cropped around the
detector's box grown by a 0.40 margin, resized to 224x224 and reduced to its central 112x112 in
grayscale (`track_crops`); the track's audio as 13 MFCC at 100 Hz, 4 rows per video frame
(`mfcc_for`). Both streams keep their time axis to the end:
- visual: three blocks of split 3-D convolutions (a k x k spatial one, then a k-frame temporal
  one, for k = 3 and k = 5 side by side, summed), max-pooled over the face -> (B, T, 128);
- audio: the same block with 2-D convolutions (k MFCC bins, then k time steps), two stride-2
  poolings that bring 4 rows per frame down to 1, the mean over the bins -> (B, T, 128);
- back end: the sum of the two, a forward GRU then a backward GRU (each followed by GELU);
- score: the audio-visual frame classifier's "speaking" logit, per frame (above 0: speaking).
The file also holds the visual-only classifier used as an auxiliary loss in training; it is
loaded (the file is the training module's whole state_dict) and not used.

The reference scores a track in consecutive windows of 1 s, then again of 2 s ... 6 s, and
averages the six per-frame scores (`speaking_scores`, which shares the visual encoder's work
between the window lengths; fewer lengths cost less still).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import Signature
from .loading import load_as

FPS = 25  # the rate of the training tracks: other rates must be resampled first
MFCC_PER_FRAME = 4  # 100 Hz MFCC against 25 fps video
CROP_MARGIN = 0.40  # the box is grown by this share of its size (more of it below the face)
CROP_SIZE = 224  # the grown box is resized to this ...
FACE_SIZE = 112  # ... and its central square of this size is the network's input
PAD_GREY = 110  # what lies beyond the frame's edges in a crop
SMOOTHING = 13  # frames of the median filter over a track's box centres and sizes
MIN_TRACK = SMOOTHING // 2 + 1  # shorter, the median filter's zero padding wins: no box left
WINDOW_SECONDS = (1, 2, 3, 4, 5, 6)  # the reference evaluation's window lengths

# The visual input's normalisation (the mean and deviation of the training crops, 0-1 scale).
GREY_MEAN = 0.4161
GREY_STD = 0.1688
BN_EPS = 1e-3  # the published network's BatchNorm epsilon (not PyTorch's default)

SHIPPED_WEIGHTS = Path(__file__).resolve().parent.parent / "data" / "light_asd" / "light_asd_talkset.model"
TENSOR_COUNT = 192  # in a published file: the network's 188 and the two frame classifiers' 2 + 2
SIGNATURE_KEYS = ("model.visualEncoder.block1.s_3.weight", "model.GRU.gru_backward.weight_hh_l0", "lossAV.FC.weight")
DESCRIPTION = "the Light-ASD active speaker detector"


# ----------------------------------------------------------------------------------------------
# The network


class SplitConvBlock(nn.Module):
    """Two branches (kernel 3 and kernel 5), each a convolution over the non-time axes then one
    over time, BatchNorm + ReLU after each; their sum goes through a 1x1 convolution.

    Visual (3-D, (B, C, T, H, W)): a (1, k, k) spatial convolution, then (k, 1, 1) over frames;
    `downsample` gives the spatial one stride 2. Audio (2-D, (B, C, bins, time)): (k, 1) over
    MFCC bins, then (1, k) over time. Attribute names are those of the published state_dict:
    s_/m_ for the first convolution (spatial / MFCC), t_ for the temporal one."""

    def __init__(self, c_in: int, c_out: int, audio: bool = False, downsample: bool = False):
        super().__init__()
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if audio else (nn.Conv3d, nn.BatchNorm3d)
        self.first = "m" if audio else "s"
        for k in (3, 5):
            p = k // 2
            if audio:
                first = dict(kernel_size=(k, 1), padding=(p, 0))
                temporal = dict(kernel_size=(1, k), padding=(0, p))
            else:
                first = dict(kernel_size=(1, k, k), padding=(0, p, p), stride=(1, 2, 2) if downsample else 1)
                temporal = dict(kernel_size=(k, 1, 1), padding=(p, 0, 0))
            setattr(self, f"{self.first}_{k}", conv(c_in, c_out, bias=False, **first))
            setattr(self, f"bn_{self.first}_{k}", norm(c_out, eps=BN_EPS))
            setattr(self, f"t_{k}", conv(c_out, c_out, bias=False, **temporal))
            setattr(self, f"bn_t_{k}", norm(c_out, eps=BN_EPS))
        self.last = conv(c_out, c_out, kernel_size=1, bias=False)
        self.bn_last = norm(c_out, eps=BN_EPS)

    def _branch(self, x: torch.Tensor, k: int) -> torch.Tensor:
        first, first_bn = getattr(self, f"{self.first}_{k}"), getattr(self, f"bn_{self.first}_{k}")
        x = F.relu(first_bn(first(x)))
        return F.relu(getattr(self, f"bn_t_{k}")(getattr(self, f"t_{k}")(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn_last(self.last(self._branch(x, 3) + self._branch(x, 5))))


class VisualEncoder(nn.Module):
    """(B, T, 112, 112) grey levels 0-255 -> (B, T, 128)."""

    def __init__(self):
        super().__init__()
        self.block1 = SplitConvBlock(1, 32, downsample=True)  # 56 x 56
        self.block2 = SplitConvBlock(32, 64)  # 28 x 28 after a pooling
        self.block3 = SplitConvBlock(64, 128)  # 14 x 14 after another

    @staticmethod
    def _halve(x: torch.Tensor) -> torch.Tensor:  # 3x3 max pooling, stride 2, each frame alone
        return F.max_pool3d(x, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        x = ((grey / 255.0 - GREY_MEAN) / GREY_STD).unsqueeze(1)  # (B, 1, T, H, W)
        x = self.block3(self._halve(self.block2(self._halve(self.block1(x)))))
        return x.amax(dim=(3, 4)).transpose(1, 2)  # the strongest response anywhere on the face


class AudioEncoder(nn.Module):
    """(B, 4T, 13) MFCC -> (B, T, 128)."""

    def __init__(self):
        super().__init__()
        self.block1 = SplitConvBlock(1, 32, audio=True)
        self.block2 = SplitConvBlock(32, 64, audio=True)
        self.block3 = SplitConvBlock(64, 128, audio=True)

    @staticmethod
    def _halve_time(x: torch.Tensor) -> torch.Tensor:  # max over 3 steps, stride 2: 4T -> 2T -> T
        return F.max_pool2d(x, kernel_size=(1, 3), stride=(1, 2), padding=(0, 1))

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        x = mfcc.transpose(1, 2).unsqueeze(1)  # (B, 1, 13 bins, 4T steps)
        x = self.block3(self._halve_time(self.block2(self._halve_time(self.block1(x)))))
        return x.mean(dim=2).transpose(1, 2)


class BidirectionalBackEnd(nn.Module):
    """A GRU run forward over the fused sequence, then a second one run backward over its output."""

    def __init__(self, width: int = 128):
        super().__init__()
        self.gru_forward = nn.GRU(width, width, batch_first=True)
        self.gru_backward = nn.GRU(width, width, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.gru_forward(x)[0])
        x = self.gru_backward(x.flip(1))[0].flip(1)
        return F.gelu(x)


class LightASDNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.visualEncoder = VisualEncoder()
        self.audioEncoder = AudioEncoder()
        self.GRU = BidirectionalBackEnd(128)


class FrameClassifier(nn.Module):
    """A 128-d frame embedding -> (not speaking, speaking) logits."""

    def __init__(self):
        super().__init__()
        self.FC = nn.Linear(128, 2)


class LightASD(nn.Module):
    """The published file's whole module: the network (`model`), the audio-visual frame classifier
    (`lossAV`, which gives the speaking score) and the visual-only one (`lossV`, training only).
    The attribute names are the published state_dict's."""

    def __init__(self):
        super().__init__()
        self.model = LightASDNetwork()
        self.lossAV = FrameClassifier()
        self.lossV = FrameClassifier()
        # The visual encoder run by ONNX Runtime instead (use_onnx_visual): (1, T, 112, 112) -> (1, T, 128)
        self.onnx_visual = None
        self.onnx_int8 = False  # whether that encoder is the int8 copy

    def visual_in_onnx(self, device: torch.device) -> bool:
        """Whether the visual encoder runs in ONNX Runtime on `device` (only on the CPU)."""
        return self.onnx_visual is not None and device.type == "cpu"

    def forward(self, mfcc: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
        """(B, 4T, 13) MFCC and (B, T, 112, 112) grey crops (0-255) -> (B, T) speaking scores."""
        net = self.model
        fused = net.GRU(net.audioEncoder(mfcc) + net.visualEncoder(grey))
        return self.lossAV.FC(fused)[..., 1]

    @classmethod
    def from_file(cls, path: str | os.PathLike = SHIPPED_WEIGHTS) -> "LightASD":
        """A published Light-ASD checkpoint (the TalkSet weights shipped in the package by
        default), loaded strictly with weights_only=True, on the CPU, in evaluation mode."""
        return load_as(path, SIGNATURE)


SIGNATURE = Signature("light_asd", SIGNATURE_KEYS, DESCRIPTION, build=lambda state, extras: LightASD())


# ----------------------------------------------------------------------------------------------
# Inputs


def crop_geometry(boxes: np.ndarray) -> np.ndarray:
    """(T, 4) boxes x1, y1, x2, y2 of one track, a box for every frame -> (T, 3) crop centre x,
    centre y and half-size: half the box's longer side, each median-filtered over 13 frames (the
    filter pads with zeros, as the reference's does: the first and last 6 frames lean small)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (T, 4) x1, y1, x2, y2; got {boxes.shape}")
    if len(boxes) < MIN_TRACK:
        raise ValueError(f"a track needs at least {MIN_TRACK} frames for its box smoothing; got {len(boxes)}")
    half = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([_median_filter(v) for v in (cx, cy, half)], axis=1)


def _median_filter(values: np.ndarray) -> np.ndarray:
    """scipy.signal.medfilt(values, 13), zeros beyond the ends included (without scipy.signal's
    import, which costs seconds)."""
    padded = np.pad(values, SMOOTHING // 2)
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, SMOOTHING), axis=1)


def crop_face(frame: np.ndarray, centre_x: float, centre_y: float, half: float) -> np.ndarray:
    """One BGR frame -> the (112, 112) uint8 grey input for a face at (centre, half-size).

    The window is 2.8 half-sizes square: one half-size above the centre and 1.8 below (the mouth
    and chin), 1.4 to each side; grey 110 beyond the frame's edges. Coordinates are truncated
    exactly as the reference truncates them in its padded frame, so the pixels are the same."""
    import cv2

    pad = int(half * (1 + 2 * CROP_MARGIN))  # the reference pads the frame by this much
    h, w = frame.shape[:2]
    my, mx = centre_y + pad, centre_x + pad  # the centre in the padded frame
    rows = (int(my - half), int(my + half * (1 + 2 * CROP_MARGIN)))
    cols = (int(mx - half * (1 + CROP_MARGIN)), int(mx + half * (1 + CROP_MARGIN)))
    # clamp to the padded frame (as slicing it would), then back to the frame's own coordinates
    r0, r1 = (min(max(r, 0), h + 2 * pad) - pad for r in rows)
    c0, c1 = (min(max(c, 0), w + 2 * pad) - pad for c in cols)
    if r1 <= r0 or c1 <= c0:
        raise ValueError(f"empty face crop at centre ({centre_x:.1f}, {centre_y:.1f}), half-size {half:.1f}")
    window = frame[max(r0, 0):max(r1, 0), max(c0, 0):max(c1, 0)]
    border = (max(0, -r0), max(0, r1 - h), max(0, -c0), max(0, c1 - w))
    if any(border):
        window = cv2.copyMakeBorder(window, *border, cv2.BORDER_CONSTANT, value=(PAD_GREY,) * 3)
    grey = cv2.cvtColor(cv2.resize(window, (CROP_SIZE, CROP_SIZE)), cv2.COLOR_BGR2GRAY)
    lo = (CROP_SIZE - FACE_SIZE) // 2
    return grey[lo:lo + FACE_SIZE, lo:lo + FACE_SIZE]


def track_crops(frames: Sequence[np.ndarray], boxes: np.ndarray) -> np.ndarray:
    """A track's 25 fps BGR frames and its box in each, (x1, y1, x2, y2) -> (T, 112, 112) uint8.
    For streaming, `crop_geometry` over the boxes then `crop_face` frame by frame does the same."""
    geometry = crop_geometry(boxes)
    if len(frames) != len(geometry):
        raise ValueError(f"{len(frames)} frames but {len(geometry)} boxes")
    out = np.empty((len(frames), FACE_SIZE, FACE_SIZE), np.uint8)
    for i, (frame, (cx, cy, half)) in enumerate(zip(frames, geometry)):
        out[i] = crop_face(frame, cx, cy, half)
    return out


def mfcc_for(samples_16k: np.ndarray, frames: int | None = None) -> np.ndarray:
    """16 kHz mono float samples (-1..1) -> (4 * frames, 13) float32 MFCC, 100 Hz.

    python_speech_features' defaults on 16-bit values (25 ms windows, 10 ms step, 26 filters),
    as the reference computes them. `frames` (default: the audio's length at 25 fps, rounded)
    sets the row count. Rows past the audio's own come from the audio padded with silence (the
    reference's cut of T frames gives 4T - 1 rows, and it drops the track's last frame); the
    others are the reference's exactly (padding before the MFCC would change the last one,
    through the pre-emphasis). A track starting at frame f of a clip takes rows 4f to 4(f + T) of the clip's
    MFCC: the reference computes them on the audio cut at f / 25 s, which differs in the first
    row (pre-emphasis) and the last (the cut's end)."""
    from ..audio import SAMPLE_RATE, mfcc_100hz

    samples = np.asarray(samples_16k, dtype=np.float32).reshape(-1)
    step = SAMPLE_RATE // (FPS * MFCC_PER_FRAME)  # 160 samples per row
    window = SAMPLE_RATE * 25 // 1000  # 400
    if frames is None:
        frames = int(round(len(samples) / (step * MFCC_PER_FRAME)))
    rows = MFCC_PER_FRAME * frames
    own = mfcc_100hz(samples).T
    if len(own) < rows:
        # the missing rows, from the end of the audio padded with silence; the tail's first row
        # (pre-emphasis restarts there) is not used
        first = max(len(own) - 2, 0)
        tail = samples[first * step:]
        tail = np.pad(tail, (0, max(0, (rows - first - 1) * step + window - len(tail))))
        own = np.concatenate([own, mfcc_100hz(tail).T[len(own) - first:rows - first]])
    return np.ascontiguousarray(own[:rows])


# ----------------------------------------------------------------------------------------------
# Scoring

MAX_PIECE = 150  # frames the visual encoder takes at once (memory: ~0.3 GB of activations)
# A frame's visual embedding depends on the frames up to this many either side of it: three
# blocks, each with temporal convolutions of up to 5 frames (2 either side).
VISUAL_REACH = 6


def speaking_scores(net: LightASD, crops: np.ndarray, mfcc: np.ndarray,
                    durations: Sequence[float] = WINDOW_SECONDS) -> np.ndarray:
    """One track's (T, 112, 112) uint8 crops and its (>= 4T, 13) MFCC -> (T,) float32 scores.

    For each window length d (seconds), the track is cut into consecutive d-second windows from
    its first frame (the last one shorter), each scored alone; the scores of the window lengths
    are averaged per frame. Above 0: speaking. The reference rounds the average to one decimal
    for its display; this does not.

    Several window lengths share the visual encoder's work (nine tenths of the cost): a window
    alone differs from the whole track only within 6 frames of its ends, where the padding of
    the temporal convolutions meets it, so the track is encoded once and each window edge on
    its own 12 frames (cached: the lengths' windows share their edges at whole seconds)."""
    crops = np.asarray(crops)
    if crops.ndim != 3 or crops.shape[1:] != (FACE_SIZE, FACE_SIZE):
        raise ValueError(f"crops must be (T, {FACE_SIZE}, {FACE_SIZE}); got {crops.shape}")
    t = len(crops)
    if t == 0:
        raise ValueError("an empty track")
    if mfcc.ndim != 2 or mfcc.shape[1] != 13 or len(mfcc) < MFCC_PER_FRAME * t:
        raise ValueError(f"mfcc must be (>= {MFCC_PER_FRAME * t}, 13) for {t} frames; got {mfcc.shape} "
                         "(mfcc_for(samples, frames=T) gives that)")
    if not durations or any(d <= 0 for d in durations):
        raise ValueError(f"window lengths must be positive seconds; got {tuple(durations)}")
    device = next(net.parameters()).device
    grey = torch.from_numpy(np.ascontiguousarray(crops)).to(device=device, dtype=torch.float32)
    audio = torch.from_numpy(np.ascontiguousarray(mfcc[:MFCC_PER_FRAME * t])).to(device=device, dtype=torch.float32)
    windows = [(first, min(first + size, t)) for size in (max(1, int(round(d * FPS))) for d in durations)
               for first in range(0, t, size)]
    total = torch.zeros(t, dtype=torch.float32, device=device)
    with torch.inference_mode():
        visual = _WindowEmbeddings(net, grey, windows)
        for first, last in windows:
            fused = net.model.GRU(net.model.audioEncoder(audio[MFCC_PER_FRAME * first:MFCC_PER_FRAME * last][None])
                                  + visual.window(first, last)[None])
            total[first:last] += net.lossAV.FC(fused)[0, :, 1]
    return (total / len(durations)).cpu().numpy()


def _visual(net: LightASD, grey: torch.Tensor, first: int, last: int) -> torch.Tensor:
    """(last - first, 128) visual embeddings of frames first..last-1 as a window alone gives them,
    computed in pieces of at most MAX_PIECE frames that overlap by VISUAL_REACH (the same values)."""
    encode = net.onnx_visual if net.visual_in_onnx(grey.device) else net.model.visualEncoder
    if last - first <= MAX_PIECE:
        return encode(grey[first:last][None])[0]
    parts = []
    for lo in range(first, last, MAX_PIECE):
        hi = min(lo + MAX_PIECE, last)
        a, b = max(first, lo - VISUAL_REACH), min(last, hi + VISUAL_REACH)
        parts.append(encode(grey[a:b][None])[0, lo - a:hi - a])
    return torch.cat(parts)


class _WindowEmbeddings:
    """The visual embeddings of each window, from one encoding of the whole track and the windows'
    edges encoded alone; or window by window when that costs less (a single window length)."""

    def __init__(self, net: LightASD, grey: torch.Tensor, windows: list[tuple[int, int]]):
        self.net, self.grey, self.edges = net, grey, {}
        t, span = len(grey), 2 * VISUAL_REACH
        patched = [(a, b) for a, b in windows if b - a > 2 * span]
        edges = {("start", a) for a, _ in patched if a > 0} | {("end", b) for _, b in patched if b < t}
        alone = sum(b - a for a, b in windows)
        shared = t + span * len(edges) + sum(b - a for a, b in windows if b - a <= 2 * span)
        self.whole = _visual(net, grey, 0, t) if shared < alone else None

    def window(self, first: int, last: int) -> torch.Tensor:
        span = 2 * VISUAL_REACH
        if self.whole is None or last - first <= 2 * span:
            return _visual(self.net, self.grey, first, last)
        out = self.whole[first:last].clone()
        if first > 0:  # the window's start, encoded on its own first 12 frames
            out[:VISUAL_REACH] = self._edge(first, first + span)[:VISUAL_REACH]
        if last < len(self.grey):
            out[-VISUAL_REACH:] = self._edge(last - span, last)[-VISUAL_REACH:]
        return out

    def _edge(self, first: int, last: int) -> torch.Tensor:
        if (first, last) not in self.edges:
            self.edges[(first, last)] = _visual(self.net, self.grey, first, last)
        return self.edges[(first, last)]


# ----------------------------------------------------------------------------------------------
# The visual encoder through ONNX Runtime: the same numbers (within 1e-5), three times faster on a
# CPU than PyTorch's 3-D convolutions (benchmarks/speakers.md). The shipped weights' encoder ships
# exported beside them; other weights are exported when the `onnx` package is installed.

SHIPPED_VISUAL_ONNX = SHIPPED_WEIGHTS.with_suffix(".visual.onnx")
# The same encoder in int8 (per-channel weights, activation ranges calibrated on real face crops):
# twice as fast again on the CPU, speaking scores within 0.14 of fp32 on five real clips
# (benchmarks/speakers.md)
SHIPPED_VISUAL_INT8 = SHIPPED_WEIGHTS.with_suffix(".visual.int8.onnx")


def export_visual_onnx(net: LightASD, destination) -> None:
    """Write the network's visual encoder as ONNX (a path or a binary file object; needs the
    `onnx` package): how SHIPPED_VISUAL_ONNX was made, `export_visual_onnx(LightASD.from_file(),
    SHIPPED_VISUAL_ONNX)`."""
    encoder = net.model.visualEncoder.eval()
    example = torch.zeros(1, 2 * VISUAL_REACH + 1, FACE_SIZE, FACE_SIZE)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(encoder, (example,), destination, input_names=["grey"], output_names=["visual"],
                          dynamic_axes={"grey": {1: "frames"}, "visual": {1: "frames"}}, dynamo=False)


def quantize_visual_onnx(source, destination, calibration: Sequence[np.ndarray]) -> None:
    """Write an int8 copy of the exported visual encoder `source` (a path) to `destination`:
    static quantisation with per-channel int8 weights and uint8 activations whose ranges are
    calibrated on `calibration`, a list of (T, 112, 112) uint8 crop sequences of real faces. How
    SHIPPED_VISUAL_INT8 was made (benchmarks/light_asd_int8.py; needs the `onnx` package)."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Crops(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"grey": np.asarray(c, np.float32)[None]} for c in calibration])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = str(Path(tmp) / "prepared.onnx")
        quant_pre_process(str(source), prepared, skip_symbolic_shape=True)
        quantize_static(prepared, str(destination), Crops(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


class OnnxVisualEncoder:
    """ONNX Runtime running an exported visual encoder; called as the torch module is."""

    def __init__(self, model):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        # no busy-waiting between runs: the pipeline's other stages share the CPU
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])

    def __call__(self, grey: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"grey": np.ascontiguousarray(grey.float().numpy(), dtype=np.float32)})[0]
        return torch.from_numpy(out)


def use_onnx_visual(net: LightASD, weights_path, int8: bool = False) -> bool:
    """Run the visual encoder of `net` (loaded from `weights_path`) through ONNX Runtime on the
    CPU: the shipped export for the shipped weights (its int8 copy when `int8`), else an fp32
    export made now when the `onnx` package is there (about 2 s). False (PyTorch stays) when
    neither is possible."""
    import io

    if Path(weights_path).resolve() == SHIPPED_WEIGHTS:
        shipped = SHIPPED_VISUAL_INT8 if int8 and SHIPPED_VISUAL_INT8.exists() else SHIPPED_VISUAL_ONNX
        if shipped.exists():
            net.onnx_visual = OnnxVisualEncoder(str(shipped))
            net.onnx_int8 = shipped == SHIPPED_VISUAL_INT8
            return True
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        return False
    buffer = io.BytesIO()
    export_visual_onnx(net, buffer)
    net.onnx_visual = OnnxVisualEncoder(buffer.getvalue())
    return True


def parameter_count(net: LightASD) -> int:
    """The network's parameters (1.02 M), without the frame classifiers."""
    return sum(p.numel() for p in net.model.parameters())

