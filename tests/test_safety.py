"""Inputs are never modified, every signal stops cleanly, one run per batch shard.

- An output that is an input under any name (the same path, a symlink either way, a hard link) is
  refused with one line and exit 2 whatever --force says, in every command that writes; an output
  folder may not overlap an input folder.
- SIGTERM and SIGHUP do what Ctrl-C does, in real `lipsync` processes: temporary files removed,
  no ffmpeg left running, the batch job log consistent, training's checkpoint saved, exit 128 + N.
- Two runs of one batch shard at once: the second is refused, naming the first.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import ffmpeg, tone
from lipsync_cli.cli import main

PYTHON_CLI = [sys.executable, "-m", "lipsync_cli.cli"]
BOX = ["--box", "100", "250", "50", "200"]  # skips face detection on examples/talk.mp4


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(code: int, err: str, *needles: str):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def partials(root: Path) -> list[Path]:
    """Every temporary file or folder anywhere under root (ours are named .NAME.partial-PID...)."""
    return [p for p in root.rglob("*") if "partial" in p.name]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# outputs.py


def test_refuse_inputs_knows_an_input_under_every_name(tmp_path):
    from lipsync_cli import outputs
    from lipsync_cli.errors import InputError

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"the user's original")
    (tmp_path / "link.mp4").symlink_to(clip)
    os.link(clip, tmp_path / "hard.mp4")
    (tmp_path / "sub").mkdir()
    names = [clip, tmp_path / "link.mp4", tmp_path / "hard.mp4", tmp_path / "sub" / ".." / "clip.mp4"]
    for name in names:
        with pytest.raises(InputError, match="is the input"):
            outputs.refuse_inputs(name, [tmp_path / "other.wav", clip])
        with pytest.raises(InputError, match="never overwritten"):
            outputs.AtomicFile(name, force=True, inputs=[clip])
    # the other direction: the input is a link, the output its target
    with pytest.raises(InputError, match="is the input"):
        outputs.refuse_inputs(clip, [tmp_path / "link.mp4"])
    # an output that does not exist yet, reached through a linked folder
    (tmp_path / "alias").symlink_to(tmp_path / "sub")
    with pytest.raises(InputError, match="is the input"):
        outputs.refuse_inputs(tmp_path / "alias" / "new.mp4", [tmp_path / "sub" / "new.mp4"])
    outputs.refuse_inputs(tmp_path / "out.mp4", [clip, None])  # anything else is fine
    assert clip.read_bytes() == b"the user's original" and partials(tmp_path) == []


def test_refuse_overlap_same_inside_or_holding(tmp_path):
    from lipsync_cli import outputs
    from lipsync_cli.errors import InputError

    src = tmp_path / "src"
    (src / "deep").mkdir(parents=True)
    for out, relation in ((src, "is"), (src / "deep" / "data", "is inside"), (tmp_path, "holds")):
        with pytest.raises(InputError, match=f"the data folder {relation} the source folder"):
            outputs.refuse_overlap(out, src, "the data folder", "the source folder")
    outputs.refuse_overlap(tmp_path / "data", src)
    outputs.refuse_overlap(tmp_path / "src2", src)  # a shared prefix is not nesting


def test_atomic_folder_replaces_only_when_complete(tmp_path):
    from lipsync_cli import outputs

    final = tmp_path / "corpus"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with outputs.atomic_folder(final, replace=True) as tmp:
            (tmp / "new.txt").write_text("half")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"] and (final / "old.txt").exists()
    with outputs.atomic_folder(final, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in final.iterdir()] == ["new.txt"] and partials(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Inputs are never modified, whatever --force says


def _name_the_input(kind: str, folder: Path, source: Path) -> tuple[Path, Path]:
    """(the input as given to the command, the output) for one way of naming the input."""
    real = folder / f"input{source.suffix}"
    shutil.copyfile(source, real)
    if kind == "same path":
        return real, real
    if kind == "symlink to it":
        (folder / f"link{source.suffix}").symlink_to(real)
        return real, folder / f"link{source.suffix}"
    if kind == "hard link":
        os.link(real, folder / f"hard{source.suffix}")
        return real, folder / f"hard{source.suffix}"
    assert kind == "input is a symlink"
    (folder / f"link{source.suffix}").symlink_to(real)
    return folder / f"link{source.suffix}", real


NAMINGS = ["same path", "symlink to it", "hard link", "input is a symlink"]


@pytest.mark.parametrize("which", ["video", "audio"])
@pytest.mark.parametrize("kind", NAMINGS)
def test_dub_never_overwrites_its_video_or_audio(capsys, tmp_path, example_video, example_audio, checkpoint,
                                                 which, kind):
    # the audio input is a video's audio track (.mp4), which a dubbed .mp4 could really replace
    given, output = _name_the_input(kind, tmp_path, example_video)
    video, audio = (given, example_audio) if which == "video" else (example_video, given)
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "dub", video, audio, "-o", output, "-c", checkpoint, *BOX, "--force", "-q")
    assert_refused(code, err, "is the input", "even with --force")
    assert snapshot(tmp_path) == before


def test_batch_into_its_own_input_folder_is_refused(capsys, tmp_path, example_video, example_audio, checkpoint):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in "ab":
        shutil.copyfile(example_video, clips / f"{name}.mp4")
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "batch", clips, "--audio", example_audio, "-o", clips, "-c", checkpoint, *BOX,
                       "--force", "-q")
    assert_refused(code, err, f"{clips}: the output folder is also an input folder", "give another output folder")
    # an audio folder is an input folder too
    voices = tmp_path / "voices"
    voices.mkdir()
    shutil.copyfile(example_audio, voices / "a.wav")
    shutil.copyfile(example_audio, voices / "b.wav")
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "batch", clips, "--audio", voices, "-o", voices, "-c", checkpoint, *BOX, "--force", "-q")
    assert_refused(code, err, "also an input folder")
    assert snapshot(tmp_path) == before and not (voices / ".lipsync-job").exists()


@pytest.mark.parametrize("kind", ["hard link", "symlink to it"])
def test_batch_output_that_is_another_name_of_an_input_is_refused(capsys, tmp_path, example_video, example_audio,
                                                                   checkpoint, kind):
    clips, out = tmp_path / "clips", tmp_path / "out"
    clips.mkdir()
    out.mkdir()
    for name in "ab":
        shutil.copyfile(example_video, clips / f"{name}.mp4")
    if kind == "hard link":
        os.link(clips / "b.mp4", out / "b.mp4")
    else:
        (out / "b.mp4").symlink_to(clips / "b.mp4")
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "batch", clips, "--audio", example_audio, "-o", out, "-c", checkpoint, *BOX,
                       "--force", "-q")
    assert_refused(code, err, f"{out / 'b.mp4'}: is the input {clips / 'b.mp4'}")
    assert snapshot(tmp_path) == before and not (out / "a.mp4").exists()


def test_batch_audio_that_an_output_would_replace_is_refused(capsys, tmp_path, example_video, checkpoint):
    clips, out = tmp_path / "clips", tmp_path / "out"
    clips.mkdir()
    out.mkdir()
    shutil.copyfile(example_video, clips / "a.mp4")
    shutil.copyfile(example_video, out / "a.mp4")  # the speech is a video's audio track, in the output folder
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "batch", clips, "--audio", out / "a.mp4", "-o", out, "-c", checkpoint, *BOX,
                       "--force", "-q")
    assert_refused(code, err, "is the input")
    assert snapshot(tmp_path) == before


@pytest.fixture(scope="module")
def davs_checkpoint(tmp_path_factory) -> Path:
    """A seeded random DAVS checkpoint (small networks) for `animate`."""
    import torch

    from lipsync_cli.train.davs import DavsTrainConfig, DavsTrainer

    torch.manual_seed(0)
    cfg = DavsTrainConfig(data="unused", out="unused", size=64, width=0.25)
    path = tmp_path_factory.mktemp("davs") / "davs.pth"
    torch.save(DavsTrainer(cfg, 60, 8, torch.device("cpu")).state(0), path)
    return path


@pytest.mark.parametrize("which", ["photo", "audio", "driver"])
def test_animate_never_overwrites_its_photo_audio_or_driver(capsys, tmp_path, example_portrait, example_video,
                                                            davs_checkpoint, which):
    photo, audio, driver = tmp_path / "photo.png", tmp_path / "speech.mp4", tmp_path / "driver.mp4"
    shutil.copyfile(example_portrait, photo)
    shutil.copyfile(example_video, audio)
    shutil.copyfile(example_video, driver)
    os.link({"photo": photo, "audio": audio, "driver": driver}[which], tmp_path / "out.mp4")
    before = snapshot(tmp_path)
    args = ["animate", photo, audio, "-o", tmp_path / "out.mp4", "-c", davs_checkpoint, "--force", "-q"]
    if which == "driver":
        args = ["animate", photo, "--driver", driver, "-o", tmp_path / "out.mp4", "-c", davs_checkpoint, "--force", "-q"]
    code, _, err = cli(capsys, *args)
    assert_refused(code, err, "is the input")
    assert snapshot(tmp_path) == before


def test_preprocess_data_folder_may_not_overlap_the_sources(capsys, tmp_path, example_video):
    src = tmp_path / "raw"
    (src / "spk").mkdir(parents=True)
    ffmpeg("-i", str(example_video), "-t", "0.4", str(src / "spk" / "c1.mp4"))
    before = snapshot(tmp_path)
    for data, relation in ((src, "is"), (src / "spk" / "data", "is inside"), (tmp_path, "holds")):
        code, _, err = cli(capsys, "preprocess", src, data, "-q")
        assert_refused(code, err, f"the data folder {relation} the source folder")
        assert snapshot(tmp_path) == before and not (src / "spk" / "data").exists()


def test_synth_force_replaces_only_a_corpus_it_made(capsys, workdir):
    small = ["--clips", "2", "--identities", "6", "--voices", "6", "-q"]
    (workdir / "notes.txt").write_text("the user's work")
    (workdir / "mine").mkdir()
    (workdir / "mine" / "thesis.tex").write_text("more of it")
    for target in (".", "mine", str(workdir)):
        code, _, err = cli(capsys, "synth", target, *small, "--force")
        assert_refused(code, err, "not a corpus made by `lipsync synth`")
    assert (workdir / "notes.txt").read_text() == "the user's work"
    assert (workdir / "mine" / "thesis.tex").read_text() == "more of it"
    (workdir / "empty").mkdir()
    assert cli(capsys, "synth", "empty", *small)[0] == 0  # an empty folder is filled
    assert (workdir / "empty" / ".lipsync-synth").is_file()
    first = snapshot(workdir / "empty")
    assert cli(capsys, "synth", "empty", *small, "--seed", "1", "--force")[0] == 0  # synth's own: replaced
    assert snapshot(workdir / "empty") != first and partials(workdir) == []


def test_train_run_folder_may_not_overlap_the_data(capsys, tmp_path):
    data = tmp_path / "data"
    (data / "filelists").mkdir(parents=True)
    before = snapshot(tmp_path)
    for run, relation in ((data, "is"), (data / "runs" / "expert", "is inside"), (tmp_path, "holds")):
        code, _, err = cli(capsys, "train", "syncnet", data, "-o", run, "--steps", "1", "-q")
        assert_refused(code, err, f"the run folder {relation} the data folder")
        assert snapshot(tmp_path) == before and not (data / "runs").exists()
