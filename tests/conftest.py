"""Shared fixtures: seeded random-init checkpoints in the published layouts, generated clips."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from lipsync_cli import media
from lipsync_cli.checkpoints import save_published
from lipsync_cli.models.wav2lip import build_generator

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
REFERENCE_KEYS = ROOT / "lipsync_cli" / "published_keys.json"  # the published checkpoints' keys and shapes


def seeded_generator(name: str = "wav2lip", seed: int = 0):
    torch.manual_seed(seed)
    net = build_generator(name)
    # Non-trivial batchnorm statistics, so folding and loading are really exercised.
    gen = torch.Generator().manual_seed(seed + 1)
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=gen) * 0.05)
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=gen) * 0.5 + 0.75)
    return net.eval()


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A seeded random-init Wav2Lip generator in the published layout ({"state_dict": {"module.*"}})."""
    path = tmp_path_factory.mktemp("ckpt") / "wav2lip_random.pth"
    save_published(seeded_generator(), path)
    return path


@pytest.fixture(scope="session")
def attn_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "attnwav2lip_random.pth"
    save_published(seeded_generator("attnwav2lip"), path)
    return path


@pytest.fixture(scope="session")
def example_video() -> Path:
    return EXAMPLES / "talk.mp4"


@pytest.fixture(scope="session")
def example_audio() -> Path:
    return EXAMPLES / "speech.wav"


@pytest.fixture(scope="session")
def example_portrait() -> Path:
    return EXAMPLES / "portrait.png"


def ffmpeg(*args: str) -> None:
    subprocess.run([media.ffmpeg_binary(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args], check=True)


def write_frames(path: Path, frames: np.ndarray, fps: str = "25", extra_out: tuple[str, ...] = ()) -> Path:
    """Encode BGR frames losslessly-enough (crf 0) into a video file."""
    n, h, w, _ = frames.shape
    cmd = [media.ffmpeg_binary(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "rawvideo",
           "-pix_fmt", "bgr24", "-s", f"{w}x{h}", "-r", fps, "-i", "pipe:0", *extra_out, str(path)]
    subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), check=True)
    return path


def decode_frames(path: Path) -> np.ndarray:
    info = media.probe(path)
    return np.concatenate(list(media.FrameReader(info, chunk=64)))


def numbered_frames(n: int, h: int = 64, w: int = 64) -> np.ndarray:
    """Frames whose top-left 16x16 corner encodes the frame number (grey level 8*i)."""
    frames = np.full((n, h, w, 3), 40, np.uint8)
    for i in range(n):
        frames[i, :16, :16] = (8 * i) % 256
    return frames


def read_number(frame: np.ndarray) -> int:
    return int(round(float(frame[4:12, 4:12].mean()) / 8))


def tone(path: Path, seconds: float, rate: int = 16000, channels: int = 1) -> Path:
    """A speech-band test signal (a chirp with an envelope) as a wav file."""
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=220:sample_rate={rate}:duration={seconds}",
           "-af", "volume=0.5", "-ac", str(channels), str(path))
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


os.environ.setdefault("LIPSYNC_WEIGHTS", str(ROOT / "tests" / ".no-weights"))


def torchrun(*args) -> "subprocess.CompletedProcess":
    """`lipsync ARGS` as two CPU processes under torchrun (Gloo)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "lipsync_cli.cli", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=600)
