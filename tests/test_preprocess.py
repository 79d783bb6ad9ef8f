"""`lipsync preprocess` on real footage: videos cut into clips where a training window can live
(around b-roll and title cards, at pauses of a long take), each clip's source and span in the
report, the split (by time for one speaker, with a gap; at least one val clip), the sync filter;
and the README's three fine-tuning commands, from a folder of videos to a dub, end to end."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import EXAMPLES, ROOT, decode_frames, ffmpeg, write_frames
from lipsync_cli import audio as audio_mod
from lipsync_cli.cli import main
from lipsync_cli.datasets import PreprocessedData
from lipsync_cli.pipelines import clips
from lipsync_cli.pipelines.preprocess import ClipSpan, split_clips


def report_of(data: Path) -> tuple[dict[str, dict], dict]:
    """(video key -> its last report line, the last split line) of DATA/preprocess_report.jsonl."""
    lines = [json.loads(x) for x in (data / "preprocess_report.jsonl").read_text().splitlines()]
    return {r["video"]: r for r in lines if "video" in r}, [r for r in lines if "split" in r][-1]


def listed(data: Path, split: str) -> list[str]:
    return (data / "filelists" / f"{split}.txt").read_text().split()


def spans(data: Path) -> dict[str, tuple[float, float]]:
    """Clip key -> (start, end) seconds in its video, from the report."""
    videos, _ = report_of(data)
    return {c["clip"]: (c["start"], c["end"]) for r in videos.values() for c in r.get("clips", [])}


def check_clip_folders(data: Path, report: dict):
    """Every reported clip is a folder of `frames` crops numbered from 0 and its sound, which
    covers its frames (and at most TAIL_FRAMES more)."""
    import soundfile

    for c in report["clips"]:
        folder = data / c["clip"]
        assert c["frames"] == round((c["end"] - c["start"]) * 25)
        assert sorted(int(p.stem) for p in folder.glob("*.jpg")) == list(range(c["frames"]))
        seconds = soundfile.info(str(folder / "audio.wav")).duration
        assert c["frames"] / 25 <= seconds <= (c["frames"] + clips.TAIL_FRAMES) / 25 + 1e-6


def readme_commands() -> list[list[str]]:
    """The three commands of the README's fine-tuning recipe, as argument lists after `lipsync`."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Fine-tuning on your own footage"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [shlex.split(line) for line in block.splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [["lipsync", "preprocess"], ["lipsync", "train"], ["lipsync", "dub"]]
    return [c[1:] for c in commands]


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> Path:
    """A folder where the README's first command ran: my_videos/ holds two real example clips,
    flat (one speaker, as a folder of one person's videos is)."""
    folder = tmp_path_factory.mktemp("footage")
    (folder / "my_videos").mkdir()
    shutil.copy(EXAMPLES / "talk.mp4", folder / "my_videos" / "talk.mp4")
    shutil.copy(EXAMPLES / "talk2.mp4", folder / "my_videos" / "talk2.mp4")
    with contextlib.chdir(folder):
        assert main([*readme_commands()[0], "-q", "--device", "cpu"]) == 0
    return folder


def test_a_flat_folder_of_real_clips_gets_a_val_clip_and_the_split_is_named(footage, capsys):
    data = footage / "data"
    videos, split = report_of(data)
    assert set(videos) == {"_/talk", "_/talk2"} and all(r["state"] == "done" for r in videos.values())
    for key, r in videos.items():
        assert r["source"] == str(footage / "my_videos" / f"{key[2:]}.mp4")
        check_clip_folders(data, r)
    train, val = listed(data, "train"), listed(data, "val")
    assert train and val and not set(train) & set(val)
    assert sorted(train + val) == sorted(spans(data))
    assert split["split"] == "time" and "by time" in split["why"]
    seconds = {s: sum(e - b for k, (b, e) in spans(data).items() if k in listed(data, s)) for s in ("train", "val")}
    assert split["train"]["clips"] == len(train) and split["val"]["clips"] == len(val)
    assert split["train"]["seconds"] == pytest.approx(seconds["train"], abs=0.01)
    assert split["val"]["seconds"] == pytest.approx(seconds["val"], abs=0.01)
    assert len(PreprocessedData(data, "val")) == len(val)  # what `train` evaluates on

    # a rerun keeps both videos and says again how the split was made
    with contextlib.chdir(footage):
        assert main([*readme_commands()[0], "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "2 kept from before" in err and "split by time" in err and f"{len(val)} val" in err


def broll_video(out: Path, tmp: Path) -> Path:
    """talk2.mp4's first 2 s, 1.2 s of b-roll (a drifting view of a street of coloured blocks) and
    a 1 s title card under a narrator's voice, then talk2.mp4's last 2 s: 6.2 s, one file."""
    talk = decode_frames(EXAMPLES / "talk2.mp4")  # 100 frames, 256 x 256
    h, w = talk.shape[1:3]
    rng = np.random.default_rng(5)
    street = np.full((h, 3 * w, 3), 150, np.uint8)
    for _ in range(40):
        x, y = int(rng.integers(0, 3 * w - 40)), int(rng.integers(40, h - 20))
        cv2.rectangle(street, (x, y), (x + int(rng.integers(20, 60)), h), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    roll = np.stack([street[:, 8 * i:8 * i + w] for i in range(30)])
    card = np.full((25, h, w, 3), (60, 20, 20), np.uint8)
    for frame in card:
        cv2.putText(frame, "CHAPTER 2", (30, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 3)
    silent = write_frames(tmp / "broll_silent.mp4", np.concatenate([talk[:50], roll, card, talk[50:]]))
    own = audio_mod.load_audio(str(EXAMPLES / "talk2.mp4")).samples
    narrator = audio_mod.load_audio(str(EXAMPLES / "speech.wav")).samples
    audio_mod.write_wav(tmp / "broll.wav", np.concatenate([own[:32000], narrator[:55 * 640], own[32000:64000]]))
    ffmpeg("-i", str(silent), "-i", str(tmp / "broll.wav"), "-c:v", "copy", "-c:a", "aac", "-shortest", str(out))
    return out


def test_b_roll_and_a_title_card_cost_their_own_seconds_only(tmp_path):
    (tmp_path / "src").mkdir()
    broll_video(tmp_path / "src" / "vlog.mp4", tmp_path)
    data = tmp_path / "data"
    assert main(["preprocess", str(tmp_path / "src"), str(data), "-q", "--device", "cpu"]) == 0
    videos, _ = report_of(data)
    r = videos["_/vlog"]
    check_clip_folders(data, r)
    found = [(c["start"], c["end"]) for c in r["clips"]]
    assert any(end <= 2.0 and end - start >= 1.5 for start, end in found), found  # before the b-roll
    assert any(start >= 4.2 and end - start >= 1.5 for start, end in found), found  # after the title card
    assert all(end <= 2.0 or start >= 4.2 for start, end in found), found  # none shows b-roll or the card
    faceless = [s for s in r["left_out"] if s["reason"] == "no face"]
    assert len(faceless) == 1 and abs(faceless[0]["start"] - 2.0) <= 0.1 and abs(faceless[0]["end"] - 4.2) <= 0.1
    assert r["left_out_seconds"]["no face"] == pytest.approx(2.2, abs=0.1)


def test_a_single_long_video_gives_separated_train_and_val_clips(tmp_path):
    (tmp_path / "src").mkdir()
    # talk2.mp4 three times over: one 12 s take of one person, talking with short pauses
    ffmpeg("-stream_loop", "2", "-i", str(EXAMPLES / "talk2.mp4"), "-c", "copy", str(tmp_path / "src" / "take.mp4"))
    data = tmp_path / "data"
    assert main(["preprocess", str(tmp_path / "src"), str(data), "-q", "--device", "cpu"]) == 0
    videos, split = report_of(data)
    check_clip_folders(data, videos["_/take"])
    found = sorted(spans(data).items(), key=lambda kv: kv[1])
    assert len(found) >= 3
    for (_, (s0, e0)), (_, (s1, e1)) in zip(found, found[1:]):
        assert s1 - e0 >= clips.GAP_FRAMES / 25 - 1e-6  # no two clips touch
    assert all(1.0 <= e - s <= 6.0 for _, (s, e) in found)
    assert videos["_/take"]["left_out_seconds"].get("pause", 0) > 0  # cut at pauses of the speech
    train, val = listed(data, "train"), listed(data, "val")
    assert train and val
    last_train = max(spans(data)[k][1] for k in train)
    first_val = min(spans(data)[k][0] for k in val)
    assert first_val - last_train >= clips.GAP_FRAMES / 25 - 1e-6  # val is later, apart from every train clip
    assert split["split"] == "time" and split["gap_seconds"] == pytest.approx(first_val - last_train, abs=1e-3)


def test_a_jump_cut_against_one_wall_ends_a_clip(tmp_path):
    """Two takes of one synthetic person before the same background, the face elsewhere and
    larger in the second: the shot detector cannot see that cut (asserted), the face's jump ends
    the clip, so no clip holds frames of both takes."""
    from lipsync_cli.faces.shots import ShotDetector
    from lipsync_cli.synth import corpus

    spec = corpus.CorpusSpec(clips=2, layout="videos", scene=(256, 256))
    takes = [corpus.render_clip(spec, corpus.ClipPlan(i, f"take{i}", "train", 0, 0, tuple(corpus.WORDS[:4])))
             for i in (1, 6)]
    frames = np.concatenate([t.frames for t in takes])
    cut = len(takes[0].frames)
    shots = ShotDetector(fps=25)
    assert [s for f in frames for s in shots.push(f)] + shots.flush() == []
    sound = np.concatenate([np.pad(t.audio, (0, len(t.frames) * 640))[:len(t.frames) * 640] for t in takes])
    (tmp_path / "src").mkdir()
    audio_mod.write_wav(tmp_path / "takes.wav", sound)
    write_frames(tmp_path / "silent.mp4", frames)
    ffmpeg("-i", str(tmp_path / "silent.mp4"), "-i", str(tmp_path / "takes.wav"), "-c:v", "copy", "-c:a", "aac",
           str(tmp_path / "src" / "vlog.mp4"))
    data = tmp_path / "data"
    assert main(["preprocess", str(tmp_path / "src"), str(data), "-q", "--device", "cpu"]) == 0
    videos, _ = report_of(data)
    r = videos["_/vlog"]
    check_clip_folders(data, r)
    found = [(round(c["start"] * 25), round(c["end"] * 25)) for c in r["clips"]]
    assert all(end <= cut - clips.MARGIN_FRAMES or start >= cut + clips.MARGIN_FRAMES for start, end in found), found
    assert any(end <= cut for _, end in found) and any(start >= cut for start, _ in found), found  # a clip of each take


def test_jumps_of_the_followed_face_split_its_track():
    box = np.array([100.0, 100.0, 200.0, 200.0])
    boxes = np.stack([box + [1.5 * i, 0, 1.5 * i, 0] for i in range(12)])  # a face drifting 1.5% a frame
    boxes[6:] += [30, 0, 30, 0]  # then 30% of its width in one frame: a jump cut
    boxes[9:] = [80, 80, 230, 230]  # and bigger by 1.5 (a punch-in)
    track = np.array([0] * 10 + [-1, 1])
    assert clips.split_at_jumps(track, boxes).tolist() == [0] * 6 + [2] * 3 + [3, -1, 1]
    assert clips.split_at_jumps(np.zeros(12, int), np.tile(box, (12, 1))).tolist() == [0] * 12


def test_clip_rules_on_a_timeline():
    """Runs of one track, margins at cuts, a pause cut, a cut in speech without a pause, scraps."""
    n = 600
    track = np.zeros(n, int)
    track[100:130] = -1  # no face for 1.2 s
    track[250:] = 1  # another face takes over
    track[590:] = -1  # lost again 0.4 s before the end
    voiced = np.ones(n, bool)
    voiced[330:333] = False  # too short a pause to cut at
    voiced[520:526] = False  # a pause
    cut = clips.cut_clips(track, voiced, frames_with_sound=n)
    assert cut.clips == [(0, 97), (133, 247), (253, 403), (408, 520), (526, 587)]
    assert cut.tracks == [0, 0, 1, 1, 1]
    assert cut.left_out == {"no face": 40, "cut margin": 3 * 5 + 5, "pause": 6}
    assert cut.skipped == [(100, 130, "no face"), (590, 600, "no face")]
    # no sound past frame 500; a piece under a second is left out
    cut = clips.cut_clips(track, voiced, frames_with_sound=500)
    assert cut.clips[-1] == (408, 497) and cut.skipped[-1] == (500, 600, "no sound")
    # 6.56 s of speech without a pause: two halves, rather than 6 s and a scrap
    assert clips.cut_clips(np.zeros(164, int), np.ones(164, bool)).clips == [(0, 79), (84, 164)]
    short = clips.cut_clips(np.array([0] * 20 + [-1] * 10 + [0] * 40), np.ones(70, bool))
    assert short.clips == [(33, 70)] and short.skipped == [(0, 17, "too short"), (20, 30, "no face")]


def test_the_split_rules():
    def clip(video, start, end, i=0):
        return ClipSpan(f"{video}/{i:03d}", video, start, end)

    # several speakers: whole speakers on each side, at least one each way whatever the share
    many = [clip(f"spk{s}/v{v}", 0, 3) for s in range(3) for v in range(2)]
    for share in (0.0, 0.1, 1.0):
        split = split_clips(many, share)
        sides = {s: {split.of_clip[c.key] for c in many if c.video.startswith(f"spk{s}/")} for s in range(3)}
        assert split.rule == "speaker" and all(len(v) == 1 for v in sides.values())
        assert set.union(*sides.values()) == {"train", "val"}
    # one speaker: the end of the footage, at least one val clip, the gap reported
    take = [clip("_/a", 0, 4, 0), clip("_/a", 4.3, 9, 1), clip("_/a", 9.5, 11, 2), clip("_/b", 0, 2)]
    split = split_clips(take, 0.25)
    assert [split.of_clip[c.key] for c in take] == ["train", "train", "val", "val"] and split.gap == pytest.approx(0.5)
    split = split_clips(take[:2], 0.0)
    assert [split.of_clip[c.key] for c in take[:2]] == ["train", "val"] and split.gap == pytest.approx(0.3)
    assert split_clips(take[:1], 0.5).of_clip == {"_/a/000": "train"}  # one clip: nothing to hold out
    # LRS2's lists: as they are
    split = split_clips(many[:2], 0.1, {"spk0/v0": "val", "spk0/v1": "train"})
    assert split.rule == "lrs2 lists" and split.of_clip == {"spk0/v0/000": "val", "spk0/v1/000": "train"}


def test_sync_filter_reports_each_offset_and_leaves_out_the_clips_beyond(footage, random_expert, tmp_path):
    data = tmp_path / "data"
    args = ["preprocess", str(footage / "my_videos"), str(data), "-q", "--device", "cpu",
            "--sync-filter", str(random_expert)]
    assert main([*args, "--max-offset", "15"]) == 0  # every offset is within 15: all kept, each measured
    videos, _ = report_of(data)
    measured = {c["clip"]: c["sync"] for r in videos.values() for c in r["clips"]}
    assert measured.keys() == spans(footage / "data").keys()
    assert all(isinstance(s["offset"], int) and -15 <= s["offset"] <= 15 and s["confidence"] >= 0
               for s in measured.values())
    shutil.rmtree(data)
    assert main([*args, "--max-offset", "0"]) == 0  # the same measures, kept only at offset 0
    videos, _ = report_of(data)
    kept = {c["clip"] for r in videos.values() for c in r.get("clips", [])}
    assert kept == {k for k, s in measured.items() if s["offset"] == 0}
    dropped = [s for r in videos.values() for s in r.get("left_out", []) if s["reason"] == "out of sync"]
    assert sorted(s["sync"]["offset"] for s in dropped) == sorted(s["offset"] for s in measured.values() if s["offset"])
    assert all(not (data / k).exists() for k in measured.keys() - kept)


def test_sync_filter_with_syncnet_v2_measures_as_eval_sync_does(tmp_path, capsys):
    """The evaluation SyncNet on the published pipeline's crops of each clip: on a clip that is the
    whole video, the figures of `lipsync eval sync` (its own face track: within a few hundredths)."""
    from lipsync_cli.models.syncnet_v2 import EvalSyncNet

    torch.manual_seed(0)
    v2 = tmp_path / "syncnet_v2.model"
    torch.save(EvalSyncNet().state_dict(), v2)  # the published file is a bare state_dict
    (tmp_path / "src").mkdir()
    shutil.copy(EXAMPLES / "talk.mp4", tmp_path / "src" / "talk.mp4")
    data = tmp_path / "data"
    assert main(["preprocess", str(tmp_path / "src"), str(data), "-q", "--device", "cpu", "--sync-filter", str(v2),
                 "--max-offset", "15"]) == 0
    videos, _ = report_of(data)
    assert videos["_/talk"]["sync_model"] == {"kind": "syncnet_v2_evaluation", "max_offset": 15}
    (clip,) = videos["_/talk"]["clips"]
    assert (clip["start"], clip["end"]) == (0, 2)
    capsys.readouterr()
    assert main(["eval", "sync", str(tmp_path / "src" / "talk.mp4"), "--syncnet", str(v2), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)["videos"][0]
    assert clip["sync"]["offset"] == evaluated["offset"]
    assert clip["sync"]["distance"] == pytest.approx(evaluated["lse_d"], abs=0.05)
    assert clip["sync"]["confidence"] == pytest.approx(evaluated["lse_c"], abs=0.02)


def test_a_missing_sync_model_or_recipe_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LIPSYNC_WEIGHTS", str(tmp_path / "weights"))
    (tmp_path / "src").mkdir()
    shutil.copy(EXAMPLES / "talk.mp4", tmp_path / "src" / "talk.mp4")
    assert main(["preprocess", str(tmp_path / "src"), str(tmp_path / "data"), "--sync-filter", "lipsync_expert"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lipsync_expert.pth" in err and "--sync-filter" in err
    assert not (tmp_path / "data").exists()
    assert main(["train", "wav2lip", str(tmp_path / "data"), "-o", str(tmp_path / "run"), "--config", "finetun"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such config file" in err and "finetune" in err


@pytest.mark.slow
def test_the_readme_fine_tuning_commands_run_end_to_end(footage, narrow_checkpoint, random_expert, monkeypatch):
    """Command 1 ran in the fixture; 2 and 3 run here as the README writes them, with the
    published weights' names resolved in a weights folder holding seeded random stand-ins (an
    eighth-width generator, a quarter-width expert) and tiny settings added."""
    weights = footage / "weights"
    weights.mkdir(exist_ok=True)
    shutil.copy(narrow_checkpoint, weights / "wav2lip_gan.pth")
    shutil.copy(random_expert, weights / "lipsync_expert.pth")
    monkeypatch.setenv("LIPSYNC_WEIGHTS", str(weights))
    shutil.copy(EXAMPLES / "talk.mp4", footage / "new_clip.mp4")
    shutil.copy(EXAMPLES / "speech.wav", footage / "new_speech.wav")
    _, train, dub = readme_commands()
    tiny = ["--width", "0.125", "--steps", "2", "--batch-size", "2", "--eval-every", "1", "--eval-batches", "1",
            "--workers", "0", "--device", "cpu", "-q"]
    with contextlib.chdir(footage):
        assert main([*train, *tiny]) == 0
        run = Path(train[train.index("-o") + 1])
        config = json.loads((run / "config.json").read_text())
        assert (config["lr"], config["gan"], config["sync_switch"], config["steps"]) == (1e-5, False, float("inf"), 2)
        metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert [m["sync_weight"] for m in metrics if "sync_weight" in m] == [0.03, 0.03]  # the sync loss from step 1
        assert main([*dub, "--device", "cpu", "-q"]) == 0
        out = Path(dub[dub.index("-o") + 1])
        assert len(decode_frames(out)) == 75  # the 3 s of new speech
