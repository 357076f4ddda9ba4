from pathlib import Path

import pytest

from videomamba.engine.config import ConfigError, load_config, validate

from .conftest import tiny_config, write_config

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def test_every_shipped_config_loads_and_builds_its_model():
    import videomamba

    assert len(CONFIGS) >= 7
    for path in CONFIGS:
        config = load_config(path)
        overrides = dict(config.model.overrides, num_frames=config.data.clip_len, img_size=config.data.img_size)
        videomamba.models.model_config(config.model.name, **overrides)


def test_overrides_parse_as_yaml_and_win(tmp_path, tiny_data):
    path = write_config(tmp_path / "c.yaml", tiny_config(tiny_data, tmp_path / "run"))
    config = load_config(path, ["optim.lr=2e-3", "train.batch_size=8", "data.scale=[0.3, 1.0]", "model.depth=3"])
    assert config.optim.lr == 2e-3 and isinstance(config.optim.lr, float)
    assert config.train.batch_size == 8 and config.data.scale == [0.3, 1.0]
    assert config.model.overrides["depth"] == 3


@pytest.mark.parametrize("override,message", [
    ("optim.lrr=1", "optim: unknown key 'lrr'"),
    ("train.batch_size=big", "'batch_size' must be int, got 'big'"),
    ("optim.lr=[1]", "'lr' must be float"),
    ("model.widht=3", "unknown model key 'widht'"),
    ("trainer.seed=1", "unknown section 'trainer'"),
    ("lr=1", "expected section.key=value"),
])
def test_bad_keys_and_types_are_named(tmp_path, tiny_data, override, message):
    path = write_config(tmp_path / "c.yaml", tiny_config(tiny_data, tmp_path / "run"))
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(path, [override])


def test_missing_dataset_path_fails_before_work(tmp_path, tiny_data):
    config = load_config(write_config(tmp_path / "c.yaml", tiny_config(tiny_data, tmp_path / "run")),
                         [f"data.train={tmp_path / 'nope.txt'}"])
    with pytest.raises(ConfigError, match="data.train: .*nope.txt does not exist"):
        validate(config)
    with pytest.raises(ConfigError, match="config file does not exist"):
        load_config(tmp_path / "absent.yaml")


def test_cli_reports_config_errors(tmp_path, tiny_data, capsys):
    from videomamba.cli import main

    path = write_config(tmp_path / "c.yaml", tiny_config(tiny_data, tmp_path / "run"))
    assert main(["train", "--config", str(path), "optim.momentum=0.9"]) == 2
    assert "unknown key 'momentum'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing started


def test_unknown_compile_mode_is_named(tmp_path, tiny_data):
    config = load_config(write_config(tmp_path / "c.yaml", tiny_config(tiny_data, tmp_path / "run")),
                         ["train.compile_mode=fastest"])
    with pytest.raises(ConfigError, match="train.compile_mode: 'fastest' is not one of default, reduce-overhead"):
        validate(config)
    validate(load_config(write_config(tmp_path / "d.yaml", tiny_config(tiny_data, tmp_path / "run")),
                         ["train.compile_mode=reduce-overhead"]))
