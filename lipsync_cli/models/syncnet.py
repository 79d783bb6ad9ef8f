"""The colour lip-sync expert (Wav2Lip's SyncNet): does this mel window go with these five mouths?

Face input: the lower halves of 5 consecutive 96x96 frames stacked on the channel axis,
(B, 15, 48, 96) in [0, 1]. Audio input: the (B, 1, 80, 16) mel window of those frames. Both
encoders end in 512-d embeddings, L2-normalised; their cosine similarity is P_sync, trained with
binary cross-entropy on in-sync and off-sync pairs. Layer names and shapes are those of the
published lipsync_expert.pth, so it loads unchanged. For a high-resolution generator's faces (192,
288) the face encoder starts with a conv at the lower halves' own size and a stride-2 or stride-3
conv down to 48 x 96, then the 96 network's layers: the sync loss sees the generator's resolution.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from . import FACE_SIZES, Signature
from .blocks import Conv2d, scaled, width_of


OUTER_KERNEL = {192: 3, 288: 5}  # the downsampling conv of the larger faces (stride 2, 3)
PUBLISHED_LAST_FACE_LAYER = 16  # the published expert's face encoder: layers 0..16


def _res(c: int, n: int) -> list[nn.Module]:
    return [Conv2d(c, c, 3, 1, 1, residual=True) for _ in range(n)]


class SyncNetColor(nn.Module):
    def __init__(self, width: float = 1.0, size: int = 96):
        """`width` scales every layer's channels (blocks.scaled); 1 is the published network.
        `size`: the faces' side (96, 192 or 288)."""
        super().__init__()
        if size not in FACE_SIZES:
            raise ValueError(f"face size {size}: choose {', '.join(map(str, FACE_SIZES))}")
        self.size = size
        c16, c32, c64, c128, c256, c512 = (scaled(c, width) for c in (16, 32, 64, 128, 256, 512))
        if size == 96:
            first = [Conv2d(15, c32, 7, 1, 3)]  # 48 x 96
        else:  # at the lower halves' own size, then to 48 x 96
            k = OUTER_KERNEL[size]
            first = [Conv2d(15, c16, 7, 1, 3), Conv2d(c16, c32, k, size // 96, (k - size // 96 + 1) // 2)]
        self.face_encoder = nn.Sequential(
            *first,
            Conv2d(c32, c64, 5, (1, 2), 1), *_res(c64, 2),  # 46 x 47
            Conv2d(c64, c128, 3, 2, 1), *_res(c128, 3),  # 23 x 24
            Conv2d(c128, c256, 3, 2, 1), *_res(c256, 2),  # 12 x 12
            Conv2d(c256, c512, 3, 2, 1), *_res(c512, 2),  # 6 x 6
            Conv2d(c512, c512, 3, 2, 1),  # 3 x 3
            Conv2d(c512, c512, 3, 1, 0),  # 1 x 1
            Conv2d(c512, c512, 1, 1, 0),
        )
        self.audio_encoder = nn.Sequential(
            Conv2d(1, c32, 3, 1, 1), *_res(c32, 2),  # 80 x 16
            Conv2d(c32, c64, 3, (3, 1), 1), *_res(c64, 2),  # 27 x 16
            Conv2d(c64, c128, 3, 3, 1), *_res(c128, 2),  # 9 x 6
            Conv2d(c128, c256, 3, (3, 2), 1), *_res(c256, 2),  # 3 x 3
            Conv2d(c256, c512, 3, 1, 0),  # 1 x 1
            Conv2d(c512, c512, 1, 1, 0),
        )

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio embedding, face embedding), each (B, 512) (at width 1) and L2-normalised."""
        a = self.audio_encoder(mel).flatten(1)
        v = self.face_encoder(faces).flatten(1)
        return F.normalize(a, p=2, dim=1), F.normalize(v, p=2, dim=1)


def sync_probability(audio_emb: torch.Tensor, face_emb: torch.Tensor) -> torch.Tensor:
    """P_sync: the cosine similarity of the normalised embeddings, in [0, 1] (both are post-ReLU)."""
    return F.cosine_similarity(audio_emb, face_emb).clamp(1e-7, 1 - 1e-7)


def sync_loss(audio_emb: torch.Tensor, face_emb: torch.Tensor, in_sync: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of P_sync against the labels (1 in sync, 0 off)."""
    return F.binary_cross_entropy(sync_probability(audio_emb, face_emb), in_sync.float())


def lower_half_stack(frames: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, 96, 96) or (B, T, 3, 96, 96) frames -> the expert's (B, 3T, 48, 96) input."""
    if frames.dim() != 5:
        raise ValueError("expected (B, 3, T, H, W) frames")
    if frames.size(1) != 3:
        frames = frames.transpose(1, 2)
    b, c, t, h, w = frames.shape
    lower = frames[:, :, :, h // 2:]
    return torch.cat([lower[:, :, i] for i in range(t)], dim=1)


def size_of(state: dict[str, torch.Tensor]) -> int:
    """The face size of an expert's state_dict: one face-encoder layer more than the published
    network's is a larger face, the kernel of its second layer says which."""
    last = max(int(k.split(".")[1]) for k in state if k.startswith("face_encoder.") and k.endswith("conv_block.0.weight"))
    if last <= PUBLISHED_LAST_FACE_LAYER:
        return 96
    kernel = state["face_encoder.1.conv_block.0.weight"].shape[-1]
    return next((size for size, k in OUTER_KERNEL.items() if k == kernel), 0)


SIGNATURE = Signature(
    kind="wav2lip_syncnet_expert_color",
    keys=("face_encoder.0.conv_block.0.weight", "audio_encoder.0.conv_block.0.weight"),
    description="a Wav2Lip lip-sync expert (SyncNet)",
    build=lambda state, extras: SyncNetColor(width_of(state, "audio_encoder.13.conv_block.0.weight", 512),
                                             size_of(state)),
)
