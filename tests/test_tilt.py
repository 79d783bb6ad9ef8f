"""Tilted heads: the roll read from real frames turned by known angles, the crop along the head and
its way back, and rolled real clips dubbed end to end (the eyes and everything above the mask
unchanged, the mouth changed; an upright clip as before; --box and --paste hard never turn)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lipsync_cli.cli import main
from lipsync_cli.faces import DetectorPool, align
from lipsync_cli.faces.paste import FEATHER_FROM, BoxPaster, first_blended_row

from conftest import EXAMPLES, decode_frames, write_frames

SIDE = 448  # the canvas the 256x256 example clip is turned on
NOISE = 8  # grey levels: the lossless output of a decoded input


def turned(frames: np.ndarray, degrees: float) -> np.ndarray:
    """The frames on a grey canvas, turned clockwise on screen by `degrees` about its centre."""
    out = np.full((len(frames), SIDE, SIDE, 3), 60, np.uint8)
    o = (SIDE - frames.shape[1]) // 2
    out[:, o:o + frames.shape[1], o:o + frames.shape[2]] = frames
    m = cv2.getRotationMatrix2D((SIDE / 2, SIDE / 2), -degrees, 1.0)  # OpenCV turns counter-clockwise
    return np.stack([cv2.warpAffine(f, m, (SIDE, SIDE), flags=cv2.INTER_LINEAR, borderValue=(60, 60, 60))
                     for f in out])


@pytest.fixture(scope="module")
def talk():
    return decode_frames(EXAMPLES / "talk.mp4")[:40]


@pytest.fixture(scope="module")
def detectors():
    return DetectorPool("retinaface")


def read_face(detectors, frame):
    """(roll, eyes (2, 2), mouth centre) of the largest face, the roll read again upright."""
    det = max(detectors(SIDE).detect([frame])[0], key=lambda d: d.area)
    upright = align.upright_face(detectors, frame, det, SIDE)
    roll = upright[0] if upright else align.roll_degrees(det.landmarks)
    return roll, det.landmarks[:2], det.landmarks[3:5].mean(axis=0)


@pytest.mark.parametrize("degrees", [15, 30, 40, -30])
def test_the_roll_is_read_within_2_degrees(talk, detectors, degrees):
    frames = talk[::5]
    upright = np.median([read_face(detectors, f)[0] for f in turned(frames, 0)])
    rolled = np.median([read_face(detectors, f)[0] for f in turned(frames, degrees)])
    assert abs(rolled - upright - degrees) <= 2.0


@pytest.mark.parametrize("degrees", [30, -30, 40])
def test_a_leaning_face_is_framed_as_the_detector_frames_it_upright(talk, detectors, degrees):
    """Its box is read again on the whole frame turned upright, at the size the face was found
    at: width and height within 1.5% of the upright face's box (the close view that reads the
    roll frames it 2-4% larger, which the generator sees)."""
    def sides(frames):
        out = []
        for f in frames:
            det = max(detectors(SIDE).detect([f])[0], key=lambda d: d.area)
            upright = align.upright_face(detectors, f, det, SIDE)
            out.append(upright[1][2:] if upright else (det.width, det.height))
        return np.array(out)

    frames = talk[::5]
    ratio = np.median(sides(turned(frames, degrees)) / sides(turned(frames, 0)), axis=0)
    assert np.all(np.abs(ratio - 1) <= 0.015), ratio


@pytest.mark.parametrize("degrees", [0, 30])
def test_the_roll_of_a_face_found_without_landmarks_is_read_too(talk, detectors, degrees):
    """A detector without landmarks (S3FD): the face is looked at as it stands by RetinaFace, then
    turned by what that shows."""
    from lipsync_cli.faces.base import Detection

    frames = talk[::10]
    def reading(f):
        det = max(detectors(SIDE).detect([f])[0], key=lambda d: d.area)
        return align.upright_face(detectors, f, Detection(det.box, det.score), SIDE)[0]  # the box only

    upright = np.median([read_face(detectors, f)[0] for f in turned(frames, 0)])
    assert abs(np.median([reading(f) for f in turned(frames, degrees)]) - upright - degrees) <= 2.0


def test_only_a_leaning_face_is_looked_at_twice_and_a_small_roll_turns_nothing():
    from lipsync_cli.faces.base import Detection

    def refused(size):
        raise AssertionError("an upright face was detected again")

    eyes = np.array([[100.0, 100.0], [140.0, 103.0], [120.0, 120.0], [105.0, 140.0], [135.0, 141.0]])  # 4.3 degrees
    face = Detection((80.0, 60.0, 160.0, 160.0), 0.99, eyes)
    assert align.upright_face(refused, np.zeros((200, 200, 3), np.uint8), face, 200) is None
    below, full = align.UPRIGHT_BELOW, align.TURNED_FROM
    assert align.applied_roll(below - 0.5) == 0.0 and align.applied_roll(-full - 10) == -full - 10
    middle = (below + full) / 2
    assert 0 < align.applied_roll(middle) < middle  # a share of it between the two: no jump


def test_warp_at_roll_0_is_the_resize_of_the_padded_box(talk):
    frame = turned(talk[:1], 0)[0]
    x1, y1, x2, y2, pads = 120, 90, 300, 320, (0, 10, 0, 0)
    warp = align.head_warp(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), 0.0, pads, 96)
    crop = align.turned_crop(frame, warp, 96)
    want = cv2.resize(frame[y1:y2 + 10, x1:x2], (96, 96))
    assert np.abs(crop.astype(int) - want).max() <= 1


def test_warp_and_inverse_warp_return_the_frame(talk):
    """A crop at the frame's own scale put back through the inverse warp gives the frame again:
    exactly when upright (the warp is a shift), within the blur of two bilinear resamplings when
    turned; and nothing changes outside the mask, above FEATHER_FROM of the box in the face's axes."""
    head = (SIDE / 2, SIDE / 2, 220.0, 220.0)
    for roll in (0.0, 25.0, -40.0):
        frame = turned(talk[:1], roll)[0]
        warp = align.head_warp(head, roll, (0, 0, 0, 0), 220)
        back = BoxPaster("feather").turned(frame, warp, align.turned_crop(frame, warp, 220))
        diff = np.abs(back.astype(int) - frame).max(axis=2)
        if roll == 0:
            assert not diff.any()
        else:
            assert diff.mean() < 0.5 and np.percentile(diff[diff > 0], 99) <= 16
        grey = np.full((220, 220, 3), 128, np.uint8)
        changed = np.abs(BoxPaster("feather").turned(frame, warp, grey).astype(int) - frame).max(axis=2) > 0
        ys, xs = np.nonzero(changed)
        rows = warp[1, 0] * xs + warp[1, 1] * ys + warp[1, 2]  # the crop's row of each changed pixel
        assert rows.min() >= FEATHER_FROM * 220 - 1.5


@pytest.mark.parametrize("roll", [20.0, -35.0])
def test_the_turned_paste_shows_nothing_above_its_first_blended_row(roll):
    """Why dub may leave those rows of a turned face ungenerated too."""
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    face = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    other = face.copy()
    first = first_blended_row("feather", 96)
    other[:first] = 255 - other[:first]
    warp = align.head_warp((200.0, 200.0, 150.0, 170.0), roll, (0, 10, 0, 0), 96)
    paster = BoxPaster("feather")
    assert np.array_equal(paster.turned(frame, warp, face), paster.turned(frame, warp, other))


def dubbed(tmp_path, frames, name, checkpoint, *flags):
    video = write_frames(tmp_path / f"{name}.mp4", frames)
    out = tmp_path / f"{name}{''.join(flags)}-out.mp4"
    assert main(["dub", str(video), str(EXAMPLES / "speech.wav"), "-c", str(checkpoint), "-o", str(out), "--crf", "0",
                 "--quiet", *flags]) == 0
    return decode_frames(video), decode_frames(out)


def above_the_eyes_and_mouth(detectors, inp, out):
    """Per frame: the largest change on the eyes' side of a line parallel to the eyes, 0.25 of
    their distance below them (the eyes, the brows, everything above), and the mean change
    around the mouth."""
    above, mouth = [], []
    for a, b in zip(inp, out):
        roll, eyes, centre = read_face(detectors, a)
        diff = np.abs(b.astype(int) - a).mean(axis=2)
        t = np.radians(roll)
        down = np.array([-np.sin(t), np.cos(t)])
        dist = float(np.hypot(*(eyes[1] - eyes[0])))
        yy, xx = np.mgrid[:a.shape[0], :a.shape[1]]
        side = (xx - eyes.mean(axis=0)[0]) * down[0] + (yy - eyes.mean(axis=0)[1]) * down[1]
        above.append(float(diff[side < 0.25 * dist].max()))
        near = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= (0.2 * dist) ** 2
        mouth.append(float(diff[near].mean()))
    return np.array(above), np.array(mouth)


@pytest.mark.slow
def test_a_rolled_clip_keeps_its_eyes_and_changes_its_mouth(tmp_path, talk, detectors, narrow_checkpoint):
    frames = turned(talk, 30)
    inp, out = dubbed(tmp_path, frames, "rolled", narrow_checkpoint)
    above, mouth = above_the_eyes_and_mouth(detectors, inp[::4], out[::4])
    assert (above <= 2 * NOISE).all(), above  # the eyes and everything above: as they were (colour edges: yuv420)
    assert (mouth > NOISE).all(), mouth  # the mouth: regenerated
    # without alignment the upright box's top corner cuts above the eyes of a head leaning 30 degrees
    inp, plain = dubbed(tmp_path, frames, "rolled", narrow_checkpoint, "--no-align")
    above, _ = above_the_eyes_and_mouth(detectors, inp[::4], plain[::4])
    assert (above > 3 * NOISE).mean() > 0.5


@pytest.mark.slow
def test_an_upright_clip_dubs_as_before_and_box_and_hard_paste_never_turn(tmp_path, talk, narrow_checkpoint):
    upright = turned(talk, 6)  # the example's head leans 6 degrees the other way
    _, aligned = dubbed(tmp_path, upright, "upright", narrow_checkpoint)
    _, plain = dubbed(tmp_path, upright, "upright", narrow_checkpoint, "--no-align")
    assert np.abs(aligned.astype(int) - plain).mean() < 0.5  # the landmarks' jitter on an upright head turns nothing
    rolled = turned(talk, 30)
    box = ["--box", "110", "340", "100", "350"]  # Y1 Y2 X1 X2
    _, a = dubbed(tmp_path, rolled, "boxed", narrow_checkpoint, *box)
    _, b = dubbed(tmp_path, rolled, "boxed", narrow_checkpoint, *box, "--no-align")
    assert np.array_equal(a, b)
    _, a = dubbed(tmp_path, rolled, "hard", narrow_checkpoint, "--paste", "hard")
    _, b = dubbed(tmp_path, rolled, "hard", narrow_checkpoint, "--paste", "hard", "--no-align")
    assert np.array_equal(a, b)


@pytest.mark.slow
def test_preprocess_crops_a_rolled_head_as_it_crops_it_upright(tmp_path, talk):
    """--align (the default) gives the training crops of a head leaning 30 degrees nearly those of
    the same head upright; --no-align gives the tilted face."""
    from conftest import ffmpeg

    def crops(degrees, *flags):
        src = tmp_path / f"src{degrees}{''.join(flags)}" / "person"
        src.mkdir(parents=True)
        silent = write_frames(tmp_path / f"silent{degrees}.mp4", turned(talk, degrees))
        ffmpeg("-i", str(silent), "-i", str(EXAMPLES / "speech.wav"), "-map", "0:v", "-map", "1:a", "-shortest",
               "-c:v", "copy", "-c:a", "aac", str(src / "clip.mp4"))
        data = tmp_path / f"data{degrees}{''.join(flags)}"
        assert main(["preprocess", str(src.parent), str(data), "--quiet", *flags]) == 0
        folder = data / "person" / "clip" / "000"
        return np.stack([cv2.imread(str(folder / f"{i}.jpg")).astype(np.float32) for i in range(0, 30, 5)])

    upright = crops(6)
    aligned, plain = crops(36), crops(36, "--no-align")
    near, far = np.abs(aligned - upright).mean(), np.abs(plain - upright).mean()
    print(f"crops against the upright ones: aligned {near:.1f}, not aligned {far:.1f} grey levels")
    assert near < 0.5 * far, (near, far)
