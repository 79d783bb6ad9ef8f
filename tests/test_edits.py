"""Edited footage end to end: composites of the real example clips cut as an editor would
(lipsync_cli.synth.edits: hard cuts, b-roll, a reaction shot, a voice off screen), dubbed with a
seeded random generator (a grey mouth), judged from pixels against the per-frame truth: every
face that speaks changed in its lower face, in every frame of its shots (the first and the last
included), and every other face and every frame without one left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lipsync_cli.cli import main
from lipsync_cli.synth.edits import EXAMPLES_CAST, build, example_sources, make_recipes

from conftest import EXAMPLES, decode_frames, ffmpeg

pytestmark = pytest.mark.slow

CHANGED, NOISE = 8.0, 2.5  # mean grey levels over a lower face: dubbed / untouched (crf 0)


SCALE = 0.5  # the 1280x720 composites are brought down to 640x360: a quarter of the pixels to code


@pytest.fixture(scope="module")
def edits(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    folder = tmp_path_factory.mktemp("edits")
    src = example_sources(EXAMPLES)
    out = {}
    for recipe in make_recipes(["reaction", "broll", "offscreen", "leftright"], src, EXAMPLES_CAST):
        truth = build(recipe, src, folder / f"{recipe.name}-720p.mp4").to_dict()
        path = folder / f"{recipe.name}.mp4"
        ffmpeg("-i", str(folder / f"{recipe.name}-720p.mp4"), "-vf", f"scale=iw*{SCALE}:ih*{SCALE}:flags=area",
               "-c:v", "libx264", "-crf", "4", "-c:a", "copy", str(path))
        for faces in truth["faces"]:
            for face in faces:
                face["box"] = [v * SCALE for v in face["box"]]
        out[recipe.kind] = (path, truth)
    return out


def lower_face(box) -> tuple[slice, slice]:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return slice((y1 + y2) // 2 + 2, y2 - 1), slice(x1 + 2, x2 - 2)


def judge(source: Path, dubbed: Path, truth: dict) -> dict:
    """Per frame, whether every face was treated as the truth says; and the frames that differ
    from the source far from every face (a change where nothing may change)."""
    before, after = decode_frames(source).astype(np.int16), decode_frames(dubbed).astype(np.int16)
    assert len(before) == len(after) == truth["frames"]
    wrong = []
    judged = 0
    for i, faces in enumerate(truth["faces"]):
        if i in truth.get("transition", []):
            continue
        judged += 1
        diff = np.abs(after[i] - before[i]).mean(axis=2)
        for face in faces:
            change = diff[lower_face(face["box"])].mean()
            if (face["dub"] and change < CHANGED) or (not face["dub"] and change > NOISE):
                wrong.append((i, face["source"], face["dub"], round(float(change), 1)))
        if not faces and diff.mean() > 0.5:
            wrong.append((i, "no face", False, round(float(diff.mean()), 2)))
    return {"wrong": wrong, "right": 1 - len({w[0] for w in wrong}) / judged}


def dub(video: Path, out: Path, checkpoint: Path, *extra: str) -> None:
    assert main(["dub", str(video), str(video), "-o", str(out), "-c", str(checkpoint), "--crf", "0", *extra]) == 0


@pytest.mark.parametrize("kind", ["reaction", "broll", "offscreen"])
def test_an_edited_clip_dubs_the_face_that_speaks_shot_by_shot(kind, edits, narrow_checkpoint, tmp_path, capsys):
    """reaction: the speaker, cut to a listener alone with still lips while the voice goes on, and
    back; broll: the speaker, b-roll without a face, the speaker elsewhere in the frame;
    offscreen: one shot of a person who talks, listens to a voice off screen, and talks again."""
    video, truth = edits[kind]
    out = tmp_path / f"{kind}.mp4"
    dub(video, out, narrow_checkpoint, "--json")
    result = json.loads(capsys.readouterr().out)
    judged = judge(video, out, truth)
    assert judged["right"] >= 0.98, judged["wrong"]  # the target, on every kind
    # the first and the last frame of every shot right (no flash of the original mouth at a cut)
    near_cuts = {c["frame"] + k for c in truth["cuts"] for k in (-1, 0)} | {0, truth["frames"] - 1}
    assert not [w for w in judged["wrong"] if w[0] in near_cuts]
    # every cut found but, in broll, the jump back in time of the same person at the same place
    # (a few pixels of head motion: nothing to tell it by, and nothing lost by missing it)
    assert len(truth["cuts"]) + 1 - (kind == "broll") <= result["shots"] <= len(truth["cuts"]) + 1
    assert result["speaker"] == "auto" and result["frames_without_face"] == sum(not f for f in truth["faces"])
    silent = sum(not face["dub"] for faces in truth["faces"] for face in faces) / truth["fps"]
    assert result["silent_faces_seconds"] == pytest.approx(silent, abs=0.1)


def test_the_summary_says_the_shots_and_the_faces_left_untouched(edits, narrow_checkpoint, tmp_path, capsys):
    video, truth = edits["reaction"]
    dub(video, tmp_path / "out.mp4", narrow_checkpoint)
    said = capsys.readouterr().err
    assert f"in {len(truth['cuts']) + 1} shots" in said
    assert "s of faces untouched because they did not speak (--speaker all dubs every face" in said


def test_batch_and_the_python_api_dub_an_edited_clip(edits, narrow_checkpoint, tmp_path):
    """Five shots alternating left and right (the case where the one-face tracker dubbed 28% of
    the frames): through batch and through the Python API, every frame right."""
    import lipsync_cli

    video, truth = edits["leftright"]
    assert main(["batch", str(video), "--audio", str(video), "-o", str(tmp_path / "batch"), "-c",
                 str(narrow_checkpoint), "--crf", "0", "--quiet"]) == 0
    assert judge(video, tmp_path / "batch" / f"{video.stem}.mp4", truth)["wrong"] == []
    model = lipsync_cli.load_model(narrow_checkpoint)
    result = lipsync_cli.dub(model, video, video, tmp_path / "api.mp4", crf=0)
    assert result.shots == len(truth["cuts"]) + 1
    assert judge(video, tmp_path / "api.mp4", truth)["wrong"] == []
