"""lipsync_cli.media on real files: probing, streaming decode and encode, atomic outputs, spills."""

from __future__ import annotations

import os
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import decode_frames, ffmpeg, numbered_frames, permission_bits_apply, read_number, tone, write_frames
from lipsync_cli import media, outputs
from lipsync_cli.errors import InputError, LipsyncError

LOSSLESS_MP4 = ("-c:v", "libx264rgb", "-crf", "0", "-preset", "ultrafast")


def header(path: Path) -> str:
    """ffmpeg's own description of a file's streams (independent of media.probe's parsing)."""
    proc = subprocess.run([media.ffmpeg_binary(), "-hide_banner", "-nostdin", "-i", str(path)],
                          capture_output=True, text=True)
    return proc.stderr


def frame_times(path: Path) -> list[float]:
    """Presentation time of each decoded frame, as ffmpeg's showinfo filter reports it."""
    proc = subprocess.run([media.ffmpeg_binary(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0",
                           "-vf", "showinfo", "-f", "null", "-"], capture_output=True, text=True)
    return [float(t) for t in re.findall(r"pts_time:\s*([-\d.]+)", proc.stderr)]


def counter_frames(n: int, h: int = 48, w: int = 64, step: int = 7) -> np.ndarray:
    """Frames numbered in the top-left corner (grey 7*i, so up to 36 frames stay distinct),
    with an asymmetric coloured patch so orientation errors show."""
    frames = np.full((n, h, w, 3), 40, np.uint8)
    for i in range(n):
        frames[i, :16, :16] = step * i
    frames[:, h - 12:, w - 20:] = (200, 10, 90)
    return frames


# ---------------------------------------------------------------------------------------------
# probe


def test_probe_25fps_clip(tmp_path):
    path = write_frames(tmp_path / "c25.mp4", numbered_frames(30), "25", LOSSLESS_MP4)
    info = media.probe(path)
    v = info.video
    assert v is not None and info.audio is None
    assert v.fps == Fraction(25) and isinstance(v.fps, Fraction)
    assert v.frame_count == 30
    assert v.duration == pytest.approx(1.2, abs=1e-6)
    assert (v.width, v.height, v.rotation) == (64, 64, 0)
    assert not v.variable_rate and not v.is_still
    assert v.codec == "h264"


def test_probe_example_clip(example_video):
    info = media.probe(example_video)
    assert info.video.fps == 25 and info.video.frame_count == 50
    assert (info.video.width, info.video.height) == (256, 256)
    assert info.audio is not None and info.audio.codec == "aac"


def test_probe_ntsc_rate_is_exact(tmp_path):
    path = write_frames(tmp_path / "ntsc.mp4", numbered_frames(60), "30000/1001", LOSSLESS_MP4)
    v = media.probe(path).video
    assert v.fps == Fraction(30000, 1001)  # not 29.97, not 30
    assert v.frame_count == 60
    assert v.duration == pytest.approx(60 * 1001 / 30000, abs=1e-3)
    assert not v.variable_rate


def test_probe_matroska_25fps(tmp_path):
    path = write_frames(tmp_path / "c25.mkv", numbered_frames(30), "25", ("-c:v", "ffv1"))
    v = media.probe(path).video
    assert v.fps == Fraction(25) and v.frame_count == 30 and not v.variable_rate



@pytest.mark.parametrize("rate", ["30000/1001", "30", "24000/1001"])
def test_probe_matroska_rate_with_millisecond_timestamps(tmp_path, rate):
    path = write_frames(tmp_path / "clip.mkv", numbered_frames(90), rate, ("-c:v", "ffv1"))
    v = media.probe(path).video
    assert v.frame_count == 90
    assert v.duration == pytest.approx(90 / float(Fraction(rate)), abs=2e-3)
    assert v.fps == Fraction(rate)


def test_probe_variable_frame_rate(tmp_path):
    # 25 frames at 25 fps, then 10 frames at 10 fps: real per-frame timestamps, no duplication.
    pts = "if(lt(N\\,25)\\,N/25\\,1+(N-25)/10)/TB"
    path = write_frames(tmp_path / "vfr.mp4", counter_frames(35), "25",
                        ("-vf", f"settb=1/1000,setpts={pts}", "-fps_mode", "passthrough",
                         "-enc_time_base", "1/1000", "-bf", "0", *LOSSLESS_MP4))
    times = frame_times(path)
    steps = np.round(np.diff(times), 2)
    assert len(times) == 35
    assert set(steps[:24]) == {0.04} and set(steps[25:]) == {0.1}  # the file really is VFR

    v = media.probe(path).video
    assert v.variable_rate
    assert v.frame_count == 35
    assert 1.9 <= v.duration <= 2.1
    assert float(v.fps) == pytest.approx(v.frame_count / v.duration, rel=1e-3)

    # The reader resamples to that average rate: output frame i shows the source frame on
    # screen at i / fps (within one frame for the rounding of the fps filter).
    frames = decode_frames(path)
    shown = [int(round(float(f[4:12, 4:12].mean()) / 7)) for f in frames]
    assert abs(len(frames) - 35) <= 1
    source_pts = np.array([k / 25 if k < 25 else 1 + (k - 25) / 10 for k in range(35)])
    expected = [int(np.searchsorted(source_pts, i / float(v.fps) + 1e-6, side="right") - 1) for i in range(len(frames))]
    assert max(abs(a - b) for a, b in zip(shown, expected)) <= 1
    assert shown == sorted(shown)
    # Not a plain frame-by-frame read, which would show frame i at output i.
    assert shown[10] >= 13


@pytest.mark.parametrize("degrees", [90, 270, 180])
def test_probe_and_read_a_rotated_clip(tmp_path, degrees):
    frames = counter_frames(5, h=48, w=64)
    src = write_frames(tmp_path / "flat.mp4", frames, "25", LOSSLESS_MP4)
    rotated = tmp_path / "rotated.mp4"
    # display_rotation is an input option: it sets the display matrix on the stream-copied output.
    ffmpeg("-display_rotation", str(degrees), "-i", str(src), "-c", "copy", str(rotated))
    assert "rotation of" in header(rotated)

    v = media.probe(rotated).video
    size = (64, 48) if degrees == 180 else (48, 64)
    assert (v.width, v.height, v.rotation) == (*size, degrees)
    decoded = decode_frames(rotated)
    assert decoded.shape == (5, size[1], size[0], 3)
    # display_rotation is counter-clockwise, as np.rot90; lossless, so exactly.
    np.testing.assert_array_equal(decoded[3], np.rot90(frames[3], degrees // 90))


def test_probe_odd_size(tmp_path):
    frames = numbered_frames(10, h=71, w=95)
    path = write_frames(tmp_path / "odd.mkv", frames, "25", ("-c:v", "ffv1"))
    v = media.probe(path).video
    assert (v.width, v.height) == (95, 71)
    assert v.frame_count == 10 and v.fps == 25
    np.testing.assert_array_equal(decode_frames(path), frames)


def test_probe_still_image(example_portrait):
    info = media.probe(example_portrait)
    assert info.video is not None and info.audio is None
    assert info.video.frame_count == 1 and info.video.is_still
    assert (info.video.width, info.video.height) == (256, 256)
    frames = decode_frames(example_portrait)
    assert frames.shape == (1, 256, 256, 3)
    import cv2

    np.testing.assert_array_equal(frames[0], cv2.imread(str(example_portrait)))


def test_probe_audio_only(tmp_path, example_audio):
    info = media.probe(example_audio)
    assert info.video is None
    assert (info.audio.rate, info.audio.channels) == (16000, 1)
    stereo = tone(tmp_path / "stereo.wav", 0.5, rate=44100, channels=2)
    info = media.probe(stereo)
    assert info.video is None
    assert (info.audio.rate, info.audio.channels, info.audio.codec) == (44100, 2, "pcm_s16le")


def test_probe_bad_inputs(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 20)
    with pytest.raises(InputError, match="notes.mp4"):
        media.probe(fake)
    with pytest.raises(InputError, match="no such file"):
        media.probe(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="folder"):
        media.probe(tmp_path)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError):
        media.probe(empty)


# ---------------------------------------------------------------------------------------------
# FrameReader


def test_frame_reader_exact_pixels_in_chunks(tmp_path):
    frames = numbered_frames(23, h=48, w=64)
    rng = np.random.default_rng(0)
    frames[:, 20:, 20:] = rng.integers(0, 256, frames[:, 20:, 20:].shape, dtype=np.uint8)  # noise: no smoothing hides
    for path in (write_frames(tmp_path / "lossless.mp4", frames, "25", LOSSLESS_MP4),
                 write_frames(tmp_path / "lossless.mkv", frames, "25", ("-c:v", "ffv1"))):
        reader = media.FrameReader(media.probe(path), chunk=5)
        chunks = list(reader)
        assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
        assert all(c.dtype == np.uint8 and c.shape[1:] == (48, 64, 3) for c in chunks)
        np.testing.assert_array_equal(np.concatenate(chunks), frames)
        assert reader.frames_read == 23


def test_frame_reader_long_clip_chunk_by_chunk(tmp_path):
    path = tmp_path / "ten_seconds.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=10", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path))
    info = media.probe(path)
    assert info.video.frame_count == 250
    sizes = [len(c) for c in media.FrameReader(info, chunk=16)]
    assert sizes == [16] * 15 + [10]


def test_frame_reader_stopped_early_ends_ffmpeg(tmp_path):
    path = write_frames(tmp_path / "c.mp4", numbered_frames(40), "25", LOSSLESS_MP4)
    reader = media.FrameReader(media.probe(path), chunk=4)
    it = iter(reader)
    first = next(it)
    assert [read_number(f) for f in first] == [0, 1, 2, 3]
    proc = reader._proc
    it.close()
    assert reader._proc is None and proc.poll() is not None


# ---------------------------------------------------------------------------------------------
# FrameWriter


def stream_lines(path: Path) -> list[str]:
    return [line for line in header(path).splitlines() if "Stream #" in line]


def test_frame_writer_video_and_audio(tmp_path, example_audio):
    frames = numbered_frames(30, h=64, w=96)
    out = tmp_path / "out.mp4"
    writer = media.FrameWriter(str(out), 96, 64, Fraction(25), str(example_audio))
    for chunk in np.array_split(frames, 4):
        for f in chunk:
            writer.write(f)
    writer.close()
    assert writer.frames_written == 30

    info = media.probe(out)
    assert info.video.codec == "h264" and info.audio.codec == "aac"
    assert (info.video.width, info.video.height) == (96, 64)
    assert info.video.fps == 25 and info.video.frame_count == 30
    video_line = next(line for line in stream_lines(out) if "Video:" in line)
    assert "yuv420p" in video_line
    decoded = decode_frames(out)
    assert [read_number(f) for f in decoded] == list(range(30))  # every frame, in order
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 2


def test_frame_writer_odd_size_is_cropped_to_even(tmp_path):
    frames = numbered_frames(12, h=71, w=95)
    out = tmp_path / "odd.mp4"
    writer = media.FrameWriter(str(out), 95, 71, Fraction(30000, 1001), None)
    for f in frames:
        writer.write(f)
    writer.close()
    info = media.probe(out)
    assert (info.video.width, info.video.height) == (94, 70)
    assert info.video.frame_count == 12 and info.video.fps == Fraction(30000, 1001)
    assert info.audio is None
    decoded = decode_frames(out)
    assert [read_number(f) for f in decoded] == list(range(12))  # top-left kept: the crop is bottom/right


def test_frame_writer_failure_is_a_lipsync_error(tmp_path):
    writer = media.FrameWriter(str(tmp_path / "no_such_dir" / "out.mp4"), 64, 64, Fraction(25), None)
    with pytest.raises(LipsyncError):
        for f in numbered_frames(200):
            writer.write(f)
        writer.close()
    writer.abort()


# ---------------------------------------------------------------------------------------------
# atomic_output (lipsync_cli/outputs.py: the temporary file of every output)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_output_success(tmp_path):
    final = tmp_path / "out.mp4"
    with outputs.atomic_output(final) as tmp:
        assert Path(tmp).parent == tmp_path and Path(tmp) != final
        assert ".partial" in Path(tmp).name and tmp.endswith(".mp4")  # ffmpeg picks the muxer by suffix
        assert not final.exists()
        Path(tmp).write_bytes(b"done")
    assert final.read_bytes() == b"done"
    assert leftovers(tmp_path) == ["out.mp4"]


def test_atomic_output_failure_leaves_nothing(tmp_path):
    final = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with outputs.atomic_output(final) as tmp:
            Path(tmp).write_bytes(b"half")
            raise RuntimeError("encoder crashed")
    assert leftovers(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        with outputs.atomic_output(final) as tmp:
            Path(tmp).write_bytes(b"half")
            raise KeyboardInterrupt
    assert leftovers(tmp_path) == []


def test_atomic_output_existing_file(tmp_path):
    final = tmp_path / "out.mp4"
    final.write_bytes(b"old")
    with pytest.raises(InputError, match="already exists"):
        with outputs.atomic_output(final):
            pass
    assert final.read_bytes() == b"old"
    # A failure with force keeps the old file.
    with pytest.raises(RuntimeError):
        with outputs.atomic_output(final, force=True) as tmp:
            Path(tmp).write_bytes(b"half")
            raise RuntimeError
    assert final.read_bytes() == b"old"
    with outputs.atomic_output(final, force=True) as tmp:
        Path(tmp).write_bytes(b"new")
    assert final.read_bytes() == b"new"
    assert leftovers(tmp_path) == ["out.mp4"]


def test_atomic_output_bad_destinations(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        with outputs.atomic_output(tmp_path / "missing_dir" / "out.mp4"):
            pass
    with pytest.raises(InputError, match="does not exist"):
        with outputs.atomic_output("/proc/lipsync_nonexistent_dir/x.mp4"):
            pass
    with pytest.raises(InputError, match="folder"):
        with outputs.atomic_output(tmp_path, force=True):
            pass
    # A folder that exists but cannot take a new file (root ignores permission bits; sysfs does not).
    entered = []
    with pytest.raises(InputError, match="cannot write"):
        with outputs.atomic_output("/sys/lipsync_out.mp4"):
            entered.append(True)
    assert not entered
    assert not os.path.exists("/sys/lipsync_out.mp4")


def test_atomic_output_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    entered = []
    with permission_bits_apply():  # root (how CI runs) would ignore them
        with pytest.raises(InputError, match="cannot write .*Permission denied"):
            with outputs.atomic_output(folder / "out.mp4"):
                entered.append(True)
    assert not entered and list(folder.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# FrameSpill


def test_frame_spill_reads_back_any_frame_exactly():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (37, 71, 95, 3), dtype=np.uint8)
    spill = media.FrameSpill(95, 71)
    try:
        for chunk in (frames[:16], frames[16:17], frames[17:33], frames[33:]):
            spill.append(chunk)
        assert spill.count == 37
        for i in [36, 0, 17, 16, 5, 36, 33, 1]:  # any order, backwards too (ping-pong replay)
            got = spill.read(i)
            assert got.shape == (71, 95, 3) and got.dtype == np.uint8
            np.testing.assert_array_equal(got, frames[i])
        # Appending after reads continues where the frames end.
        spill.append(frames[:2])
        assert spill.count == 39
        np.testing.assert_array_equal(spill.read(38), frames[1])
        np.testing.assert_array_equal(spill.read(36), frames[36])
    finally:
        spill.close()


def test_user_frame_rates_mean_the_standard_rate():
    from fractions import Fraction

    from lipsync_cli.media import parse_frame_rate

    assert parse_frame_rate("29.97") == Fraction(30000, 1001)
    assert parse_frame_rate("23.976") == Fraction(24000, 1001)
    assert parse_frame_rate("30000/1001") == Fraction(30000, 1001)
    assert parse_frame_rate("25") == 25 and parse_frame_rate("12.5") == Fraction(25, 2)
    for bad in ("fast", "0", "-25", "1/0"):
        with pytest.raises(ValueError):
            parse_frame_rate(bad)
