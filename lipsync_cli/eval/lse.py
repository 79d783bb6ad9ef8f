"""LSE-D and LSE-C: lip-sync error distance and confidence, as published results compute them.

For every frame i of a face track at 25 fps, the evaluation SyncNet embeds the 5 frames i..i+4
and the 0.2 s of audio that starts at frame i (MFCC windows 4i..4i+19 at 100 Hz). The distance
between each frame's visual embedding and the audio embedding at offsets -15..15 frames is
averaged over the video: LSE-D is the smallest of these mean distances, LSE-C the median minus
that minimum, and the offset is where the minimum lies. Lower LSE-D and higher LSE-C mean better
sync.

The face track follows the published pipeline: a face box per frame (our detectors), its size and
centre median-filtered over 13 frames, cropped with 40% extra below and at the sides (the frame
padded with grey 110), resized to 224x224. The published pipeline also passes the crops through a
JPEG and an XVID re-encode; we feed the decoded frames directly, so figures can differ from it in
the decimals. With our own trained expert instead of syncnet_v2, the same offsets and statistics
are computed on its normalised embeddings of 96x96 crops and mel windows (comparable between our
runs, not with published numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from .. import audio as audio_mod
from .. import media
from ..errors import InputError

VSHIFT = 15
CROP_SCALE = 0.40
SMOOTH_KERNEL = 13
FRAMES = 5


@dataclass
class SyncResult:
    video: str
    lse_d: float
    lse_c: float
    offset: int
    frames: int

    def as_dict(self) -> dict:
        return {"video": self.video, "lse_d": round(self.lse_d, 4), "lse_c": round(self.lse_c, 4),
                "offset": self.offset, "frames": self.frames}


def offset_distances(lip: torch.Tensor, aud: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """(n, 2*vshift+1): distance of lip[i] to aud[i + k - vshift] (zero rows past either end)."""
    padded = F.pad(aud, (0, 0, vshift, vshift))
    width = 2 * vshift + 1
    return torch.stack([F.pairwise_distance(lip[i:i + 1].expand(width, -1), padded[i:i + width])
                        for i in range(len(lip))])


def sync_scores(dists: torch.Tensor, vshift: int = VSHIFT) -> tuple[float, float, int]:
    """(LSE-D, LSE-C, offset in frames) from offset_distances."""
    mean = dists.mean(dim=0)
    low, at = torch.min(mean, dim=0)
    return float(low), float(torch.median(mean) - low), int(vshift - int(at))


def face_track(video: str, detector: str = "retinaface", device: str = "cpu") -> tuple[list[np.ndarray], list]:
    """Frames at 25 fps and the followed face's box (x1, y1, x2, y2) in each; frames without a
    detection take the nearest detected box."""
    from ..faces import FaceTracker, make_detector

    info = media.probe(video)
    if info.video is None or info.video.frame_count == 0:
        raise InputError(f"{video}: no video frames")
    det = make_detector(detector, device)
    tracker = FaceTracker(None)
    frames, boxes = [], []
    for chunk in media.FrameReader(info, chunk=32, fps=media.FPS):
        frames.extend(list(chunk))
        boxes.extend(tracker.update(det.detect(list(chunk))))
    known = [i for i, b in enumerate(boxes) if b is not None]
    if not known:
        raise InputError(f"{video}: no face found")
    filled = [boxes[min(known, key=lambda j: abs(j - i))] for i in range(len(boxes))]
    return frames, filled


def crop_geometry(boxes) -> np.ndarray:
    """(n, 3): the published pipeline's crop centre x, centre y and half-size for each frame's box
    (x1, y1, x2, y2), each median-filtered over SMOOTH_KERNEL frames."""
    from scipy.signal import medfilt

    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    size = medfilt(np.maximum(b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]) / 2, SMOOTH_KERNEL)
    cy = medfilt((b[:, 1] + b[:, 3]) / 2, SMOOTH_KERNEL)
    cx = medfilt((b[:, 0] + b[:, 2]) / 2, SMOOTH_KERNEL)
    return np.stack([cx, cy, size], axis=1)


def crop_224(frame: np.ndarray, cx: float, cy: float, bs: float) -> np.ndarray:
    """One frame's published-pipeline crop (`crop_geometry`): 40% margin below and at the sides,
    the frame padded with grey 110, resized to 224x224."""
    pad = int(bs * (1 + 2 * CROP_SCALE))
    padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(110, 110, 110))
    my, mx = cy + pad, cx + pad
    face = padded[int(my - bs):int(my + bs * (1 + 2 * CROP_SCALE)),
                  int(mx - bs * (1 + CROP_SCALE)):int(mx + bs * (1 + CROP_SCALE))]
    return cv2.resize(face, (224, 224))


def crops_224(frames: list[np.ndarray], boxes: list) -> np.ndarray:
    """The published pipeline's face crops: smoothed box, 40% margin below and at the sides."""
    geometry = crop_geometry(boxes)
    out = np.empty((len(frames), 224, 224, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = crop_224(frame, *geometry[i])
    return out


def _score_windows(video: str, usable: int, batch: int, embed) -> SyncResult:
    """Embed windows 0..usable-1 in batches (`embed(indices)` -> (lip, audio) embeddings) and score them."""
    lip, aud = [], []
    for s in range(0, usable, batch):
        v, a = embed(range(s, min(usable, s + batch)))
        lip.append(v.cpu())
        aud.append(a.cpu())
    d, c, off = sync_scores(offset_distances(torch.cat(lip), torch.cat(aud)))
    return SyncResult(video, d, c, off, usable)


@torch.no_grad()
def evaluate_syncnet_v2(net, video: str, audio_path: str | None = None, detector: str = "retinaface",
                        batch: int = 20, device: str = "cpu") -> SyncResult:
    frames, boxes = face_track(video, detector, device)
    crops = crops_224(frames, boxes)
    samples = audio_mod.load_audio(audio_path or video).samples
    return syncnet_v2_sync_of_crops(net, crops, samples, video, batch, device)


@torch.no_grad()
def syncnet_v2_sync_of_crops(net, crops: np.ndarray, samples: np.ndarray, name: str = "", batch: int = 20,
                             device: str = "cpu") -> SyncResult:
    """LSE-D / LSE-C from the evaluation SyncNet for the published pipeline's 224x224 crops (n, 224,
    224, 3) uint8 at 25 fps (`crops_224`) and the 16 kHz speech they should follow."""
    mfcc = audio_mod.mfcc_100hz(samples)
    usable = min(len(crops), len(samples) // 640) - FRAMES
    if usable < 1:
        raise InputError(f"{name}: too short to measure sync (needs more than {FRAMES} frames with audio)")
    net.eval()

    def embed(idx):
        v = torch.from_numpy(np.stack([crops[i:i + FRAMES] for i in idx]))  # (B, 5, 224, 224, 3)
        a = torch.from_numpy(np.stack([mfcc[:, 4 * i:4 * i + 20] for i in idx])).unsqueeze(1)
        return net.lip_features(v.permute(0, 4, 1, 2, 3).float().to(device)), net.audio_features(a.to(device))

    return _score_windows(name, usable, batch, embed)


@torch.no_grad()
def evaluate_expert(expert, video: str, audio_path: str | None = None, detector: str = "retinaface",
                    batch: int = 20, device: str = "cpu") -> SyncResult:
    """The same statistics with our lip-sync expert: 96x96 crops (dub's pads), mel windows."""
    from ..faces import DEFAULT_PADS, pad_box

    frames, boxes = face_track(video, detector, device)
    h, w = frames[0].shape[:2]
    crops = []
    for frame, box in zip(frames, boxes):
        x1, y1, x2, y2 = pad_box(box, DEFAULT_PADS, w, h)
        crops.append(cv2.resize(frame[y1:y2, x1:x2], (96, 96)))
    mel = audio_mod.melspectrogram(audio_mod.load_audio(audio_path or video).samples)
    return expert_sync_of_crops(expert, np.stack(crops), mel, video, batch, device)


@torch.no_grad()
def expert_sync_of_crops(expert, crops: np.ndarray, mel: np.ndarray, name: str = "", batch: int = 20,
                         device: str = "cpu") -> SyncResult:
    """LSE-D / LSE-C from our expert for face crops (n, S, S, 3) uint8 BGR at 25 fps (resized to
    the expert's face size when they are of another) and the mel spectrogram of the speech they
    should follow."""
    import cv2

    from ..models.syncnet import lower_half_stack

    side = getattr(expert, "size", 96)
    if crops.shape[1] != side:
        crops = np.stack([cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA) for c in crops])

    last_frame = int((mel.shape[1] - audio_mod.MEL_STEP) * media.FPS / audio_mod.MEL_FPS)
    usable = min(len(crops) - FRAMES, last_frame) + 1
    if usable < 1:
        raise InputError(f"{name}: too short to measure sync")
    expert.eval()

    def embed(idx):
        v = torch.from_numpy(np.stack([crops[i:i + FRAMES] for i in idx])).permute(0, 4, 1, 2, 3).float().div(255)
        m = torch.from_numpy(audio_mod.mel_windows(mel, media.FPS, list(idx))).unsqueeze(1)
        a_emb, v_emb = expert(m.to(device), lower_half_stack(v).to(device))
        return v_emb, a_emb

    return _score_windows(name, usable, batch, embed)


def load_sync_model(path: str):
    """(kind, network) for a syncnet_v2 checkpoint or one of our experts."""
    from ..checkpoints import load_network
    from ..models import syncnet, syncnet_v2

    loaded = load_network(path, (syncnet_v2.SIGNATURE.kind, syncnet.SIGNATURE.kind))
    return loaded.kind, loaded.net


@dataclass
class SyncReport:
    """Per-video results and their means, for one scoring network."""

    model: str  # what the checkpoint held: syncnet_v2_evaluation, or our expert's kind
    videos: list[SyncResult]
    lse_d: float
    lse_c: float

    @property
    def published_syncnet(self) -> bool:
        """Scored by the evaluation SyncNet: comparable with published figures."""
        return self.model == "syncnet_v2_evaluation"

    def as_dict(self) -> dict:
        return {"model": self.model, "videos": [r.as_dict() for r in self.videos],
                "lse_d": round(self.lse_d, 4), "lse_c": round(self.lse_c, 4)}


def score_videos(syncnet: str, videos, audio_path: str | None = None, detector: str = "retinaface",
                 device: torch.device = torch.device("cpu")) -> SyncReport:
    """LSE-D / LSE-C of each video (against its own audio track, or `audio_path`) and their means,
    with whichever network the checkpoint `syncnet` holds: syncnet_v2 or one of our experts."""
    videos = [str(v) for v in videos]
    if not videos:
        raise InputError("no videos to score")
    kind, net = load_sync_model(syncnet)
    net = net.to(device)
    evaluate = evaluate_syncnet_v2 if kind == "syncnet_v2_evaluation" else evaluate_expert
    results = [evaluate(net, v, audio_path, detector, device=device.type) for v in videos]
    return SyncReport(kind, results, lse_d=sum(r.lse_d for r in results) / len(results),
                      lse_c=sum(r.lse_c for r in results) / len(results))
