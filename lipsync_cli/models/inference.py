"""Running the generator fast: batchnorm folded into the convs, channels-last on the CPU,
bf16 on CPUs with AMX, fp16/bf16 autocast on CUDA, and a batch size that halves itself when the
GPU runs out of memory.

Folding batchnorm is exact up to float rounding (max difference ~1e-7 on [0, 1] outputs) and
drops a memory pass per layer; channels-last then saves a fifth of the CPU time. On a CPU with AMX (Intel Sapphire Rapids and later) the
generator in bf16 runs about 3.5x faster than in fp32, for a mean difference of 0.2 grey levels
(benchmarks/README.md); elsewhere bf16 is emulated and slower, so `auto` keeps fp32 there.
"""

from __future__ import annotations

import copy
import os
import threading
import time

import numpy as np
import torch
from torch import nn

from ..device import auto_precision, autocast, cpu_int8_kernels, cpu_isa, resolve_device
from ..errors import InputError, LipsyncError
from . import int8

FACE_SIZE = 96  # the published generators' face; a runner's own is .face_size (its checkpoint's)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
CALIBRATION_FRAMES = 4  # faces whose activations set the int8 ranges


def fold_batchnorm(net: nn.Module, inplace: bool = False) -> nn.Module:
    """`net` (a copy unless inplace) with every conv_block's BatchNorm merged into its conv."""
    net = (net if inplace else copy.deepcopy(net)).eval()
    for mod in net.modules():
        block = getattr(mod, "conv_block", None)
        if not isinstance(block, nn.Sequential) or len(block) != 2 or not isinstance(block[1], nn.BatchNorm2d):
            continue
        conv, bn = block
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shape = (1, -1, 1, 1) if isinstance(conv, nn.ConvTranspose2d) else (-1, 1, 1, 1)
            conv.weight.mul_(scale.view(shape))
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            new_bias = (bias - bn.running_mean) * scale + bn.bias
            conv.bias = nn.Parameter(new_bias)
        mod.conv_block = nn.Sequential(conv)
    return net


def load_model(checkpoint: str = "wav2lip_gan", device: str = "auto", precision: str = "auto",
               model: str | None = None, batch_size: int | None = None) -> "GeneratorRunner":
    """A generator checkpoint loaded once, ready to dub: `checkpoint` is a path or a name from the
    registry (weights/registry.json); `model` overrides the architecture read from its keys;
    `precision` auto: see device.auto_precision; `batch_size` None: 16 on a CPU, 128 on CUDA."""
    from ..checkpoints import load_generator
    from ..weights import resolve_checkpoint

    t0 = time.perf_counter()
    path = resolve_checkpoint(str(checkpoint))
    net, name = load_generator(path, model)
    runner = GeneratorRunner(net, device, precision, batch_size, take_ownership=True, name=name)
    runner.checkpoint, runner.load_seconds = path, time.perf_counter() - t0
    return runner


def generator_workers(device) -> int:
    """How many generator batches a pipeline should run at once on `device`: one per core on a CPU
    (each on one thread), one on a GPU. LIPSYNC_GENERATOR_WORKERS overrides (1: one batch over all cores)."""
    if torch.device(device).type != "cpu":
        return 1
    env = os.environ.get("LIPSYNC_GENERATOR_WORKERS", "")
    return max(1, int(env)) if env.isdigit() else max(1, torch.get_num_threads())


def batch_size_for(device, batch_size: int | None = None) -> int:
    """The generator's batch: `batch_size`, or 16 faces on a CPU and 128 on CUDA."""
    return batch_size or (128 if torch.device(device).type == "cuda" else 16)


class GeneratorRunner:
    """Turns batches of SxS BGR face crops (S = .face_size, the generator's: 96, 192 or 288) and
    mel windows into generated faces (uint8 BGR).

    `name` is the architecture (wav2lip, attnwav2lip...); `checkpoint` and `load_seconds` say
    where load_model read it from and how long that took (None and 0 for a network handed in)."""

    def __init__(self, net: nn.Module, device: str = "auto", precision: str = "auto", batch_size: int | None = None,
                 take_ownership: bool = False, name: str = "generator"):
        if batch_size is not None and batch_size < 1:
            raise InputError(f"--batch-size {batch_size}: must be 1 or more")
        self.name, self.checkpoint, self.load_seconds = name, None, 0.0
        self.face_size = getattr(getattr(net, "config", None), "size", FACE_SIZE)
        self.device = resolve_device(device)
        cuda = self.device.type == "cuda"
        if precision == "auto":
            precision = auto_precision(self.device)
        if precision not in PRECISIONS:
            raise InputError(f"--precision {precision}: choose auto, {', '.join(PRECISIONS)}")
        if precision == "fp16" and not cuda:
            raise InputError("--precision fp16 needs a CUDA device; the CPU runs fp32, bf16 or int8")
        if precision == "int8" and (cuda or not cpu_int8_kernels()):
            raise InputError("--precision int8 runs on a CPU whose PyTorch has int8 kernels; "
                             + ("CUDA runs fp16 or bf16" if cuda else "this one has none"))
        self.precision = precision
        self.isa = "CUDA" if cuda else cpu_isa()  # what the precision was chosen for
        # CUDA: autocast (fp32 weights, half-precision matmuls). CPU bf16: the weights themselves
        # in bf16, which is faster than autocast there and halves the memory they take.
        self.autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision) if cuda else None
        self.input_dtype = torch.bfloat16 if (precision == "bf16" and not cuda) else torch.float32
        # take_ownership: fold the caller's net in place instead of copying it (saves its size in memory)
        self.net = fold_batchnorm(net, inplace=take_ownership).to(self.device, self.input_dtype)
        if not cuda:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.batch_size = batch_size_for(self.device, batch_size)
        # int8: the weights now (at load, on all threads), the activation ranges from the first batch
        self.quantized = False
        self._calibrating = threading.Lock()  # batches may come from several threads at once
        if precision == "int8":
            self.net = int8.quantize_weights(self.net, inplace=True)

    @torch.inference_mode()
    def _forward(self, mel: np.ndarray, faces: np.ndarray, round_output: bool, first_row: int) -> np.ndarray:
        dev = self.device
        face = torch.from_numpy(faces).to(dev, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        masked = face.clone()
        if face.shape[2] != self.face_size or face.shape[3] != self.face_size:
            raise ValueError(f"faces of {face.shape[3]}x{face.shape[2]} for a {self.face_size}x{self.face_size} generator")
        masked[:, :, self.face_size // 2 :] = 0.0
        x = torch.cat([masked, face], dim=1).to(self.input_dtype)
        if dev.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        m = torch.from_numpy(mel).to(dev, non_blocking=True).unsqueeze(1).to(self.input_dtype)
        if self.precision == "int8" and not self.quantized:
            with self._calibrating:
                if not self.quantized:  # activation ranges from the first faces of the clip being dubbed
                    int8.calibrate(self.net, m[:CALIBRATION_FRAMES], x[:CALIBRATION_FRAMES])
                    self.quantized = True
        with autocast(dev, self.autocast_dtype):
            if first_row > 0 and hasattr(self.net, "lower_rows"):
                rows, top = self.net.lower_rows(m, x, first_row)
                out = torch.cat([face[:, :3, :top], rows.float()], dim=2)  # the rows above: the input face
            else:
                out = self.net(m, x)
        out = out.float().mul_(255.0)
        if round_output:
            out = out.round_()
        return out.clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def __call__(self, mel: np.ndarray, faces: np.ndarray, round_output: bool = True, first_row: int = 0) -> np.ndarray:
        """mel (n, 80, 16) float32, faces (n, S, S, 3) uint8 -> (n, S, S, 3) uint8 (S: face_size).

        round_output=False truncates to uint8 as the reference inference does. first_row > 0:
        only the rows from there down are generated (Wav2LipGenerator.lower_rows); the rows above
        are the input face's, for a caller that blends nothing there."""
        outs = []
        start = 0
        while start < len(faces):
            bs = self.batch_size
            try:
                out = self._forward(mel[start : start + bs], faces[start : start + bs], round_output, first_row)
            except torch.cuda.OutOfMemoryError:
                if bs == 1:
                    raise LipsyncError("the GPU ran out of memory even with batch size 1") from None
                torch.cuda.empty_cache()
                self.batch_size = max(1, bs // 2)
                continue
            outs.append(out)
            start += bs
        return np.concatenate(outs) if outs else np.zeros((0, self.face_size, self.face_size, 3), np.uint8)
