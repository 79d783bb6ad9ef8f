"""Several faces: every face tracked, who speaks when (`lipsync speakers`), and `dub --speaker`.

Composites are built here with ffmpeg from the real clips of examples/: talk2.mp4 and talk.mp4
(two people talking, each with their own speech) and listener.mp4 (a real face that does not
speak), side by side, so the truth is known per frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lipsync_cli import media
from lipsync_cli.cli import main
from lipsync_cli.faces import MultiFaceTracker
from lipsync_cli.faces.base import Detection
from lipsync_cli.faces import speakers as sp

from conftest import EXAMPLES, decode_frames, ffmpeg

SIDE = 256  # each panel of a composite is 256 pixels wide
TALK2, TALK, LISTENER = EXAMPLES / "talk2.mp4", EXAMPLES / "talk.mp4", EXAMPLES / "listener.mp4"


@pytest.fixture(scope="module")
def composites(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("composites")
    out = {}
    # a speaker (left) beside a face that does not speak (right), the speaker's own sound
    out["beside"] = d / "beside.mp4"
    ffmpeg("-i", str(TALK2), "-i", str(LISTENER), "-filter_complex", "[0:v][1:v]hstack=inputs=2[v]",
           "-map", "[v]", "-map", "0:a", "-t", "4", "-c:v", "libx264", "-crf", "18", "-c:a", "aac", str(out["beside"]))
    # the same picture without a sound track
    out["mute"] = d / "mute.mp4"
    ffmpeg("-i", str(out["beside"]), "-an", "-c:v", "copy", str(out["mute"]))
    # turns: the left face speaks for 2 s while the right one holds still, then the other way round
    out["turns"] = d / "turns.mp4"
    ffmpeg("-i", str(TALK2), "-i", str(TALK), "-filter_complex",
           "[0:v]trim=0:2,setpts=PTS-STARTPTS,tpad=stop_mode=clone:stop_duration=2[l];"
           "[1:v]tpad=start_mode=clone:start_duration=2[r];[l][r]hstack=inputs=2[v];"
           "[0:a]atrim=0:2,asetpts=PTS-STARTPTS[a0];[1:a]atrim=0:2,asetpts=PTS-STARTPTS[a1];"
           "[a0][a1]concat=n=2:v=0:a=1[a]",
           "-map", "[v]", "-map", "[a]", "-t", "4", "-c:v", "libx264", "-crf", "18", "-c:a", "aac", str(out["turns"]))
    # two faces that do not speak, with someone's speech
    out["listeners"] = d / "listeners.mp4"
    ffmpeg("-i", str(LISTENER), "-i", str(TALK2), "-filter_complex", "[0:v]split[a][b];[b]hflip[c];[a][c]hstack=inputs=2[v]",
           "-map", "[v]", "-map", "1:a", "-t", "4", "-c:v", "libx264", "-crf", "18", "-c:a", "aac", str(out["listeners"]))
    # what the dub tests dub with: 1.2 s of speech (30 frames), except the turns that need 3 s
    out["speech"] = d / "speech.wav"
    ffmpeg("-i", str(EXAMPLES / "speech.wav"), "-t", "1.2", str(out["speech"]))
    # no face at all
    out["empty"] = d / "empty.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=128x128:d=1:r=25", "-f", "lavfi", "-i",
           "sine=frequency=220:duration=1", "-shortest", "-c:v", "libx264", "-c:a", "aac", str(out["empty"]))
    return out


def det(x1, y1, x2, y2, score=0.9) -> Detection:
    return Detection((float(x1), float(y1), float(x2), float(y2)), score)


# ------------------------------------------------------------------------------- tracking


def test_every_face_keeps_its_track_through_misses_and_moves():
    tracker = MultiFaceTracker(max_lost=3)
    left, right = det(10, 10, 60, 70), det(200, 10, 250, 70)
    frames = [[left, right], [right, left], [right], [], [det(14, 12, 64, 72), right],  # left missed twice
              [det(40, 14, 90, 74), right]]  # left moved by more than half its width in one step: no overlap
    tracks = tracker.tracks(frames)
    assert tracks[0] == {0: left.box, 1: right.box}
    assert tracks[1] == {0: left.box, 1: right.box}  # the order of the detections does not matter
    assert tracks[2] == {1: right.box} and tracks[3] == {}
    assert set(tracks[4]) == {0, 1} and set(tracks[5]) == {0, 1}
    # a face lost for longer than max_lost comes back as a new track; a new face gets a new id
    for _ in range(4):
        tracker.step([right])
    assert set(tracker.step([left, right, det(120, 100, 160, 150)])) == {1, 2, 3}


@pytest.mark.slow
def test_speakers_json_and_preview_on_a_speaker_beside_a_silent_face(composites, tmp_path, capsys):
    preview = tmp_path / "preview.mp4"
    assert main(["speakers", str(composites["beside"]), "--json", "--preview", str(preview)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 100 and report["fps"] == 25.0 and report["audio"] == str(composites["beside"])
    tracks = report["tracks"]
    assert len(tracks) == 2
    left, right = tracks  # listed left to right
    assert left["box"][2] <= SIDE < right["box"][0]
    assert left["mean_score"] > 0 > right["mean_score"]
    assert left["speaking_seconds"] >= 3.0 and right["speaking_seconds"] == 0 and right["segments"] == []
    assert left["segments"][0][0] < 0.5 and left["segments"][-1][1] > 3.5
    assert all(d == [0] for d in report["dubbed"])
    assert len(left["scores"]) == 100 and all(s is not None for s in left["scores"])

    # the preview: the same frames and sound, a green box on the speaker, a red one on the other
    info = media.probe(preview)
    assert info.video.frame_count == 100 and info.audio is not None
    frame = decode_frames(preview)[50].astype(int)
    source = decode_frames(composites["beside"])[50].astype(int)
    drawn = np.abs(frame - source).sum(axis=2) > 120  # pixels the preview drew on
    assert drawn[:, :SIDE].sum() > 200 and drawn[:, SIDE:].sum() > 200  # a box around each face
    b, g, r = (frame[..., c][drawn] for c in range(3))
    green, red = (g > r + 60) & (g > b + 60), (r > g + 60) & (r > b + 60)
    cols = np.nonzero(drawn)[1]
    assert green[cols < SIDE].mean() > 0.7 and red[cols >= SIDE].mean() > 0.7
    # the preview may not replace an input
    assert main(["speakers", str(composites["beside"]), "--preview", str(composites["beside"]), "--force"]) == 2


@pytest.mark.slow
def test_speakers_table_follows_the_turns(composites, capsys):
    assert main(["speakers", str(composites["turns"])]) == 0
    table = capsys.readouterr().out
    assert "2 face tracks" in table and "timeline" in table
    segments = {line.split()[1]: line.split(": ", 1)[1] for line in table.splitlines() if line.startswith("track ")}
    first = [float(v) for v in segments["0"].split(", ")[0].split("-")]
    second = [float(v) for v in segments["1"].split(", ")[-1].split("-")]
    assert first[0] < 0.3 and abs(first[1] - 2.0) <= 0.5  # the left face speaks in the first turn ...
    assert abs(second[0] - 2.0) <= 0.5 and second[1] > 3.7  # ... the right one in the second


# ------------------------------------------------------------------------------- dub --speaker


def box_difference(a: np.ndarray, b: np.ndarray, box) -> float:
    x1, y1, x2, y2 = box
    return float(np.abs(a[:, y1:y2, x1:x2].astype(int) - b[:, y1:y2, x1:x2].astype(int)).mean())


# Mean absolute difference (grey levels) in a face's lower half between the input and the output:
# below NOISE is the re-encoding alone (crf 18 over crf 18), above CHANGED a generated mouth.
NOISE, CHANGED = 2.5, 8.0
LEFT_FACE = (60, 120, 180, 230)  # the lower halves of the two faces in the composites (x1, y1, x2, y2)
RIGHT_FACE = (SIDE + 70, 130, SIDE + 190, 240)


@pytest.mark.slow
def test_dub_auto_changes_the_speaker_and_leaves_the_listener(composites, narrow_checkpoint, tmp_path, capsys):
    out = tmp_path / "dubbed.mp4"
    code = main(["dub", str(composites["beside"]), str(composites["speech"]), "-o", str(out), "-c", str(narrow_checkpoint),
                 "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["speaker"] == "auto" and set(result["dubbed_tracks"]) == {"0"}
    assert result["dubbed_tracks"]["0"] == 1.2 and result["frames"] == 30
    before, after = decode_frames(composites["beside"])[:30], decode_frames(out)
    assert box_difference(before, after, LEFT_FACE) > CHANGED  # the random generator's mouth is pasted there
    assert box_difference(before, after, RIGHT_FACE) < NOISE  # compression noise only


@pytest.mark.slow
def test_turn_taking_dubs_each_face_in_its_turn(composites, narrow_checkpoint, tmp_path, capsys):
    out = tmp_path / "turns.mp4"
    assert main(["dub", str(composites["turns"]), str(EXAMPLES / "speech.wav"), "-o", str(out),
                 "-c", str(narrow_checkpoint), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["dubbed_tracks"]) == {"0", "1"}
    before, after = decode_frames(composites["turns"]), decode_frames(out)
    first, second = slice(5, 40), slice(62, 75)  # well inside each turn (2 s each; the audio is 3 s)
    assert box_difference(before[first], after[first], LEFT_FACE) > CHANGED
    assert box_difference(before[first], after[first], RIGHT_FACE) < NOISE
    assert box_difference(before[second], after[second], RIGHT_FACE) > CHANGED
    assert box_difference(before[second], after[second], LEFT_FACE) < NOISE


@pytest.mark.slow
def test_auto_without_the_original_speech_falls_back_and_says_so(composites, narrow_checkpoint, tmp_path, capsys):
    out = tmp_path / "fallback.mp4"
    assert main(["dub", str(composites["mute"]), str(composites["speech"]), "-o", str(out),
                 "-c", str(narrow_checkpoint)]) == 0
    printed = capsys.readouterr().err
    assert "no speech of its own" in printed and "largest face" in printed
    # the original speech given apart: the speaker is found again
    out2 = tmp_path / "given.mp4"
    speech = tmp_path / "original.wav"
    ffmpeg("-i", str(TALK2), "-vn", "-t", "4", str(speech))
    assert main(["dub", str(composites["mute"]), str(composites["speech"]), "-o", str(out2), "-c", str(narrow_checkpoint),
                 "--speaker-audio", str(speech), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["speaker"] == "auto" and set(result["dubbed_tracks"]) == {"0"} and not result["notes"]


@pytest.mark.slow
def test_a_voice_over_is_not_put_on_faces_that_do_not_speak(composites, narrow_checkpoint, tmp_path, capsys):
    """Two faces with still lips under someone else's voice (a narrator): nobody is dubbed, every
    pixel of both faces stays, and the summary says so and names the option that dubs anyway."""
    out = tmp_path / "nobody.mp4"
    assert main(["dub", str(composites["listeners"]), str(composites["speech"]), "-o", str(out), "-c", str(narrow_checkpoint),
                 "--json", "--crf", "0"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["speaker"] == "auto" and result["dubbed_tracks"] == {} and result["frames_without_face"] == 0
    assert result["silent_faces_seconds"] == pytest.approx(2 * 1.2, abs=0.05)  # two faces, 30 frames
    assert any("no face dubbed; --speaker largest dubs" in note for note in result["notes"])
    before, after = decode_frames(composites["listeners"])[:30], decode_frames(out)
    assert box_difference(before, after, LEFT_FACE) < NOISE and box_difference(before, after, RIGHT_FACE) < NOISE


@pytest.mark.slow
def test_a_one_face_clip_with_its_own_speech_dubs_its_speaker_throughout(composites, example_video, narrow_checkpoint,
                                                                          tmp_path, capsys):
    out = tmp_path / "one.mp4"
    assert main(["dub", str(example_video), str(composites["speech"]), "-o", str(out), "-c", str(narrow_checkpoint),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["speaker"] == "auto" and result["dubbed_tracks"] == {"0": 1.2} and result["frames_without_face"] == 0
    assert result["shots"] == 1 and result["silent_faces_seconds"] == 0 and result["notes"] == []


@pytest.mark.slow
def test_bad_speaker_requests_get_one_line(composites, narrow_checkpoint, tmp_path, capsys):
    out = tmp_path / "x.mp4"
    speech = str(composites["speech"])
    assert main(["dub", str(composites["beside"]), speech, "-o", str(out), "-c", str(narrow_checkpoint), "--speaker", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--speaker 5: the clip has 2 face tracks (0 to 1" in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert main(["dub", str(composites["beside"]), speech, "-o", str(out), "-c", str(narrow_checkpoint), "--speaker", "left"]) == 2
    assert "auto, largest, all or a track index" in capsys.readouterr().err
    assert main(["dub", str(composites["beside"]), speech, "-o", str(out), "-c", str(narrow_checkpoint), "--speaker", "1",
                 "--face-index", "0"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["speakers", str(composites["mute"])]) == 2
    assert "no audio track" in capsys.readouterr().err
    assert main(["speakers", str(EXAMPLES / "portrait.png")]) == 2
    assert "still image" in capsys.readouterr().err
    assert main(["speakers", str(composites["empty"])]) == 2
    assert "no face" in capsys.readouterr().err


# ------------------------------------------------------------------------------- the rules


def test_within_a_shot_pauses_go_to_the_last_speaker_and_a_voice_off_screen_to_nobody():
    # frames: 0-1 pause before the first turn, 2-3 face 0, 4-5 pause, 6 face 1, 7-12 a voice while
    # nobody on screen speaks (off screen: 6 frames), 13 a pause, 14-15 face 0, 16 one voiced frame
    # nobody speaks in (a miss, shorter than off_screen), 17 face 0
    speaking = [(), (), (0,), (0,), (), (), (1,)] + [()] * 7 + [(0,), (0,), (), (0,)]
    voiced = np.array([0, 0, 1, 1, 0, 0, 1] + [1] * 6 + [0] + [1, 1, 1, 1], bool)
    present = [(0, 1)] * 18
    chosen = sp.turns_in_shot(speaking, present, voiced, off_screen=4)
    assert chosen == [(0,), (0,), (0,), (0,), (0,), (0,), (1,)] + [()] * 6 + [(0,), (0,), (0,), (0,), (0,)]
    # the last speaker left the frame: the pause leads up to the next one
    present = [(0, 1)] * 4 + [(1,)] * 14
    assert sp.turns_in_shot(speaking, present, voiced, off_screen=4)[4:6] == [(1,), (1,)]


def test_a_voice_whose_face_follows_it_is_that_face_speaking_not_a_voice_off_screen():
    """Light-ASD may call a talking face silent (AVA's weights on talk1's first seconds): while a
    voice is heard, the face whose mouth follows it clearly better than the others' is its
    speaker; with one face, or when no mouth stands out, the voice stays off screen."""
    def track(index, sync):
        t = sp.Track(index=index, first=0, boxes=np.zeros((len(sync), 4), np.float32))
        t.scored_first, t.sync = 0, np.asarray(sync, np.float32)
        return t

    n = 18
    talker, listener = track(0, np.full(n, 0.42)), track(1, np.full(n, 0.18))
    assert sp.voice_owner([talker, listener], 2, 12) == 0
    assert sp.voice_owner([talker], 2, 12) is None  # no other mouth to tell chance from
    assert sp.voice_owner([track(0, np.full(n, 0.32)), track(1, np.full(n, 0.25))], 2, 12) is None  # none stands out
    assert sp.voice_owner([track(0, np.full(n, 0.20)), track(1, np.full(n, 0.0))], 2, 12) is None  # none in sync
    speaking = [(0,), (0,)] + [()] * 14 + [(0,), (0,)]
    voiced = np.ones(n, bool)
    present = [(0, 1)] * n
    off = sp.turns_in_shot(speaking, present, voiced, off_screen=4)
    assert off[2:16] == [()] * 14  # a voice off screen: nobody
    owned = sp.turns_in_shot(speaking, present, voiced, off_screen=4,
                             owner=lambda a, b: sp.voice_owner([talker, listener], a, b))
    assert owned == [(0,)] * n
    # through `decide`: Light-ASD calls both silent all along while a voice is heard; the face
    # that follows it is dubbed and reported speaking, the other not
    frames = 50
    talker, listener = track(0, np.full(frames, 0.42)), track(1, np.full(frames, 0.18))
    for t in (talker, listener):
        t.score = np.full(frames, -1.5, np.float32)
    dubbed = sp.decide([talker, listener], frames, 25.0, [0], envelope=np.full(frames, -20.0))
    assert dubbed == [(0,)] * frames
    assert talker.speaking.all() and not listener.speaking.any()


def test_a_voice_that_runs_into_a_turn_is_that_turn_starting_late_with_two_faces():
    """Light-ASD answers late at a change of speaker (AVA's weights: a second): face 0 speaks, a
    pause, then a voice nobody is found speaking that runs without a pause into face 1's turn.
    With two faces there, those are face 1's first words (and reported so); with one face (an
    off-screen question answered at once), after a pause, or longer than lead_in, the voice
    stays off screen."""
    speaking = [(0,)] * 4 + [()] * 3 + [()] * 6 + [(1,)] * 5  # 4-6 a pause, 7-12 the voice
    voiced = np.array([1] * 4 + [0] * 3 + [1] * 6 + [1] * 5, bool)
    two = [(0, 1)] * 18
    heard = []
    chosen = sp.turns_in_shot(speaking, two, voiced, off_screen=4, lead_in=10, spoke=lambda *a: heard.append(a))
    assert chosen == [(0,)] * 7 + [(1,)] * 11 and heard == [((1,), 7, 13)]
    assert sp.turns_in_shot(speaking, two, voiced, off_screen=4, lead_in=5)[7:13] == [()] * 6  # too long
    one = [(1,)] * 18
    alone = [()] * 13 + [(1,)] * 5
    assert sp.turns_in_shot(alone, one, voiced, off_screen=4, lead_in=10)[7:13] == [()] * 6  # one face
    paused = voiced.copy()
    paused[11:13] = False  # the voice ends before the turn: someone else's
    assert sp.turns_in_shot(speaking, two, paused, off_screen=4, min_pause=2, lead_in=10)[7:11] == [()] * 4
    # through `decide`: the late turn starts at the end of the pause, and the report says so
    frames, fps = 90, 25.0

    def track(index, score):
        t = sp.Track(index=index, first=0, boxes=np.zeros((frames, 4), np.float32))
        t.score = np.asarray(score, np.float32)
        return t

    a = track(0, [1.0] * 30 + [-1.0] * 60)
    b = track(1, [-1.0] * 60 + [1.0] * 30)
    envelope = np.full(frames, -20.0)
    envelope[30:40] = -80.0  # a pause; the voice from frame 40 is b's, Light-ASD sees it from 60
    dubbed = sp.decide([a, b], frames, fps, [0], envelope=envelope)
    assert dubbed[:30] == [(0,)] * 30 and dubbed[45:] == [(1,)] * 45
    assert b.speaking[45:].all() and not a.speaking[45:].any()


def test_a_speaking_run_ends_where_light_asd_itself_turns():
    """The 9-frame mean spreads a loud turn's end over the voice that follows: its ends are pulled
    in to Light-ASD's own score, by 4 frames at most, never past the run."""
    speaking = np.array([0] * 3 + [1] * 12 + [0] * 5, bool)
    raw = np.array([-1] * 5 + [2] * 6 + [-1] * 9, float)  # turns at 5 and at 11
    sp.trim_to_raw(speaking, raw, reach=4)
    assert np.flatnonzero(speaking).tolist() == list(range(5, 11))
    # an end beyond which another face speaks is left to the pause rule: not pulled in
    speaking = np.array([0] * 3 + [1] * 12 + [0] * 5, bool)
    others = np.array([1] * 3 + [0] * 12 + [0] * 5, bool)  # someone else speaks before, nobody after
    sp.trim_to_raw(speaking, raw, reach=4, alone=~others)
    assert np.flatnonzero(speaking).tolist() == list(range(3, 11))
    short = np.array([0, 1, 1, 0], bool)
    sp.trim_to_raw(short, np.full(4, -1.0), reach=4)
    assert short.tolist() == [False, True, False, False]  # a run keeps a frame


def test_a_change_of_speaker_moves_to_the_pause_where_the_new_voice_starts():
    def voiced_except(n, *pauses):
        v = np.ones(n, bool)
        for a, b in pauses:
            v[a:b] = False
        return v

    both = [(0, 1)] * 60
    rule = dict(reach_back=30, reach_ahead=8, min_pause=5)
    # Light-ASD's window puts the change at 50; the new voice starts after the pause 28-33
    late = [(0,)] * 50 + [(1,)] * 10
    moved = sp.place_turns_at_pauses(late, both, voiced_except(60, (28, 33)), **rule)
    assert moved == [(0,)] * 33 + [(1,)] * 27
    # the voice's faint first frames (31, 32: louder than the pause, not yet voiced) are the new speaker's
    faint = np.zeros(60, bool)
    faint[31:] = True
    faint[:28] = True
    moved = sp.place_turns_at_pauses(late, both, voiced_except(60, (28, 33)), faint=faint, **rule)
    assert moved == [(0,)] * 31 + [(1,)] * 29
    # a change inside the old speaker's last words or the pause waits for the new voice (at 30)
    early = [(0,)] * 20 + [(1,)] * 40
    assert sp.place_turns_at_pauses(early, both, voiced_except(60, (22, 30)), **rule) == [(0,)] * 30 + [(1,)] * 30
    # no pause near it, or a pause too short: the change stays where it is
    assert sp.place_turns_at_pauses(late, both, voiced_except(60, (5, 15)), **rule) == late
    assert sp.place_turns_at_pauses(late, both, voiced_except(60, (40, 43)), **rule) == late
    # two faces at once on either side (nobody leaves): no change to move
    shared = [(0,)] * 50 + [(0, 1)] * 10
    assert sp.place_turns_at_pauses(shared, both, voiced_except(60, (28, 33)), **rule) == shared
    # the new speaker is not in the frame before 45: it takes over only where it is
    present = [(0,)] * 45 + [(0, 1)] * 15
    assert sp.place_turns_at_pauses(late, present, voiced_except(60, (28, 33)), **rule) == [(0,)] * 45 + [(1,)] * 15


def test_short_runs_dropped_and_short_pauses_bridged():
    mask = np.array([0, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0], bool)
    cleaned = sp.clean_runs(mask, min_run=3, min_pause=2)
    assert cleaned.astype(int).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]


@pytest.mark.slow
def test_batch_takes_the_option_and_a_manifest_row_sets_it(composites, narrow_checkpoint, tmp_path):
    manifest = tmp_path / "clips.csv"
    manifest.write_text("video,audio,output,speaker\n"
                        f"{composites['mute']},{composites['speech']},right.mp4,1\n"
                        f"{composites['mute']},{composites['speech']},all.mp4,\n")
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "-o", str(out), "-c", str(narrow_checkpoint), "--speaker", "all", "--quiet"]) == 0
    before = decode_frames(composites["mute"])[:30]
    right, both = decode_frames(out / "right.mp4"), decode_frames(out / "all.mp4")
    assert box_difference(before, right, LEFT_FACE) < NOISE and box_difference(before, right, RIGHT_FACE) > CHANGED
    assert box_difference(before, both, LEFT_FACE) > CHANGED and box_difference(before, both, RIGHT_FACE) > CHANGED
    bad = tmp_path / "bad.csv"
    bad.write_text(f"video,audio,speaker\n{composites['mute']},{composites['speech']},left\n")
    assert main(["batch", str(bad), "-o", str(tmp_path / "out2"), "-c", str(narrow_checkpoint)]) == 2


@pytest.mark.slow
def test_scores_in_blocks_equal_the_whole_track(composites, monkeypatch):
    """Light-ASD scores each track in blocks (memory flat in the clip's length): with blocks of one
    second the scores are the same as with one block for the whole 4 s clip."""
    opts = sp.SpeakerOptions(precision="fp32")
    whole = sp.find_speakers(str(composites["beside"]), None, opts)
    monkeypatch.setattr(sp, "BLOCK_SECONDS", 1)
    blocks = sp.find_speakers(str(composites["beside"]), None, opts)
    assert [len(t.asd) for t in blocks.tracks] == [len(t.asd) for t in whole.tracks] == [100, 100]
    for a, b in zip(whole.tracks, blocks.tracks):
        assert np.abs(a.asd - b.asd).max() < 1e-4 and np.abs(np.nan_to_num(a.sync) - np.nan_to_num(b.sync)).max() < 1e-4
    assert blocks.dubbed == whole.dubbed


@pytest.mark.slow
def test_a_clip_whose_sound_is_music_dubs_the_largest_face_and_says_so(composites, narrow_checkpoint, tmp_path, capsys):
    """No speech in the clip's own sound (music: a chord that pulses twice a second): nobody can be
    found speaking, so auto dubs the largest face in every frame and says why."""
    music = tmp_path / "music.mp4"
    ffmpeg("-i", str(composites["beside"]), "-f", "lavfi", "-i",
           "aevalsrc=0.1*(sin(2*PI*220*t)+sin(2*PI*277*t)+sin(2*PI*330*t))*(0.6+0.4*sgn(sin(4*PI*t))):s=44100:d=4",
           "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-shortest", str(music))
    out = tmp_path / "out.mp4"
    assert main(["dub", str(music), str(composites["speech"]), "-o", str(out), "-c", str(narrow_checkpoint), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["notes"] == ["the video's own sound holds no speech: dubbed the largest face in every shot"]
    assert list(result["dubbed_tracks"].values()) == [1.2] and result["silent_faces_seconds"] == 0
