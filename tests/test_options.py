"""Options defined once: DubOptions fields are the flags of dub and batch, and the per-clip option
table is what both the manifest parser and the flags read."""

from __future__ import annotations

import inspect
from dataclasses import fields
from fractions import Fraction

import pytest

from lipsync_cli.cli import dub as dub_cli
from lipsync_cli.errors import InputError
from lipsync_cli.pipelines.batch import row_overrides
from lipsync_cli.pipelines.options import MANIFEST_COLUMNS, PER_CLIP, PER_CLIP_OPTIONS, DubOptions, parse_box

NOT_FLAGS = {"preset"}  # DubOptions fields without a flag


@pytest.mark.parametrize("command", [dub_cli.dub, dub_cli.batch])
def test_every_dub_option_is_a_flag_of_the_same_name_and_default(command):
    assert set(dub_cli.DUB_FLAGS) == {f.name for f in fields(DubOptions)} - NOT_FLAGS
    params = inspect.signature(command).parameters
    for f in fields(DubOptions):
        if f.name in NOT_FLAGS:
            continue
        assert f.name in params, f.name
        if f.name != "checkpoint":  # None there: the registry's default generator
            assert params[f.name].default == f.default, f.name
    assert set(PER_CLIP) <= {f.name for f in fields(DubOptions)}


def test_dub_options_from_flags(tmp_path):
    ckpt = tmp_path / "g.pth"
    ckpt.write_bytes(b"")
    flags = {name: default for name, (_, default) in dub_cli.DUB_FLAGS.items()}
    opts = dub_cli.dub_options({**flags, "checkpoint": str(ckpt), "loop": True}, device="cpu")
    assert opts == DubOptions(checkpoint=str(ckpt), loop=True, device="cpu")


def test_box_is_written_y1_y2_x1_x2_and_held_x1_y1_x2_y2():
    assert parse_box("10 20 30 40") == (30, 10, 40, 20)
    assert parse_box([10, 20, 30, 40]) == (30, 10, 40, 20)
    assert parse_box("10,20,30,40") == (30, 10, 40, 20)
    for bad in ("20 10 30 40", "10 20 40 30", "10 20 30", "a b c d", [1.5, 2, 3, 4]):
        with pytest.raises(ValueError):
            parse_box(bad)


def test_manifest_rows_read_the_table():
    assert MANIFEST_COLUMNS[:3] == ("video", "audio", "output")
    assert MANIFEST_COLUMNS[3:] == tuple(o.name for o in PER_CLIP_OPTIONS)
    row = {"box": "10 20 30 40", "pads": "0 5 0 0", "face_index": "-1", "loop": "yes", "fps": "29.97", "crf": "0",
           "on_no_face": "error", "smooth": "false"}
    assert row_overrides(row, "m.csv: row 1") == {
        "box": (30, 10, 40, 20), "pads": (0, 5, 0, 0), "face_index": -1, "loop": True,
        "fps": Fraction(30000, 1001), "crf": 0, "on_no_face": "error", "smooth": False}
    assert row_overrides({"crf": 51, "loop": False, "fps": 25}, "x") == {"crf": 51, "loop": False, "fps": 25}
    assert row_overrides({"crf": " ", "box": ""}, "x") == {}  # an empty cell keeps the batch's option
    bad = {"crf": ["52", "-1", "18.5", True], "fps": ["0", "-1", "x"], "box": ["20 10 30 40"],
           "on_no_face": ["ignore"], "loop": ["maybe"], "face_index": ["first"], "pads": ["1 2 3"]}
    for column, values in bad.items():
        for value in values:
            with pytest.raises(InputError, match=f"^m.csv: row 2: {column} must be "):
                row_overrides({column: value}, "m.csv: row 2")


def test_flags_take_help_and_range_from_the_table(capsys, monkeypatch):
    from lipsync_cli.cli import main

    monkeypatch.setenv("COLUMNS", "250")
    assert main(["batch", "--help"]) == 0
    text = capsys.readouterr().out
    assert f"(columns: {', '.join(MANIFEST_COLUMNS)})" in text
    for option in PER_CLIP_OPTIONS:
        assert option.help in text, option.name
    assert f"[{PER_CLIP['crf'].low}<=x<={PER_CLIP['crf'].high}]" in text
    assert "--no-smooth" in text and "[default: 320]" in text and "[default: 25]" in text
