"""Shots: the boundaries found in real frames (a hard cut on its frame, a fade, no cut in a pan, a
zoom or a flash), and faces followed shot by shot: no track, smoothing or interpolation across a
cut, each shot's first and last frame detected."""

from __future__ import annotations

import numpy as np
import pytest

from lipsync_cli import media
from lipsync_cli.faces import DetectorPool
from lipsync_cli.faces.shots import ShotDetector, shot_index
from lipsync_cli.faces.speakers import FacePlan, SpeakerOptions, SpeakerReport, Track, find_tracks, same_place_groups, same_place_runs

from conftest import EXAMPLES, decode_frames, write_frames

W, H = 480, 270  # the stage the clips are put on


def on_stage(frames: np.ndarray, x: int, y: int = 7, grey: int = 40) -> np.ndarray:
    out = np.full((len(frames), H, W, 3), grey, np.uint8)
    out[:, y:y + frames.shape[1], x:x + frames.shape[2]] = frames
    return out


@pytest.fixture(scope="module")
def clips():
    return {name: decode_frames(EXAMPLES / f"{name}.mp4") for name in ("talk", "talk2", "listener")}


def starts_found(frames) -> list[int]:
    shots = ShotDetector(25)
    found = []
    for f in frames:
        found += shots.push(f)
    return found + shots.flush()


def test_a_hard_cut_is_found_on_its_frame(clips):
    # a jump cut between two people at the same place, then a cut to one on the other side
    frames = np.concatenate([on_stage(clips["talk2"][:40], 20), on_stage(clips["talk"][:30], 20),
                             on_stage(clips["talk2"][40:80], 200)])
    assert starts_found(frames) == [40, 70]
    assert [shot_index([40, 70], f) for f in (0, 39, 40, 69, 70, 99)] == [0, 0, 1, 1, 2, 2]


def test_a_fade_through_black_is_one_boundary_and_a_pan_a_zoom_or_a_flash_none(clips):
    a, b = on_stage(clips["talk2"][:30], 20), on_stage(clips["talk"][:30], 200)
    ramp = np.linspace(1, 0, 10)[:, None, None, None]
    fade = np.concatenate([a, (a[-10:] * ramp).astype(np.uint8), np.zeros((5, H, W, 3), np.uint8),
                           (b[:10] * ramp[::-1]).astype(np.uint8), b])
    found = starts_found(fade)
    assert len(found) == 1 and 30 <= found[0] <= 55  # within the fade's span
    # a pan: the camera moves 6 pixels a frame over a wide stage; a slow zoom in; a one-frame flash
    wide = np.full((len(clips["talk2"]), H, 2 * W, 3), 40, np.uint8)
    wide[:, 7:263, 300:556] = clips["talk2"]
    pan = np.stack([wide[k, :, 6 * k:6 * k + W] for k in range(60)])
    assert starts_found(pan) == []
    zoom = []
    for k in range(60):
        s = 1 + 0.01 * k
        crop = on_stage(clips["talk2"][k:k + 1], 112)[0][int(H / 2 - H / 2 / s):int(H / 2 + H / 2 / s),
                                                         int(W / 2 - W / 2 / s):int(W / 2 + W / 2 / s)]
        import cv2

        zoom.append(cv2.resize(crop, (W, H)))
    assert starts_found(zoom) == []
    flash = on_stage(clips["talk2"][:60], 20)
    flash[30] = np.clip(flash[30].astype(int) + 120, 0, 255).astype(np.uint8)
    assert starts_found(flash) == []


@pytest.fixture(scope="module")
def jump_cut(clips, tmp_path_factory):
    """Two people filmed at the same place in consecutive shots (the trap for a tracker that only
    looks at overlap), then the first again on the other side: cuts at 40 and 71."""
    frames = np.concatenate([on_stage(clips["talk2"][:40], 112), on_stage(clips["talk"][:31], 112),
                             on_stage(clips["talk2"][40:90], 220)])
    return write_frames(tmp_path_factory.mktemp("jump") / "jump.mp4", frames)


def test_tracks_end_at_every_cut_and_reach_each_shots_first_and_last_frame(jump_cut):
    info = media.probe(str(jump_cut))
    tracks, shots, frames, _ = find_tracks(info, DetectorPool("retinaface"), SpeakerOptions(detect_every=4))
    assert shots == [0, 40, 71] and frames == 121
    spans = [(t.first, t.last, t.shot) for t in tracks]
    assert spans == [(0, 39, 0), (40, 70, 1), (71, 120, 2)]  # 39, 70: sampled every 4th they would end early
    # the boxes of consecutive shots at the same place are not blended: each shot's own detections
    assert abs(tracks[1].boxes[0][1] - tracks[0].boxes[-1][1]) > 3 or abs(tracks[1].boxes[0][3] - tracks[0].boxes[-1][3]) > 3


def test_the_plan_smooths_within_a_shot_only(jump_cut):
    info = media.probe(str(jump_cut))
    tracks, shots, frames, _ = find_tracks(info, DetectorPool("retinaface"), SpeakerOptions())
    report = SpeakerReport(video=str(jump_cut), audio=None, weights="", frames=frames, fps=info.video.fps,
                           width=W, height=H, tracks=tracks, shots=shots, dubbed=[()] * frames, speech=False)
    plan = FacePlan(report, "auto")
    assert not plan.by_speech  # no sound compared: the largest face of every frame
    for j in range(frames):
        assert len(plan.boxes(j)) == 1  # every frame, the first and last of each shot included
    # the box just after the cut to the other side is on that side: nothing averaged over the cut
    assert plan.boxes(71)[2][0] > 220 and plan.boxes(70)[1][2] < 112 + 256
    smoothed = FacePlan(report, "auto", smooth=True).boxes(39)[0]
    assert smoothed == pytest.approx(tuple(tracks[0].boxes[-5:].mean(axis=0)), abs=1e-3)


def test_faces_at_one_place_over_jump_cuts_form_one_run_for_the_synchrony_cues():
    """Tracks end at every cut, but the speech cues of a face that goes on at the same place after
    a jump cut keep their context: tracks are chained one to one, a face elsewhere or after a gap is not."""
    def track(index, first, n, x, shot):
        t = Track(index=index, first=first, boxes=np.tile(np.float32([x, 10, x + 50, 60]), (n, 1)), shot=shot)
        t.scored_first, t.asd = first, np.zeros(n, np.float32)
        return t

    a0, b0 = track(0, 0, 40, 0, 0), track(1, 0, 40, 200, 0)
    a1, b1 = track(2, 40, 30, 2, 1), track(3, 40, 30, 200, 1)  # the same places after the cut at 40
    c2 = track(4, 70, 30, 100, 2)  # someone else, elsewhere, after the cut at 70
    a3 = track(5, 105, 20, 2, 3)  # back at the first place, but not on the frame after a track ended
    tracks = [c2, a1, b0, a3, a0, b1]
    runs = same_place_runs(tracks)
    assert sorted([t.index for t in run] for run in runs) == [[0, 2], [1, 3], [4], [5]]
    # shots 0 and 1 (a jump cut, both faces at their places) are one stretch for who leads;
    # the cut to someone else, and the return after a gap, are not
    groups = same_place_groups(tracks, runs)
    faces = sorted(sorted([t.index for t in face] for face in group) for group in groups)
    assert faces == [[[0, 2], [1, 3]], [[4]], [[5]]]
    lone = track(6, 40, 30, 2, 1)  # after the cut only one of the two faces goes on: not joined
    runs = same_place_runs([a0, b0, lone])
    assert sorted(len(g) for g in same_place_groups([a0, b0, lone], runs)) == [1, 2]


@pytest.mark.parametrize("fps", ["25", "30"])
def test_scores_from_the_one_decode_equal_crops_from_a_25_fps_decode(clips, tmp_path, fps):
    """Light-ASD's crops are cut from the frames the shot and face pass decodes, held until each
    track's boxes are known 13 frames around them: the scores equal those of the whole track's
    crops cut from the clip decoded again at 25 fps (ffmpeg's fps filter picks the frames), as
    light_asd.crop_geometry and speaking_scores give them; cuts and a 30 fps clip included."""
    from fractions import Fraction

    from lipsync_cli import audio
    from lipsync_cli.faces.speakers import find_speakers, load_detector
    from lipsync_cli.models import light_asd

    frames = np.concatenate([on_stage(clips["talk2"][:60], 112), on_stage(clips["talk"][:45], 200),
                             on_stage(clips["talk2"][60:110], 20)])
    video = write_frames(tmp_path / "cuts.mp4", frames, fps=fps)
    speech = EXAMPLES / "speech.wav"
    net = load_detector("light_asd_talkset")
    report = find_speakers(str(video), str(speech), SpeakerOptions(), net=net)
    assert len(report.shots) == 3 and len([t for t in report.tracks if t.asd is not None]) == 3
    info = media.probe(str(video))
    size = (info.video.width, info.video.height)
    again = np.concatenate(list(media.FrameReader(info, chunk=32, fps=Fraction(25), size=size)))
    samples = audio.load_audio(str(speech)).samples
    scored_frames = int(np.ceil(report.frames * 25 / float(info.video.fps)))
    mfcc = light_asd.mfcc_for(samples, frames=scored_frames)
    for t in report.tracks:
        span = [a for a in range(scored_frames)
                if t.first <= min(report.frames - 1, round(a * float(info.video.fps) / 25)) <= t.last]
        assert t.scored_first == span[0] and len(t.asd) == len(span)
        boxes = t.boxes[[min(report.frames - 1, round(a * float(info.video.fps) / 25)) - t.first for a in span]]
        crops = np.stack([light_asd.crop_face(again[a], *g) for a, g in zip(span, light_asd.crop_geometry(boxes))])
        want = light_asd.speaking_scores(net, crops, mfcc[4 * span[0]:4 * (span[-1] + 1)], SpeakerOptions().windows)
        np.testing.assert_allclose(t.asd, want, atol=1e-5)


def test_a_shot_too_short_for_light_asd_is_left_unscored(clips, tmp_path):
    """A 6-frame shot (the shortest there is) holds a face track too short for Light-ASD's
    13-frame median: it is tracked but not scored, and the rest of the clip is."""
    from lipsync_cli.faces.speakers import find_speakers

    frames = np.concatenate([on_stage(clips["talk2"][:40], 112), on_stage(clips["talk"][:6], 200),
                             on_stage(clips["talk2"][40:80], 20)])
    video = write_frames(tmp_path / "flash.mp4", frames)
    report = find_speakers(str(video), str(EXAMPLES / "speech.wav"), SpeakerOptions())
    assert report.shots == [0, 40, 46]
    short = [t for t in report.tracks if t.shot == 1]
    assert len(short) == 1 and len(short[0].boxes) == 6 and np.isnan(short[0].score).all()
    assert all(t.asd is not None and len(t.asd) == len(t.boxes) for t in report.tracks if t.shot != 1)


def test_the_plan_does_not_smooth_across_a_jump_the_shot_detector_missed(tmp_path):
    """Two takes of one synthetic person before one background, the face elsewhere and larger in
    the second: no shot boundary is found (asserted), one track follows the face across; the boxes
    dub pastes stop their smoothing at the jump, so the frames before it stay on the face."""
    from lipsync_cli.faces.track import jump_starts, smooth_boxes
    from lipsync_cli.synth import corpus

    spec = corpus.CorpusSpec(clips=2, layout="videos", scene=(256, 256))
    takes = [corpus.render_clip(spec, corpus.ClipPlan(i, f"take{i}", "train", 0, 0, tuple(corpus.WORDS[:4])))
             for i in (1, 6)]
    cut = len(takes[0].frames)
    video = write_frames(tmp_path / "takes.mp4", np.concatenate([t.frames for t in takes]))
    info = media.probe(str(video))
    tracks, shots, frames, _ = find_tracks(info, DetectorPool("retinaface"), SpeakerOptions())
    assert shots == [0] and len(tracks) == 1  # the cut is not seen, the face followed across it
    report = SpeakerReport(video=str(video), audio=None, weights="", frames=frames, fps=info.video.fps,
                           width=256, height=256, tracks=tracks, shots=shots, dubbed=[()] * frames, speech=False)
    plan = FacePlan(report, "largest")
    truth = [t.truth["boxes"][k] for t in takes for k in range(len(t.frames))]

    def off(box, j):  # the box's centre from the rendered face's, in face widths (a detected box sits 0.08-0.12 off it)
        x1, y1, x2, y2 = truth[j]
        return np.hypot((box[0] + box[2] - x1 - x2) / 2, (box[1] + box[3] - y1 - y2) / 2) / (x2 - x1)

    raw = [tuple(b) for b in tracks[0].boxes]
    unbroken = smooth_boxes(raw)  # as before: the window of the last frames reaches over the cut
    assert max(off(unbroken[j], j) for j in range(cut - 4, cut - 1)) > 0.3
    assert any(cut - 2 <= j <= cut for j in jump_starts(raw))
    assert max(off(plan.boxes(j)[0], j) for j in range(cut - 4, cut - 1)) < 0.15  # the frames before it
    assert max(off(plan.boxes(j)[0], j) for j in range(cut + 1, cut + 5)) < 0.15  # and after it
    # a talking head's own motion is no jump: the sample clip, detected every 2nd frame
    talk = write_frames(tmp_path / "talk.mp4", decode_frames(EXAMPLES / "talk2.mp4"))
    tracks, *_ = find_tracks(media.probe(str(talk)), DetectorPool("retinaface"), SpeakerOptions())
    assert [jump_starts([tuple(b) for b in t.boxes]) for t in tracks] == [[]]
