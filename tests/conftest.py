"""Shared fixtures: seeded random-init checkpoints in the published layouts (in torch's zip format
and in the legacy pre-zip format the published files use), generated clips, one synthetic corpus per
layout for the whole run (made once, shared by the pytest-xdist workers), and a way to meet
permission bits when the tests run as root."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

# Under pytest-xdist (pyproject's addopts: one worker per core), each worker and every process a
# test starts (lipsync, torchrun) computes on one thread: two workers with a thread pool each on
# two cores would oversubscribe them, and torch's pools stall when a core is taken by the other.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_name] = "1"

import numpy as np
import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

from lipsync_cli import media
from lipsync_cli.checkpoints import save_published
from lipsync_cli.models.wav2lip import build_generator
from lipsync_cli.synth.corpus import CorpusSpec, make_corpus

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
REFERENCE_KEYS = ROOT / "lipsync_cli" / "published_keys.json"  # the published checkpoints' keys and shapes


def seeded_generator(name: str = "wav2lip", seed: int = 0, width: float = 1.0):
    torch.manual_seed(seed)
    net = build_generator(name, width=width)
    # Non-trivial batchnorm statistics, so folding and loading are really exercised.
    gen = torch.Generator().manual_seed(seed + 1)
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=gen) * 0.05)
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=gen) * 0.5 + 0.75)
    return net.eval()


def real_face_crops(n: int):
    """n real 96x96 face crops of examples/talk.mp4 (RetinaFace on its first frame, dub's default
    padding) and their mel windows of examples/speech.wav, as dub hands them to the generator."""
    import cv2

    from lipsync_cli import audio as audio_mod
    from lipsync_cli.faces import make_detector, pad_box

    frames = decode_frames(EXAMPLES / "talk.mp4")[:n]
    det = make_detector("retinaface").detect([frames[0]])[0][0]
    x1, y1, x2, y2 = pad_box(det.box, (0, 10, 0, 0), frames.shape[2], frames.shape[1])
    crops = np.stack([cv2.resize(f[y1:y2, x1:x2], (96, 96)) for f in frames])
    mel = audio_mod.melspectrogram(audio_mod.load_audio(str(EXAMPLES / "speech.wav")).samples)
    return crops, audio_mod.mel_windows(mel, 25, list(range(n)))


def made_once(tmp_path_factory, folder: str, name: str, make) -> Path:
    """The path of a session fixture's file or folder `name`, `make(path)` having made it once for
    the whole run. Under pytest-xdist the workers share it: the first to need it makes it in the
    run's folder above theirs, under a lock, and the others wait for it (what it writes appears
    whole: checkpoints and corpora are written to a temporary name and renamed). Without xdist it
    is made in a folder of this session's, as any tmp_path_factory folder."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.mktemp(folder) / name
        make(path)
        return path
    import fcntl

    shared = tmp_path_factory.getbasetemp().parent / "shared" / folder
    shared.mkdir(parents=True, exist_ok=True)
    path = shared / name
    with open(shared / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            make(path)
    return path


def pytest_sessionfinish(session):
    """The run's shared files (made_once) go when the run ends: in the xdist controller, which
    finishes after every worker (they are checkpoints of up to 145 MB, made again by any run)."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None and not os.environ.get("PYTEST_XDIST_WORKER"):
        import shutil

        shutil.rmtree(factory.getbasetemp() / "shared", ignore_errors=True)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A seeded random-init Wav2Lip generator in the published layout ({"state_dict": {"module.*"}})."""
    return made_once(tmp_path_factory, "ckpt", "wav2lip_random.pth", lambda p: save_published(seeded_generator(), p))


def save_legacy(checkpoint: Path, path: Path) -> Path:
    """The same checkpoint in torch's legacy (pre-zip) serialization: the format of the published
    Wav2Lip checkpoints and of s3fd-619a316812.pth."""
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(torch.load(checkpoint, map_location="cpu", weights_only=True), tmp, _use_new_zipfile_serialization=False)
    tmp.rename(path)
    return path


@pytest.fixture(scope="session")
def narrow_checkpoint(tmp_path_factory) -> Path:
    """The same seeded generator at an eighth of the width (published keys, narrower shapes; the
    loader reads the width from them), for the tests of what surrounds the network (batch jobs,
    signals, timing, the CLI): the full width's generator costs about 0.25 s a frame on one CPU
    core and tests nothing more there. Its output is as random, so a dubbed mouth still changes."""
    return made_once(tmp_path_factory, "ckpt", "wav2lip_random_narrow.pth",
                     lambda p: save_published(seeded_generator(width=0.125), p))


@pytest.fixture(scope="session")
def random_expert(tmp_path_factory) -> Path:
    """A seeded random quarter-width lip-sync expert in the published layout, named as the published
    one (the generator's loop and preprocess's sync filter load it at the file's width)."""
    from lipsync_cli.models.syncnet import SyncNetColor

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("expert") / "lipsync_expert.pth"
    save_published(SyncNetColor(width=0.25), path)
    return path


@pytest.fixture(scope="session")
def legacy_checkpoint(checkpoint, tmp_path_factory) -> Path:
    """The `checkpoint` generator saved as the published wav2lip.pth is: legacy format."""
    return made_once(tmp_path_factory, "ckpt", "wav2lip_random_legacy.pth", lambda p: save_legacy(checkpoint, p))


@pytest.fixture(scope="session")
def attn_checkpoint(tmp_path_factory) -> Path:
    return made_once(tmp_path_factory, "ckpt", "attnwav2lip_random.pth",
                     lambda p: save_published(seeded_generator("attnwav2lip"), p))


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
    return made_once(tmp_path_factory, "corpus", "train", lambda p: make_corpus(TRAIN_CORPUS, p))


@pytest.fixture(scope="session")
def words_corpus(tmp_path_factory) -> Path:
    """The word-clip (LRW-like) layout that DAVS trains on, 64 px faces."""
    return made_once(tmp_path_factory, "corpus", "words", lambda p: make_corpus(WORDS_CORPUS, p))


@pytest.fixture(scope="session")
def videos_corpus(tmp_path_factory) -> Path:
    """Full-frame talking-head videos with their speech, the input `dub` takes."""
    return made_once(tmp_path_factory, "corpus", "videos", lambda p: make_corpus(VIDEOS_CORPUS, p))


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
