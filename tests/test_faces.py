"""Faces: RetinaFace and S3FD on real media, tracking, smoothing, padding, FaceBoxes.

Real media come from ../shared/media (or $LIPSYNC_MEDIA), else from examples/; tests that need
them are skipped when neither has them.
"""

from __future__ import annotations

import os
import random
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from lipsync_cli.errors import LipsyncError
from lipsync_cli.faces import (
    SMOOTH_WINDOW,
    BoxSmoother,
    Detection,
    DetectorPool,
    DetectorUnavailable,
    FaceBoxes,
    FaceDetector,
    FaceTracker,
    detection_size,
    iou,
    make_detector,
    pad_box,
    select_face,
    smooth_boxes,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_MEDIA = Path(os.environ.get("LIPSYNC_MEDIA", REPO.parent / "shared" / "media"))
EXAMPLES = REPO / "examples"


def find_media(name: str, patterns: tuple[str, ...]) -> Path:
    p = SHARED_MEDIA / name
    if p.is_file():
        return p
    if EXAMPLES.is_dir():
        for pattern in patterns:
            found = sorted(EXAMPLES.glob(pattern))
            if found:
                return found[0]
    pytest.skip(f"no {name} in {SHARED_MEDIA} and no examples/{'|'.join(patterns)}")


def read_video_frames(path: Path, n: int, step: int = 1) -> list[np.ndarray]:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="bgr24")
    meta = next(gen)
    w, h = meta["size"]
    frames = []
    try:
        for i, raw in enumerate(gen):
            if i % step == 0:
                frames.append(np.frombuffer(raw, np.uint8).reshape(h, w, 3).copy())
            if len(frames) == n:
                break
    finally:
        gen.close()
    assert frames, f"no frames decoded from {path}"
    return frames


def read_image(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return img


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return read_image(find_media("portrait1.png", ("*.png", "*.jpg")))


@pytest.fixture(scope="module")
def talk_frames() -> list[np.ndarray]:
    # 8 frames spread over the first ~2 s
    return read_video_frames(find_media("talk2.mp4", ("*.mp4", "*.mov", "*.mkv")), 8, step=6)


@pytest.fixture(scope="module")
def retina() -> FaceDetector:
    return make_detector("retinaface", "cpu")


def assert_plausible_face(det: Detection, w: int, h: int) -> None:
    x1, y1, x2, y2 = det.box
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    # a talking head / portrait face: between 10% and 95% of the frame's smaller side
    side = min(w, h)
    assert 0.1 * side < det.width < 0.95 * side
    assert 0.1 * side < det.height < 0.95 * side
    assert 0.5 < det.height / det.width < 2.5
    assert det.score >= 0.8
    lm = det.landmarks
    assert lm is not None and lm.shape == (5, 2)
    # landmarks inside the (slightly grown) box; eyes above the nose, nose above the mouth
    assert np.all(lm[:, 0] > x1 - 0.1 * det.width) and np.all(lm[:, 0] < x2 + 0.1 * det.width)
    assert np.all(lm[:, 1] > y1) and np.all(lm[:, 1] < y2)
    eyes_y, nose_y, mouth_y = lm[:2, 1].mean(), lm[2, 1], lm[3:, 1].mean()
    assert eyes_y < nose_y < mouth_y
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # left-to-right in the image


def det(box, score=0.9) -> Detection:
    return Detection(box=tuple(float(v) for v in box), score=score, landmarks=None)


# --------------------------------------------------------------------------- base


def test_detection_properties_and_equality():
    a = Detection((10.0, 20.0, 50.0, 100.0), 0.9, np.zeros((5, 2), np.float32))
    b = Detection((10.0, 20.0, 50.0, 100.0), 0.9, np.ones((5, 2), np.float32))
    assert a.width == 40 and a.height == 80 and a.area == 3200 and a.center == (30, 60)
    assert a == b and hash(a) == hash(b)  # landmarks are not compared
    with pytest.raises(Exception):
        a.score = 0.1  # frozen


def test_detection_size_never_upscales():
    assert detection_size(844, 844, 480) == (480, 480)
    assert detection_size(1080, 1920, 480) == (270, 480)
    assert detection_size(1216, 704, 480) == (480, 278)
    assert detection_size(256, 256, 480) == (256, 256)
    assert detection_size(844, 844, 0) == (844, 844)
    assert detection_size(844, 844, None) == (844, 844)


def test_make_detector_rejects_unknown_name():
    with pytest.raises(ValueError, match="retinaface"):
        make_detector("dlib")


# --------------------------------------------------------------------------- RetinaFace


def test_retinaface_is_a_face_detector(retina):
    assert isinstance(retina, FaceDetector)
    assert retina.name == "retinaface"
    assert retina.detect([]) == []


def test_retinaface_cuda_request_falls_back_to_cpu():
    import onnxruntime as ort

    d = make_detector("retinaface", "cuda")
    expected = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
    assert d.device == expected


def test_retinaface_one_face_on_portrait(retina, portrait):
    h, w = portrait.shape[:2]
    [dets] = retina.detect([portrait])
    assert len(dets) == 1
    assert_plausible_face(dets[0], w, h)
    # the face is in the middle third horizontally in a portrait photo
    cx, cy = dets[0].center
    assert w / 4 < cx < 3 * w / 4 and h / 6 < cy < 5 * h / 6


def test_retinaface_one_face_on_talk_frames(retina, talk_frames):
    h, w = talk_frames[0].shape[:2]
    results = retina.detect(talk_frames)
    assert len(results) == len(talk_frames)
    for dets in results:
        assert len(dets) == 1
        assert_plausible_face(dets[0], w, h)
    # a talking head barely moves between these frames
    first = results[0][0].box
    assert all(iou(r[0].box, first) > 0.6 for r in results)


def test_retinaface_downscaled_matches_full_res(talk_frames):
    full = make_detector("retinaface", max_side=0).detect(talk_frames)
    for max_side in (480, 320):
        small = make_detector("retinaface", max_side=max_side).detect(talk_frames)
        for a, b in zip(full, small):
            assert len(a) == len(b) == 1
            assert iou(a[0].box, b[0].box) > 0.8
            # landmarks mapped back to full resolution too
            scale = max(a[0].width, a[0].height)
            assert np.abs(a[0].landmarks - b[0].landmarks).max() < 0.1 * scale


def test_retinaface_batched_equals_per_frame(retina, talk_frames):
    frames = talk_frames[:4]
    batched = retina.detect(frames)
    single = [retina.detect([f])[0] for f in frames]
    for a, b in zip(batched, single):
        assert len(a) == len(b)
        for da, db in zip(a, b):
            np.testing.assert_allclose(da.box, db.box, atol=0.05)
            assert da.score == pytest.approx(db.score, abs=1e-4)
            np.testing.assert_allclose(da.landmarks, db.landmarks, atol=0.05)


def test_retinaface_no_face_on_blank_frames(retina):
    frames = [np.full((240, 320, 3), v, np.uint8) for v in (0, 128, 255)]
    assert retina.detect(frames) == [[], [], []]


def test_retinaface_rejects_mixed_sizes(retina):
    with pytest.raises(ValueError):
        retina.detect([np.zeros((100, 100, 3), np.uint8), np.zeros((100, 120, 3), np.uint8)])
    with pytest.raises(ValueError):
        retina.detect([np.zeros((100, 100), np.uint8)])


def test_retinaface_two_faces_and_face_index(retina, portrait):
    """Two portraits side by side: two faces, scores sorted, face_index picks left/right."""
    import cv2

    p = cv2.resize(portrait, (256, 256), interpolation=cv2.INTER_AREA)
    right = cv2.resize(p, (200, 200), interpolation=cv2.INTER_AREA)
    frame = np.zeros((256, 512, 3), np.uint8)
    frame[:, :256] = p
    frame[28:228, 290:490] = right
    [dets] = retina.detect([frame])
    assert len(dets) == 2
    assert dets[0].score >= dets[1].score
    assert select_face(dets, 0).center[0] < 256 < select_face(dets, 1).center[0]
    assert select_face(dets, None).center[0] < 256  # the larger face is the left one
    assert FaceTracker(face_index=1).update([dets])[0] == select_face(dets, 1).box


# --------------------------------------------------------------------------- S3FD


@pytest.fixture()
def random_s3fd_weights(tmp_path) -> Path:
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd

    torch.manual_seed(0)
    path = tmp_path / "s3fd_random.pth"
    torch.save(s3fd().state_dict(), path)
    return path


def test_s3fd_path_runs_batched_with_random_weights(random_s3fd_weights, monkeypatch, portrait):
    import cv2
    from face_alignment.detection.sfd.sfd_detector import SFDDetector

    calls = []
    original = SFDDetector.detect_from_batch

    def spy(self, tensor):
        calls.append(tensor.clone())
        return original(self, tensor)

    monkeypatch.setattr(SFDDetector, "detect_from_batch", spy)
    d = make_detector("s3fd", "cpu", max_side=96, s3fd_weights=str(random_s3fd_weights),
                      score_threshold=0.5)
    assert isinstance(d, FaceDetector) and d.name == "s3fd"
    frames = [cv2.resize(portrait, (160, 120)), cv2.resize(portrait[::-1], (160, 120)),
              np.full((120, 160, 3), (10, 120, 240), np.uint8)]
    results = d.detect(frames)

    # one batched call, at detection size, RGB (face_alignment flips RGB to BGR itself)
    assert len(calls) == 1
    batch = calls[0]
    assert tuple(batch.shape) == (3, 3, 72, 96)
    assert batch[2, 0].float().mean().item() == pytest.approx(240, abs=1)  # R plane
    assert batch[2, 2].float().mean().item() == pytest.approx(10, abs=1)  # B plane

    assert len(results) == 3
    for dets in results:
        assert isinstance(dets, list)
        scores = [x.score for x in dets]
        assert scores == sorted(scores, reverse=True)
        for x in dets:
            assert isinstance(x, Detection) and x.landmarks is None
            assert len(x.box) == 4 and all(isinstance(v, float) for v in x.box)
            x1, y1, x2, y2 = x.box
            assert 0 <= x1 <= x2 <= 160 and 0 <= y1 <= y2 <= 120
            assert 0.5 <= x.score <= 1.0
    assert d.detect([]) == []


def test_s3fd_no_candidates(tmp_path):
    """A net that never scores a face: face_alignment's empty-batch branch, empty lists back."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd

    torch.manual_seed(0)
    sd = s3fd().state_dict()
    for k, v in sd.items():
        if "mbox_conf" in k:
            v.zero_()
            if k.endswith("bias"):
                v[0] = 10.0  # background logit
    path = tmp_path / "noface.pth"
    torch.save(sd, path)
    d = make_detector("s3fd", s3fd_weights=str(path), max_side=64)
    assert d.detect([np.zeros((90, 120, 3), np.uint8)] * 2) == [[], []]


@pytest.mark.slow
def test_s3fd_weights_in_the_published_legacy_format(tmp_path, portrait):
    """s3fd-619a316812.pth is in torch's legacy (pre-zip) format: seeded random weights saved in
    it detect on a real portrait exactly as the same weights in the zip format do. With the
    published weights at hand (torch hub cache or $S3FD_WEIGHTS), also: one face."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd

    from lipsync_cli.faces.s3fd import default_weights_path

    torch.manual_seed(0)
    state = s3fd().state_dict()
    legacy, current = tmp_path / "legacy.pth", tmp_path / "zip.pth"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    torch.save(state, current)
    assert legacy.read_bytes()[:2] == b"\x80\x02" and current.read_bytes()[:4] == b"PK\x03\x04"  # a pickle, a zip
    found = [make_detector("s3fd", s3fd_weights=str(path), max_side=128, score_threshold=0.5).detect([portrait])[0]
             for path in (legacy, current)]
    assert found[0] and found[0] == found[1]  # random weights score many boxes above 0.5
    h, w = portrait.shape[:2]
    for x in found[0]:
        x1, y1, x2, y2 = x.box
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h and x.score >= 0.5

    published = Path(os.environ.get("S3FD_WEIGHTS", default_weights_path()))
    if published.is_file():
        [dets] = make_detector("s3fd", s3fd_weights=str(published)).detect([portrait])
        assert len(dets) == 1
        x1, y1, x2, y2 = dets[0].box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h


def test_s3fd_missing_weights_file_is_unavailable(tmp_path):
    missing = tmp_path / "nope" / "s3fd-619a316812.pth"
    with pytest.raises(DetectorUnavailable) as e:
        make_detector("s3fd", s3fd_weights=str(missing))
    msg = str(e.value)
    assert "\n" not in msg
    assert "s3fd-619a316812.pth" in msg and "--s3fd-weights" in msg and str(missing) in msg
    assert isinstance(e.value, LipsyncError) and e.value.exit_code == 2  # the user named that file


def test_s3fd_offline_download_is_unavailable(tmp_path, monkeypatch):
    import torch
    from face_alignment.detection.sfd import sfd_detector

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))  # empty cache
    attempts = []

    def offline(url, *a, **k):
        attempts.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(sfd_detector, "load_state_dict_from_url", offline)
    with pytest.raises(DetectorUnavailable) as e:
        make_detector("s3fd")
    assert len(attempts) == 1 and attempts[0].endswith("s3fd-619a316812.pth")
    msg = str(e.value)
    assert "\n" not in msg
    assert "s3fd-619a316812.pth" in msg and "--s3fd-weights" in msg
    assert str(tmp_path / "hub" / "checkpoints" / "s3fd-619a316812.pth") in msg
    assert isinstance(e.value, LipsyncError) and e.value.exit_code == 1  # not the user's mistake


def test_s3fd_uses_hub_cache_without_network(tmp_path, monkeypatch, random_s3fd_weights):
    import shutil

    import torch
    from face_alignment.detection.sfd import sfd_detector

    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    shutil.copy(random_s3fd_weights, cache / "s3fd-619a316812.pth")
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def no_network(*a, **k):
        raise AssertionError("no download expected")

    monkeypatch.setattr(sfd_detector, "load_state_dict_from_url", no_network)
    assert make_detector("s3fd").name == "s3fd"


@pytest.mark.parametrize("content", ["garbage", "wrong_keys"])
def test_s3fd_bad_weights_file_is_unavailable(tmp_path, content):
    import torch

    path = tmp_path / "s3fd.pth"
    if content == "garbage":
        path.write_bytes(b"not a checkpoint")
    else:
        torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(DetectorUnavailable) as e:
        make_detector("s3fd", s3fd_weights=str(path))
    assert "\n" not in str(e.value) and str(path) in str(e.value) and e.value.exit_code == 2


# --------------------------------------------------------------------------- tracking


def test_select_face_largest_and_left_to_right():
    small_left = det((0, 0, 10, 10), 0.99)
    big_middle = det((40, 0, 100, 60), 0.85)
    mid_right = det((150, 0, 180, 30), 0.95)
    dets = [small_left, mid_right, big_middle]  # sorted by score, as detectors return them
    assert select_face(dets) is big_middle
    assert select_face(dets, 0) is small_left
    assert select_face(dets, 1) is big_middle
    assert select_face(dets, 2) is mid_right
    assert select_face(dets, -1) is mid_right
    assert select_face(dets, 3) is None
    assert select_face([], None) is None


def test_tracker_follows_face_by_iou_not_size():
    tr = FaceTracker()
    a = [det((100 + 2 * i, 100, 200 + 2 * i, 220)) for i in range(6)]
    intruder = det((300, 50, 600, 400))  # appears later, much larger
    frames = [[a[0]], [a[1]], [intruder, a[2]], [a[3], intruder], [intruder], [a[5], intruder]]
    boxes = tr.update(frames)
    assert boxes[0] == a[0].box and boxes[1] == a[1].box
    assert boxes[2] == a[2].box and boxes[3] == a[3].box
    assert boxes[4] is None  # tracked face missing: the intruder does not steal the track
    assert boxes[5] == a[5].box  # picked up again after the gap


def test_tracker_face_index_then_follows():
    still = det((100, 10, 150, 70))
    # the right-hand face walks left, 20 px a frame, and ends up left of the other one
    moving = [det((200 - 20 * i, 100, 250 - 20 * i, 160)) for i in range(9)]
    tr = FaceTracker(face_index=1)
    boxes = tr.update([[still, m] for m in moving])
    assert boxes == [m.box for m in moving]  # followed by IoU, not re-picked by index
    assert select_face([still, moving[-1]], 1) is still


def test_tracker_waits_for_face_and_index_out_of_range():
    tr = FaceTracker(face_index=1)
    one = det((10, 10, 60, 70))
    two = det((100, 10, 150, 70))
    assert tr.update([[], [one], [one, two], [one, two]]) == [None, None, two.box, two.box]


def test_tracker_reacquires_after_max_lost():
    tr = FaceTracker(max_lost=3)
    a = det((0, 0, 50, 50))
    b = det((200, 200, 260, 260))
    boxes = tr.update([[a], [b], [b], [b], [b], [a]])
    assert boxes == [a.box, None, None, None, b.box, None]


def test_tracker_streaming_equals_whole():
    rng = random.Random(1)
    seq = []
    for i in range(40):
        dets = []
        if rng.random() > 0.2:
            dets.append(det((100 + i, 80, 180 + i, 180), rng.random()))
        if rng.random() > 0.5:
            dets.append(det((400, 80 + i, 520, 220 + i), rng.random()))
        seq.append(dets)
    whole = FaceTracker().update(seq)
    tr = FaceTracker()
    chunked = tr.update(seq[:7]) + tr.update(seq[7:8]) + tr.update(seq[8:30]) + tr.update(seq[30:])
    assert chunked == whole
    assert any(b is None for b in whole) and any(b is not None for b in whole)


# --------------------------------------------------------------------------- smoothing


def reference_smooth(boxes, T):
    """Straightforward per-run Wav2Lip smoothing, for comparison."""
    out = [None] * len(boxes)
    i = 0
    while i < len(boxes):
        if boxes[i] is None:
            i += 1
            continue
        j = i
        while j < len(boxes) and boxes[j] is not None:
            j += 1
        run = np.array(boxes[i:j], dtype=np.float64)
        for k in range(len(run)):
            window = run[k:k + T] if k + T <= len(run) else run[max(0, len(run) - T):]
            out[i + k] = tuple(window.mean(axis=0))
        i = j
    return out


def assert_boxes_close(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if x is None or y is None:
            assert x is None and y is None
        else:
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-9)


def test_smooth_known_values():
    boxes = [(float(i), 0.0, 10.0 + i, 10.0) for i in range(7)]
    out = smooth_boxes(boxes, window=5)
    # frames 0..2 average the next 5; frames 3..6 all take the final window (frames 2..6)
    assert [b[0] for b in out] == [2.0, 3.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert_boxes_close(out, reference_smooth(boxes, 5))


def test_smooth_constant_and_short_runs():
    b = (1.0, 2.0, 3.0, 4.0)
    assert smooth_boxes([b] * 9) == [b] * 9
    short = [(0.0, 0, 10, 10), (2.0, 0, 12, 10)]
    assert [x[0] for x in smooth_boxes(short)] == [1.0, 1.0]
    assert smooth_boxes([]) == []
    assert smooth_boxes([None, None]) == [None, None]
    assert smooth_boxes([(1, 2, 3, 4)], window=1) == [(1.0, 2.0, 3.0, 4.0)]
    with pytest.raises(ValueError):
        BoxSmoother(0)


def test_smooth_does_not_cross_gaps():
    left = (0.0, 0.0, 10.0, 10.0)
    right = (100.0, 0.0, 110.0, 10.0)
    out = smooth_boxes([left] * 3 + [None] + [right] * 3)
    assert out == [left] * 3 + [None] + [right] * 3


def test_smoother_streaming_equals_whole_and_lags():
    rng = random.Random(7)
    boxes = []
    for _ in range(200):
        if rng.random() < 0.08:
            boxes.append(None)
        else:
            x, y = rng.uniform(0, 500), rng.uniform(0, 500)
            boxes.append((x, y, x + rng.uniform(50, 100), y + rng.uniform(50, 100)))
    whole = smooth_boxes(boxes, 5)
    assert_boxes_close(whole, reference_smooth(boxes, 5))
    for _ in range(20):
        s = BoxSmoother(5)
        out, i = [], 0
        while i < len(boxes):
            n = min(rng.randint(0, 13), len(boxes) - i)
            out += s.push(boxes[i:i + n])
            i += n
            assert len(out) == i - s.pending
            assert s.pending <= 4
        out += s.flush()
        assert_boxes_close(out, whole)
    # lag of window-1 frames within a run
    s = BoxSmoother(5)
    emitted = [len(s.push([(0, 0, 1, 1)])) for _ in range(8)]
    assert emitted == [0, 0, 0, 0, 1, 1, 1, 1]
    assert len(s.flush()) == 4
    assert s.flush() == []


# --------------------------------------------------------------------------- padding


def test_pad_box_default_pads_and_clipping():
    # (x1, y1, x2, y2) in and out; pads (top, bottom, left, right)
    assert pad_box((10.2, 20.6, 50.4, 80.5), (0, 10, 0, 0), 640, 480) == (10, 21, 50, 90)
    # clipped at every edge
    assert pad_box((-5, -3, 650, 479), (5, 10, 5, 5), 640, 480) == (0, 0, 640, 480)
    assert pad_box((100, 100, 200, 200), (10, 20, 30, 40), frame_w=640, frame_h=480) == (
        70, 90, 240, 220)
    x1, y1, x2, y2 = pad_box((1.0, 2.0, 3.0, 4.0), (0, 10, 0, 0), 100, 100)
    assert all(isinstance(v, int) for v in (x1, y1, x2, y2))
    with pytest.raises(ValueError):
        pad_box((700, 10, 800, 50), (0, 10, 0, 0), 640, 480)


def test_track_smooth_pad_on_real_frames(retina, talk_frames):
    """The chain the dubbing pipeline runs, chunk by chunk."""
    h, w = talk_frames[0].shape[:2]
    tracker, smoother = FaceTracker(), BoxSmoother(5)
    out = []
    for chunk in (talk_frames[:3], talk_frames[3:]):
        out += smoother.push(tracker.update(retina.detect(chunk)))
    out += smoother.flush()
    assert len(out) == len(talk_frames) and all(b is not None for b in out)
    for b in out:
        x1, y1, x2, y2 = pad_box(b, (0, 10, 0, 0), w, h)
        assert 0 <= y1 < y2 <= h and 0 <= x1 < x2 <= w
        assert talk_frames[0][y1:y2, x1:x2].size > 0


# --------------------------------------------------------------------------- FaceBoxes


def test_boxes_between_detected_frames_are_interpolated(example_portrait):
    # A face gliding 6 px per frame: detecting every 4th frame and interpolating gives nearly the
    # boxes that detecting every frame gives.
    import cv2

    face = cv2.resize(cv2.imread(str(example_portrait)), (128, 128))
    frames = np.full((9, 240, 320, 3), 50, np.uint8)
    for i in range(9):
        frames[i, 60:188, 20 + 6 * i: 148 + 6 * i] = face

    def boxes(every):
        finder = FaceBoxes(DetectorPool("retinaface"), 320, 240, smooth=False, detect_every=every)
        return [box for _, box in finder.push(frames) + finder.flush()]

    dense, sparse = boxes(1), boxes(4)
    assert all(b is not None for b in dense + sparse)
    assert min(iou(a, b) for a, b in zip(dense, sparse)) > 0.9
    assert sparse[2][0] > sparse[0][0] + 6  # the interpolated box moves with the face


class ScriptedDetector:
    """A detector that answers from a script: frame value (the first pixel) -> detections; it
    records the frames it was asked about, per detection size."""

    name = "scripted"

    def __init__(self, script, max_side, asked):
        self.script, self.max_side, self.asked = script, max_side, asked

    def detect(self, frames):
        self.asked.append((self.max_side, [int(f[0, 0, 0]) for f in frames]))
        return [list(self.script.get((self.max_side, int(f[0, 0, 0])), self.script.get(int(f[0, 0, 0]), [])))
                for f in frames]


def scripted_pool(script):
    asked: list = []
    return (lambda max_side: ScriptedDetector(script, max_side, asked)), asked


def numbered(n, h=100, w=200):
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(n)
    return frames


def test_face_boxes_detect_every_nth_frame_interpolate_and_pad():
    script = {i: [det((10 + 2 * i, 20, 50 + 2 * i, 60))] for i in range(10)}
    pool, asked = scripted_pool(script)
    fb = FaceBoxes(pool, 200, 100, pads=(0, 10, 0, 0), detect_size=0, detect_every=3, smooth=False)
    out = fb.push(numbered(8))
    assert asked == [(0, [0, 3, 6, 7])]  # every 3rd frame and the chunk's last one
    assert [int(f[0, 0, 0]) for f, _ in out] == list(range(8))
    assert [b for _, b in out] == [(10 + 2 * i, 20, 50 + 2 * i, 70) for i in range(8)]  # linear face, padded below
    assert fb.flush() == [] and fb.seconds > 0


def test_face_boxes_look_again_at_twice_the_size():
    # frame 0: a face at the detection size; frame 1: only at twice the size; frame 2: none at all
    pool, asked = scripted_pool({(320, 0): [det((5, 5, 15, 15))], (640, 1): [det((6, 5, 16, 15))]})
    fb = FaceBoxes(pool, 1280, 720, detect_every=1, smooth=False, pads=(0, 0, 0, 0))
    out = fb.push(numbered(3, 720, 1280))
    assert asked == [(320, [0, 1, 2]), (640, [1, 2])]  # only the frames where nothing was found
    assert [b for _, b in out] == [(5, 5, 15, 15), (6, 5, 16, 15), None]
    # a frame no larger than the detection size is not searched again
    pool, asked = scripted_pool({})
    FaceBoxes(pool, 320, 200, detect_every=1).push(numbered(2, 200, 320))
    assert asked == [(320, [0, 1])]


def test_face_boxes_track_ids_keep_interpolation_within_a_track():
    a, b = det((0, 0, 40, 40)), det((100, 0, 140, 40))
    tracker = FaceTracker(max_lost=1)
    tracks = tracker.tracks([[a], [], [b], [b]])
    assert tracks == [{0: a.box}, {}, {1: b.box}, {1: b.box}]  # a re-chosen face is a new track
    # frame 0 has face a, frame 2 face b (a new track after a frame lost): frame 1 between them
    # is not interpolated from two different faces
    pool, _ = scripted_pool({0: [a], 2: [b]})
    fb = FaceBoxes(pool, 200, 100, detect_size=0, detect_every=2, smooth=False, pads=(0, 0, 0, 0))
    fb.tracker.max_lost = 0
    assert [box for _, box in fb.push(numbered(3))] == [(0, 0, 40, 40), None, (100, 0, 140, 40)]


def test_face_boxes_streaming_equals_whole_with_smoothing():
    rng = random.Random(3)
    script = {}
    for i in range(60):
        if rng.random() > 0.1:
            x = 20 + i + rng.uniform(-3, 3)
            script[i] = [det((x, 10, x + 40, 60))]

    def run(chunks, every=1):
        pool, _ = scripted_pool(script)
        fb = FaceBoxes(pool, 200, 100, detect_size=0, detect_every=every)
        frames, out = numbered(60), []
        start = 0
        for n in chunks:
            out += fb.push(frames[start:start + n])
            assert len(out) >= start + n - (SMOOTH_WINDOW - 1)  # held back: the smoothing's look-ahead
            start += n
        out += fb.flush()
        assert [int(f[0, 0, 0]) for f, _ in out] == list(range(60))  # every frame once, in order
        return [b for _, b in out]

    whole = run([60])
    assert sum(b is None for b in whole) == 60 - len(script)
    raw = [script[i][0].box if i in script else None for i in range(60)]
    assert whole == [None if b is None else pad_box(b, (0, 10, 0, 0), 200, 100) for b in smooth_boxes(raw)]
    assert run([7, 1, 30, 22]) == whole
    assert sum(b is None for b in run([7, 1, 30, 22], every=2)) <= 60 - len(script) + 10


def test_face_boxes_fixed_box_is_clipped_or_refused():
    from lipsync_cli.errors import InputError

    fb = FaceBoxes(None, 200, 100, box=(-10, 20, 150, 300))
    frames = numbered(3)
    assert [b for _, b in fb.push(frames)] == [(0, 20, 150, 100)] * 3 and fb.flush() == []
    with pytest.raises(InputError, match=r"--box 5 10 300 400: empty inside a 200x100 frame"):
        FaceBoxes(None, 200, 100, box=(300, 5, 400, 10))


# --------------------------------------------------------------------------- paste


def test_box_paster_hard_and_feather_in_the_box():
    from lipsync_cli.faces import BoxPaster

    frame = np.full((60, 80, 3), 10, np.uint8)
    face = np.full((96, 96, 3), 200, np.uint8)
    box = (20, 5, 60, 45)  # x1, y1, x2, y2: 40 wide, 40 high
    hard = BoxPaster("hard")(frame, box, face)
    inside = np.zeros(frame.shape[:2], bool)
    inside[5:45, 20:60] = True
    assert (hard[inside] == 200).all() and (hard[~inside] == 10).all() and (frame == 10).all()
    soft = BoxPaster("feather")(frame, box, face)
    assert (soft[~inside] == 10).all()
    assert (soft[5:20, 20:60] == 10).all()  # the upper face (eyes) is kept
    assert (soft[32, 30:50] == 200).all()  # the mouth area is the generated face
    with pytest.raises(ValueError, match="feather or hard"):
        BoxPaster("soft")


@pytest.mark.parametrize("height", [17, 40, 96, 97, 330, 1001])
def test_the_feathered_paste_shows_nothing_above_its_first_blended_row(height):
    """Why dub may leave those rows ungenerated: any pixels there give the same frame."""
    from lipsync_cli.faces import BoxPaster, first_blended_row

    first = first_blended_row("feather", 96)
    assert 40 <= first <= 48 and first_blended_row("hard", 96) == 0
    rng = np.random.default_rng(height)
    frame = rng.integers(0, 256, (height + 20, 300, 3), dtype=np.uint8)
    face = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    other = face.copy()
    other[:first] = 255 - other[:first]
    box = (10, 10, 10 + min(height, 280), 10 + height)
    paster = BoxPaster("feather")
    assert np.array_equal(paster(frame, box, face), paster(frame, box, other))
    if height < 96:
        return  # a box smaller than the face samples only some of its rows
    other[first:first + 4] = 255 - other[first:first + 4]  # and the rows just below it are shown
    assert not np.array_equal(paster(frame, box, face), paster(frame, box, other))
