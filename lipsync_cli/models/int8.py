"""The Wav2Lip-family generator with its convolutions in int8, for CPUs without AMX.

Static quantization, built straight from PyTorch's quantized kernels (FBGEMM / oneDNN, whichever
`torch.backends.quantized.engine` picks) rather than through FX graph mode, whose tracing and
conversion cost seconds per process:

- weights: int8, symmetric, one scale per output channel, quantized once from the folded fp32
  network; the transposed convs (the decoder's upsampling) stay fp32: PyTorch's int8 kernel for
  them ran slower than oneDNN's fp32 one (73 against 21 ms per frame for the six, AVX2);
- activations: uint8 with 7 bits of range (0..127), so that the AVX2 kernels' 16-bit sums of
  two uint8 x int8 products cannot saturate; their ranges are calibrated on the first batch of
  real faces the runner is given (the clip's own), by one fp32 pass in which each int8 block
  records what it sees;
- a conv block followed by another in the same nn.Sequential hands it its uint8 output as it is;
  the last one of a sequence returns floats, so the generator's own forward() and lower_rows()
  run unchanged (slicing works on both), with the skip concatenations and the attention in fp32.
  Converting a map back to float costs a fifth of a 3x3 conv on it, so it happens once a block.
  The first layer (6 input channels, little to gain) and the last 1x1 conv stay in fp32.

The error against fp32 is bounded by tests/test_models.py and measured in benchmarks/README.md.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from .blocks import Conv2d, Conv2dTranspose

LEVELS = 127  # 7-bit activations: no saturation in AVX2's pairwise 16-bit accumulation
MIN_INPUT_CHANNELS = 16  # thinner layers stay in fp32


def _activation(lo: float, hi: float) -> tuple[float, int]:
    """(scale, zero point) of a uint8 tensor spanning [lo, hi] (0 included) in LEVELS steps."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-8) / LEVELS
    return scale, int(round(-lo / scale))


class _Ranges:
    """Running min/max of the tensors seen."""

    def __init__(self):
        self.lo, self.hi = float("inf"), float("-inf")

    def add(self, t: torch.Tensor):
        lo, hi = torch.aminmax(t.detach())
        self.lo, self.hi = min(self.lo, float(lo)), max(self.hi, float(hi))


class Int8Conv2d(Conv2d):
    """A Conv2d block (conv + ReLU, optional residual) on int8 kernels. Keeps the fp32 conv as
    conv_block[0]: its geometry is what lower_rows reads, and until calibrate() has set the
    activation ranges the block runs it in fp32, recording the ranges it sees."""

    def __init__(self, block: Conv2d):
        nn.Module.__init__(self)
        self.conv_block, self.act, self.residual = block.conv_block, block.act, block.residual
        conv = block.conv_block[0]
        w = conv.weight.detach().float()
        scales = (w.abs().amax(dim=(1, 2, 3)) / 127).clamp_min(1e-12).double()
        with warnings.catch_warnings():
            # PyTorch 2.13 announces that quantized tensors will go in a later release: pinned here
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            wq = torch.quantize_per_channel(w, scales, torch.zeros(len(scales), dtype=torch.long), 0, torch.qint8)
        bias = conv.bias.detach().float() if conv.bias is not None else None
        self.packed = torch.ops.quantized.conv2d_prepack(wq, bias, list(conv.stride), list(conv.padding),
                                                         list(conv.dilation), conv.groups)
        self.seen = (_Ranges(), _Ranges(), _Ranges())  # input, conv output (before residual + ReLU), output
        self.x_q = self.pre_q = self.out_q = None
        self.hand_on = False  # True: the next layer takes this one's uint8 output

    @property
    def calibrated(self) -> bool:
        return self.out_q is not None

    def calibrate(self):
        x, pre, out = self.seen
        self.x_q, self.pre_q, self.out_q = _activation(x.lo, x.hi), _activation(pre.lo, pre.hi), _activation(0.0, out.hi)

    def forward(self, x):
        if not self.calibrated:  # the calibration pass: fp32, ranges recorded
            pre = self.conv_block(x)
            out = self.act(pre + x if self.residual else pre)
            for seen, t in zip(self.seen, (x, pre, out)):
                seen.add(t)
            return out
        q = x if x.is_quantized else torch.quantize_per_tensor(x, *self.x_q, torch.quint8)
        if self.residual:
            y = torch.ops.quantized.conv2d(q, self.packed, *self.pre_q)
            y = torch.ops.quantized.add_relu(y, q, *self.out_q)
        else:
            y = torch.ops.quantized.conv2d_relu(q, self.packed, *self.out_q)
        return y if self.hand_on else y.dequantize()


def quantize_weights(net: nn.Module, inplace: bool = False) -> nn.Module:
    """A batchnorm-folded fp32 generator (a copy unless inplace) with its conv blocks' weights in
    int8 (Int8Conv2d); it computes in fp32 until calibrate() has seen a batch."""
    q = (net if inplace else copy.deepcopy(net)).float().eval()
    blocks = [(name, m) for name, m in q.named_modules() if isinstance(m, (Conv2d, Conv2dTranspose))]
    if any(len(m.conv_block) != 1 for _, m in blocks):
        raise ValueError("quantize_weights needs a batchnorm-folded generator (fold_batchnorm)")
    # transposed convs stay fp32: PyTorch's int8 kernel for them is slower than oneDNN's fp32 one
    for name, m in blocks:
        if isinstance(m, Conv2d) and m.conv_block[0].in_channels >= MIN_INPUT_CHANNELS:
            parent, _, attr = name.rpartition(".")
            setattr(q.get_submodule(parent) if parent else q, attr, Int8Conv2d(m))
    for seq in q.modules():
        if isinstance(seq, nn.Sequential):
            layers = list(seq)
            for layer, after in zip(layers, layers[1:]):
                if isinstance(layer, Int8Conv2d):
                    layer.hand_on = isinstance(after, Int8Conv2d)
    return q


def calibrate(net: nn.Module, mel: torch.Tensor, faces: torch.Tensor) -> nn.Module:
    """Set the activation ranges of quantize_weights(...)'s int8 blocks from one fp32 pass over
    (mel, faces): (B, 1, 80, 16) and (B, 6, 96, 96) floats. Returns the network, now in int8."""
    with torch.inference_mode():
        net(mel.float(), faces.float())
    for m in net.modules():
        if isinstance(m, Int8Conv2d):
            m.calibrate()
    return net


def quantize_generator(net: nn.Module, mel: torch.Tensor, faces: torch.Tensor, inplace: bool = False) -> nn.Module:
    """quantize_weights then calibrate: the generator in int8, ranges from (mel, faces)."""
    return calibrate(quantize_weights(net, inplace), mel, faces)
