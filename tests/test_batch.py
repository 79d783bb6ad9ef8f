"""`lipsync batch`: pairing, manifests, the job log and resume (also after a SIGKILL), a broken
clip among good ones, sharding, and the merged report, on real clips through the real pipeline
(with the eighth-width generator, `narrow_checkpoint`: the job machinery is tested, not the network)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import ffmpeg, write_frames
from lipsync_cli import media, outputs
from lipsync_cli.cli import main
from lipsync_cli.errors import InputError
from lipsync_cli.pipelines import batch as batch_mod
from lipsync_cli.pipelines.batch import Shard, collect_items, parse_shard, shard_from_environment


def touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def log_records(out_dir: Path) -> list[dict]:
    return batch_mod.read_job(out_dir / batch_mod.JOB_FOLDER)


def no_partials(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if outputs.PARTIAL_MARK in p.name]


@pytest.fixture(scope="module")
def clips(tmp_path_factory, example_video, example_audio) -> Path:
    """A folder of 4 short real clips (a.mp4 .. d.mp4), their speech (0.2 s each, paired by
    name), and a broken 'video' bad.mp4 with its own audio."""
    root = tmp_path_factory.mktemp("clips")
    (root / "videos").mkdir()
    (root / "audio").mkdir()
    for name in "abcd":
        ffmpeg("-i", str(example_video), "-c", "copy", str(root / "videos" / f"{name}.mp4"))
        ffmpeg("-i", str(example_audio), "-t", "0.2", str(root / "audio" / f"{name}.wav"))
    (root / "videos" / "bad.mp4").write_text("not a video at all")
    ffmpeg("-i", str(example_audio), "-t", "0.2", str(root / "audio" / "bad.wav"))
    return root


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------- pairing


def test_folder_with_one_audio_or_an_audio_folder(tmp_path):
    for name in ("b.mp4", "a.mov", "c.png", "notes.txt", ".hidden.mp4"):
        touch(tmp_path / "in" / name)
    one = touch(tmp_path / "speech.wav")
    items = collect_items([tmp_path / "in"], tmp_path / "out", str(one))
    assert [it.id for it in items] == ["a.mp4", "b.mp4", "c.mp4"]  # sorted, videos and images only
    assert all(it.audio == str(one) and it.problem is None for it in items)
    assert items[0].output == str(tmp_path / "out" / "a.mp4")

    touch(tmp_path / "aud" / "a.m4a")
    touch(tmp_path / "aud" / "b.wav")
    touch(tmp_path / "aud" / "c.wav")
    touch(tmp_path / "aud" / "c.mp3")
    items = {it.id: it for it in collect_items([tmp_path / "in"], tmp_path / "out", str(tmp_path / "aud"))}
    assert items["a.mp4"].audio == str(tmp_path / "aud" / "a.m4a")
    assert items["b.mp4"].audio == str(tmp_path / "aud" / "b.wav")
    assert items["c.mp4"].audio is None and "several audio files" in items["c.mp4"].problem
    (tmp_path / "aud" / "c.mp3").unlink()
    (tmp_path / "aud" / "b.wav").unlink()
    items = {it.id: it for it in collect_items([tmp_path / "in"], tmp_path / "out", str(tmp_path / "aud"))}
    assert items["b.mp4"].problem == f"no audio named b.* in {tmp_path / 'aud'}"


def test_whole_batch_mistakes_are_errors(tmp_path):
    touch(tmp_path / "in" / "a.mp4")
    touch(tmp_path / "in2" / "a.mkv")
    with pytest.raises(InputError, match="--audio"):
        collect_items([tmp_path / "in"], tmp_path / "out", None)
    with pytest.raises(InputError, match="no such file"):
        collect_items([tmp_path / "nope"], tmp_path / "out", None)
    with pytest.raises(InputError, match="two inputs would write"):
        collect_items([tmp_path / "in", tmp_path / "in2"], tmp_path / "out", str(touch(tmp_path / "s.wav")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no videos"):
        collect_items([tmp_path / "empty"], tmp_path / "out", None)


def test_manifests_csv_json_and_jsonl(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "list.csv").write_text(
        "video,audio,output,box,loop,fps,on_no_face\n"
        "clips/one.mp4,speech/one.wav,,10 20 30 40,yes,29.97,error\n"
        "clips/two.mp4,speech/x.wav,renamed,,,,\n")
    items = collect_items([tmp_path / "m" / "list.csv"], tmp_path / "out", None)
    one, renamed = items
    assert one.id == "one.mp4" and one.video == str(tmp_path / "m" / "clips" / "one.mp4")
    assert one.audio == str(tmp_path / "m" / "speech" / "one.wav")  # relative to the manifest
    assert one.overrides == {"box": (30, 10, 40, 20), "loop": True, "fps": Fraction(30000, 1001),
                             "on_no_face": "error"}  # the box column is Y1 Y2 X1 X2, held as (x1, y1, x2, y2)
    assert renamed.id == "renamed.mp4" and renamed.overrides == {}

    (tmp_path / "m" / "list.json").write_text(json.dumps({"items": [
        {"video": "a.mp4", "audio": "a.wav", "pads": [0, 20, 0, 0], "face_index": 1, "smooth": False, "crf": 23}]}))
    (item,) = collect_items([tmp_path / "m" / "list.json"], tmp_path / "out", None)
    assert item.overrides == {"pads": (0, 20, 0, 0), "face_index": 1, "smooth": False, "crf": 23}

    (tmp_path / "m" / "list.jsonl").write_text('{"video": "a.mp4"}\n\n{"video": "b.mp4"}\n')
    aud = touch(tmp_path / "all.wav")
    assert [it.audio for it in collect_items([tmp_path / "m" / "list.jsonl"], tmp_path / "o", str(aud))] == [str(aud)] * 2

    bad = {"typo.csv": "video,audio,bxo\na,b,c\n", "box.csv": "video,audio,box\na,b,1 2 3\n",
           "out.csv": "video,audio,output\na,b,../escape.mp4\n", "noaudio.csv": "video\na.mp4\n",
           "broken.json": "{not json"}
    for name, text in bad.items():
        (tmp_path / "m" / name).write_text(text)
        with pytest.raises(InputError, match=name):
            collect_items([tmp_path / "m" / name], tmp_path / "out", None)


# ------------------------------------------------------------------------------- sharding


def test_shards_cover_every_item_exactly_once(tmp_path):
    items = [batch_mod.BatchItem(f"{i:03d}.mp4", f"v{i}", "a", f"o{i}") for i in range(23)]
    for n in range(1, 6):
        taken = [it.id for k in range(n) for it in Shard(k, n).select(list(reversed(items)))]
        assert sorted(taken) == sorted(it.id for it in items) and len(taken) == len(set(taken))
    assert parse_shard("1/4") == Shard(1, 4)
    for text in ("4/4", "1", "a/b", "-1/2"):
        with pytest.raises(InputError, match="--shard"):
            parse_shard(text)
    assert shard_from_environment({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3"}) == Shard(3, 8)
    assert shard_from_environment({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4",
                                   "SLURM_ARRAY_TASK_MIN": "3"}) == Shard(2, 4)
    assert shard_from_environment({}) is None


# ------------------------------------------------------------------------------- running


@pytest.mark.slow
def test_broken_clip_fails_alone_rerun_skips_and_retry(capsys, tmp_path, clips, narrow_checkpoint):
    out = tmp_path / "out"
    args = ["batch", clips / "videos", "--audio", clips / "audio", "-o", out, "-c", narrow_checkpoint, "--json"]
    code, stdout, _ = cli(capsys, *args)
    summary = json.loads(stdout)
    assert code == 1  # one item failed
    assert (summary["done"], summary["failed"], summary["skipped"]) == (4, 1, 0)
    failed = [it for it in summary["items"] if it["state"] == "failed"]
    assert failed[0]["item"] == "bad.mp4" and "not a media file" in failed[0]["reason"]
    for name in "abcd":
        info = media.probe(out / f"{name}.mp4")
        assert info.video.frame_count == 5 and info.audio is not None  # 0.2 s at 25 fps
    assert not (out / "bad.mp4").exists() and no_partials(out)

    states = batch_mod.latest_states(log_records(out))
    assert {k: v["state"] for k, v in states.items()} == {**{f"{n}.mp4": "done" for n in "abcd"}, "bad.mp4": "failed"}
    assert states["a.mp4"]["sha256"] == batch_mod.sha256_of(out / "a.mp4")

    # Rerun: nothing is redone or rewritten; the earlier failure is still reported.
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    code, stdout, _ = cli(capsys, *args)
    summary = json.loads(stdout)
    assert code == 1 and (summary["done"], summary["failed"], summary["skipped"]) == (0, 1, 4)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")} == mtimes

    # A done output deleted by the user is made again; the failed one only with --retry-failed.
    (out / "b.mp4").unlink()
    code, stdout, _ = cli(capsys, *args)
    assert json.loads(stdout)["done"] == 1 and (out / "b.mp4").exists()
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    for p in (clips / "videos").iterdir():
        (fixed / p.name).symlink_to(p)
    (fixed / "bad.mp4").unlink()
    (fixed / "bad.mp4").symlink_to(clips / "videos" / "a.mp4")  # the user repaired the clip
    args[1] = fixed
    code, stdout, _ = cli(capsys, *args, "--retry-failed")
    summary = json.loads(stdout)
    assert code == 0 and (summary["done"], summary["failed"], summary["skipped"]) == (1, 0, 4)
    assert media.probe(out / "bad.mp4").video.frame_count == 5


@pytest.mark.slow
def test_existing_output_not_made_by_the_job_is_kept(capsys, tmp_path, clips, narrow_checkpoint):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.mp4").write_bytes(b"the user's own file")
    args = ["batch", clips / "videos" / "a.mp4", clips / "videos" / "c.mp4", "--audio", clips / "audio", "-o", out,
            "-c", narrow_checkpoint, "--json"]
    code, stdout, _ = cli(capsys, *args)
    summary = json.loads(stdout)
    assert code == 1 and summary["done"] == 1 and "did not make it" in summary["items"][0]["reason"]
    assert (out / "a.mp4").read_bytes() == b"the user's own file"
    code, stdout, _ = cli(capsys, *args, "--force")
    assert code == 0 and media.probe(out / "a.mp4").video.frame_count == 5


@pytest.mark.slow
def test_per_row_options_from_a_manifest(capsys, tmp_path, clips, narrow_checkpoint):
    """A clip with no face: its row asks on_no_face=error and fails; the same clip with the
    default passes through unchanged; a row's box is used."""
    write_frames(tmp_path / "blank.mp4", np.full((10, 64, 64, 3), 90, np.uint8))
    (tmp_path / "jobs.csv").write_text(
        "video,audio,output,on_no_face,box\n"
        f"blank.mp4,{clips / 'audio' / 'a.wav'},strict,error,\n"
        f"blank.mp4,{clips / 'audio' / 'a.wav'},lenient,,\n"
        f"blank.mp4,{clips / 'audio' / 'a.wav'},boxed,error,8 40 8 40\n")
    code, stdout, _ = cli(capsys, "batch", tmp_path / "jobs.csv", "-o", tmp_path / "out", "-c", narrow_checkpoint,
                          "--json")
    states = {it["item"]: it for it in json.loads(stdout)["items"]}
    assert code == 1
    assert states["strict.mp4"]["state"] == "failed" and "no face found in frame 0" in states["strict.mp4"]["reason"]
    assert states["lenient.mp4"]["state"] == "done" and states["boxed.mp4"]["state"] == "done"
    assert not (tmp_path / "out" / "strict.mp4").exists() and no_partials(tmp_path / "out")
    from conftest import decode_frames

    lenient, boxed = decode_frames(tmp_path / "out" / "lenient.mp4"), decode_frames(tmp_path / "out" / "boxed.mp4")
    assert np.abs(lenient.astype(int) - 90).max() <= 2
    inside = np.abs(boxed[:, 8:40, 8:40].astype(int) - 90).mean()
    outside = np.abs(boxed[:, 48:, 48:].astype(int) - 90).max()
    assert inside > 5 and outside <= 2


def test_writing_record_adopts_an_output_renamed_just_before_a_crash(tmp_path):
    out = tmp_path / "out"
    item = batch_mod.BatchItem("a.mp4", "v.mp4", "a.wav", str(out / "a.mp4"))
    touch(out / "a.mp4", "finished video bytes")
    log = batch_mod.JobLog(out / batch_mod.JOB_FOLDER, Shard(0, 1))
    log.append("a.mp4", "started")
    log.append("a.mp4", "writing", sha256=batch_mod.sha256_of(out / "a.mp4"))
    todo, settled, adopted = batch_mod.plan([item], out / batch_mod.JOB_FOLDER, False, False)
    assert todo == [] and adopted == [(item, batch_mod.sha256_of(out / "a.mp4"))]
    touch(out / "a.mp4", "changed since")  # not what the job wrote: not adopted, not overwritten
    todo, settled, adopted = batch_mod.plan([item], out / batch_mod.JOB_FOLDER, False, False)
    assert adopted == [] and settled[0].state == "failed" and "did not make it" in settled[0].reason
    with open(log.path, "a") as f:
        f.write('{"t": 1, "item": "a.mp4", "sta')  # a line cut short by a crash is ignored
    assert batch_mod.read_job(out / batch_mod.JOB_FOLDER)[-1]["state"] == "writing"


def _batch_command(videos: Path, audio: Path, out: Path, checkpoint: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "lipsync_cli.cli", "batch", str(videos), "--audio", str(audio), "-o", str(out),
            "-c", str(checkpoint), "-q", *extra]


@pytest.fixture(scope="module")
def many_clips(tmp_path_factory, clips) -> Path:
    folder = tmp_path_factory.mktemp("many")
    for i in range(8):
        (folder / f"clip{i}.mp4").symlink_to(clips / "videos" / f"{'abcd'[i % 4]}.mp4")
    return folder


@pytest.mark.slow
def test_sigkill_mid_batch_then_rerun_finishes_each_clip_once(tmp_path, many_clips, clips, narrow_checkpoint):
    out = tmp_path / "out"
    speech = clips / "audio" / "a.wav"
    proc = subprocess.Popen(_batch_command(many_clips, speech, out, narrow_checkpoint), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it once the first clips are done and others are in flight
        done = [r for r in log_records(out) if r["state"] == "done"] if (out / batch_mod.JOB_FOLDER).exists() else []
        if len(done) >= 2 or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the batch ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = batch_mod.latest_states(log_records(out))
    finished_before = {k for k, v in before.items() if v["state"] == "done"}
    assert 2 <= len(finished_before) < 8

    rerun = subprocess.run(_batch_command(many_clips, speech, out, narrow_checkpoint), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    records = log_records(out)
    states = batch_mod.latest_states(records)
    assert set(states) == {f"clip{i}.mp4" for i in range(8)} and all(v["state"] == "done" for v in states.values())
    done_count = Counter(r["item"] for r in records if r["state"] == "done")
    assert all(n == 1 for n in done_count.values())  # done exactly once
    started = Counter(r["item"] for r in records if r["state"] == "started")
    assert all(started[k] == 1 for k in finished_before)  # finished work was not redone
    for i in range(8):
        assert media.probe(out / f"clip{i}.mp4").video.frame_count == 5
        assert states[f"clip{i}.mp4"]["sha256"] == batch_mod.sha256_of(out / f"clip{i}.mp4")
    assert no_partials(out)


@pytest.mark.slow
def test_two_shard_processes_do_each_item_once_and_the_report_merges(capsys, tmp_path, many_clips, clips,
                                                                     narrow_checkpoint):
    out = tmp_path / "out"
    speech = clips / "audio" / "a.wav"
    procs = [subprocess.Popen(_batch_command(many_clips, speech, out, narrow_checkpoint, "--shard", f"{k}/2"),
                              stderr=subprocess.PIPE) for k in range(2)]
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    records = log_records(out)
    by_item = {}
    for r in records:
        by_item.setdefault(r["item"], set()).add(r["shard"])
    assert len(by_item) == 8 and all(len(s) == 1 for s in by_item.values())  # one shard per item
    assert Counter(r["item"] for r in records if r["state"] == "done") == Counter({f"clip{i}.mp4": 1 for i in range(8)})
    assert sorted(p.name for p in (out / batch_mod.JOB_FOLDER).iterdir()) == ["lock-0-of-2", "lock-1-of-2",
                                                                             "log-0-of-2.jsonl", "log-1-of-2.jsonl"]

    code, stdout, _ = cli(capsys, "batch", "--report", out, "--json")
    report = json.loads(stdout)
    assert code == 0 and report["counts"] == {"done": 8} and len(report["items"]) == 8
    assert {r["shard"] for r in report["items"]} == {"0/2", "1/2"}
    code, _, err = cli(capsys, "batch", "--report", tmp_path)
    assert code == 2 and "no batch job logs" in err


@pytest.mark.slow
def test_torchrun_environment_picks_the_shard(capsys, tmp_path, many_clips, clips, narrow_checkpoint, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    code, stdout, _ = cli(capsys, "batch", many_clips, "--audio", clips / "audio" / "a.wav", "-o", tmp_path / "o",
                          "-c", narrow_checkpoint, "--json")
    summary = json.loads(stdout)
    assert code == 0 and summary["shard"] == "1/3" and summary["device"] == "cpu"
    assert [it["item"] for it in summary["items"]] == ["clip1.mp4", "clip4.mp4", "clip7.mp4"]
    assert sorted(p.name for p in (tmp_path / "o").glob("*.mp4")) == ["clip1.mp4", "clip4.mp4", "clip7.mp4"]
