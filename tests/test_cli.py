"""The command line as a user meets it: one clear line and an exit code for every bad input,
no traceback, and never an output file (or a temporary one) left behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ffmpeg, permission_bits_apply, tone
from lipsync_cli import media
from lipsync_cli.errors import InputError
from lipsync_cli.cli import main


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(map(str, args)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, expected_code, *needles):
    assert code == expected_code, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def no_leftovers(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if "partial" in p.name]


@pytest.fixture
def expert_checkpoint(tmp_path) -> Path:
    """A checkpoint of the wrong network: the lip-sync expert's published keys and shapes."""
    import json

    from conftest import REFERENCE_KEYS

    keys = json.loads(REFERENCE_KEYS.read_text())
    state = {f"module.{k}": torch.zeros(shape) for k, shape in keys["wav2lip_syncnet_expert_color"].items()}
    path = tmp_path / "lipsync_expert.pth"
    torch.save({"state_dict": state, "optimizer": None, "global_step": 0, "global_epoch": 0}, path)
    return path


def test_help_lists_the_commands(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one line per option, whatever the terminal
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "dub" in out and "weights" in out
    assert "animate" in out and "train" in out and "eval" in out
    code, out, _ = cli(capsys, "dub", "--help")
    assert code == 0 and "--checkpoint" in out and "--paste" in out
    # defaults are shown (rich would eat text in square brackets as markup)
    assert "(default: VIDEO_STEM_dubbed.mp4 in the current folder)" in out
    code, out, _ = cli(capsys, "train", "wav2lip", "--help")
    assert code == 0 and "(default: 10000)" in out and "--sync-weight" in out and "--init" in out


@pytest.mark.slow
def test_dub_writes_json_summary(capsys, workdir, example_video, narrow_checkpoint):
    wav = tone(workdir / "a.wav", 0.4)
    code, out, err = cli(capsys, "dub", example_video, wav, "-o", "out.mp4", "-c", narrow_checkpoint,
                         "--box", 100, 250, 50, 200, "--json")
    assert code == 0, err
    import json

    summary = json.loads(out)
    assert summary["frames"] == 10 and summary["output"] == "out.mp4"
    from lipsync_cli.device import auto_precision

    assert summary["device"] == "cpu" and summary["precision"] == auto_precision(torch.device("cpu"))
    assert media.probe(workdir / "out.mp4").video.frame_count == 10


def test_default_output_name_in_current_folder(capsys, workdir, example_video, narrow_checkpoint):
    wav = tone(workdir / "a.wav", 0.2)
    code, _, err = cli(capsys, "dub", example_video, wav, "-c", narrow_checkpoint, "--box", 100, 250, 50, 200, "-q")
    assert code == 0, err
    assert (workdir / "talk_dubbed.mp4").exists()


@pytest.mark.slow
def test_bad_inputs_get_one_line_and_exit_code(capsys, workdir, example_video, example_audio, example_portrait,
                                               narrow_checkpoint, expert_checkpoint):
    text = workdir / "notes.txt"
    text.write_text("hello")
    fake_video = workdir / "fake.mp4"
    fake_video.write_text("this is not a video")
    empty_wav = workdir / "empty.wav"
    empty_wav.write_bytes(b"")
    zero_len = workdir / "zero.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-frames:a", "0", str(zero_len))
    zero_frames = workdir / "zero.mkv"
    ffmpeg("-i", str(example_video), "-map", "0:v", "-c", "copy", "-frames:v", "0", str(zero_frames))
    audio_only = workdir / "audio_only.m4a"
    ffmpeg("-i", str(example_audio), "-c:a", "aac", str(audio_only))

    ck = ["-c", narrow_checkpoint]
    cases = [
        # (args, exit code, words the message must contain)
        ([workdir / "missing.mp4", example_audio, *ck], 2, ["missing.mp4", "no such file"]),
        ([text, example_audio, *ck], 2, ["notes.txt", "not a media file"]),
        ([fake_video, example_audio, *ck], 2, ["fake.mp4", "not a media file"]),
        ([zero_frames, example_audio, *ck], 2, ["zero.mkv"]),
        ([audio_only, example_audio, *ck], 2, ["no video stream"]),
        ([example_video, workdir / "missing.wav", *ck], 2, ["missing.wav", "no such file"]),
        ([example_video, empty_wav, *ck], 2, ["empty.wav"]),
        ([example_video, zero_len, *ck], 2, ["zero.wav"]),
        ([example_video, example_portrait, *ck], 2, ["portrait.png", "no audio"]),
        ([example_video, example_audio, "-c", text], 2, ["notes.txt", "not a PyTorch checkpoint"]),
        ([example_video, example_audio, "-c", workdir / "nope.pth"], 2, ["nope.pth", "no such checkpoint"]),
        ([example_video, example_audio, "-c", expert_checkpoint], 2, ["lip-sync expert", "not a generator"]),
        ([example_video, example_audio], 2, ["no checkpoint", "wav2lip_gan.pth"]),
        ([example_video, example_audio, *ck, "-o", workdir / "no_such_dir" / "o.mp4"], 2, ["does not exist"]),
        ([example_video, example_audio, *ck, "-o", "/proc/o.mp4"], 2, ["cannot write"]),
        ([example_video, example_audio, *ck, "--paste", "glue"], 2, ["--paste glue"]),
        ([example_video, example_audio, *ck, "--box", 10, 5, 10, 5], 2, ["--box"]),
    ]
    for args, code_expected, needles in cases:
        if "-o" not in args:
            args = [*args, "-o", workdir / "out.mp4"]
        code, _, err = cli(capsys, "dub", *args)
        assert_one_line_error(code, err, code_expected, *needles)
        assert not (workdir / "out.mp4").exists()
        assert no_leftovers(workdir)


@pytest.mark.slow
def test_existing_output_is_refused_unless_force(capsys, workdir, example_video, narrow_checkpoint):
    wav = tone(workdir / "a.wav", 0.2)
    out = workdir / "out.mp4"
    out.write_bytes(b"precious")
    code, _, err = cli(capsys, "dub", example_video, wav, "-o", out, "-c", narrow_checkpoint,
                       "--box", 100, 250, 50, 200)
    assert_one_line_error(code, err, 2, "already exists", "--force")
    assert out.read_bytes() == b"precious"
    code, _, err = cli(capsys, "dub", example_video, wav, "-o", out, "-c", narrow_checkpoint,
                       "--box", 100, 250, 50, 200, "--force", "-q")
    assert code == 0, err
    assert media.probe(out).video.frame_count == 5


def test_read_only_output_folder(capsys, workdir, example_video, narrow_checkpoint):
    folder = workdir / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    with permission_bits_apply():  # root (how CI runs) would ignore them
        code, _, err = cli(capsys, "dub", example_video, tone(workdir / "a.wav", 0.2), "-o", folder / "o.mp4",
                           "-c", narrow_checkpoint)
    assert_one_line_error(code, err, 2, "cannot write", str(folder))
    assert list(folder.iterdir()) == []


def test_debug_shows_the_traceback(capsys, workdir, example_audio, narrow_checkpoint):
    code, _, err = cli(capsys, "dub", workdir / "missing.mp4", example_audio, "-c", narrow_checkpoint, "--debug")
    assert code == 2 and "Traceback" in err and "no such file" in err


@pytest.mark.slow
def test_ctrl_c_leaves_nothing_behind(tmp_path, example_video, narrow_checkpoint):
    wav = tone(tmp_path / "long.wav", 300.0)  # far longer than the run lasts before the signal, on any CPU
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lipsync_cli.cli", "dub", str(example_video), str(wav), "-o", str(out),
         "-c", str(narrow_checkpoint), "--box", "100", "250", "50", "200", "-q"],
        stderr=subprocess.PIPE, text=True,
        # a test runner started in the background (`cmd &` in a script) passes SIGINT on as ignored,
        # and Python then never turns it into KeyboardInterrupt: give the child the default, as a terminal does
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".out.partial-*")):
        time.sleep(0.1)
    assert list(tmp_path.glob(".out.partial-*")), "the run never started writing"
    time.sleep(2.0)  # mid-run: the generator is busy and the encoder has frames
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_weights_list_and_verify(capsys, workdir, checkpoint, expert_checkpoint, monkeypatch):
    monkeypatch.setenv("LIPSYNC_WEIGHTS", str(workdir))
    code, out, _ = cli(capsys, "weights", "list", "--json")
    assert code == 0
    import json

    names = {row["name"]: row for row in json.loads(out)["weights"]}
    assert {"wav2lip_gan", "wav2lip", "lipsync_expert", "visual_quality_disc", "s3fd"} <= set(names)
    assert names["wav2lip_gan"]["present"] is False
    code, _, err = cli(capsys, "weights", "verify", checkpoint)
    assert code == 0 and "OK" in err
    code, _, err = cli(capsys, "weights", "verify", "wav2lip_gan")
    assert_one_line_error(code, err, 2, "not present")
    (workdir / "wav2lip_gan.pth").write_bytes(expert_checkpoint.read_bytes())
    code, _, err = cli(capsys, "weights", "verify", "wav2lip_gan")
    assert_one_line_error(code, err, 1, "does not verify", "lip-sync expert")


# Every numeric option of every command, with values out of its range. Options where any whole
# number means something are listed apart, with the reason.
REQUIRED = {  # the arguments each command needs besides the option under test
    "dub": ["in.mp4", "a.wav", "-o", "out.mp4"],
    "batch": ["clips", "-o", "out"],
    "animate": ["photo.png", "a.wav", "-o", "out.mp4", "-c", "davs.pth"],
    "synth": ["corpus"],
    "preprocess": ["src", "data"],
    "train syncnet": ["data", "-o", "run"],
    "train wav2lip": ["data", "-o", "run"],
    "train davs": ["data", "-o", "run"],
    "weights init": ["w.pth"],
    "speakers": ["clip.mp4"],
}
DUB_OUT_OF_RANGE = {"--crf": ["-1", "52"], "--detect-size": ["-1"], "--detect-every": ["0"], "--batch-size": ["0"],
                    "--fps": ["0", "-25"], "--box": ["10 5 10 5", "5 10 10 5"]}
TRAIN_OUT_OF_RANGE = {"--steps": ["0"], "--batch-size": ["0"], "--lr": ["0", "-1e-4"], "--eval-every": ["0"],
                      "--eval-batches": ["0"], "--checkpoint-every": ["0"], "--seed": ["-1"], "--workers": ["-1"],
                      "--width": ["0"]}
OUT_OF_RANGE = {
    "dub": DUB_OUT_OF_RANGE,
    "batch": {**DUB_OUT_OF_RANGE, "--shard": ["2/2", "0/0"]},
    "animate": {"--fps": ["0"], "--smooth": ["-0.5"]},
    "synth": {"--clips": ["0"], "--seed": ["-1"], "--identities": ["2"], "--voices": ["2"], "--size": ["31", "1025"],
              "--scene": ["31 256", "256 31"], "--words": ["0 2", "3 2"], "--workers": ["0"]},
    "preprocess": {"--size": ["0"], "--detect-size": ["-1"], "--val": ["-0.1", "1.1"], "--max-offset": ["-1", "16"]},
    "train syncnet": {**TRAIN_OUT_OF_RANGE, "--size": ["100"]},
    "train wav2lip": {**TRAIN_OUT_OF_RANGE, "--sync-switch": ["-0.1"], "--sync-weight": ["-0.1"], "--size": ["128"]},
    "train davs": {**TRAIN_OUT_OF_RANGE, "--size": ["100"], "--disentangle-from": ["-1"],
                   "--generate-from": ["-1"], "--contrastive-weight": ["-1"], "--uniform-weight": ["-1"],
                   "--gan-weight": ["-1"]},
    "weights init": {"--seed": ["-1"], "--size": ["100"]},
    "speakers": {"--detect-size": ["-1"], "--detect-every": ["0"]},
}
ANY_WHOLE_NUMBER = {  # negative pads shrink the box; a negative face index counts from the right
    ("dub", "--pads"), ("dub", "--face-index"), ("batch", "--pads"), ("batch", "--face-index"),
    ("preprocess", "--pads"),
}


def _commands():
    """(command path, click command) for every command of the app."""
    import typer

    from lipsync_cli.cli import app

    def walk(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, (*path, name))
        else:
            yield " ".join(path), command

    return list(walk(typer.main.get_command(app), ()))


def _is_numeric(annotation) -> bool:
    import typing
    from fractions import Fraction

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if args:  # Optional[X], Tuple[X, ...], List[X]
        return any(_is_numeric(a) for a in args)
    return annotation in (int, float, Fraction)


def test_every_numeric_option_has_a_range_case():
    import typing

    numeric = set()
    for path, command in _commands():
        hints = typing.get_type_hints(command.callback)
        for param in command.params:
            if param.param_type_name == "option" and _is_numeric(hints[param.name]):
                numeric.add((path, max(param.opts, key=len)))
    cases = {(path, flag) for path, flags in OUT_OF_RANGE.items() for flag in flags}
    assert numeric - cases - ANY_WHOLE_NUMBER == set()  # a numeric option without a range case
    assert len(numeric) > 40


@pytest.mark.parametrize("command,flag,value", [
    (command, flag, value) for command, flags in OUT_OF_RANGE.items() for flag, values in flags.items()
    for value in values])
def test_out_of_range_values_are_refused(capsys, workdir, command, flag, value):
    code, out, err = cli(capsys, *command.split(), *REQUIRED[command], flag, *value.split())
    assert code == 2, err
    assert "Traceback" not in err and not out
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0], err
    assert list(workdir.iterdir()) == []  # no output, no run folder, nothing


def test_one_name_or_path_rule_for_dub_and_verify(capsys, workdir, example_video, example_audio, checkpoint,
                                                  monkeypatch):
    from lipsync_cli.weights import locate, resolve_checkpoint

    weights = workdir / "weights"
    weights.mkdir()
    monkeypatch.setenv("LIPSYNC_WEIGHTS", str(weights))
    (workdir / "mine.pth").write_bytes(checkpoint.read_bytes())
    assert locate("mine.pth") == ("mine.pth", None)  # an existing file is itself
    named = locate("wav2lip_gan")
    assert named[0] == str(weights / "wav2lip_gan.pth") and named[1].name == "wav2lip_gan"
    assert locate("wav2lip_gan.pth") == named  # the registry's file name too, when not a file here
    assert locate("sub/wav2lip_gan.pth") == ("sub/wav2lip_gan.pth", None)  # written as a path
    assert locate("other.pth") == ("other.pth", None)
    with pytest.raises(InputError, match="unknown checkpoint name 'wav2lip_gun'"):
        locate("wav2lip_gun")

    # both commands follow it: missing in the weights folder, then present there
    for args, needle in [(["dub", example_video, example_audio, "-o", "o.mp4", "-c", "wav2lip_gan.pth"], "no checkpoint"),
                         (["weights", "verify", "wav2lip_gan.pth"], "not present"),
                         (["weights", "verify", "other.pth"], "no such checkpoint file")]:
        code, _, err = cli(capsys, *args)
        assert_one_line_error(code, err, 2, needle)
    (weights / "wav2lip_gan.pth").write_bytes(checkpoint.read_bytes())
    assert resolve_checkpoint("wav2lip_gan.pth") == resolve_checkpoint(None) == str(weights / "wav2lip_gan.pth")
    code, _, err = cli(capsys, "weights", "verify", "wav2lip_gan.pth")
    assert code == 0 and err.strip() == f"{weights / 'wav2lip_gan.pth'}: OK"


@pytest.mark.slow
def test_weights_init_is_seeded_and_leaves_the_random_state(capsys, workdir):
    from lipsync_cli.models.loading import read_state_dict

    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    for name, seed in [("a.pth", 0), ("b.pth", 0), ("c.pth", 1)]:
        code, _, err = cli(capsys, "weights", "init", name, "--seed", seed)
        assert code == 0 and f"wrote {name} (random wav2lip, 96x96, seed {seed})" in err
    assert torch.equal(torch.rand(3), before)
    a, b, c = (read_state_dict(workdir / n)[0] for n in ("a.pth", "b.pth", "c.pth"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    code, _, err = cli(capsys, "weights", "init", "a.pth")
    assert_one_line_error(code, err, 2, "already exists", "--force")
    code, _, err = cli(capsys, "weights", "init", "d.pth", "--model", "wav3lip")
    assert_one_line_error(code, err, 2, "--model wav3lip")
    assert not (workdir / "d.pth").exists()


def test_eval_sync_reports_each_video_and_the_means(capsys, workdir, monkeypatch):
    import json

    from lipsync_cli.eval import lse

    scores = {"a.mp4": (8.0, 1.0), "b.mp4": (6.0, 3.0)}
    monkeypatch.setattr(lse, "load_sync_model", lambda path: ("wav2lip_syncnet_expert_color", torch.nn.Identity()))
    monkeypatch.setattr(lse, "evaluate_expert", lambda net, video, audio, detector, device: lse.SyncResult(
        video, *scores[video], offset=0, frames=40))
    code, out, err = cli(capsys, "eval", "sync", "a.mp4", "b.mp4", "--syncnet", "expert.pth", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [v["video"] for v in report["videos"]] == ["a.mp4", "b.mp4"]
    assert (report["lse_d"], report["lse_c"]) == (7.0, 2.0)
    code, out, _ = cli(capsys, "eval", "sync", "a.mp4", "b.mp4", "--syncnet", "expert.pth")
    assert code == 0 and "our expert" in out and "7.000" in out and "2.000" in out
