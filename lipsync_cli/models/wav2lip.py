"""The Wav2Lip generator, and AttnWav2Lip (the same generator with channel + spatial attention).

Layer names and shapes are those of the published wav2lip.pth / wav2lip_gan.pth, so those files
load unchanged. AttnWav2Lip adds `face_encoder_attention.{0..6}` and `face_decoder_attention.{0..6}`
after each face-encoder block and each decoder block; no attention is applied to the raw input.

Inputs: mel (B, 1, 80, 16) and faces (B, 6, S, S) in [0, 1] (masked target + reference, BGR
as the published models were trained on OpenCV images); a time axis (B, T, ...) / (B, 6, T, ...)
is folded into the batch as in the reference. Output: (B, 3, S, S), sigmoid.

The face size S is 96 (the published networks) or, for high-resolution training, 192 or 288: an
outer encoder block at S (8 channels) and a stride-2 or stride-3 block down to 96 come before the
96 generator's blocks, and one more decoder block (32 channels) brings 96 back to S; the audio
embedding meets the 1x1 bottleneck as at 96, every block keeps its skip, and AttnWav2Lip puts its
attention after every block, the new ones included.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from . import FACE_SIZES, Signature
from .blocks import AttentionBlock, Conv2d, Conv2dTranspose, scaled, width_of

ENCODER_CHANNELS = (16, 32, 64, 128, 256, 512, 512)
DECODER_CHANNELS = (512, 512, 512, 384, 256, 128, 64)
OUTER_CHANNELS = 8  # the outer stage's encoder width (the widths halve as the size doubles, as at 96)
OUTER_DECODER_CHANNELS = 32
OUTER_KERNEL = {192: 3, 288: 5}  # the outer stage's downsampling conv: stride 2 or 3 to 96


@dataclass(frozen=True)
class GeneratorConfig:
    channel_attention: bool = False
    spatial_attention: bool = False
    width: float = 1.0  # channel multiplier (blocks.scaled): 1 is the published generator
    size: int = 96  # the face's side in pixels (FACE_SIZES)

    @property
    def name(self) -> str:
        if self.channel_attention and self.spatial_attention:
            return "attnwav2lip"
        if self.spatial_attention:
            return "attnwav2lip-spatial"
        if self.channel_attention:
            return "attnwav2lip-channel"
        return "wav2lip"

    @classmethod
    def from_name(cls, name: str) -> "GeneratorConfig":
        table = {
            "wav2lip": cls(False, False),
            "attnwav2lip": cls(True, True),
            "attnwav2lip-spatial": cls(False, True),
            "attnwav2lip-channel": cls(True, False),
        }
        if name not in table:
            raise ValueError(f"unknown generator {name!r}; choose from {', '.join(table)}")
        return table[name]


def _face_encoder(e: tuple[int, ...], size: int = 96) -> nn.ModuleList:
    """The face encoder's blocks, one per resolution. At 96 those of the published generator; a
    larger face (192, 288) first has an outer block at its own size and one that brings it to 96
    (stride 2 or 3), then the 96 generator's blocks from its second on."""
    def down(cin, cout, n_res, stride=2, kernel=3):  # a strided conv then residual convs
        return nn.Sequential(
            Conv2d(cin, cout, kernel, stride, (kernel - stride + 1) // 2),
            *[Conv2d(cout, cout, 3, 1, 1, residual=True) for _ in range(n_res)]
        )

    blocks = [nn.Sequential(Conv2d(6, e[0], 7, 1, 3))]  # the face's own size
    inner = e
    if size != 96:  # to 96
        blocks.append(down(e[0], e[1], 2, stride=size // 96, kernel=OUTER_KERNEL[size]))
        inner = e[1:]
    return nn.ModuleList(
        blocks + [
            down(inner[0], inner[1], 2),  # 48
            down(inner[1], inner[2], 3),  # 24
            down(inner[2], inner[3], 2),  # 12
            down(inner[3], inner[4], 2),  # 6
            down(inner[4], inner[5], 1),  # 3
            nn.Sequential(Conv2d(inner[5], inner[6], 3, 1, 0), Conv2d(inner[6], inner[6], 1, 1, 0)),  # 1
        ]
    )


def _audio_encoder(width: float) -> nn.Sequential:
    c32, c64, c128, c256, c512 = (scaled(c, width) for c in (32, 64, 128, 256, 512))
    return nn.Sequential(
        Conv2d(1, c32, 3, 1, 1),
        Conv2d(c32, c32, 3, 1, 1, residual=True),
        Conv2d(c32, c32, 3, 1, 1, residual=True),
        Conv2d(c32, c64, 3, (3, 1), 1),
        Conv2d(c64, c64, 3, 1, 1, residual=True),
        Conv2d(c64, c64, 3, 1, 1, residual=True),
        Conv2d(c64, c128, 3, 3, 1),
        Conv2d(c128, c128, 3, 1, 1, residual=True),
        Conv2d(c128, c128, 3, 1, 1, residual=True),
        Conv2d(c128, c256, 3, (3, 2), 1),
        Conv2d(c256, c256, 3, 1, 1, residual=True),
        Conv2d(c256, c512, 3, 1, 0),
        Conv2d(c512, c512, 1, 1, 0),
    )


def _face_decoder(e: tuple[int, ...], d: tuple[int, ...], audio: int, size: int = 96) -> nn.ModuleList:
    def up(cin, cout, stride=2, padding=1, output_padding=1, n_res=2):
        return nn.Sequential(
            Conv2dTranspose(cin, cout, 3, stride, padding, output_padding),
            *[Conv2d(cout, cout, 3, 1, 1, residual=True) for _ in range(n_res)],
        )

    # each block takes the previous block's output with the face encoder's skip of its size
    n = len(e)
    blocks = [
        nn.Sequential(Conv2d(audio, d[0], 1, 1, 0)),  # 1
        up(d[0] + e[n - 1], d[1], stride=1, padding=0, output_padding=0, n_res=1),  # 3
        up(d[1] + e[n - 2], d[2]),  # 6
        up(d[2] + e[n - 3], d[3]),  # 12
        up(d[3] + e[n - 4], d[4]),  # 24
        up(d[4] + e[n - 5], d[5]),  # 48
        up(d[5] + e[n - 6], d[6]),  # 96
    ]
    if size != 96:  # back to the face's size: x2 (192) or x3 (288)
        k = size // 96
        blocks.append(up(d[6] + e[1], d[7], stride=k, padding=1 if k == 2 else 0, output_padding=1 if k == 2 else 0))
    return nn.ModuleList(blocks)


def encoder_widths(width: float = 1.0, size: int = 96) -> tuple[int, ...]:
    channels = ENCODER_CHANNELS if size == 96 else (OUTER_CHANNELS,) + ENCODER_CHANNELS
    return tuple(scaled(c, width) for c in channels)


def decoder_widths(width: float = 1.0, size: int = 96) -> tuple[int, ...]:
    channels = DECODER_CHANNELS if size == 96 else DECODER_CHANNELS + (OUTER_DECODER_CHANNELS,)
    return tuple(scaled(c, width) for c in channels)


class Wav2LipGenerator(nn.Module):
    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        if config.size not in FACE_SIZES:
            raise ValueError(f"face size {config.size}: choose {', '.join(map(str, FACE_SIZES))}")
        self.config = config
        e = encoder_widths(config.width, config.size)
        d = decoder_widths(config.width, config.size)
        self.face_encoder_blocks = _face_encoder(e, config.size)
        self.audio_encoder = _audio_encoder(config.width)
        self.face_decoder_blocks = _face_decoder(e, d, scaled(512, config.width), config.size)
        out = scaled(32, config.width)
        self.output_block = nn.Sequential(Conv2d(d[-1] + e[0], out, 3, 1, 1), nn.Conv2d(out, 3, 1, 1, 0), nn.Sigmoid())
        if config.channel_attention or config.spatial_attention:
            kw = dict(channel=config.channel_attention, spatial=config.spatial_attention)
            self.face_encoder_attention = nn.ModuleList([AttentionBlock(c, **kw) for c in e])
            self.face_decoder_attention = nn.ModuleList([AttentionBlock(c, **kw) for c in d])
        else:
            self.face_encoder_attention = None
            self.face_decoder_attention = None

    def forward(self, audio_sequences: torch.Tensor, face_sequences: torch.Tensor) -> torch.Tensor:
        batch = audio_sequences.size(0)
        timed = face_sequences.dim() > 4
        if timed:  # (B, T, 1, 80, 16) and (B, 6, T, H, W): fold time into the batch
            audio_sequences = torch.cat([audio_sequences[:, i] for i in range(audio_sequences.size(1))], dim=0)
            face_sequences = torch.cat([face_sequences[:, :, i] for i in range(face_sequences.size(2))], dim=0)

        x, feats = self._encode(audio_sequences, face_sequences)
        for i, block in enumerate(self.face_decoder_blocks):
            x = block(x)
            if self.face_decoder_attention is not None:
                x = self.face_decoder_attention[i](x)
            x = torch.cat((x, feats.pop()), dim=1)

        out = self.output_block(x)
        if timed:  # back to (B, 3, T, H, W)
            out = torch.stack(torch.split(out, batch, dim=0), dim=2)
        return out

    def _encode(self, audio: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The audio embedding and the face encoder's output at each size (the decoder's skips)."""
        feats = []
        f = faces
        for i, block in enumerate(self.face_encoder_blocks):
            f = block(f)
            if self.face_encoder_attention is not None:
                f = self.face_encoder_attention[i](f)
            feats.append(f)
        return self.audio_encoder(audio), feats

    def lower_rows(self, audio_sequences: torch.Tensor, face_sequences: torch.Tensor,
                   first_row: int) -> tuple[torch.Tensor, int]:
        """forward() of (B, 1, 80, 16) mels and (B, 6, 96, 96) faces where only the output rows
        from `first_row` down are wanted (dub's feathered paste blends nothing above 40% of the
        face): the decoder computes only the rows those depend on, a quarter of the work.

        Returns (rows, top): rows is the output from row top (<= first_row) to the bottom, equal
        to forward()'s there up to float rounding. Convolutions are local, so a 3x3 conv given a
        slice of its input is exact below the slice's first row; the decoder's channel attention
        pools whole maps, so a generator with decoder attention computes the whole output."""
        if first_row <= 0 or self.face_decoder_attention is not None:
            return self.forward(audio_sequences, face_sequences), 0
        x, feats = self._encode(audio_sequences, face_sequences)
        stages = [list(block) for block in self.face_decoder_blocks] + [list(self.output_block)]
        needed = [0] * len(stages)  # the first input row each stage needs, from the last stage up
        rows = first_row
        for k in reversed(range(len(stages))):
            for layer in reversed(stages[k]):
                rows = _rows_needed(layer, rows)
            needed[k] = rows
        top = 0  # x holds the rows top.. of its map, all exact
        for k, layers in enumerate(stages):
            if k > 0:  # the previous block's output beside the face encoder's skip of its size
                x = torch.cat((x, feats.pop()[:, :, top:]), dim=1)
            x, top = x[:, :, needed[k] - top:], needed[k]
            for layer in layers:
                x, top = _rows_through(layer, x, top)
        return x, top


def _conv_of(layer: nn.Module) -> nn.Module | None:
    return layer.conv_block[0] if isinstance(layer, (Conv2d, Conv2dTranspose)) else (
        layer if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) else None)


def _upsamples_by_two(conv: nn.Module) -> bool:
    """A transposed 3x3 conv, stride 2, padding 1: output row 2i onwards needs input rows i onwards."""
    return (isinstance(conv, nn.ConvTranspose2d) and conv.kernel_size[0] == 3 and conv.stride[0] == 2
            and conv.padding[0] == 1 and conv.dilation[0] == 1)


def _rows_needed(layer: nn.Module, first: int) -> int:
    """The first input row that a layer's output rows from `first` down depend on (0: all)."""
    conv = _conv_of(layer)
    if conv is None:
        return first if isinstance(layer, (nn.Sigmoid, nn.ReLU)) else 0
    if isinstance(conv, nn.Conv2d) and conv.stride[0] == 1 and conv.dilation[0] == 1 \
            and conv.kernel_size[0] == 2 * conv.padding[0] + 1:
        return max(0, first - conv.padding[0])
    if _upsamples_by_two(conv):
        return first // 2
    return 0


def _rows_through(layer: nn.Module, x: torch.Tensor, top: int) -> tuple[torch.Tensor, int]:
    """A layer on the rows top.. of its input -> its output rows that are exact, and their first row."""
    y = layer(x)
    if top == 0:
        return y, 0
    conv = _conv_of(layer)
    if conv is None:
        return y, top
    if _upsamples_by_two(conv):
        return y, 2 * top
    pad = conv.padding[0]  # the first `pad` rows saw the slice's zero padding, not their neighbours
    return y[:, :, pad:], top + pad


def build_generator(name: str = "wav2lip", width: float = 1.0, size: int = 96) -> Wav2LipGenerator:
    return Wav2LipGenerator(dataclasses.replace(GeneratorConfig.from_name(name), width=width, size=size))


def size_of(state: dict[str, torch.Tensor]) -> int:
    """The face size a generator's state_dict is for, from its keys and shapes: eight encoder
    blocks are a larger face, its outer downsampling conv's kernel says which (3: 192, 5: 288)."""
    if "face_encoder_blocks.7.0.conv_block.0.weight" not in state:
        return 96
    kernel = state["face_encoder_blocks.1.0.conv_block.0.weight"].shape[-1]
    return next((size for size, k in OUTER_KERNEL.items() if k == kernel), 0)


def variant_of(state: dict[str, torch.Tensor]) -> str:
    """wav2lip / attnwav2lip / attnwav2lip-spatial / attnwav2lip-channel, from a state_dict's attention keys."""
    attention = [k for k in state if k.startswith("face_encoder_attention.")]
    return GeneratorConfig(channel_attention=any(".cam." in k for k in attention),
                           spatial_attention=any(".sam." in k for k in attention)).name


SIGNATURE = Signature(
    kind="wav2lip_generator",
    keys=("face_decoder_blocks.0.0.conv_block.0.weight", "output_block.1.weight"),
    description="a Wav2Lip-family generator",
    build=lambda state, extras: build_generator(variant_of(state),
                                                width_of(state, "audio_encoder.12.conv_block.0.weight", 512),
                                                size_of(state)),
)
