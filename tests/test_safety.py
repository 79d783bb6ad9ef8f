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

    from lipsync_cli.checkpoints import save_davs
    from lipsync_cli.models.davs import Davs, DavsConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("davs") / "davs.pth"
    save_davs(Davs(DavsConfig(size=64, width=0.25, words=60, persons=8)), path)
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
        args = ["animate", photo, "--driver", driver, *args[3:]]
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


# ---------------------------------------------------------------------------------------------
# Signals: SIGTERM and SIGHUP do what Ctrl-C does


def test_a_signal_interrupts_once_and_the_handlers_come_back():
    from lipsync_cli import interrupts

    before = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    caught = []
    with interrupts.signals_as_interrupts():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs in this thread, between two of its steps
                time.sleep(0.001)
        except KeyboardInterrupt as exc:
            caught.append(exc)
            os.kill(os.getpid(), signal.SIGINT)  # more signals while cleaning up: ignored
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(100):
                time.sleep(0.001)
        assert interrupts.stopping() == signal.SIGTERM
    assert len(caught) == 1 and isinstance(caught[0], interrupts.Interrupted) and caught[0].signum == signal.SIGTERM
    assert interrupts.exit_code(caught[0]) == 143 and interrupts.describe(caught[0]) == "interrupted by SIGTERM"
    assert interrupts.exit_code(interrupts.Interrupted(signal.SIGHUP)) == 129
    assert interrupts.exit_code(KeyboardInterrupt()) == 130
    assert interrupts.describe(KeyboardInterrupt()) == "interrupted"
    assert {s: signal.getsignal(s) for s in interrupts.SIGNALS} == before and interrupts.stopping() is None


def test_a_signal_ignored_at_start_stays_ignored():
    from lipsync_cli import interrupts

    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with interrupts.signals_as_interrupts():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
    finally:
        signal.signal(signal.SIGHUP, old)


def _default_signals():
    # A test runner started in the background passes SIGINT on ignored, nohup SIGHUP; the child
    # gets the dispositions a terminal gives (lipsync keeps a signal it was started with ignored).
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)


def start(*args) -> subprocess.Popen:
    """`lipsync ARGS` in a session of its own, as a scheduler or a terminal starts it."""
    return subprocess.Popen([*PYTHON_CLI, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=_default_signals)


def wait_for(proc: subprocess.Popen, condition, what: str):
    """Poll until `condition()` holds (returned), while the process runs."""
    deadline = time.monotonic() + 300  # a safety bound, not a measure
    while time.monotonic() < deadline:
        try:
            found = condition()
        except (OSError, ValueError):  # a file that came or went while looked at
            found = None
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {what}: {proc.stderr.read()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no {what} in time")


def stop(proc: subprocess.Popen, *signals: int) -> str:
    """Send the signals one right after the other (the later ones land in the cleanup), then wait."""
    for number in signals:
        proc.send_signal(number)
    _, err = proc.communicate(timeout=300)
    return err


def session_processes(session: int) -> list[str]:
    """What still runs in the session the child led (its ffmpeg, its data loader workers...)."""
    left = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[3]) == session and fields[0] != "Z":
            left.append(text.split(")")[0] + ")")
    return left


def assert_stopped(proc: subprocess.Popen, err: str, number: int, message: str, tree: Path):
    assert proc.returncode == 128 + number, err
    assert err.strip() == f"interrupted by {signal.Signals(number).name}: {message}", err
    assert partials(tree) == []
    assert session_processes(proc.pid) == []


def written(path: Path) -> bool:
    return path.stat().st_size > 0


@pytest.mark.slow
def test_dub_stopped_by_sighup_writes_nothing_and_leaves_nothing(tmp_path, example_video, narrow_checkpoint):
    wav = tone(tmp_path / "long.wav", 60.0)
    out = tmp_path / "out.mp4"
    proc = start("dub", example_video, wav, "-o", out, "-c", narrow_checkpoint, *BOX, "-q")
    wait_for(proc, lambda: [p for p in tmp_path.glob(".out.partial-*") if written(p)], "encoded frames")
    # A SIGTERM right after: Python runs pending handlers by signal number, so SIGHUP's comes
    # first and SIGTERM's runs in the cleanup, where it must change nothing.
    err = stop(proc, signal.SIGHUP, signal.SIGTERM)
    assert_stopped(proc, err, signal.SIGHUP, "no output was written", tmp_path)
    assert not out.exists()


def log_records(out: Path) -> list[dict]:
    from lipsync_cli.pipelines import batch as batch_mod

    return batch_mod.read_job(out / batch_mod.JOB_FOLDER)


def test_a_log_line_cut_by_a_crash_does_not_swallow_the_next_record(tmp_path):
    from lipsync_cli.pipelines.batch import JobLog, Shard, read_job

    JobLog(tmp_path, Shard(0, 1)).append("a.mp4", "started")
    with open(tmp_path / "log-0-of-1.jsonl", "a") as f:
        f.write('{"t": 1, "item": "a.mp4", "sta')  # SIGKILL in the middle of a line
    JobLog(tmp_path, Shard(0, 1)).append("a.mp4", "interrupted")
    assert [r["state"] for r in read_job(tmp_path)] == ["started", "interrupted"]


@pytest.fixture
def clip_folder(tmp_path, example_video, example_audio) -> tuple[Path, Path]:
    """Four clips (links to examples/talk.mp4) and 0.2 s of speech for each: 5 frames a clip."""
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(4):
        (clips / f"clip{i}.mp4").symlink_to(example_video)
    speech = tmp_path / "speech.wav"
    ffmpeg("-i", str(example_audio), "-t", "0.2", str(speech))
    return clips, speech


@pytest.mark.slow
def test_batch_stopped_by_sigterm_logs_what_was_in_flight_and_a_rerun_finishes(capsys, tmp_path, clip_folder,
                                                                                narrow_checkpoint):
    from lipsync_cli.pipelines.batch import latest_states

    clips, speech = clip_folder
    out = tmp_path / "out"
    args = ["batch", clips, "--audio", speech, "-o", out, "-c", narrow_checkpoint, *BOX, "-q"]
    proc = start(*args)
    wait_for(proc, lambda: [r for r in log_records(out) if r["state"] == "done"], "a finished clip")
    err = stop(proc, signal.SIGTERM)
    assert_stopped(proc, err, signal.SIGTERM, "finished clips are kept; run the same command again to go on", tmp_path)
    states = latest_states(log_records(out))
    assert {s["state"] for s in states.values()} == {"done", "interrupted"}, states  # nothing left "started"
    done = {item for item, s in states.items() if s["state"] == "done"}
    assert 1 <= len(done) < 4 and all((out / item).exists() for item in done)
    assert not any((out / item).exists() for item, s in states.items() if s["state"] == "interrupted")

    assert cli(capsys, *args)[0] == 0  # the rerun takes the lock over and finishes the job
    records = log_records(out)
    assert Counter(r["item"] for r in records if r["state"] == "done") == Counter(f"clip{i}.mp4" for i in range(4))
    started = Counter(r["item"] for r in records if r["state"] == "started")
    assert all(started[item] == 1 for item in done)  # finished work was not redone
    assert partials(tmp_path) == []


@pytest.mark.slow
def test_preprocess_stopped_by_sigterm_removes_its_partial_clip(tmp_path, example_video):
    src, data = tmp_path / "raw", tmp_path / "data"
    (src / "spk").mkdir(parents=True)
    ffmpeg("-stream_loop", "9", "-i", str(example_video), "-c", "copy", str(src / "spk" / "long.mp4"))  # 20 s
    proc = start("preprocess", src, data, "--device", "cpu", "-q")
    wait_for(proc, lambda: list(data.glob("spk/.long.partial*/*/*.jpg")), "face crops")
    err = stop(proc, signal.SIGTERM)
    assert_stopped(proc, err, signal.SIGTERM,
                   f"finished videos are kept in {data}; run the same command again to go on", tmp_path)
    assert not (data / "spk" / "long").exists()


@pytest.mark.slow
def test_synth_stopped_by_sigterm_removes_its_temporary_corpus(tmp_path):
    proc = start("synth", tmp_path / "corpus", "--clips", "100000", "--workers", "2", "-q")
    wait_for(proc, lambda: list(tmp_path.glob(".corpus.partial-*/*/*/audio.wav")), "clips")
    err = stop(proc, signal.SIGTERM)
    assert_stopped(proc, err, signal.SIGTERM, "no output was written", tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_animate_stopped_by_sigterm_leaves_nothing(tmp_path, example_portrait, davs_checkpoint):
    wav = tone(tmp_path / "long.wav", 120.0)
    out = tmp_path / "out.mp4"
    proc = start("animate", example_portrait, wav, "-o", out, "-c", davs_checkpoint, "--device", "cpu", "-q")
    wait_for(proc, lambda: [p for p in tmp_path.glob(".out.partial-*") if written(p)], "encoded frames")
    err = stop(proc, signal.SIGTERM)
    assert_stopped(proc, err, signal.SIGTERM, "no output was written", tmp_path)
    assert not out.exists()


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    from lipsync_cli.synth.corpus import CorpusSpec, make_corpus

    return make_corpus(CorpusSpec(clips=12, seed=0, identities=10, voices=10), tmp_path_factory.mktemp("c") / "data")


def _steps_logged(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
    return [r["step"] for r in map(json.loads, lines) if "train_loss" in r]


@pytest.mark.slow
def test_train_stopped_by_sigterm_saves_its_checkpoint_and_resumes(capsys, tmp_path, small_corpus):
    import torch

    run = tmp_path / "run"
    flags = ["--batch-size", "2", "--workers", "1", "--eval-every", "100000", "--eval-batches", "1",
             "--checkpoint-every", "100000", "--amp", "off", "--width", "0.25", "-q"]
    proc = start("train", "syncnet", small_corpus, "-o", run, "--steps", "100000", *flags)
    wait_for(proc, lambda: _steps_logged(run), "a training step")
    err = stop(proc, signal.SIGTERM)
    assert_stopped(proc, err, signal.SIGTERM, f"checkpoint saved in {run}; run the same command to resume", tmp_path)
    step = torch.load(run / "last.pth", weights_only=True)["global_step"]
    logged = _steps_logged(run)
    assert step >= logged[-1] >= 1 and logged == list(range(1, logged[-1] + 1))  # every step logged is kept
    assert (run / f"syncnet_step{step:06d}.pth").samefile(run / "last.pth")

    assert cli(capsys, "train", "syncnet", small_corpus, "-o", run, "--steps", step + 1, *flags)[0] == 0
    assert torch.load(run / "last.pth", weights_only=True)["global_step"] == step + 1
    assert _steps_logged(run)[-1] == step + 1


# ---------------------------------------------------------------------------------------------
# One run per batch shard


@pytest.mark.slow
def test_a_shard_lock_is_exclusive_and_free_again_once_its_process_is_gone(tmp_path):
    import socket

    from lipsync_cli.errors import InputError
    from lipsync_cli.pipelines.batch import Shard, ShardLock

    job = tmp_path / "job"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from lipsync_cli.pipelines.batch import "
         "Shard, ShardLock; ShardLock(Path(sys.argv[1]), Shard(0, 2)).__enter__(); print('locked', flush=True); "
         "time.sleep(600)", str(job)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=rf"{job}: shard 0/2 of this job is already running "
                                             rf"\(pid {holder.pid} on {socket.gethostname()}\)"):
            with ShardLock(job, Shard(0, 2)):
                pass
        with ShardLock(job, Shard(1, 2)):  # another shard of the job runs at the same time
            pass
    finally:
        holder.kill()
        holder.wait()
    assert f'"pid": {holder.pid}' in (job / "lock-0-of-2").read_text()  # what the killed holder left
    with ShardLock(job, Shard(0, 2)):
        assert f'"pid": {os.getpid()}' in (job / "lock-0-of-2").read_text()


@pytest.mark.slow
def test_a_second_run_of_a_running_shard_is_refused_and_each_clip_is_dubbed_once(capsys, tmp_path, clip_folder,
                                                                                 narrow_checkpoint):
    clips, speech = clip_folder
    out = tmp_path / "out"
    args = ["batch", clips, "--audio", speech, "-o", out, "-c", narrow_checkpoint, *BOX, "-q"]
    first = start(*args)
    wait_for(first, lambda: [r for r in log_records(out) if r["state"] == "started"], "the first run's start")
    code, _, err = cli(capsys, *args)  # refused only while the first holds the lock: while it runs
    assert_refused(code, err, f"{out / '.lipsync-job'}: shard 0/1 of this job is already running (pid {first.pid} on")
    code, stdout, _ = cli(capsys, "batch", "--report", out, "--json")
    assert code == 0 and json.loads(stdout)["items"]  # a report needs no lock
    assert first.wait(timeout=300) == 0, first.stderr.read()
    records = log_records(out)
    assert Counter(r["item"] for r in records if r["state"] == "done") == Counter(f"clip{i}.mp4" for i in range(4))
    assert {r["pid"] for r in records} == {first.pid}


def test_train_never_writes_over_the_checkpoints_it_reads(capsys, tmp_path, small_corpus):
    from lipsync_cli.checkpoints import save_published
    from lipsync_cli.models.syncnet import SyncNetColor

    run = tmp_path / "run"
    run.mkdir()
    save_published(SyncNetColor(), run / "last.pth")  # the expert, kept in the folder the generator run writes
    before = snapshot(tmp_path)
    for flag in ("--expert", "--init"):
        args = ["train", "wav2lip", small_corpus, "-o", run, "--expert", run / "last.pth", "--steps", "1",
                "--batch-size", "2", "--workers", "0", "--eval-batches", "1", "--no-gan", "--fresh", "-q"]
        if flag == "--init":
            args[5:7] = ["--expert", tmp_path / "elsewhere.pth", "--init", run / "last.pth"]
        code, _, err = cli(capsys, *args)
        assert_refused(code, err, f"{flag} {run / 'last.pth'}: lies in the run folder {run}")
        assert snapshot(tmp_path) == before
