"""DAVS: a person-ID space and a word-ID space, and a decoder that draws a face from one of each.

- E_p^v (PersonEncoder): an aligned face -> person-ID feature f_p. VGG-M-like: a 7x7 and a 5x5
  strided convolution with pooling, three 3x3 convolutions, a fully connected projection.
- E_w^v (VideoWordEncoder): a face frame -> word-ID feature f_w^v. FAN-like: a stem, residual
  blocks and one hourglass whose heat maps are reduced to the feature.
- E_w^a (AudioWordEncoder): a 12 x 20 MFCC window (12 cepstra, 20 steps at 100 Hz, centred on the
  video frame) -> word-ID feature f_w^a, SyncNet's audio stream scaled to this window.
- G (Decoder): [f_p, f_w] -> the face: a projection to a (size / 64)-square map, then 6 bilinear
  2x upsamplings with 10 convolutions in all.
- C_w (WordClassifier), shared by both modalities, on the word-ID features of a T-frame clip;
  the domain classifier (audio or video?) on single word-ID features; C_p (PersonClassifier) on
  person-ID features; C_p^w (word from the person-ID features of a clip's T frames) and C_w^p
  (person from word-ID features) for the adversarial disentangling; D_seq (SequenceDiscriminator),
  3-D convolutions over a generated clip.

All latents are 256-d. The face side is a config value: 256 as in the paper, 64 or 128 for CPU
runs. Images are BGR in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.nn import functional as F

from . import Signature
from .blocks import scaled

LATENT = 256
MFCC_COEFFS = 12
MFCC_STEPS = 20


@dataclass(frozen=True)
class DavsConfig:
    size: int = 256  # aligned face side: 64, 128 or 256
    words: int = 500  # word classes (LRW: 500)
    persons: int = 1000  # identity classes of the training set
    clip_frames: int = 12  # T: frames per clip for the word classifier and the contrastive loss
    width: float = 1.0  # channel multiplier of the encoders (0.5 for quick CPU runs)
    word_classifier: str = "shared"  # shared by both modalities, or "separate" (one each): an ablation

    def __post_init__(self):
        if self.size not in (64, 128, 256):
            raise ValueError("the DAVS face size must be 64, 128 or 256")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DavsConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, pad: int | None = None) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2 if pad is None else pad, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PersonEncoder(nn.Module):
    """E_p^v: (B, 3, S, S) -> (B, 256)."""

    def __init__(self, cfg: DavsConfig):
        super().__init__()
        w = cfg.width
        c1, c2, c3 = scaled(96, w), scaled(256, w), scaled(384, w)
        self.features = nn.Sequential(
            conv_bn(3, c1, 7, 2), nn.MaxPool2d(3, 2, 1),
            conv_bn(c1, c2, 5, 2), nn.MaxPool2d(3, 2, 1),
            conv_bn(c2, c3, 3), conv_bn(c3, c3, 3), conv_bn(c3, c2, 3),
        )
        self.fc = nn.Linear(c2, LATENT)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.features(faces), 1).flatten(1))


class Residual(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=False), nn.Conv2d(cin, cout // 2, 3, 1, 1),
                                  nn.BatchNorm2d(cout // 2), nn.ReLU(inplace=True), nn.Conv2d(cout // 2, cout, 3, 1, 1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        return self.body(x) + self.skip(x)


class Hourglass(nn.Module):
    """Down by 2 `depth` times and back up, with a residual skip at every scale."""

    def __init__(self, ch: int, depth: int):
        super().__init__()
        self.skip = Residual(ch, ch)
        self.down = Residual(ch, ch)
        self.inner = Hourglass(ch, depth - 1) if depth > 1 else Residual(ch, ch)
        self.up = Residual(ch, ch)

    def forward(self, x):
        y = self.up(self.inner(self.down(F.max_pool2d(x, 2))))
        return self.skip(x) + F.interpolate(y, size=x.shape[-2:], mode="nearest")


class VideoWordEncoder(nn.Module):
    """E_w^v: (B, 3, S, S) -> (B, 256), from 68 heat-map-like channels at S/4."""

    def __init__(self, cfg: DavsConfig):
        super().__init__()
        ch = scaled(128, cfg.width)
        self.stem = nn.Sequential(conv_bn(3, ch // 2, 7, 2), Residual(ch // 2, ch), nn.MaxPool2d(2))
        self.hourglass = nn.Sequential(Hourglass(ch, 3), Residual(ch, ch), conv_bn(ch, ch, 1))
        self.maps = nn.Conv2d(ch, 68, 1)
        self.reduce = nn.Sequential(nn.BatchNorm2d(68), nn.ReLU(inplace=True), nn.Conv2d(68, 8, 3, 2, 1),
                                    nn.ReLU(inplace=True))
        self.fc = nn.Linear(8 * (cfg.size // 8) ** 2, LATENT)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.fc(self.reduce(self.maps(self.hourglass(self.stem(faces)))).flatten(1))


class AudioWordEncoder(nn.Module):
    """E_w^a: (B, 1, 12, 20) MFCC windows -> (B, 256)."""

    def __init__(self, cfg: DavsConfig):
        super().__init__()
        w = cfg.width
        c1, c2, c3 = scaled(64, w), scaled(128, w), scaled(256, w)
        self.features = nn.Sequential(
            conv_bn(1, c1, 3), conv_bn(c1, c2, 3), nn.MaxPool2d(2),  # 6 x 10
            conv_bn(c2, c3, 3), conv_bn(c3, c3, 3), nn.MaxPool2d(2),  # 3 x 5
            conv_bn(c3, 512, (3, 5), pad=0),  # 1 x 1
        )
        self.fc = nn.Linear(512, LATENT)

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(mfcc).flatten(1))


class Decoder(nn.Module):
    """G: f_p (B, 256) and f_w (B, 256) -> (B, 3, S, S) in [0, 1]."""

    CHANNELS = (512, 512, 256, 256, 128, 64, 32)
    CONVS = (2, 2, 2, 1, 1, 1)  # per upsampling stage; with the output convolution, 10 in all

    def __init__(self, cfg: DavsConfig):
        super().__init__()
        self.start = cfg.size // 64
        ch = [scaled(c, cfg.width) for c in self.CHANNELS]
        self.project = nn.Linear(2 * LATENT, ch[0] * self.start ** 2)
        stages = []
        for i, n in enumerate(self.CONVS):
            stages.append(nn.Sequential(*[conv_bn(ch[i] if j == 0 else ch[i + 1], ch[i + 1], 3) for j in range(n)]))
        self.stages = nn.ModuleList(stages)
        self.out = nn.Conv2d(ch[-1], 3, 3, 1, 1)
        self.channels = ch[0]

    def forward(self, f_p: torch.Tensor, f_w: torch.Tensor) -> torch.Tensor:
        x = self.project(torch.cat([f_p, f_w], dim=1)).view(len(f_p), self.channels, self.start, self.start)
        x = F.relu(x)
        for stage in self.stages:
            x = stage(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        return torch.sigmoid(self.out(x))


def mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, cout))


class WordClassifier(nn.Module):
    """C_w: word-ID features of a clip (B, T, 256) -> word logits; the same weights for audio and video."""

    def __init__(self, cfg: DavsConfig):
        super().__init__()
        self.net = mlp(cfg.clip_frames * LATENT, 512, cfg.words)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.net(seq.flatten(1))


class PersonWordCritic(nn.Module):
    """C_p^w: the person-ID features of a clip's T frames (B, T, 256) -> word logits. A word shows in
    how the face moves, hardly in any one frame, so the critic reads the sequence (each frame
    projected, then concatenated in order); so does the word probe of `eval davs`."""

    def __init__(self, cfg: DavsConfig, hidden: int = 128):
        super().__init__()
        self.frame = nn.Sequential(nn.Linear(LATENT, hidden), nn.ReLU(inplace=True))
        self.out = nn.Linear(cfg.clip_frames * hidden, cfg.words)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.out(self.frame(seq).flatten(1))


class SequenceDiscriminator(nn.Module):
    """D_seq: a generated or real clip (B, 3, T, S, S) -> real/fake logits per space-time patch."""

    def __init__(self, cfg: DavsConfig):
        super().__init__()
        w = cfg.width
        c1, c2, c3 = scaled(64, w), scaled(128, w), scaled(256, w)
        self.net = nn.Sequential(
            nn.Conv3d(3, c1, (3, 4, 4), (1, 2, 2), (1, 1, 1)), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv3d(c1, c2, (3, 4, 4), (1, 2, 2), (1, 1, 1)), nn.BatchNorm3d(c2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv3d(c2, c3, (3, 4, 4), (1, 2, 2), (1, 1, 1)), nn.BatchNorm3d(c3), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv3d(c3, 1, (3, 4, 4), 1, (1, 1, 1)),
        )

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.net(clip).flatten(1)


class Davs(nn.Module):
    """Every DAVS network, under the names the checkpoint uses."""

    def __init__(self, cfg: DavsConfig):
        super().__init__()
        self.cfg = cfg
        self.person_encoder = PersonEncoder(cfg)  # E_p^v
        self.video_word_encoder = VideoWordEncoder(cfg)  # E_w^v
        self.audio_word_encoder = AudioWordEncoder(cfg)  # E_w^a
        self.decoder = Decoder(cfg)  # G
        self.word_classifier = WordClassifier(cfg)  # C_w, shared (or the video one)
        self.audio_word_classifier = WordClassifier(cfg) if cfg.word_classifier == "separate" else None
        self.domain_classifier = mlp(LATENT, LATENT, 1)  # audio (1) or video (0)?
        self.person_classifier = mlp(LATENT, 512, cfg.persons)  # C_p: identity from f_p
        self.word_from_person = PersonWordCritic(cfg)  # C_p^w
        self.person_from_word = mlp(LATENT, LATENT, cfg.persons)  # C_w^p
        self.sequence_discriminator = SequenceDiscriminator(cfg)  # D_seq

    def video_words(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) -> (B, T, 256)."""
        b, t = frames.shape[:2]
        return self.video_word_encoder(frames.flatten(0, 1)).view(b, t, LATENT)

    def person_sequence(self, frames: torch.Tensor) -> torch.Tensor:
        """Person-ID features of every frame of a clip: (B, T, 3, S, S) -> (B, T, 256)."""
        b, t = frames.shape[:2]
        return self.person_encoder(frames.flatten(0, 1)).view(b, t, LATENT)

    def audio_words(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, T, 1, 12, 20) -> (B, T, 256)."""
        b, t = mfcc.shape[:2]
        return self.audio_word_encoder(mfcc.flatten(0, 1)).view(b, t, LATENT)

    def classify_words(self, f_w: torch.Tensor, audio: bool) -> torch.Tensor:
        """Word logits of clip features (B, T, 256), by C_w or, when separate, by the audio one."""
        if audio and self.audio_word_classifier is not None:
            return self.audio_word_classifier(f_w)
        return self.word_classifier(f_w)

    def generate(self, f_p: torch.Tensor, f_w: torch.Tensor) -> torch.Tensor:
        """One person feature per clip (B, 256) and word features (B, T, 256) -> (B, 3, T, S, S)."""
        b, t = f_w.shape[:2]
        faces = self.decoder(f_p[:, None].expand(b, t, LATENT).flatten(0, 1), f_w.flatten(0, 1))
        return faces.view(b, t, *faces.shape[1:]).transpose(1, 2)


def _from_checkpoint(state: dict, extras: dict) -> Davs:
    """The networks a checkpoint was saved from: their sizes are in its `davs_config` entry."""
    if not isinstance(extras.get("davs_config"), dict):
        raise ValueError("not a DAVS checkpoint: no davs_config entry (make one with `lipsync train davs`)")
    return Davs(DavsConfig.from_dict(extras["davs_config"]))


SIGNATURE = Signature(
    kind="davs",
    keys=("person_encoder.fc.weight", "word_from_person.out.weight", "sequence_discriminator.net.0.weight"),
    description="a DAVS model",
    build=_from_checkpoint,
)
