"""The evaluation SyncNet (syncnet_v2, Chung & Zisserman's "Out of time"), which published lip-sync
results use for LSE-D and LSE-C.

Audio stream: 13 MFCC x 20 steps (0.2 s at 100 Hz) -> 1024-d. Lip stream: 5 colour frames of a
224x224 face crop (BGR, 0-255, not normalised) -> 1024-d. Layer indices (ReLU and pooling
included) are those of the published syncnet_v2.model's state_dict, so it loads unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from . import Signature


def _fc() -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024))


class EvalSyncNet(nn.Module):
    def __init__(self):
        super().__init__()
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, 3, 1, 1), nn.BatchNorm2d(64), relu(), nn.MaxPool2d(1, 1),
            nn.Conv2d(64, 192, 3, 1, 1), nn.BatchNorm2d(192), relu(), nn.MaxPool2d(3, (1, 2)),
            nn.Conv2d(192, 384, 3, 1, 1), nn.BatchNorm2d(384), relu(),
            nn.Conv2d(384, 256, 3, 1, 1), nn.BatchNorm2d(256), relu(),
            nn.Conv2d(256, 256, 3, 1, 1), nn.BatchNorm2d(256), relu(), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 512, (5, 4), 1, 0), nn.BatchNorm2d(512), nn.ReLU(),
        )
        self.netfcaud = _fc()
        self.netfclip = _fc()
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, (5, 7, 7), (1, 2, 2), 0), nn.BatchNorm3d(96), relu(), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            nn.Conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(256), relu(),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            nn.Conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)), nn.BatchNorm3d(256), relu(),
            nn.Conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)), nn.BatchNorm3d(256), relu(),
            nn.Conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)), nn.BatchNorm3d(256), relu(), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            nn.Conv3d(256, 512, (1, 6, 6), 1, 0), nn.BatchNorm3d(512), relu(),
        )

    def audio_features(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 1, 13, 20) MFCC windows -> (B, 1024)."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def lip_features(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, 5, 224, 224) BGR 0-255 -> (B, 1024)."""
        return self.netfclip(self.netcnnlip(frames).flatten(1))


SIGNATURE = Signature(
    kind="syncnet_v2_evaluation",
    keys=("netcnnaud.0.weight",),
    description="the evaluation SyncNet (syncnet_v2)",
    build=lambda state, extras: EvalSyncNet(),
)
