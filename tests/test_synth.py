"""The synthetic corpus: speech, faces, layouts, truth files, determinism, and the sync measure."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile

from conftest import TRAIN_CORPUS, WORDS_CORPUS, decode_frames
from lipsync_cli import media
from lipsync_cli.cli import main
from lipsync_cli.errors import InputError
from lipsync_cli.synth import speech
from lipsync_cli.synth.corpus import CorpusSpec, make_corpus, split_members, truth_opening
from lipsync_cli.synth.face import crop_placement, make_identity, render
from lipsync_cli.synth.sync import mouth_opening, openings_in_frames, sync_score


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def read_list(root: Path, split: str) -> list[str]:
    return (root / "filelists" / f"{split}.txt").read_text().splitlines()


# ------------------------------------------------------------------------------- speech


def test_vocabulary_phonemes_and_visemes():
    assert len(speech.WORDS) >= 50
    for word, phones in speech.VOCABULARY.items():
        assert phones and all(p in speech.PHONEMES for p in phones), word
    for name, ph in speech.PHONEMES.items():
        assert all(0.0 <= v <= 1.0 for v in ph.viseme), name
    assert speech.PHONEMES["P"].viseme[0] == 0.0 and speech.PHONEMES["AA"].viseme[0] > 0.9  # closed / open


def _centroid(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / speech.SAMPLE_RATE)
    return float((spectrum * freqs).sum() / spectrum.sum())


def _f0(x: np.ndarray) -> float:
    x = x - x.mean()
    ac = np.correlate(x, x, "full")[len(x) - 1:]
    lo, hi = speech.SAMPLE_RATE // 400, speech.SAMPLE_RATE // 60
    return speech.SAMPLE_RATE / (lo + int(np.argmax(ac[lo:hi])))


def test_synthesis_spans_spectra_pitch_and_loudness():
    rng = np.random.default_rng(0)
    low = speech.Voice(pitch=100, formant_scale=1.0, rate=1.0, loudness=0.8, breathiness=0.0)
    high = speech.Voice(pitch=220, formant_scale=1.15, rate=1.0, loudness=0.4, breathiness=0.0)
    words = ["father", "system", "always"]
    sr = speech.SAMPLE_RATE
    for voice in (low, high):
        audio, phones, spans = speech.synthesize(words, voice, rng)
        assert audio.dtype == np.float32 and abs(np.abs(audio).max() - voice.loudness) < 1e-6
        assert [s.label for s in spans] == words
        assert phones[0].start == 0 and abs(phones[-1].end * sr - len(audio)) <= len(phones)  # rounding only
        assert all(abs(a.end - b.start) < 1e-9 for a, b in zip(phones, phones[1:]))  # contiguous
        seg = {p.label: audio[int(p.start * sr):int(p.end * sr)] for p in phones}
        assert _centroid(seg["S"]) > 3500 > 2000 > _centroid(seg["AA"])  # hiss vs vowel
        rms = lambda x: float(np.sqrt(np.mean(x ** 2)))
        pause = audio[: int(phones[0].end * sr)]
        assert rms(pause) < 0.01 * rms(seg["AA"])
        aa = next(p for p in phones if p.label == "AA")
        total = phones[-1].end
        expected = voice.pitch * (1.1 - 0.2 * (aa.start + aa.end) / 2 / total)
        assert abs(_f0(seg["AA"]) / expected - 1) < 0.1
    # the same voice and seed give the same audio; another seed varies durations
    a1 = speech.synthesize(words, low, np.random.default_rng(5))[0]
    a2 = speech.synthesize(words, low, np.random.default_rng(5))[0]
    a3 = speech.synthesize(words, low, np.random.default_rng(6))[0]
    assert np.array_equal(a1, a2) and (len(a1) != len(a3) or not np.array_equal(a1, a3))


def test_viseme_track_coarticulates():
    spans = [speech.Span("AA", 0.0, 0.2), speech.Span("P", 0.2, 0.3), speech.Span("AA", 0.3, 0.5)]
    track = speech.viseme_track(spans, np.array([0.1, 0.17, 0.2, 0.25, 0.4]))
    opening = track[:, 0]
    assert opening[0] > 0.9 and opening[4] > 0.9
    assert opening[0] > opening[1] > opening[2] > opening[3]  # closing starts before the /p/
    assert opening[3] < 0.3


# ------------------------------------------------------------------------------- faces


def test_identities_vary_and_the_mouth_follows_its_parameters():
    ids = [make_identity(np.random.default_rng([0, 2, j])) for j in range(100)]
    assert len({tuple(round(c) for c in i.skin) for i in ids}) > 90
    assert {i.hair_style for i in ids} == {0, 1, 2, 3} and 10 < sum(i.glasses for i in ids) < 60
    assert np.ptp([sum(i.skin) for i in ids]) > 300  # dark to light
    centre, radius = crop_placement(96)
    openings = []
    for o in (0.0, 0.3, 0.6, 0.9):
        crops = np.stack([render(i, (o, 0.6, 0.1), 0.0, (96, 96), centre, radius) for i in ids[:20]])
        openings.append(mouth_opening(crops))
    openings = np.array(openings)
    assert (np.diff(openings, axis=0) > 0).all()  # wider open reads as more open, for every face
    assert openings[0].max() < 0.05 and (openings[3] > 3 * openings[0]).all()  # closed: the lips' dark line only


# ------------------------------------------------------------------------------- the corpus


def test_train_layout_truth_and_splits(train_corpus):
    root = train_corpus
    meta = json.loads((root / "corpus.json").read_text())
    assert meta["spec"]["clips"] == 60 and sum(meta["clips"].values()) == 60
    seen = {}
    for split in ("train", "val", "test"):
        for line in read_list(root, split):
            folder = root / line
            truth = json.loads((folder / "truth.json").read_text())
            seen.setdefault(split, []).append(truth)
            assert truth["split"] == split and line == f"id{truth['identity']:04d}/{truth['clip']}"
            n = truth["frames"]
            assert sorted(int(p.stem) for p in folder.glob("*.jpg")) == list(range(n))  # 0.jpg .. n-1.jpg
            assert cv2.imread(str(folder / "0.jpg")).shape == (96, 96, 3)
            sound = soundfile.info(str(folder / "audio.wav"))  # the header, without a decoder process per clip
            assert sound.samplerate == 16000 and sound.channels == 1
            assert abs(sound.duration - truth["duration"]) < 1e-3 and n == round(truth["duration"] * 25)
            for key in ("mouth", "blink", "boxes", "placement"):
                assert len(truth[key]) == n
            assert truth["words"] and all(w in speech.VOCABULARY for w, _, _ in truth["words"])
            x1, y1, x2, y2 = truth["boxes"][0]
            assert 0 <= x1 < x2 <= 96 and y1 < 96 * 0.5 < y2  # the face fills the crop
    identities = {s: {t["identity"] for t in seen[s]} for s in seen}
    voices = {s: {t["voice"] for t in seen[s]} for s in seen}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not identities[a] & identities[b] and not voices[a] & voices[b]
    assert identities["train"] <= set(split_members(20)["train"])


@pytest.mark.slow
def test_same_seed_same_bytes_any_workers_other_seed_differs(tmp_path):
    spec = dataclasses.replace(TRAIN_CORPUS, clips=8)  # the session corpus's settings, fewer clips
    one = make_corpus(spec, tmp_path / "one")
    again = make_corpus(spec, tmp_path / "again", workers=2)
    assert tree_digest(again) == tree_digest(one)
    other = make_corpus(dataclasses.replace(spec, seed=4), tmp_path / "other")
    a, b = tree_digest(one), tree_digest(other)
    wavs = [k for k in a if k.endswith(".wav")]
    assert len(wavs) == 8 and sum(a[k] == b.get(k) for k in wavs) == 0


def test_words_layout_labels(words_corpus):
    root = words_corpus
    words = (root / "words.txt").read_text().splitlines()
    assert words == list(speech.WORDS)
    rows = [line.split() for s in ("train", "val", "test") for line in read_list(root, s)]
    assert len(rows) == WORDS_CORPUS.clips == 48
    for folder, word_index, person in rows:
        truth = json.loads((root / folder / "truth.json").read_text())
        assert len(truth["words"]) == 1 and truth["word"] == words[int(word_index)] == truth["words"][0][0]
        assert truth["identity"] == int(person)


def test_existing_output_refused_and_bad_spec(tmp_path, train_corpus):
    with pytest.raises(InputError, match="already exists"):
        make_corpus(CorpusSpec(clips=2), train_corpus)
    for bad in (dict(layout="faces"), dict(clips=0), dict(identities=2), dict(size=8)):
        with pytest.raises(InputError):
            make_corpus(CorpusSpec(**{"clips": 2, **bad}), tmp_path / "x")
    assert not list(tmp_path.glob(".*partial*"))


# ------------------------------------------------------------------------------- sync measure


def _scores(root: Path, splits=("val", "test")):
    clips = []
    for split in splits:
        for line in read_list(root, split):
            truth = json.loads((root / line / "truth.json").read_text())
            frames = np.stack([cv2.imread(str(root / line / f"{i}.jpg")) for i in range(truth["frames"])])
            clips.append((mouth_opening(frames), truth_opening(truth)))
    in_sync = [sync_score(v, t).correlation for v, t in clips]
    shifted = [sync_score(v[6:], t[:-6]).correlation for v, t in clips]
    swapped = [sync_score(v, clips[(k + 1) % len(clips)][1]).correlation for k, (v, _) in enumerate(clips)]
    offsets = [sync_score(v, t).best_offset for v, t in clips]
    return np.array(in_sync), np.array(shifted), np.array(swapped), offsets


def test_sync_measure_separates_truth_from_lies(train_corpus):
    in_sync, shifted, swapped, offsets = _scores(train_corpus, ("train", "val", "test"))
    assert len(in_sync) == 60
    assert in_sync.min() > 0.8 and np.median(in_sync) > 0.9
    assert np.median(shifted) < 0.2 and np.median(swapped) < 0.5
    lies = np.concatenate([shifted, swapped])
    assert (in_sync[:, None] > lies[None, :]).mean() > 0.98
    assert sum(o == 0 for o in offsets) >= 0.9 * len(offsets)


@pytest.mark.slow
def test_videos_layout_through_dub(tmp_path, videos_corpus, narrow_checkpoint):
    """Full-frame synthetic videos play in `dub`; the measure sees the source in sync with its
    audio and a random generator's mouths out of sync."""
    root = videos_corpus
    name = read_list(root, "train")[0] if read_list(root, "train") else read_list(root, "val")[0]
    video = root / name
    truth = json.loads(video.with_suffix(".json").read_text())
    info = media.probe(video)
    assert (info.video.width, info.video.height, info.video.frame_count) == (200, 160, truth["frames"])
    assert info.audio is not None and abs(info.video.duration - truth["duration"]) < 0.05
    source = openings_in_frames(decode_frames(video), truth["placement"])
    assert sync_score(source, truth_opening(truth)).correlation > 0.85

    x1, y1, x2, y2 = truth["boxes"][0]
    out = tmp_path / "dubbed.mp4"
    wav = root / "audio" / (Path(name).stem + ".wav")
    assert main(["dub", str(video), str(wav), "-o", str(out), "-c", str(narrow_checkpoint), "-q",
                 "--box", str(y1), str(y2 + 4), str(x1), str(x2)]) == 0
    dubbed = openings_in_frames(decode_frames(out), truth["placement"])
    assert sync_score(dubbed, truth_opening(truth)).correlation < 0.5


def test_synth_command(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["synth", str(out), "--clips", "4", "--identities", "6", "--voices", "6", "-q"]) == 0
    assert sum(len(read_list(out, s)) for s in ("train", "val", "test")) == 4
    assert main(["synth", str(out), "--clips", "4"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "x"), "--layout", "nope"]) == 2
