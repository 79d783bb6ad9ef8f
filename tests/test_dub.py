"""`lipsync dub` end to end on real files: streams, durations, frame order, pixels."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import decode_frames, ffmpeg, numbered_frames, read_number, tone, write_frames
from lipsync_cli import audio as audio_mod
from lipsync_cli import media
from lipsync_cli.faces import make_detector, pad_box
from lipsync_cli.errors import InputError
from lipsync_cli.pipelines import dub as dub_mod
from lipsync_cli.pipelines.dub import DubOptions, dub, load_model_for, source_index

CORNER_SAFE_BOX = (24, 24, 64, 64)  # (x1, y1, x2, y2): away from the numbered corner


def run(video, audio, out, checkpoint, **kw):
    force = kw.pop("force", False)
    opts = DubOptions(checkpoint=str(checkpoint), **kw)
    return dub(load_model_for(opts), str(video), str(audio), str(out), opts, force=force)


def test_source_index_pingpong_and_loop():
    assert [source_index(j, 4, False) for j in range(10)] == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert [source_index(j, 4, True) for j in range(10)] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert [source_index(j, 1, False) for j in range(3)] == [0, 0, 0]


@pytest.mark.slow
def test_dub_real_clip_streams_duration_and_untouched_background(tmp_path, example_video, example_audio,
                                                                  narrow_checkpoint):
    speech = tmp_path / "speech.wav"
    ffmpeg("-i", str(example_audio), "-t", "1", str(speech))  # the first second of the real speech
    out = tmp_path / "dubbed.mp4"
    result = run(example_video, speech, out, narrow_checkpoint)
    info = media.probe(out)
    src = media.probe(example_video)
    audio_info = media.probe(speech)
    assert info.video is not None and info.audio is not None
    assert info.video.codec == "h264" and info.audio.codec == "aac"
    assert (info.video.width, info.video.height) == (src.video.width, src.video.height)
    assert info.video.fps == src.video.fps
    audio_seconds = 1.0
    assert abs(info.video.duration - audio_seconds) <= 1 / float(src.video.fps) + 1e-6
    assert result.frames == 25 and result.frames_without_face == 0
    assert audio_info.audio.rate == 16000

    # The face box the tool used: the default detector on the first frame, padded as by default.
    inp = decode_frames(example_video)
    outp = decode_frames(out)
    det = make_detector("retinaface").detect([inp[0]])[0][0]
    x1, y1, x2, y2 = pad_box(det.box, (0, 10, 0, 0), inp.shape[2], inp.shape[1])
    margin = 8
    outside = np.ones(inp.shape[1:3], bool)
    outside[max(0, y1 - margin): y2 + margin, max(0, x1 - margin): x2 + margin] = False
    n = len(outp)  # the first second of the video
    diff = np.abs(outp.astype(np.int16) - inp[:n].astype(np.int16))
    assert diff[:, outside].mean() < 1.5  # only re-encoding noise outside the face
    mouth = diff[:, y1 + (y2 - y1) * 2 // 3: y2 - 4, x1 + (x2 - x1) // 4: x2 - (x2 - x1) // 4]
    assert mouth.mean() > 10  # the random generator really replaced the mouth
    assert not list(tmp_path.glob(".*partial*"))


class _Recorder:
    """Stands in for the encoder to capture exactly the frames the pipeline produces."""

    frames: list = []

    def __init__(self, path, width, height, fps, audio_path, **kw):
        _Recorder.frames = []
        self.size = (width, height)

    def write(self, frame):
        _Recorder.frames.append(frame.copy())

    def close(self):
        pass

    def abort(self):
        pass


def _reference_wav2lip(frames, wav, fps, box, net):
    """Straight-line Wav2Lip reference inference for a fixed box: mel by librosa's own functions,
    windows by the reference loop, per-frame generator, truncation to uint8, bilinear resize, paste."""
    import librosa
    from scipy.signal import lfilter

    spec = np.abs(librosa.stft(y=lfilter([1, -0.97], [1], wav), n_fft=800, hop_length=200, win_length=800,
                               pad_mode="reflect"))
    mel = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600) @ spec
    s = 20 * np.log10(np.maximum(1e-5, mel)) - 20
    mel = np.clip(8 * ((s + 100) / 100) - 4, -4, 4)
    chunks, i, mult = [], 0, 80.0 / fps
    while True:
        start = int(i * mult)
        if start + 16 > mel.shape[1]:
            chunks.append(mel[:, -16:])
            break
        chunks.append(mel[:, start:start + 16])
        i += 1
    x1, y1, x2, y2 = box
    results = []
    for k, m in enumerate(chunks):
        frame = frames[k % len(frames)].copy()
        face = cv2.resize(frame[y1:y2, x1:x2], (96, 96))
        masked = face.copy()
        masked[48:] = 0
        x = np.concatenate([masked, face], axis=2)[None].transpose(0, 3, 1, 2) / 255.0
        with torch.no_grad():
            pred = net(torch.tensor(m[None, None], dtype=torch.float32), torch.tensor(x, dtype=torch.float32))
        p = (pred[0].numpy().transpose(1, 2, 0) * 255.0).astype(np.uint8)
        frame[y1:y2, x1:x2] = cv2.resize(p, (x2 - x1, y2 - y1))
        results.append(frame)
    return results


@pytest.mark.slow
def test_hard_paste_reproduces_reference_inference(tmp_path, example_video, checkpoint, monkeypatch):
    from lipsync_cli.checkpoints import load_generator

    # the published width (the other dub tests take the narrow one): 10 frames through both
    wav_path = tmp_path / "short.wav"
    ffmpeg("-i", str(Path(example_video).parent / "speech.wav"), "-t", "0.4", str(wav_path))
    box = (60, 120, 200, 250)  # (x1, y1, x2, y2)
    monkeypatch.setattr(dub_mod.media, "FrameWriter", _Recorder)
    result = run(example_video, wav_path, tmp_path / "o.mp4", checkpoint, box=box, paste="hard")
    ours = _Recorder.frames
    assert result.precision == "fp32"  # the reference mode never drops to bf16 on its own

    net, _ = load_generator(checkpoint)
    wav = audio_mod.load_audio(str(wav_path)).samples
    ref = _reference_wav2lip(decode_frames(example_video), wav, 25.0, box, net.eval())
    assert len(ref) >= 6
    assert len(ours) == 10  # 0.4 s at 25 fps (the reference stops 4 frames short of the audio)
    for a, b in zip(ours, ref):
        d = np.abs(a.astype(np.int16) - b.astype(np.int16))
        assert d.max() <= 1  # float rounding in the folded batchnorm can flip a truncation
        assert (d == 0).mean() > 0.995


def _numbered_clip(tmp_path, n, fps="25", name="numbered.mp4", extra=()):
    return write_frames(tmp_path / name, numbered_frames(n), fps=fps, extra_out=("-crf", "0", *extra))


@pytest.mark.slow
@pytest.mark.parametrize("loop,expected", [
    (False, [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]),
    (True, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]),
])
def test_audio_longer_than_video_replays(tmp_path, narrow_checkpoint, loop, expected):
    video = _numbered_clip(tmp_path, 4)
    wav = tone(tmp_path / "a.wav", 0.4)
    out = tmp_path / "o.mp4"
    result = run(video, wav, out, narrow_checkpoint, box=CORNER_SAFE_BOX, loop=loop)
    assert result.frames == 10
    assert [read_number(f) for f in decode_frames(out)] == expected
    assert abs(media.probe(out).video.duration - 0.4) <= 0.04 + 1e-6


@pytest.mark.slow
def test_batches_generated_side_by_side_come_out_in_order(tmp_path, narrow_checkpoint, monkeypatch):
    """On a CPU the generator runs one batch per core at once (generator_workers): the frames
    still come out in order, each with its own mouth, as when the batches run one by one."""
    video = _numbered_clip(tmp_path, 30)
    wav = tone(tmp_path / "a.wav", 1.2)
    outs, threads = {}, torch.get_num_threads()
    for workers in ("1", "3"):
        monkeypatch.setenv("LIPSYNC_GENERATOR_WORKERS", workers)
        outs[workers] = tmp_path / f"w{workers}.mp4"
        result = run(video, wav, outs[workers], narrow_checkpoint, box=CORNER_SAFE_BOX, batch_size=2, paste="hard")
        assert result.frames == 30
        assert torch.get_num_threads() == threads  # given back after the run
    one, three = decode_frames(outs["1"]), decode_frames(outs["3"])
    assert [read_number(f) for f in three] == list(range(30))
    assert np.abs(one.astype(np.int16) - three.astype(np.int16)).mean() < 0.5


@pytest.mark.slow
def test_audio_shorter_than_video_cuts(tmp_path, narrow_checkpoint):
    video = _numbered_clip(tmp_path, 50)
    wav = tone(tmp_path / "a.wav", 0.6)
    out = tmp_path / "o.mp4"
    run(video, wav, out, narrow_checkpoint, box=CORNER_SAFE_BOX)
    frames = decode_frames(out)
    assert [read_number(f) for f in frames] == list(range(15))


@pytest.mark.slow
def test_fractional_frame_rate_keeps_exact_rate(tmp_path, narrow_checkpoint):
    video = _numbered_clip(tmp_path, 16, fps="30000/1001")
    wav = tone(tmp_path / "a.wav", 0.4)
    out = tmp_path / "o.mp4"
    result = run(video, wav, out, narrow_checkpoint, box=CORNER_SAFE_BOX)
    info = media.probe(out).video
    assert info.fps == Fraction(30000, 1001)
    assert result.frames == 12 == info.frame_count  # 0.4 s at 29.97 fps: 11.99 frames
    assert abs(info.duration - 0.4) <= 1001 / 30000
    # frame i of the output is frame i of the input: sync is not drifting
    assert [read_number(f) for f in decode_frames(out)] == list(range(12))


@pytest.mark.slow
def test_variable_frame_rate_stays_in_sync(tmp_path, narrow_checkpoint):
    # 20 frames 0.04 s apart, then 10 frames 0.1 s apart: variable frame rate
    vfr = write_frames(tmp_path / "vfr.mp4", numbered_frames(30), extra_out=(
        "-vf", "setpts='if(lt(N,20),N*0.04,0.8+(N-20)*0.1)/TB'", "-fps_mode", "vfr",
        "-video_track_timescale", "1000", "-crf", "0"))
    info = media.probe(vfr).video
    assert info.variable_rate
    wav = tone(tmp_path / "a.wav", 1.6)
    out = tmp_path / "o.mp4"
    run(vfr, wav, out, narrow_checkpoint, box=CORNER_SAFE_BOX)
    o = media.probe(out).video
    assert o.fps == info.fps and not o.variable_rate
    assert abs(o.duration - 1.6) <= 1 / float(o.fps) + 1e-6
    numbers = [read_number(f) for f in decode_frames(out)]
    # output frame k (at t = k / fps) shows the source frame on screen at t, give or take the
    # nearest neighbour: sync holds within a frame all along, no drift
    def on_screen(t):
        return int(t / 0.04 + 1e-9) if t < 0.8 else 20 + int((t - 0.8) / 0.1 + 1e-9)

    for k, shown in enumerate(numbers):
        assert abs(shown - on_screen(k / float(o.fps))) <= 1, (k, shown)
    assert numbers == sorted(numbers) and numbers[-1] >= 27


@pytest.mark.slow
def test_rotation_metadata_is_honoured(tmp_path, narrow_checkpoint):
    src = write_frames(tmp_path / "wide.mp4", numbered_frames(10, h=48, w=64), extra_out=("-crf", "0"))
    rotated = tmp_path / "rot.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(src), "-c", "copy", str(rotated))
    wav = tone(tmp_path / "a.wav", 0.4)
    out = tmp_path / "o.mp4"
    run(rotated, wav, out, narrow_checkpoint, box=(10, 10, 40, 40))
    o = media.probe(out).video
    assert (o.width, o.height) == (48, 64) and o.rotation == 0


@pytest.mark.slow
def test_odd_frame_size_encodes(tmp_path, narrow_checkpoint):
    frames = np.random.default_rng(0).integers(0, 255, (8, 71, 95, 3), dtype=np.uint8)
    src = write_frames(tmp_path / "odd.mkv", frames, extra_out=("-c:v", "ffv1"))
    wav = tone(tmp_path / "a.wav", 0.3)
    out = tmp_path / "o.mp4"
    run(src, wav, out, narrow_checkpoint, box=(10, 10, 80, 60))
    o = media.probe(out).video
    assert (o.width, o.height) == (94, 70)


@pytest.mark.slow
def test_still_image_gives_talking_video(tmp_path, example_portrait, narrow_checkpoint):
    wav = tone(tmp_path / "a.wav", 0.4)
    out = tmp_path / "o.mp4"
    result = run(example_portrait, wav, out, narrow_checkpoint)
    o = media.probe(out)
    assert o.video.fps == 25 and o.video.frame_count == 10 and (o.video.width, o.video.height) == (256, 256)
    assert o.audio is not None and result.frames_without_face == 0


@pytest.mark.slow
def test_audio_from_a_video_and_stereo_44k(tmp_path, example_video, narrow_checkpoint):
    talk = tmp_path / "talk.mp4"
    ffmpeg("-i", str(example_video), "-t", "0.4", str(talk))  # its sound: AAC, 44.1 kHz
    out = tmp_path / "o.mp4"
    run(example_video, talk, out, narrow_checkpoint, box=(50, 100, 200, 250))
    assert abs(media.probe(out).video.duration - 0.4) <= 0.04 + 1e-6
    stereo = tone(tmp_path / "s.wav", 0.5, rate=44100, channels=2)
    out2 = tmp_path / "o2.mp4"
    run(example_video, stereo, out2, narrow_checkpoint, box=(50, 100, 200, 250))
    o2 = media.probe(out2)
    assert o2.video.frame_count == 12 or o2.video.frame_count == 13
    assert o2.audio.channels == 2


def test_frames_without_face_pass_through(tmp_path, narrow_checkpoint):
    frames = np.full((10, 96, 96, 3), 90, np.uint8)
    video = write_frames(tmp_path / "noface.mp4", frames, extra_out=("-crf", "0"))
    wav = tone(tmp_path / "a.wav", 0.4)
    out = tmp_path / "o.mp4"
    result = run(video, wav, out, narrow_checkpoint)
    assert result.frames_without_face == 10
    assert np.abs(decode_frames(out).astype(int) - 90).max() <= 2
    with pytest.raises(InputError, match="no face found in frame 0"):
        run(video, wav, tmp_path / "o2.mp4", narrow_checkpoint, on_no_face="error")
    assert not (tmp_path / "o2.mp4").exists()


@pytest.mark.slow
def test_attnwav2lip_checkpoint_dubs(tmp_path, example_video, attn_checkpoint):
    wav = tone(tmp_path / "a.wav", 0.4)
    out = tmp_path / "o.mp4"
    result = run(example_video, wav, out, attn_checkpoint, box=(50, 100, 200, 250))
    assert result.model == "attnwav2lip" and media.probe(out).video.frame_count == 10


@pytest.mark.slow
def test_s3fd_path_with_local_weights(tmp_path, example_video, legacy_checkpoint):
    # the published s3fd-619a316812.pth and wav2lip.pth are in torch's legacy (pre-zip) format
    from face_alignment.detection.sfd.net_s3fd import s3fd

    torch.manual_seed(0)
    weights = tmp_path / "s3fd.pth"
    torch.save(s3fd().state_dict(), weights, _use_new_zipfile_serialization=False)
    clip, wav = tmp_path / "clip.mp4", tone(tmp_path / "a.wav", 0.08)  # 2 frames: S3FD's VGG-16 is slow on a CPU
    ffmpeg("-i", str(example_video), "-frames:v", "2", str(clip))
    out = tmp_path / "o.mp4"
    result = run(clip, wav, out, legacy_checkpoint, detector="s3fd", s3fd_weights=str(weights))
    assert media.probe(out).video.frame_count == result.frames == 2
    # random S3FD weights score no face above the 0.8 threshold: every frame passes through
    assert result.frames_without_face == 2
    lower_face = (slice(175, 250), slice(50, 200))  # where a dubbed mouth would be (box 100 250 50 200)
    diff = np.abs(decode_frames(out).astype(int) - decode_frames(clip).astype(int))
    assert diff[:, lower_face[0], lower_face[1]].mean() < 3  # re-encoding noise only


@pytest.mark.slow
def test_small_face_in_a_large_frame_is_found_by_the_second_look(tmp_path, example_portrait, narrow_checkpoint):
    # An 80 px face in a 1280x720 frame vanishes at the 320 px detection size; the frames are
    # searched again at 640 px, so the face is dubbed rather than skipped.
    face = cv2.resize(cv2.imread(str(example_portrait)), (80, 80))
    frames = np.full((5, 720, 1280, 3), 30, np.uint8)
    frames[:, 300:380, 600:680] = face
    video = write_frames(tmp_path / "wide.mp4", frames, extra_out=("-crf", "10"))
    wav = tone(tmp_path / "a.wav", 0.2)
    result = run(video, wav, tmp_path / "o.mp4", narrow_checkpoint)
    assert result.frames == 5 and result.frames_without_face == 0
    out = decode_frames(tmp_path / "o.mp4")
    changed = np.abs(out.astype(int) - decode_frames(video).astype(int)).max(axis=(0, 3)) > 20
    ys, xs = np.nonzero(changed)
    assert ys.min() >= 300 and ys.max() < 400 and xs.min() >= 590 and xs.max() < 690
