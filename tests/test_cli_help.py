"""The command line as a new user first meets it: every command's help at 80 columns, --version,
shell completion, and `lipsync doctor` telling the truth about this machine. No model is loaded."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import rich.table
import typer
import typer.rich_utils

from lipsync_cli import media, package_version
from lipsync_cli.cli import app, main

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def command_paths(command=None, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command of the app (and its groups), found from the Click group, so
    a new one is checked without being listed here."""
    command = command or typer.main.get_command(app)
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths.extend(command_paths(sub, path + (name,)))
    return paths


def render_help(path: tuple[str, ...], capsys, monkeypatch, columns: int = 80) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", None)  # so a TERMINAL_WIDTH here cannot win over COLUMNS
    assert main([*path, "--help"]) == 0
    return ANSI.sub("", capsys.readouterr().out)  # colours, where the environment forces them


def rows(text: str):
    """(panel title, names, start of the description, width the description may take) for each
    row of each panel: a line whose cell starts right after the panel's left border. Columns are
    two spaces apart or more, the words of a cell one ("-o, --output PATH"); the description is
    the row's last cell."""
    panel = None
    for line in text.splitlines():
        if line.startswith("╭─"):
            panel = line.strip("╭─╮ ").split(" ─")[0]
        elif line.startswith("│ ") and line[2] != " ":
            border = line.rindex("│")
            cells = [(2 + m.start(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", line[2:border])]
            if cells and cells[0][1] == "*":  # the required mark
                cells = cells[1:]
            if len(cells) >= 2:
                (_, names), (start, _) = cells[0], cells[-1]
                yield panel, names, start, border - 1 - start  # the panel's padding: one space


def test_every_help_reads_at_80_columns(capsys, monkeypatch):
    paths = command_paths()
    assert ("dub",) in paths and ("train", "wav2lip") in paths and ("doctor",) in paths and len(paths) > 15
    for path in paths:
        text = render_help(path, capsys, monkeypatch)
        where = f"lipsync {' '.join(path)} --help"
        assert max(map(len, text.splitlines())) <= 80, where
        assert "…" not in text, f"{where}: text cut off"
        assert "<bool>" not in text, f"{where}: a flag shows a value"
        found = list(rows(text))
        assert found, where
        for panel, names, start, width in found:
            assert width >= 40, f"{where}: {names}: description {width} wide"
            if panel not in ("Arguments", "Commands"):
                assert not re.search(r"<[a-z]", names), f"{where}: {names}: its value is not named (metavar)"
        assert typer.rich_utils.Table is rich.table.Table  # cli/layout.py's table only while help is written


def test_dub_help_is_grouped_and_names_its_values(capsys, monkeypatch):
    text = render_help(("dub",), capsys, monkeypatch)
    panels = [p for p, *_ in rows(text)]
    for title in ("Input and output", "Model and speed", "Faces", "Several faces", "HD / restoration", "Encoding"):
        assert title in panels
    names = {n.split()[0].rstrip(","): n for _, n, *_ in rows(text)}
    assert names["--box"] == "--box Y1 Y2 X1 X2" and names["--pads"] == "--pads TOP BOTTOM LEFT RIGHT"
    assert names["--smooth"] == "--smooth / --no-smooth" and names["-o"] == "-o, --output PATH"
    assert [p for p, n, *_ in rows(text) if n == "--help"] == ["Input and output"]  # not alone in a panel
    assert "VIDEO_STEM_dubbed.mp4" in text and "s3fd-619a316812.pth" in text  # whole, not cut off
    at120 = render_help(("dub",), capsys, monkeypatch, columns=120)
    assert len(at120.splitlines()) < len(text.splitlines()) <= 120


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"lipsync {metadata.version('lipsync-cli')}\n"
    assert package_version() == metadata.version("lipsync-cli")


def test_json_output_carries_the_version(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("LIPSYNC_WEIGHTS", str(tmp_path))
    assert main(["weights", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["version"] == package_version() and {"wav2lip_gan", "s3fd"} <= {w["name"] for w in listed["weights"]}


def test_completion_is_answered_through_main(tmp_path):
    """What a shell does on TAB after --install-completion: the app answers the completion
    variable through main(), with the same exit status handling as any command."""
    env = {**os.environ, "_LIPSYNC_COMPLETE": "complete_bash", "COMP_WORDS": "lipsync train wav", "COMP_CWORD": "2",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    script = "import sys; sys.argv[0] = 'lipsync'; from lipsync_cli.cli import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "wav2lip\n"), done.stderr


# --------------------------------------------------------------------------- lipsync doctor


def doctor(capsys, *args) -> tuple[int, str]:
    code = main(["doctor", *args])
    return code, capsys.readouterr().out


def test_doctor_says_what_this_machine_has(capsys, monkeypatch, tmp_path):
    import torch

    from lipsync_cli.device import auto_precision, cpu_int8_kernels, resolve_device
    from lipsync_cli.pipelines.dub import generator_precision
    from lipsync_cli.pipelines.options import DubOptions

    monkeypatch.setenv("LIPSYNC_WEIGHTS", str(tmp_path))  # an empty weights folder
    code, out = doctor(capsys, "--json")
    report = json.loads(out)
    assert code == 0, report["problems"]
    assert report["version"] == package_version() == report["package"]["version"]
    assert {d["name"] for d in report["dependencies"]} >= {"torch", "numpy", "opencv-python", "typer", "rich"}
    assert all(d["ok"] for d in report["dependencies"])
    # the precision it names is the one dub takes here
    device = resolve_device("auto")
    assert report["precision"]["device"] == str(device)
    assert report["precision"]["precision"] == generator_precision(DubOptions(checkpoint="any.pth"), device)
    cpu = report["cpu"]
    if device.type == "cpu" and cpu["instructions"] is not None and not cpu["limits"]:
        expected = "bf16" if cpu["instructions"]["AMX"] else ("int8" if cpu_int8_kernels() else "fp32")
        assert report["precision"]["precision"] == expected == auto_precision(torch.device("cpu"))
    assert len(report["torch"]["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    # the ffmpeg dub would run
    assert report["ffmpeg"]["path"] == media.ffmpeg_binary() and os.path.exists(report["ffmpeg"]["path"])
    assert report["ffmpeg"]["version"].startswith("ffmpeg version")
    weights = {w["name"]: w for w in report["weights"]["entries"]}
    assert report["weights"]["folder"] == str(tmp_path)
    assert weights["light_asd_talkset"]["present"] and weights["light_asd_talkset"]["verified"]  # ships inside
    assert not weights["wav2lip_gan"]["present"] and weights["wav2lip_gan"]["fix"] == "lipsync weights fetch wav2lip_gan"
    assert [p["what"] for p in report["problems"]] == ["wav2lip_gan"]  # noted, not blocking

    code, out = doctor(capsys)
    assert code == 0
    assert f"--precision auto: {report['precision']['precision']} on {device}" in out
    assert report["ffmpeg"]["path"] in out and "lipsync weights fetch wav2lip_gan" in out


def test_doctor_without_ffmpeg_names_the_fix(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("LIPSYNC_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("LIPSYNC_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg on PATH
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # and no wheel: its import fails
    with pytest.raises(Exception, match="ffmpeg not found"):
        media.ffmpeg_binary()
    code, out = doctor(capsys)
    assert code == 1
    assert re.search(r"^needed: ffmpeg: not found.*\n  fix: pip install imageio-ffmpeg$", out, re.M), out
    code, out = doctor(capsys, "--json")
    report = json.loads(out)
    assert code == 1 and report["version"] == package_version()
    assert {"what": "ffmpeg", "fix": "pip install imageio-ffmpeg", "blocks_dub": True}.items() <= report["problems"][0].items()

    monkeypatch.setenv("LIPSYNC_FFMPEG", str(tmp_path / "no-such-ffmpeg"))  # set, but to nothing that runs
    code, out = doctor(capsys)
    assert code == 1 and "fix: unset LIPSYNC_FFMPEG" in out


def test_doctor_names_the_gpus_torch_sees(capsys, monkeypatch, tmp_path):
    """On a machine with a GPU (torch's answers stood in for here, on any machine): each GPU with
    its memory, and dub's precision on it and on the CPU."""
    import torch

    from lipsync_cli.device import auto_precision

    class H100:
        name, total_memory, major, minor = "NVIDIA H100 80GB HBM3", 85_045_460_992, 9, 0

    monkeypatch.setenv("LIPSYNC_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: H100)
    code, out = doctor(capsys)
    assert code == 0
    assert "cuda:0 NVIDIA H100 80GB HBM3, 79.2 GiB, compute capability 9.0" in out
    assert f"--precision auto: fp16 on cuda (CUDA); on the CPU (--device cpu): {auto_precision(torch.device('cpu'))}" in out
