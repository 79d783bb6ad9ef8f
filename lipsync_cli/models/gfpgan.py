"""GFPGAN v1.4, the face-restoration network of `dub --enhance gfpgan` (Wang et al., "Towards
Real-World Blind Face Restoration with Generative Facial Prior", CVPR 2021; weights by TencentARC,
Apache-2.0), in its "clean" form: plain PyTorch, no compiled ops.

A 512x512 aligned face in [-1, 1] goes through a U-Net: seven residual blocks halve it down to
4x4, the 4x4 feature becomes sixteen 512-d style vectors (one per StyleGAN2 layer, W+: the
published model feeds them to the decoder as latents, skipping the style MLP), and seven blocks
double it back up to 512. At each of those seven resolutions two small conv heads turn the U-Net's
feature into a scale and a shift (spatial feature transform), which modulate the second half of
the channels of a StyleGAN2 decoder's first conv at that resolution. The decoder's output is the
restored face, in [-1, 1] (not clamped).

Widths as GFPGAN v1.4 is built: the decoder 512 channels up to 64x64, then 256, 128, 64; the U-Net
half of that at each resolution. `narrow` scales every width (1 for the published model; tests use
a narrow copy to run in a fraction of the time).

Determinism: StyleGAN2 adds noise at every layer; GFPGAN's own inference draws fresh noise on every
call, so the same face comes out slightly different each frame (shimmer). Here the checkpoint's
stored noise maps are always used: the same face in gives the same face out.

The modulated convolutions scale the input's channels by the style and the output's by the
demodulation factor around one ordinary convolution shared by the batch, which computes what
StyleGAN2's per-sample weights compute (the style is constant over the image) without building a
weight per sample.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import Signature
from .loading import load_as

SIZE = 512  # the aligned face's side
STYLE = 512  # length of a style vector
LATENTS = 16  # style vectors: 2 per resolution from 4 to 512 (8 resolutions), less 2
NOISES = 15  # noise maps: one per decoder conv
RESOLUTIONS = (8, 16, 32, 64, 128, 256, 512)  # the decoder's upsampling steps
DECODER_WIDTH = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64}
DEMOD_EPS = 1e-8
SLOPE = 0.2  # every leaky ReLU


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, SLOPE)


def _double(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def _halve(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)  # what a bilinear x0.5 resize (align_corners=False) computes, exactly


class ResBlock(nn.Module):
    """conv, resize, conv (leaky ReLU after each) plus a resized 1x1 projection of the input."""

    def __init__(self, cin: int, cout: int, up: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 3, padding=1)
        self.conv2 = nn.Conv2d(cin, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False)
        self.resize = _double if up else _halve

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _lrelu(self.conv2(self.resize(_lrelu(self.conv1(x)))))
        return y + self.skip(self.resize(x))


class ModulatedConv(nn.Module):
    """StyleGAN2's modulated convolution (optionally demodulated, optionally on the input doubled
    first), with no bias of its own."""

    def __init__(self, cin: int, cout: int, kernel: int, demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, cout, cin, kernel, kernel) / math.sqrt(cin * kernel * kernel))
        self.modulation = nn.Linear(STYLE, cin)
        nn.init.ones_(self.modulation.bias)
        self.demodulate, self.upsample, self.padding = demodulate, upsample, kernel // 2

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.modulation(style)  # (N, cin)
        w = self.weight[0]
        if self.upsample:
            x = _double(x)
        out = F.conv2d(x * s[:, :, None, None].to(x.dtype), w.to(x.dtype), padding=self.padding)
        if self.demodulate:
            energy = (w.float().pow(2).sum((2, 3))[None] * s.float().pow(2)[:, None, :]).sum(2)  # (N, cout)
            out = out * torch.rsqrt(energy + DEMOD_EPS)[:, :, None, None].to(out.dtype)
        return out


class StyleConv(nn.Module):
    def __init__(self, cin: int, cout: int, upsample: bool):
        super().__init__()
        self.modulated_conv = ModulatedConv(cin, cout, 3, upsample=upsample)
        self.weight = nn.Parameter(torch.zeros(1))  # the noise's strength
        self.bias = nn.Parameter(torch.zeros(1, cout, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        out = self.modulated_conv(x, style) * math.sqrt(2)
        return _lrelu(out + self.weight.to(out.dtype) * noise.to(out.dtype) + self.bias.to(out.dtype))


class ToRGB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.modulated_conv = ModulatedConv(cin, 3, 1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style) + self.bias.to(x.dtype)
        return out if skip is None else out + _double(skip)


class ConstantInput(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, 4, 4))


class NormStyle(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)


class StoredNoise(nn.Module):
    """The decoder's noise maps, noise0 (4x4) to noise14 (512x512): two per resolution from 8."""

    def __init__(self):
        super().__init__()
        for i in range(NOISES):
            side = 2 ** ((i + 5) // 2)
            self.register_buffer(f"noise{i}", torch.randn(1, 1, side, side))

    def __getitem__(self, i: int) -> torch.Tensor:
        return getattr(self, f"noise{i}")


class StyleDecoder(nn.Module):
    """StyleGAN2's synthesis network, its layers' first conv at each resolution modulated by the
    U-Net's scale and shift (on the second half of its channels)."""

    def __init__(self, widths: dict[int, int]):
        super().__init__()
        # the mapping network: not used (the U-Net gives W+ latents) but part of the checkpoint
        mlp: list[nn.Module] = [NormStyle()]
        for _ in range(8):
            mlp += [nn.Linear(STYLE, STYLE), nn.LeakyReLU(SLOPE)]
        self.style_mlp = nn.Sequential(*mlp)
        self.constant_input = ConstantInput(widths[4])
        self.style_conv1 = StyleConv(widths[4], widths[4], upsample=False)
        self.to_rgb1 = ToRGB(widths[4])
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        cin = widths[4]
        for r in RESOLUTIONS:
            self.style_convs.append(StyleConv(cin, widths[r], upsample=True))
            self.style_convs.append(StyleConv(widths[r], widths[r], upsample=False))
            self.to_rgbs.append(ToRGB(widths[r]))
            cin = widths[r]
        self.noises = StoredNoise()

    def forward(self, latent: torch.Tensor, conditions: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        out = self.constant_input.weight.to(latent.dtype).expand(len(latent), -1, -1, -1)
        out = self.style_conv1(out, latent[:, 0], self.noises[0])
        image = self.to_rgb1(out, latent[:, 1])
        for j, (scale, shift) in enumerate(conditions):
            out = self.style_convs[2 * j](out, latent[:, 2 * j + 1], self.noises[2 * j + 1])
            half = out.shape[1] // 2
            out = torch.cat([out[:, :half], out[:, half:] * scale + shift], 1)
            out = self.style_convs[2 * j + 1](out, latent[:, 2 * j + 2], self.noises[2 * j + 2])
            image = self.to_rgbs[j](out, latent[:, 2 * j + 3], image)
        return image


def _condition(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(SLOPE),
                         nn.Conv2d(channels, channels, 3, padding=1))


class GFPGAN(nn.Module):
    """(N, 3, 512, 512) RGB faces in [-1, 1], aligned to FACE_TEMPLATE -> restored faces, same shape."""

    def __init__(self, narrow: float = 1.0):
        super().__init__()
        decoder = {r: int(c * narrow) for r, c in DECODER_WIDTH.items()}
        unet = {r: c // 2 for r, c in decoder.items()}
        self.narrow = narrow
        self.conv_body_first = nn.Conv2d(3, unet[SIZE], 1)
        self.conv_body_down = nn.ModuleList(ResBlock(unet[r], unet[r // 2], up=False) for r in reversed(RESOLUTIONS))
        self.final_conv = nn.Conv2d(unet[4], unet[4], 3, padding=1)
        self.conv_body_up = nn.ModuleList(ResBlock(unet[r // 2], unet[r], up=True) for r in RESOLUTIONS)
        # the U-Net's own RGB outputs (a training loss at each scale): in the checkpoint, unused here
        self.toRGB = nn.ModuleList(nn.Conv2d(unet[r], 3, 1) for r in RESOLUTIONS)
        self.final_linear = nn.Linear(unet[4] * 4 * 4, LATENTS * STYLE)
        self.stylegan_decoder = StyleDecoder(decoder)
        self.condition_scale = nn.ModuleList(_condition(unet[r]) for r in RESOLUTIONS)
        self.condition_shift = nn.ModuleList(_condition(unet[r]) for r in RESOLUTIONS)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        feat = _lrelu(self.conv_body_first(faces))
        skips = []
        for block in self.conv_body_down:
            feat = block(feat)
            skips.append(feat)
        feat = _lrelu(self.final_conv(feat))
        latent = self.final_linear(feat.flatten(1)).view(-1, LATENTS, STYLE)
        conditions = []
        for block, scale, shift, skip in zip(self.conv_body_up, self.condition_scale, self.condition_shift,
                                             reversed(skips)):
            feat = block(feat + skip)
            conditions.append((scale(feat), shift(feat)))
        return self.stylegan_decoder(latent, conditions)


def _fitting(state: dict, extras: dict) -> GFPGAN:
    """The network whose widths fit a state_dict (the published file: narrow 1)."""
    first = state.get("conv_body_first.weight")
    if first is None or first.ndim != 4 or first.shape[1] != 3:
        raise ValueError("not a GFPGAN checkpoint (no conv_body_first.weight of shape [C, 3, 1, 1])")
    return GFPGAN(first.shape[0] / (DECODER_WIDTH[SIZE] // 2))


SIGNATURE = Signature("gfpgan", ("conv_body_first.weight", "final_linear.weight", "stylegan_decoder.constant_input.weight"),
                      "a GFPGAN face-restoration network", build=_fitting)


def random_gfpgan(seed: int = 0, narrow: float = 1.0) -> GFPGAN:
    """A seeded random-init network (tests, benchmarks: no published weights needed). The noise
    strengths, zero at initialisation, are set to 0.05-0.15 as a trained model's are nonzero, so
    that the noise path computes something."""
    torch.manual_seed(seed)
    model = GFPGAN(narrow).eval()
    convs = [model.stylegan_decoder.style_conv1, *model.stylegan_decoder.style_convs]
    with torch.no_grad():
        for k, conv in enumerate(convs):
            conv.weight.fill_(0.05 * (1 + k % 3))
    return model


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_gfpgan(path: str) -> GFPGAN:
    """A GFPGAN v1.4 checkpoint (the published GFPGANv1.4.pth: {"params_ema": state_dict}, torch's
    legacy format; or a plain state_dict) -> the network, eval mode, on the CPU: weights_only,
    built to fit the file's widths and loaded strictly."""
    return load_as(path, SIGNATURE)
