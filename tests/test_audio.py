"""lipsync_cli.audio: decoding to 16 kHz mono, Wav2Lip's mel, and the window each frame uses."""

from __future__ import annotations

import wave
from fractions import Fraction

import librosa
import numpy as np
import pytest
import scipy.signal

from conftest import ffmpeg, tone
from lipsync_cli import audio
from lipsync_cli.errors import InputError

NTSC = Fraction(30000, 1001)


def reference_mel(wav: np.ndarray) -> np.ndarray:
    """Wav2Lip's audio.melspectrogram, written out with librosa and scipy."""
    y = scipy.signal.lfilter([1, -0.97], [1], wav)
    spec = np.abs(librosa.stft(y=y, n_fft=800, hop_length=200, win_length=800, pad_mode="reflect"))
    basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    db = 20 * np.log10(np.maximum(1e-5, basis @ spec)) - 20
    return np.clip(8 * ((db + 100) / 100) - 4, -4, 4)


@pytest.fixture(scope="module")
def speech(example_audio) -> np.ndarray:
    wav, sr = librosa.load(str(example_audio), sr=16000)
    assert sr == 16000
    return wav


# ---------------------------------------------------------------------------------------------
# The mel spectrogram


def test_melspectrogram_equals_wav2lip_recipe(speech):
    ours = audio.melspectrogram(speech)
    ref = reference_mel(speech)
    assert ours.shape == ref.shape
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    # The example really is speech: the spectrogram is not flat and not clipped everywhere.
    assert ours.min() >= -4 and ours.max() <= 4
    assert ours.std() > 0.5
    assert np.mean(np.abs(ours) < 4) > 0.5


def test_melspectrogram_80_frames_per_second(speech):
    mel = audio.melspectrogram(speech)
    assert mel.shape == (80, 1 + len(speech) // 200)
    assert len(speech) == 3 * 16000
    assert mel.shape[1] == 241  # 3 s at 80 frames per second, plus the centred last frame


def test_melspectrogram_first_and_last_frames_use_reflection(speech):
    """librosa >= 0.10 pads with zeros by default; the published models saw reflection padding."""
    ours = audio.melspectrogram(speech)
    y = scipy.signal.lfilter([1, -0.97], [1], speech)
    zero_pad = np.abs(librosa.stft(y=y, n_fft=800, hop_length=200, win_length=800, pad_mode="constant"))
    basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    zero_db = np.clip(8 * ((20 * np.log10(np.maximum(1e-5, basis @ zero_pad)) - 20 + 100) / 100) - 4, -4, 4)
    # Away from the edges the padding does not matter; at the edges ours is the reflect one.
    np.testing.assert_allclose(ours[:, 3:-3], zero_db[:, 3:-3], atol=1e-4)
    assert np.abs(ours[:, 0] - zero_db[:, 0]).max() > 1e-2


def test_melspectrogram_of_short_and_silent_input():
    silent = np.zeros(16000, np.float32)
    mel = audio.melspectrogram(silent)
    assert mel.shape == (80, 81)
    assert np.all(mel == -4.0)  # silence sits on the floor of the normalised range



@pytest.mark.filterwarnings("ignore:n_fft=800 is too large")
@pytest.mark.parametrize("n", [300, 400])
def test_melspectrogram_of_very_short_audio_matches_the_recipe(n):
    wav = (np.random.default_rng(n).standard_normal(n) * 0.1).astype(np.float32)
    ours = audio.melspectrogram(wav)
    assert ours.shape == (80, 1 + n // 200)
    np.testing.assert_allclose(ours, reference_mel(wav), atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------
# Loading


@pytest.mark.parametrize("length", [0, 1, 300, 400, 401, 561, 16000 * 3 + 7, None])
def test_mfcc_equals_python_speech_features(speech, length):
    """audio.mfcc_100hz is python_speech_features.mfcc with its defaults on 16-bit values (the
    front end SyncNet, DAVS and Light-ASD were trained on), framing and padding included."""
    psf = pytest.importorskip("python_speech_features")
    x = speech if length is None else speech[:length]
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767)
    ours = audio.mfcc_100hz(x)
    if length == 0:  # the package cannot take no samples; one silent frame here
        assert ours.shape == (13, 1)
        return
    want = psf.mfcc(pcm, 16000).T
    assert ours.shape == want.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-4)
    if length is None:
        assert ours.shape[1] == 1 + int(np.ceil((len(x) - 400) / 160))


def test_mfcc_of_silence_is_finite():
    m = audio.mfcc_100hz(np.zeros(16000, np.float32))
    assert m.shape == (13, 99) and np.isfinite(m).all()


def test_load_audio_wav_16k_is_unchanged(example_audio, speech):
    a = audio.load_audio(str(example_audio))
    assert a.source_rate == 16000 and a.source_channels == 1
    assert a.samples.dtype == np.float32
    assert a.duration == pytest.approx(3.0, abs=1e-3)
    np.testing.assert_allclose(a.samples, speech, atol=1e-6)


def test_load_audio_44k_stereo_matches_librosa(tmp_path):
    path = tmp_path / "stereo44k.wav"
    # Two different channels, so a downmix that takes one channel would be caught.
    ffmpeg("-f", "lavfi", "-i", "aevalsrc=0.5*sin(2*PI*220*t)|0.3*sin(2*PI*1330*t):s=44100:d=1.5",
           "-c:a", "pcm_s16le", str(path))
    ref, _ = librosa.load(str(path), sr=16000, mono=True)
    left, _ = librosa.load(str(path), sr=16000, mono=False)
    assert left.shape[0] == 2 and np.abs(left[0] - left[1]).max() > 0.3

    a = audio.load_audio(str(path))
    assert a.source_rate == 44100 and a.source_channels == 2
    assert len(a.samples) == len(ref) == 24000
    np.testing.assert_allclose(a.samples, ref, atol=1e-4)
    # And the mel the model sees is the one librosa's loading gives.
    np.testing.assert_allclose(audio.melspectrogram(a.samples), reference_mel(ref), atol=1e-3)


def test_load_audio_from_the_track_of_an_mp4(example_video):
    a = audio.load_audio(str(example_video))
    assert a.source_rate == 44100
    assert a.duration == pytest.approx(2.0, abs=0.05)
    assert np.abs(a.samples).max() > 0.01  # real sound, not silence


def test_load_audio_m4a_and_aac(tmp_path):
    src = tone(tmp_path / "src.wav", 1.0, rate=16000)
    ref, _ = librosa.load(str(src), sr=16000)
    # m4a carries an edit list that trims the encoder's priming samples; raw ADTS .aac cannot, so
    # its decode is one AAC frame (1024 samples, 64 ms at 16 kHz) plus padding longer.
    for name, slack in (("speech.m4a", 0.02), ("speech.aac", 0.15)):
        out = tmp_path / name
        ffmpeg("-i", str(src), "-c:a", "aac", "-b:a", "128k", str(out))
        a = audio.load_audio(str(out))
        assert a.source_rate == 16000 and a.source_channels == 1
        assert 1.0 - 0.02 <= a.duration <= 1.0 + slack, name
        # A lossy codec: the waveform is close, not equal; compare energy in the common span.
        n = min(len(ref), len(a.samples))
        assert np.sqrt(np.mean(a.samples[:n] ** 2)) == pytest.approx(np.sqrt(np.mean(ref[:n] ** 2)), rel=0.1)


def test_load_audio_of_an_image_is_an_input_error(example_portrait):
    with pytest.raises(InputError, match="no audio"):
        audio.load_audio(str(example_portrait))


def test_load_audio_of_an_empty_file_is_an_input_error(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(InputError):
        audio.load_audio(str(empty))


def test_load_audio_of_a_wav_with_no_samples_is_an_input_error(tmp_path):
    path = tmp_path / "nosamples.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"")
    assert path.stat().st_size == 44
    with pytest.raises(InputError):
        audio.load_audio(str(path))


def test_load_audio_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        audio.load_audio(str(tmp_path / "nope.wav"))


# ---------------------------------------------------------------------------------------------
# Which mel window drives which frame


def test_window_start_at_25_fps_is_i_times_3_2():
    n = 10_000
    for i in range(0, 500):
        assert audio.window_start(i, 25, n) == int(i * 80 / 25) == int(i * 3.2)
    assert [audio.window_start(i, Fraction(25), n) for i in range(6)] == [0, 3, 6, 9, 12, 16]


def test_window_start_at_ntsc_rate_uses_the_exact_rate():
    n = 100_000
    for i in range(0, 2000):
        assert audio.window_start(i, NTSC, n) == int(i * (80 / (30000 / 1001)))
    # 29.97 is not 30: by frame 1000 the two rates are three mel frames apart.
    assert audio.window_start(1000, NTSC, n) == 2669
    assert audio.window_start(1000, 30, n) == 2666
    assert audio.window_start(1000, NTSC, n) != audio.window_start(1000, 30, n)


def test_last_windows_clamp_to_the_final_16_frames():
    n = 241  # 3 s of audio
    assert audio.window_start(70, 25, n) == 224  # 70 * 3.2 = 224 = 241 - 17: still inside
    assert audio.window_start(71, 25, n) == n - 16
    assert audio.window_start(500, 25, n) == n - 16


def test_mel_windows_stack_the_right_slices(speech):
    mel = audio.melspectrogram(speech)
    idx = list(range(80))  # past the 75 frames the audio covers at 25 fps
    win = audio.mel_windows(mel, Fraction(25), idx)
    assert win.shape == (80, 80, 16)
    assert win.dtype == np.float32
    for i in idx:
        s = min(int(i * 3.2), mel.shape[1] - 16)
        np.testing.assert_array_equal(win[i], mel[:, s:s + 16])
    np.testing.assert_array_equal(win[-1], mel[:, -16:])
    # Non-consecutive indices (a resumed or sharded run) pick the same windows.
    np.testing.assert_array_equal(audio.mel_windows(mel, Fraction(25), [40, 7]), win[[40, 7]])


def test_mel_windows_pad_audio_shorter_than_one_window():
    mel = audio.melspectrogram(np.full(1600, 0.1, np.float32) * np.sin(np.arange(1600)))  # 0.1 s
    assert mel.shape[1] < 16
    win = audio.mel_windows(mel, 25, [0, 1, 2])
    assert win.shape == (3, 80, 16)
    np.testing.assert_array_equal(win[0][:, : mel.shape[1]], mel)
    assert np.all(win[0][:, mel.shape[1]:] == -4.0)


def test_output_frame_count():
    assert audio.output_frame_count(8.0, 25) == 200
    assert audio.output_frame_count(5.0, NTSC) == 150
    assert audio.output_frame_count(3.0, Fraction(25)) == 75
    assert audio.output_frame_count(0.001, 25) == 1  # never zero frames


@pytest.mark.parametrize("seconds,rate,layout", [(56.3, 44100, "stereo"), (0.04, 16000, "mono"), (1.0, 48000, "mono")])
def test_mel_file_is_the_whole_mel_read_back(tmp_path, seconds, rate, layout):
    """The dub's mel, computed as the sound decodes and kept on disk, is exactly the mel of the
    whole decoded sound: across STFT blocks (56 s: three blocks), at the ends (reflection), and
    for a sound shorter than one window; its windows are mel_windows' windows."""
    import tempfile

    path = tmp_path / "sound.wav"
    # noise under two tones, different in each channel: every block sees a different signal
    ffmpeg("-f", "lavfi", "-i", f"aevalsrc=0.3*sin(2*PI*220*t)+0.1*random(0)|0.2*sin(2*PI*1330*t)+0.1*random(1):s={rate}:d={seconds}",
           "-ac", "2" if layout == "stereo" else "1", "-c:a", "pcm_s16le", str(path))
    whole = audio.melspectrogram(audio.load_audio(str(path)).samples)
    before = set(__import__("os").listdir(tempfile.gettempdir()))
    mel = audio.MelFile(str(path))
    try:
        assert mel.frames == whole.shape[1] and mel.duration == pytest.approx(seconds, abs=1e-3)
        assert np.array_equal(mel.read(0, mel.frames), whole)
        for fps in (25, NTSC):
            frames = list(range(0, int(seconds * float(fps)) + 3))  # windows past the end use the last 16 frames
            for group in (g for g in (frames[:5], frames[5:13], frames[-4:]) if g):
                assert np.array_equal(mel.windows(fps, group), audio.mel_windows(whole, fps, group))
        assert not any("lipsync-mel" in f for f in set(__import__("os").listdir(tempfile.gettempdir())) - before)
    finally:
        mel.close()


def test_mel_file_errors_as_loading_does(tmp_path):
    silent = tmp_path / "silent.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x64:d=0.2", str(silent))
    with pytest.raises(InputError, match="no audio stream"):
        audio.MelFile(str(silent))
    tiny = tmp_path / "tiny.wav"
    ffmpeg("-f", "lavfi", "-i", "aevalsrc=0:s=16000:d=0.005", "-c:a", "pcm_s16le", str(tiny))
    with pytest.raises(InputError, match="too short"):
        audio.MelFile(str(tiny))
