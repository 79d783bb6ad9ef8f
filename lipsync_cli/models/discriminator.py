"""Wav2Lip's visual-quality discriminator: is this lower half of a face real or generated?

Convolutions with LeakyReLU and no batchnorm, on the lower half of each 96x96 face (B, 3, 48, 96),
ending in one sigmoid score. Layer names and shapes are those of the published
visual_quality_disc.pth. For the larger faces of a high-resolution generator (192, 288) the first
block reads the lower half at its size and brings it to 48 x 96 (a stride-2 or stride-3 conv),
so the loss is computed at the generator's resolution; the blocks after it are the 96 network's.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from . import FACE_SIZES, Signature
from .blocks import NoNormConv, scaled, width_of

OUTER_KERNEL = {192: 3, 288: 5}  # the first block's downsampling conv (stride 2, 3), as the generator's


class VisualQualityDiscriminator(nn.Module):
    def __init__(self, width: float = 1.0, size: int = 96):
        """`width` scales every layer's channels (blocks.scaled); 1 is the published network.
        `size`: the faces' side (96, 192 or 288)."""
        super().__init__()
        if size not in FACE_SIZES:
            raise ValueError(f"face size {size}: choose {', '.join(map(str, FACE_SIZES))}")
        self.size = size
        c16, c32, c64, c128, c256, c512 = (scaled(c, width) for c in (16, 32, 64, 128, 256, 512))
        if size == 96:
            first = nn.Sequential(NoNormConv(3, c32, 7, 1, 3))  # 48 x 96
        else:  # at the face's size, then to 48 x 96
            k = OUTER_KERNEL[size]
            first = nn.Sequential(NoNormConv(3, c16, 7, 1, 3), NoNormConv(c16, c32, k, size // 96, (k - size // 96 + 1) // 2))
        self.face_encoder_blocks = nn.ModuleList([
            first,
            nn.Sequential(NoNormConv(c32, c64, 5, (1, 2), 2), NoNormConv(c64, c64, 5, 1, 2)),  # 48 x 48
            nn.Sequential(NoNormConv(c64, c128, 5, 2, 2), NoNormConv(c128, c128, 5, 1, 2)),  # 24
            nn.Sequential(NoNormConv(c128, c256, 5, 2, 2), NoNormConv(c256, c256, 5, 1, 2)),  # 12
            nn.Sequential(NoNormConv(c256, c512, 3, 2, 1), NoNormConv(c512, c512, 3, 1, 1)),  # 6
            nn.Sequential(NoNormConv(c512, c512, 3, 2, 1), NoNormConv(c512, c512, 3, 1, 1)),  # 3
            nn.Sequential(NoNormConv(c512, c512, 3, 1, 0), NoNormConv(c512, c512, 1, 1, 0)),  # 1
        ])
        self.binary_pred = nn.Sequential(nn.Conv2d(c512, 1, 1, 1, 0), nn.Sigmoid())

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """faces (B, 3, 96, 96) or (B, 3, T, 96, 96) in [0, 1] -> P(real) per face, (B*T, 1)."""
        if faces.dim() == 5:
            faces = torch.cat([faces[:, :, i] for i in range(faces.size(2))], dim=0)
        x = faces[:, :, faces.size(2) // 2:]
        for block in self.face_encoder_blocks:
            x = block(x)
        return self.binary_pred(x).view(len(x), -1)


def size_of(state: dict[str, torch.Tensor]) -> int:
    """The face size of a discriminator's state_dict (96 without the outer conv; else by its kernel)."""
    key = "face_encoder_blocks.0.1.conv_block.0.weight"
    if key not in state:
        return 96
    return next((size for size, k in OUTER_KERNEL.items() if k == state[key].shape[-1]), 0)


def perceptual_loss(disc: VisualQualityDiscriminator, generated: torch.Tensor) -> torch.Tensor:
    """The generator's adversarial term: -log D(G(x)), as BCE against 'real'."""
    p = disc(generated)
    return F.binary_cross_entropy(p, torch.ones_like(p))


SIGNATURE = Signature(
    kind="wav2lip_visual_quality_discriminator",
    keys=("binary_pred.0.weight",),
    description="a Wav2Lip visual-quality discriminator",
    build=lambda state, extras: VisualQualityDiscriminator(width_of(state, "binary_pred.0.weight", 512, dim=1),
                                                          size_of(state)),
)
