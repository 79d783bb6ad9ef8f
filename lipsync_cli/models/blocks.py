"""Building blocks shared by the Wav2Lip-family networks.

Attribute names (`conv_block`, `act`) are fixed by the published checkpoints' state_dict keys.
"""

from __future__ import annotations

import torch
from torch import nn


def scaled(channels: int, width: float) -> int:
    """A layer's channels in a network `width` times as wide (at least 8): width 1 is the published
    size, narrower networks are for quick CPU runs and tests."""
    return max(8, int(round(channels * width)))


def width_of(state: dict[str, torch.Tensor], key: str, channels: int, dim: int = 0) -> float:
    """The width a checkpoint's network was built at, read from a layer that has `channels`
    channels (along `dim` of its weight) at width 1: the published checkpoints give 1."""
    return state[key].shape[dim] / channels


class Conv2d(nn.Module):
    """conv + batchnorm + ReLU, with an optional residual add (input and output shapes equal)."""

    def __init__(self, cin, cout, kernel_size, stride, padding, residual=False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x):
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class Conv2dTranspose(nn.Module):
    """transposed conv + batchnorm + ReLU (the decoder's upsampling step)."""

    def __init__(self, cin, cout, kernel_size, stride, padding, output_padding=0):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding), nn.BatchNorm2d(cout)
        )
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv_block(x))


class NoNormConv(nn.Module):
    """conv + LeakyReLU(0.01), no batchnorm: the visual-quality discriminator's block."""

    def __init__(self, cin, cout, kernel_size, stride, padding):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding))
        self.act = nn.LeakyReLU(0.01)

    def forward(self, x):
        return self.act(self.conv_block(x))


class ChannelAttention(nn.Module):
    """CBAM channel attention: avg- and max-pooled descriptors through one shared MLP, summed, sigmoid."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(), nn.Conv2d(hidden, channels, 1, bias=False)
        )

    def forward(self, x):
        avg = self.mlp(torch.mean(x, dim=(2, 3), keepdim=True))
        mx = self.mlp(torch.amax(x, dim=(2, 3), keepdim=True))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: channel-wise mean and max, concatenated, one conv, sigmoid."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x):
        pooled = torch.cat([torch.mean(x, dim=1, keepdim=True), torch.amax(x, dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class AttentionBlock(nn.Module):
    """AttnWav2Lip's residual attention: F' = F + F*CAM(F), then F'' = F' + F'*SAM(F').

    Either half can be switched off for the ablations (spatial only, channel only).
    """

    def __init__(self, channels: int, channel: bool = True, spatial: bool = True, kernel_size: int = 7):
        super().__init__()
        self.cam = ChannelAttention(channels) if channel else None
        self.sam = SpatialAttention(kernel_size) if spatial else None

    def forward(self, x):
        if self.cam is not None:
            x = x + x * self.cam(x)
        if self.sam is not None:
            x = x + x * self.sam(x)
        return x
