"""Training settings are user input: every value's type and range is checked, unknown keys are
named, a malformed file is one line, exit 2; and the config module imports no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lipsync_cli.cli import main
from lipsync_cli.errors import InputError
from lipsync_cli.train.config import DavsTrainConfig, TrainConfig, Wav2LipConfig


def train_syncnet(tmp_path, capsys, text: str, name: str = "cfg.json", *flags: str) -> tuple[int, str]:
    """`lipsync train syncnet` with this config file; (exit code, stderr). The data folder is
    empty: a config that gets past its checks fails later, on the data."""
    (tmp_path / name).write_text(text)
    capsys.readouterr()
    code = main(["train", "syncnet", str(tmp_path / "data"), "-o", str(tmp_path / "run"),
                 "--config", str(tmp_path / name), "-q", *flags])
    return code, capsys.readouterr().err


def test_a_wrongly_typed_value_is_refused_before_anything_is_written(tmp_path, capsys):
    code, err = train_syncnet(tmp_path, capsys, '{"steps": "10"}')
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "cfg.json" in err and "steps" in err and "whole number" in err
    assert not (tmp_path / "run").exists()  # no run folder, no config.json recording the bad value
    for bad, words in (('{"steps": 10.5}', "whole number"), ('{"steps": true}', "whole number"),
                       ('{"resume": "no"}', "true or false"), ('{"lr": "1e-4"}', "a number"),
                       ('{"device": 0}', "text")):
        code, err = train_syncnet(tmp_path, capsys, bad)
        assert code == 2 and words in err and json.loads(bad).popitem()[0] in err, bad


def test_values_out_of_range_or_not_among_the_choices(tmp_path, capsys):
    for bad, words in (('{"steps": 0}', "at least 1"), ('{"batch_size": 0}', "at least 1"),
                       ('{"lr": 0}', "above 0"), ('{"lr": -1e-4}', "above 0"), ('{"eval_every": 0}', "at least 1"),
                       ('{"workers": -1}', "at least 0"), ('{"amp": "yes"}', "auto, on or off"),
                       ('{"device": "gpu"}', "auto, cpu, cuda or cuda:N"), ('{"lr": NaN}', "finite")):
        code, err = train_syncnet(tmp_path, capsys, bad)
        assert code == 2 and words in err and "cfg.json" in err, (bad, err)
    # the flags are checked the same way, and named as flags
    code, err = train_syncnet(tmp_path, capsys, "{}", "cfg.json", "--batch-size", "0")
    assert code == 2 and "--batch-size 0: must be at least 1" in err and err.count("\n") == 1


def test_malformed_files_are_one_line_naming_the_file(tmp_path, capsys):
    code, err = train_syncnet(tmp_path, capsys, '{"steps": 10,}')
    assert code == 2 and "cfg.json: not valid JSON" in err and "line 1" in err and err.count("\n") == 1
    assert "JSONDecodeError" not in err and "Traceback" not in err
    code, err = train_syncnet(tmp_path, capsys, "steps = = 2\n", "cfg.toml")
    assert code == 2 and "cfg.toml: not valid TOML" in err and err.count("\n") == 1
    code, err = train_syncnet(tmp_path, capsys, "[10, 20]")
    assert code == 2 and "cfg.json" in err and "a list" in err
    code, err = train_syncnet(tmp_path, capsys, 'steps = "10"\n', "cfg.toml")
    assert code == 2 and 'cfg.toml: steps = "10": expected a whole number' in err
    code, err = train_syncnet(tmp_path, capsys, '{"stpes": 2}')
    assert code == 2 and "cfg.json: unknown setting 'stpes' (did you mean 'steps'?)" in err
    (tmp_path / "folder.json").mkdir()
    capsys.readouterr()
    assert main(["train", "syncnet", str(tmp_path), "-o", str(tmp_path / "run"), "--config",
                 str(tmp_path / "folder.json")]) == 2
    assert "folder.json: cannot read the config file" in capsys.readouterr().err


def test_accepted_values_reach_the_config_as_their_declared_types(tmp_path):
    (tmp_path / "cfg.json").write_text('{"lr": 1, "steps": 3, "sync_switch": Infinity, "model": "attnwav2lip"}')
    cfg = Wav2LipConfig.from_sources(str(tmp_path / "cfg.json"), data="d", out="o", batch_size=None, gan=False)
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.steps == 3 and cfg.sync_switch == float("inf")
    assert cfg.model == "attnwav2lip" and cfg.gan is False and cfg.batch_size == 64  # None: not given
    assert DavsTrainConfig.from_sources(None, data="d", out="o").batch_size == 16  # its own default


def test_wav2lip_and_davs_settings_are_checked_too():
    with pytest.raises(InputError, match="model = \"wav2lip-hq\": choose wav2lip, attnwav2lip"):
        Wav2LipConfig(data="d", out="o", model="wav2lip-hq")
    with pytest.raises(InputError, match="sync_weight \\+ gan_weight = 1.07: must be at most 1"):
        Wav2LipConfig(data="d", out="o", sync_weight=1.0)
    assert Wav2LipConfig(data="d", out="o", sync_weight=1.0, gan=False).sync_weight == 1.0
    with pytest.raises(InputError, match="t = 3: choose 5"):
        Wav2LipConfig(data="d", out="o", t=3)
    with pytest.raises(InputError, match="--size 96: choose 64, 128 or 256"):
        DavsTrainConfig.from_sources(None, data="d", out="o", size=96)
    with pytest.raises(InputError, match="word_classifier = \"both\": choose shared, separate or none"):
        DavsTrainConfig(data="d", out="o", word_classifier="both")
    with pytest.raises(InputError, match="gen_frames .8. must be at most clip_frames .6."):
        DavsTrainConfig(data="d", out="o", clip_frames=6, gen_frames=8)
    with pytest.raises(InputError, match="disentangle_from .30. must be at most generate_from .20."):
        DavsTrainConfig(data="d", out="o", disentangle_from=30, generate_from=20)
    assert DavsTrainConfig(data="d", out="o", disentangle_from=30, generate_from=20, disentangle=False).disentangle is False
    with pytest.raises(InputError, match="width = 0: must be above 0"):
        DavsTrainConfig(data="d", out="o", width=0)


def test_every_range_is_readable_beside_its_default():
    """The CLI's help takes defaults and ranges from the classes."""
    assert TrainConfig.limit("steps").min == 1 and TrainConfig.limit("lr").min_open
    assert DavsTrainConfig.limit("batch_size").text() == "at least 1"  # inherited
    assert DavsTrainConfig.limit("size").choices == (64, 128, 256)
    assert Wav2LipConfig.limit("expert") is None


def test_the_config_module_imports_no_torch():
    code = "import sys, lipsync_cli.train.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_shipped_recipe_by_name_flags_win_and_a_file_of_that_name_wins_over_it(tmp_path, monkeypatch):
    from lipsync_cli.train.config import recipes

    assert "finetune" in recipes()
    cfg = Wav2LipConfig.from_sources("finetune", data="d", out="o", steps=7)
    assert (cfg.lr, cfg.batch_size, cfg.eval_every, cfg.gan, cfg.sync_switch) == (1e-5, 16, 100, False, float("inf"))
    assert cfg.steps == 7  # a flag beside the recipe wins
    with pytest.raises(InputError, match="finetune: unknown setting 'sync_switch'"):
        TrainConfig.from_sources("finetune", data="d", out="o")  # the expert's loop has no such setting
    monkeypatch.chdir(tmp_path)
    (tmp_path / "finetune").write_text('{"steps": 3}')
    assert Wav2LipConfig.from_sources("finetune", data="d", out="o").lr == 1e-4  # the user's own file
