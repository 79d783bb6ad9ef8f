"""Shared fixtures: seeded random-init checkpoints in the published layouts (in torch's zip format
and in the legacy pre-zip format the published files use), generated clips, one synthetic corpus per
layout for the whole session, and a way to meet permission bits when the tests run as root."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from lipsync_cli import media
from lipsync_cli.checkpoints import save_published
from lipsync_cli.models.wav2lip import build_generator
from lipsync_cli.synth.corpus import CorpusSpec, make_corpus

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


def save_legacy(checkpoint: Path, path: Path) -> Path:
    """The same checkpoint in torch's legacy (pre-zip) serialization: the format of the published
    Wav2Lip checkpoints and of s3fd-619a316812.pth."""
    torch.save(torch.load(checkpoint, map_location="cpu", weights_only=True), path,
               _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="session")
def legacy_checkpoint(checkpoint, tmp_path_factory) -> Path:
    """The `checkpoint` generator saved as the published wav2lip.pth is: legacy format."""
    return save_legacy(checkpoint, tmp_path_factory.mktemp("ckpt") / "wav2lip_random_legacy.pth")


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


# One corpus per layout for the whole session: the tests read them and never change them.
TRAIN_CORPUS = CorpusSpec(clips=60, seed=3, identities=20, voices=10)
WORDS_CORPUS = CorpusSpec(clips=48, seed=2, identities=12, voices=12, layout="words", size=64)
VIDEOS_CORPUS = CorpusSpec(clips=2, seed=2, layout="videos", identities=6, voices=6, scene=(160, 200), max_words=2)


@pytest.fixture(scope="session")
def train_corpus(tmp_path_factory) -> Path:
    """The preprocessed (LRS2-like) training layout: 96 px face crops and audio per clip."""
    return make_corpus(TRAIN_CORPUS, tmp_path_factory.mktemp("corpus") / "train")


@pytest.fixture(scope="session")
def words_corpus(tmp_path_factory) -> Path:
    """The word-clip (LRW-like) layout that DAVS trains on, 64 px faces."""
    return make_corpus(WORDS_CORPUS, tmp_path_factory.mktemp("corpus") / "words")


@pytest.fixture(scope="session")
def videos_corpus(tmp_path_factory) -> Path:
    """Full-frame talking-head videos with their speech, the input `dub` takes."""
    return make_corpus(VIDEOS_CORPUS, tmp_path_factory.mktemp("corpus") / "videos")


# Linux capabilities that let root ignore permission bits (linux/capability.h)
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


@contextlib.contextmanager
def permission_bits_apply():
    """Run the block with permission bits applying to this process as to any user, also as root
    (how CI runs): root's capabilities to override them are dropped from this thread (and the
    threads it starts) and restored afterwards. Root keeps its uid, so it still reads its own files
    through their owner bits. Nothing changes for a process without those capabilities."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    saved = data[0].effective
    data[0].effective &= ~((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    try:
        yield
    finally:
        data[0].effective = saved
        if libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capset")


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
