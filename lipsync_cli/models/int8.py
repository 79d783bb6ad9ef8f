"""The Wav2Lip-family generator with its convolutions in int8, for CPUs without AMX.

Static quantization, built straight from PyTorch's quantized kernels (FBGEMM / oneDNN, whichever
`torch.backends.quantized.engine` picks) rather than through FX graph mode, whose tracing and
conversion cost seconds per process:

- weights: int8, symmetric, one scale per output channel, quantized once from the folded fp32
  network; the transposed convs (the decoder's upsampling) stay fp32: PyTorch's int8 kernel for
  them ran slower than oneDNN's fp32 one (73 against 21 ms per frame for the six, AVX2);
- activations: uint8 with 7 bits of range (0..127), so that the AVX2 kernels' 16-bit sums of
  two uint8 x int8 products cannot saturate; their ranges are calibrated on the first batch of
  real faces the runner is given (the clip's own), by one fp32 pass with hooks;
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
    """Running min/max of a tensor seen by a hook."""

    def __init__(self):
        self.lo, self.hi = float("inf"), float("-inf")

    def add(self, t: torch.Tensor):
        self.lo, self.hi = min(self.lo, float(t.min())), max(self.hi, float(t.max()))


class Int8Conv2d(Conv2d):
    """A Conv2d block (conv + ReLU, optional residual) on int8 kernels; float in, float out.
    Keeps the fp32 conv as conv_block[0]: its geometry is what lower_rows reads."""

    def __init__(self, block: Conv2d, x: _Ranges, pre: _Ranges, out: _Ranges):
        nn.Module.__init__(self)
        self.conv_block, self.act, self.residual = block.conv_block, block.act, block.residual
        conv = block.conv_block[0]
        w = conv.weight.detach().float()
        scales = (w.abs().amax(dim=(1, 2, 3)) / 127).clamp_min(1e-12).double()
        wq = torch.quantize_per_channel(w, scales, torch.zeros(len(scales), dtype=torch.long), 0, torch.qint8)
        bias = conv.bias.detach().float() if conv.bias is not None else None
        self.packed = torch.ops.quantized.conv2d_prepack(wq, bias, list(conv.stride), list(conv.padding),
                                                         list(conv.dilation), conv.groups)
        self.x_q = _activation(x.lo, x.hi)
        self.pre_q = _activation(pre.lo, pre.hi)
        self.out_q = _activation(0.0, out.hi)
        self.hand_on = False  # True: the next layer takes this one's uint8 output

    def forward(self, x):
        q = x if x.is_quantized else torch.quantize_per_tensor(x, *self.x_q, torch.quint8)
        if self.residual:
            y = torch.ops.quantized.conv2d(q, self.packed, *self.pre_q)
            y = torch.ops.quantized.add_relu(y, q, *self.out_q)
        else:
            y = torch.ops.quantized.conv2d_relu(q, self.packed, *self.out_q)
        return y if self.hand_on else y.dequantize()


def _recorder(inputs: _Ranges | None = None, outputs: _Ranges | None = None):
    def hook(module, args, result):  # returns None: the output stays as it is
        if inputs is not None:
            inputs.add(args[0])
        if outputs is not None:
            outputs.add(result)
    return hook


def quantize_generator(net: nn.Module, mel: torch.Tensor, faces: torch.Tensor, inplace: bool = False) -> nn.Module:
    """A batchnorm-folded fp32 generator (a copy unless inplace) with its conv blocks in int8,
    activation ranges calibrated on (mel, faces): (B, 1, 80, 16) and (B, 6, 96, 96) floats."""
    q = (net if inplace else copy.deepcopy(net)).float().eval()
    blocks = [(name, m) for name, m in q.named_modules() if isinstance(m, (Conv2d, Conv2dTranspose))]
    if any(len(m.conv_block) != 1 for _, m in blocks):
        raise ValueError("quantize_generator needs a batchnorm-folded generator (fold_batchnorm)")
    # transposed convs stay fp32: PyTorch's int8 kernel for them is slower than oneDNN's fp32 one
    blocks = [(name, m) for name, m in blocks
              if isinstance(m, Conv2d) and m.conv_block[0].in_channels >= MIN_INPUT_CHANNELS]
    ranges = {name: (_Ranges(), _Ranges(), _Ranges()) for name, _ in blocks}
    hooks = []
    for name, m in blocks:
        x, pre, out = ranges[name]
        hooks.append(m.register_forward_hook(_recorder(inputs=x, outputs=out)))
        hooks.append(m.conv_block.register_forward_hook(_recorder(outputs=pre)))  # before the residual and ReLU
    with torch.inference_mode():
        q(mel.float(), faces.float())
    for h in hooks:
        h.remove()
    with warnings.catch_warnings():
        # PyTorch 2.13 announces that quantized tensors will go in a later release: pinned here
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        for name, m in blocks:
            x, pre, out = ranges[name]
            parent, _, attr = name.rpartition(".")
            setattr(q.get_submodule(parent) if parent else q, attr, Int8Conv2d(m, x, pre, out))
    for seq in q.modules():
        if isinstance(seq, nn.Sequential):
            layers = list(seq)
            for layer, after in zip(layers, layers[1:]):
                if isinstance(layer, Int8Conv2d):
                    layer.hand_on = isinstance(after, Int8Conv2d)
    return q

