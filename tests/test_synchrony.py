"""The synchrony cue (faces.synchrony): lower-face motion against the speech's loudness, and its
combination with Light-ASD's score. On the example clip (examples/talk.mp4, a real face talking to
its own speech): its motion and mouth opening follow its own speech, not the same speech reversed
or a second late; silence gives no evidence; the leader follows a turn and not a blip; the
combination keeps a lone talking face and demotes a talking face that is out of sync."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from lipsync_cli import media
from lipsync_cli.audio import load_audio
from lipsync_cli.faces import synchrony as sy
from lipsync_cli.models import light_asd as la

from conftest import EXAMPLES

TALK_BOX = (70, 72, 187, 226)  # RetinaFace's box of the face in examples/talk.mp4 (as in test_light_asd)
SR = 16000


@pytest.fixture(scope="module")
def clip():
    """The example's 25 fps Light-ASD crops (50 frames), its own speech and the other example speech."""
    info = media.probe(str(EXAMPLES / "talk.mp4"))
    frames = [f.copy() for chunk in media.FrameReader(info, chunk=25, fps=Fraction(25)) for f in chunk]
    crops = la.track_crops(frames, np.tile(np.array(TALK_BOX, float), (len(frames), 1)))
    own = load_audio(str(EXAMPLES / "talk.mp4")).samples
    return crops, own, load_audio(str(EXAMPLES / "speech.wav")).samples


@pytest.fixture(scope="module")
def motion(clip):
    return sy.lower_face_motion(clip[0])


def test_motion_is_one_value_per_crop_and_larger_on_the_talking_mouth(clip, motion):
    crops = clip[0]
    assert motion.shape == (len(crops),) and motion.dtype == np.float32
    real = motion[np.isfinite(motion)]
    assert len(real) >= len(crops) - 8 and real.mean() > 0.5  # the mouth moves (a few frames repeat)
    still = np.repeat(crops[:1], 10, axis=0)
    moved = sy.lower_face_motion(still)
    assert np.isnan(moved[1:]).all()  # repeated crops: no new image, no motion measured
    # a change of brightness over the whole face is no motion
    brighter = np.stack([crops[0], np.clip(crops[0].astype(np.int16) + 20, 0, 255).astype(np.uint8)])
    assert abs(sy.lower_face_motion(brighter)[1]) < 0.25 * real.mean()
    # the whole face moving (the head) counts less than the same motion of the lower face alone
    shifted = np.roll(crops[:1], 3, axis=2)
    head = sy.lower_face_motion(np.concatenate([crops[:1], shifted]))[1]
    mouth_only = crops[:1].copy()
    mouth_only[0, 62:] = shifted[0, 62:]
    jaw = sy.lower_face_motion(np.concatenate([crops[:1], mouth_only]))[1]
    assert jaw > head


def test_motion_in_pieces_equals_the_whole_track(clip, motion):
    """A long track is done in pieces, each with the previous piece's last crop in front."""
    crops = clip[0]
    parts = [sy.lower_face_motion(crops[:20])]
    for lo in (20, 35):
        parts.append(sy.lower_face_motion(crops[lo - 1:lo + 15])[1:])
    np.testing.assert_array_equal(np.concatenate(parts), motion)


def test_repeated_frames_share_the_next_change():
    m = np.array([1.0, 1.0, np.nan, 4.0, 2.0, np.nan, np.nan, 3.0, np.nan])
    spread = sy._spread_repeats(m)
    np.testing.assert_allclose(spread[:8], [1, 1, 2, 2, 2, 1, 1, 1])
    assert np.isnan(spread[8])


def test_voiced_frames_find_the_pauses_of_real_speech(clip):
    _, own, _ = clip
    gap = np.zeros(int(0.4 * SR), np.float32)
    speech = np.concatenate([own[:SR], gap, own[:SR]])  # 1 s of speech, 0.4 s of silence, 1 s
    voiced = sy.voiced_frames(sy.speech_envelope(speech, 60))
    assert voiced.shape == (60,) and voiced.dtype == bool
    assert not voiced[27:34].any()  # the silence (frames 25-35, less the 80 ms window's reach)
    assert voiced[:25].mean() > 0.6 and voiced[36:].mean() > 0.6  # the speech, its own short pauses aside
    dip = np.array([30.0, 30.0, 0.0, 30.0, 30.0, 0.0, 0.0, 30.0] + [30.0] * 12)
    assert sy.voiced_frames(dip)[:8].tolist() == [True, True, True, True, True, False, False, True]
    assert sy.voiced_frames(np.zeros(0)).shape == (0,)


def test_the_envelope_follows_loudness_and_silence_is_flat(clip):
    _, own, _ = clip
    env = sy.speech_envelope(own, 50)
    assert env.shape == (50,) and env.dtype == np.float32
    assert env.max() - env.min() > 20  # speech: syllables and pauses
    silence = sy.speech_envelope(np.zeros(2 * SR, np.float32), 50)
    assert np.ptp(silence) == 0 and silence[0] == pytest.approx(sy.SILENCE_DBFS)
    # a louder copy is the same envelope shifted up; the tail past the samples is silence
    np.testing.assert_allclose(sy.speech_envelope(own * 0.5, 50)[env > env.min() + 10],
                               env[env > env.min() + 10] - 6.02, atol=0.05)
    longer = sy.speech_envelope(own, 75)
    assert (longer[55:] == longer.min()).all()
    assert len(sy.speech_envelope(own, 0)) == 0


def test_silence_gives_no_evidence(clip, motion):
    _, own, _ = clip
    flat = sy.speech_envelope(np.zeros_like(own), len(motion))
    np.testing.assert_array_equal(sy.synchrony(motion, flat), 0)
    # a faint hiss is clipped at the floor: no evidence either
    hiss = np.random.default_rng(0).normal(0, 1e-5, len(own)).astype(np.float32)
    np.testing.assert_array_equal(sy.synchrony(motion, sy.speech_envelope(hiss, len(motion))), 0)
    # a still face: no evidence
    env = sy.speech_envelope(own, len(motion))
    np.testing.assert_array_equal(sy.synchrony(np.full(len(motion), np.nan), env), 0)
    np.testing.assert_array_equal(sy.synchrony(np.zeros(len(motion)), env), 0)
    # a track too short for a window
    assert (sy.synchrony(motion[:10], env[:10]) == 0).all()
    assert len(sy.synchrony(motion[:0], env[:0])) == 0
    with pytest.raises(ValueError):
        sy.synchrony(motion, env[:-1])


def test_the_face_follows_its_own_speech_not_a_reversed_or_late_copy(clip, motion):
    _, own, _ = clip
    t = len(motion)
    cue = sy.synchrony(motion, sy.speech_envelope(own, t))
    assert cue.shape == (t,) and cue.dtype == np.float32 and np.isfinite(cue).all()
    assert cue.min() > 0.2
    reversed_ = sy.synchrony(motion, sy.speech_envelope(own[::-1].copy(), t))
    late = sy.synchrony(motion, sy.speech_envelope(np.r_[np.zeros(SR, np.float32), own], t))
    assert cue.mean() > reversed_.mean() + 0.3
    assert cue.mean() > late.mean() + 0.3
    # the face played backwards talks as much, but out of step with the speech
    backwards = sy.synchrony(sy.lower_face_motion(clip[0][::-1].copy()), sy.speech_envelope(own, t))
    assert cue.mean() > backwards.mean() + 0.3


def test_the_best_lag_is_small(clip, motion):
    """Motion against its own loudness peaks within two frames (80 ms) of no lag."""
    _, own, _ = clip
    env = sy.speech_envelope(own, len(motion))
    whole = len(motion) * 2 + 1  # one window over the whole clip
    by_lag = {lag: float(sy.synchrony(np.roll(motion, -lag), env, window=whole, max_lag=0)[25])
              for lag in range(-8, 9)}
    best = max(by_lag, key=by_lag.get)
    assert abs(best) <= 2
    assert by_lag[best] > max(by_lag[-8], by_lag[8]) + 0.2


def test_the_mouth_darkens_as_it_opens_on_the_loud_syllables(clip):
    crops, own, _ = clip
    dark = sy.mouth_darkness(crops)
    assert dark.shape == (len(crops),) and dark.dtype == np.float32
    assert np.ptp(dark) > 10  # the mouth opens and closes
    loud = 10 ** (sy.speech_envelope(own, len(crops)) / 20)
    assert np.corrcoef(dark, loud)[0, 1] > 0.4
    # a change of brightness over the whole face is no opening
    brighter = np.clip(crops.astype(np.int16) + 20, 0, 255).astype(np.uint8)
    np.testing.assert_allclose(sy.mouth_darkness(brighter), dark, atol=0.5)
    assert len(sy.mouth_darkness(crops[:0])) == 0


def test_evidence_favours_the_face_own_speech(clip, motion):
    """Per-frame evidence, averaged over the clip: the face against its own speech, against that
    speech reversed or a second late, against other speech, and the face played backwards."""
    crops, own, other = clip
    t = len(crops)
    dark = sy.mouth_darkness(crops)
    env = sy.speech_envelope(own, t)
    cue = sy.evidence(motion, dark, env)
    assert cue.shape == (t,) and cue.dtype == np.float32 and np.isfinite(cue).all()
    worse = {
        "reversed": sy.evidence(motion, dark, sy.speech_envelope(own[::-1].copy(), t)),
        "late": sy.evidence(motion, dark, sy.speech_envelope(np.r_[np.zeros(SR, np.float32), own], t)),
        "other speech": sy.evidence(motion, dark, sy.speech_envelope(other, t)),
        "backwards": sy.evidence(sy.lower_face_motion(crops[::-1].copy()), sy.mouth_darkness(crops[::-1].copy()), env),
    }
    assert cue.mean() > 0.5
    for name, v in worse.items():
        assert cue.mean() > v.mean() + 0.2, name
    # silence gives none
    np.testing.assert_array_equal(sy.evidence(motion, dark, sy.speech_envelope(np.zeros_like(own), t)), 0)
    with pytest.raises(ValueError):
        sy.evidence(motion, dark[:-1], env)


def test_leaders_follow_the_evidence_and_ignore_a_short_blip():
    t = 100
    ev = np.zeros((2, t))
    ev[0, :50], ev[1, 50:] = 0.5, 0.5  # a turn at frame 50
    ev[1, 20:24] = 1.0  # a blip of 4 frames: it gains 4 x 0.5 = 2, less than two switches cost
    allowed = np.ones((2, t), bool)
    path = sy.leaders(ev, allowed)
    assert path.shape == (t,)
    assert (path[:50] == 0).all() and (path[50:] == 1).all()  # the switch at the turn itself
    assert (sy.leaders(ev, allowed, switch_cost=0.5)[20:24] == 1).all()  # cheap switches follow the blip
    allowed[1, 70:] = False  # face 1 leaves: face 0 leads where only it may
    assert (sy.leaders(ev, allowed)[70:] == 0).all()
    assert len(sy.leaders(np.zeros((2, 0)), np.zeros((2, 0), bool))) == 0


def _flat(t, **values):
    return {k: np.full(t, v, np.float64) for k, v in values.items()}


def test_combine_keeps_a_lone_talking_face_and_never_makes_a_still_one_speak():
    t = 40
    asd = {"talks": np.full(t, 2.5), "still": np.full(t, -2.0)}
    asd["still"][20] = 1.0  # a stray frame: not enough to compete
    sync = _flat(t, talks=0.05, still=0.6)  # the cues do not matter here
    out = sy.combine(asd, sync, _flat(t, talks=0.0, still=0.8))
    assert set(out) == {"talks", "still"} and out["talks"].dtype == np.float32
    assert (out["talks"] > 0).all()
    np.testing.assert_allclose(out["talks"], 2.5)
    assert (out["still"] < 0).all()


def test_combine_favours_the_face_in_sync_and_keeps_two_in_sync():
    t = 40
    asd = {0: np.full(t, 3.0), 1: np.full(t, 3.5), 2: np.full(t, np.nan)}  # both look talking
    sync = {0: np.full(t, 0.45), 1: np.full(t, 0.05), 2: np.full(t, np.nan)}
    out = sy.combine(asd, sync, {0: np.full(t, 0.45), 1: np.full(t, 0.05), 2: np.full(t, np.nan)})
    assert (out[0] > 0).all() and (out[1] < 0).all()
    assert np.isnan(out[2]).all()  # absent throughout
    # both in sync with the (mixed) speech: both speak
    both = {0: np.full(t, 0.45), 1: np.full(t, 0.4), 2: np.full(t, np.nan)}
    out = sy.combine(asd, both, both)
    assert (out[0] > 0).all() and (out[1] > 0).all() and (out[0] > out[1]).all()
    # in sync but far behind the leader: not speaking
    out = sy.combine(asd, both, {0: np.full(t, 0.8), 1: np.full(t, 0.3), 2: np.full(t, np.nan)})
    assert (out[0] > 0).all() and (out[1] < 0).all()
    # the leader ignores the speech too: nobody speaks
    out = sy.combine(asd, both, {0: np.full(t, 0.02), 1: np.full(t, -0.1), 2: np.full(t, np.nan)})
    assert (out[0] < 0).all() and (out[1] < 0).all()
    # silence: no evidence either way, Light-ASD's scores stand
    zeros = {0: np.zeros(t), 1: np.zeros(t), 2: np.zeros(t)}
    out = sy.combine(asd, zeros, zeros)
    np.testing.assert_allclose(out[0], 3.0)
    np.testing.assert_allclose(out[1], 3.5)


def test_combine_follows_who_is_there_and_the_turns():
    t = 120
    a = np.full(t, 3.0)
    b = np.full(t, 3.0)
    b[:30] = np.nan  # B enters at frame 30
    ev_a, ev_b = np.full(t, 0.1), np.full(t, 0.5)
    ev_a[80:], ev_b[80:] = 0.6, 0.0  # A's turn from frame 80
    out = sy.combine({"a": a, "b": b}, _flat(t, a=0.3, b=0.3), {"a": ev_a, "b": ev_b})
    assert (out["a"][:30] > 0).all()  # alone: kept
    assert np.isnan(out["b"][:30]).all()
    assert (out["b"][30:80] > 0).all() and (out["a"][35:80] < 0).all()  # together: the one in sync
    assert (out["a"][80:] > 0).all() and (out["b"][80:] < 0).all()  # and the turn, from its frame
    assert sy.combine({}, {}, {}) == {}
    alone = sy.combine({"a": a}, {"a": np.full(t, -0.3)}, {"a": np.full(t, -0.3)})  # one track: Light-ASD's
    np.testing.assert_allclose(alone["a"], 3.0)
    with pytest.raises(ValueError):
        sy.combine({"a": a}, {"b": b}, {"a": a})
    with pytest.raises(ValueError):
        sy.combine({"a": a, "b": b[:-1]}, {"a": a, "b": b[:-1]}, {"a": a, "b": b[:-1]})


def test_combine_follows_a_turn_across_a_jump_cut_and_stops_the_light_asd_mean_there():
    """A turn that starts 12 frames before a jump cut (every face at its place on both sides) and
    goes on after it: measured on both sides, its face leads from the turn's frame; cut at the
    jump cut into two stretches, 12 weak frames cannot repay the change of leader. Light-ASD's
    9-frame mean stops at the break: a face that looks silent up to the cut gets nothing of the
    talking frames after it."""
    t, cut = 100, 50
    asd = {"a": np.full(t, 3.0), "b": np.full(t, 3.0)}
    ev_a, ev_b = np.full(t, 0.0), np.full(t, 0.5)
    ev_a[38:], ev_b[38:] = 0.45, 0.05  # A's turn from frame 38
    ev = {"a": ev_a, "b": ev_b}
    joined = sy.combine(asd, _flat(t, a=0.3, b=0.3), ev, breaks=[cut])
    assert (joined["a"][38:] > 0).all() and (joined["b"][38:] < 0).all()
    before = sy.combine({k: v[:cut] for k, v in asd.items()}, _flat(cut, a=0.3, b=0.3),
                        {k: v[:cut] for k, v in ev.items()})
    assert (before["a"][38:cut] < 0).all()  # what the jump cut cost when the shots were apart
    looks = {"a": np.r_[np.full(cut, -2.0), np.full(t - cut, 4.0)], "b": np.full(t, -3.0)}
    quiet = _flat(t, a=0.0, b=0.0)
    assert (sy.combine(looks, quiet, quiet, breaks=[cut])["a"][:cut] == -2.0).all()
    assert sy.combine(looks, quiet, quiet)["a"][cut - 1] > -2.0  # without the break the mean crosses


def test_combine_on_the_clip_demotes_the_talking_face_out_of_sync(clip, motion):
    """The hard case, on the example: the face talking to its speech, beside the same face
    played backwards (lips moving just as much, out of step). Light-ASD calls both speaking;
    the combination keeps the first and demotes the second."""
    crops, own, _ = clip
    t = len(crops)
    net = la.LightASD.from_file()
    mfcc = la.mfcc_for(own, frames=t)
    backwards = crops[::-1].copy()
    asd = {"own": la.speaking_scores(net, crops, mfcc, durations=(1,)),
           "backwards": la.speaking_scores(net, backwards, mfcc, durations=(1,))}
    env = sy.speech_envelope(own, t)
    back_motion = sy.lower_face_motion(backwards)
    sync = {"own": sy.synchrony(motion, env), "backwards": sy.synchrony(back_motion, env)}
    evidence = {"own": sy.evidence(motion, sy.mouth_darkness(crops), env),
                "backwards": sy.evidence(back_motion, sy.mouth_darkness(backwards), env)}
    assert (asd["backwards"] > 0).mean() > 0.5  # Light-ASD alone is fooled
    out = sy.combine(asd, sync, evidence)
    assert (out["own"] > out["backwards"]).mean() >= 0.9
    assert (out["own"] > 0).mean() >= 0.9 and (out["backwards"] <= 0).mean() >= 0.9
