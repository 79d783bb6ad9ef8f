"""The Python API: the README's example runs as written, `import lipsync_cli` stays cheap, and
`dub` keeps the model's options to `load_model`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import EXAMPLES, ROOT, decode_frames, ffmpeg
from lipsync_cli import media


def readme_python_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From Python"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the From Python section has one python block"
    return blocks[0]


@pytest.mark.slow
def test_readme_python_example_runs_as_written(tmp_path, narrow_checkpoint, monkeypatch, capsys):
    # the repository root as the README's first command leaves it: examples/ and demo.pth (the
    # speech cut to its first second: 25 frames to generate instead of 75, twice; the generator
    # at an eighth of the width)
    (tmp_path / "examples").mkdir()
    shutil.copy(EXAMPLES / "talk.mp4", tmp_path / "examples" / "talk.mp4")
    ffmpeg("-i", str(EXAMPLES / "speech.wav"), "-t", "1", str(tmp_path / "examples" / "speech.wav"))
    shutil.copy(narrow_checkpoint, tmp_path / "demo.pth")
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_python_block(), "README.md", "exec"), {"__name__": "__main__"})

    printed = capsys.readouterr().out
    assert re.match(r"25 frames, 1\.00 s, wav2lip on cpu \((fp32|bf16|int8)\); 0 frames without a face\n$", printed)
    source = decode_frames(EXAMPLES / "talk.mp4")[:25]
    outputs = {}
    for name in ("dubbed_soft.mp4", "dubbed_hard.mp4"):
        info = media.probe(tmp_path / name)
        assert info.video.codec == "h264" and info.audio.codec == "aac"
        assert (info.video.width, info.video.height) == source.shape[2:0:-1]
        assert info.video.frame_count == 25 and abs(info.video.duration - 1.0) <= 0.04 + 1e-6
        outputs[name] = decode_frames(tmp_path / name).astype(np.int16)
    # the options took effect: the hard paste changes the whole (taller) box, the feather only the mouth
    changed = {name: (np.abs(frames - source).max(axis=3) > 30).mean() for name, frames in outputs.items()}
    assert changed["dubbed_hard.mp4"] > 1.5 * changed["dubbed_soft.mp4"] > 0
    assert not list(tmp_path.glob(".*partial*"))


def test_import_is_cheap():
    code = "import sys, lipsync_cli; print(sorted(m for m in ('torch', 'cv2', 'numpy', 'typer') if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert run.stdout.strip() == "[]"


def test_dub_refuses_the_models_options(checkpoint, tmp_path):
    import lipsync_cli

    model = lipsync_cli.load_model(checkpoint, device="cpu", precision="fp32", batch_size=4)
    assert (model.name, model.checkpoint, model.precision, model.batch_size) == ("wav2lip", str(checkpoint), "fp32", 4)
    with pytest.raises(TypeError, match="device, batch_size: load_model's options"):
        lipsync_cli.dub(model, EXAMPLES / "talk.mp4", EXAMPLES / "speech.wav", tmp_path / "o.mp4", device="cuda",
                        batch_size=8)
    assert lipsync_cli.DubOptions is lipsync_cli.pipelines.dub.DubOptions
    with pytest.raises(AttributeError):
        lipsync_cli.no_such_name
