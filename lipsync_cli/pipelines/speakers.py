"""`lipsync speakers --preview`: the video with every face's box drawn, and the shots marked
(the analysis itself is faces/speakers.py)."""

from __future__ import annotations

import numpy as np

from .. import media
from ..faces.shots import shot_index
from ..faces.speakers import SpeakerReport, faces_per_frame

SPEAKING_BGR = (80, 220, 60)  # green: speaking
SILENT_BGR = (60, 60, 230)  # red: in the frame, not speaking
DUBBED_THICKNESS, OTHER_THICKNESS = 4, 2  # the box `--speaker auto` would dub is drawn thicker
CUT_BGR = (0, 200, 255)  # amber: the first frames of a new shot
CUT_FRAMES = 5  # ... marked for this many frames (a fifth of a second at 25 fps)


def write_preview(report: SpeakerReport, output: str, force: bool = False, crf: int = 23) -> int:
    """The video with every track's box drawn, green while it speaks and red while it does not,
    thicker for the face `dub --speaker auto` would dub, labelled with the track index and
    score; the first frames of every shot framed in amber and labelled with the shot's number;
    with the speech the analysis compared against. Written atomically; returns frames."""
    import cv2

    from .. import outputs

    info = media.probe(report.video)
    fps = info.video.fps
    out = outputs.AtomicFile(output, force=force, inputs=(report.video, report.audio))
    writer = media.FrameWriter(str(out.tmp), info.video.width, info.video.height, fps, report.audio,
                               crf=crf, preset="veryfast")
    line = max(1, round(max(info.video.width, info.video.height) / 640))
    present = faces_per_frame(report.tracks, report.frames)  # not every track at every frame: an edit has thousands
    by_index = {t.index: t for t in report.tracks}
    written = 0
    try:
        for chunk in media.FrameReader(info, chunk=16):
            for frame in chunk:
                a = written
                frame = frame.copy()
                shot = shot_index(report.shots, a) - 1  # shots[0] is 0: the shot's number
                began = report.shots[shot]
                if a < report.frames and a - began < CUT_FRAMES:
                    h, w = frame.shape[:2]
                    cv2.rectangle(frame, (0, 0), (w - 1, h - 1), CUT_BGR, 3 * line)
                    cv2.putText(frame, f"shot {shot}", (8 * line, 24 * line), cv2.FONT_HERSHEY_SIMPLEX,
                                0.7 * line, CUT_BGR, max(1, line), cv2.LINE_AA)
                for t in (by_index[i] for i in (present[a] if a < report.frames else ())):
                    k = a - t.first
                    speaking = t.speaking is not None and bool(t.speaking[k])
                    colour = SPEAKING_BGR if speaking else SILENT_BGR
                    thick = (DUBBED_THICKNESS if t.index in report.dubbed[a] else OTHER_THICKNESS) * line
                    x1, y1, x2, y2 = (int(round(v)) for v in t.boxes[k])
                    cv2.rectangle(frame, (x1, y1), (x2, y2), colour, thick)
                    label = f"#{t.index}" + (f" {t.score[k]:+.1f}" if t.score is not None and np.isfinite(t.score[k]) else "")
                    cv2.putText(frame, label, (x1, max(12 * line, y1 - 6 * line)), cv2.FONT_HERSHEY_SIMPLEX,
                                0.6 * line, colour, max(1, line), cv2.LINE_AA)
                writer.write(frame)
                written += 1
        writer.close()
        writer = None
        out.commit()
    finally:
        if writer is not None:
            writer.abort()
        out.discard()
    return written
