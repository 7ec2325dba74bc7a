"""``tdn train``'s options come from TrainConfig: same defaults, presets applied as defaults."""

from __future__ import annotations

import dataclasses

import pytest

from tdn.cli import build_parser
from tdn.commands.train import PRESETS, config_from_args
from tdn.engine import TrainConfig

REQUIRED = ["--train-list", "t.txt", "--output", "run"]


def parse(*flags: str) -> TrainConfig:
    return config_from_args(build_parser("train").parse_args(["train", *REQUIRED, *flags]))


def test_no_flags_give_the_config_defaults():
    assert parse() == TrainConfig(train_list="t.txt", output="run")


def help_text(capsys, *flags: str) -> str:
    with pytest.raises(SystemExit):
        build_parser("train").parse_args(["train", *flags, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_every_setting_has_a_documented_flag(capsys):
    text = help_text(capsys)
    for spec in dataclasses.fields(TrainConfig):
        assert spec.metadata["doc"], spec.name
        flag = {"flip": "--no-flip", "progress": "--no-progress"}.get(
            spec.name, "--" + spec.name.replace("_", "-"))
        assert flag in text, flag


def test_the_kinetics_preset_is_the_authors_recipe():
    config = parse("--preset", "kinetics")
    assert (config.lr, config.lr_steps, config.epochs, config.weight_decay,
            config.batch_size) == (0.02, (50, 75, 90), 100, 1e-4, 16)
    assert config.flip_label_swaps == {}


def test_the_something_preset_swaps_the_left_right_labels():
    config = parse("--preset", "something")
    assert config.flip_label_swaps == {86: 87, 87: 86, 93: 94, 94: 93, 166: 167, 167: 166}
    assert (config.lr, config.epochs) == (0.01, 60)


@pytest.mark.parametrize("flags", [
    ("--preset", "kinetics", "--lr", "0.5"),
    ("--lr", "0.5", "--preset", "kinetics"),
    ("--lr", "0.5", "--pres", "kinetics"),  # an abbreviated --preset too
])
def test_explicit_flags_override_a_preset_wherever_they_stand(flags):
    config = parse(*flags)
    assert config.lr == 0.5
    assert config.epochs == 100  # the rest of the recipe still applies


def test_command_line_spellings_become_config_values():
    config = parse("--clip-grad-norm", "0", "--partial-bn", "--no-flip", "--resume",
                   "--lr-steps", "3", "4", "--flip-label-swaps", "0:1")
    assert config.clip_grad_norm is None
    assert config.bn_mode == "partial" and config.flip is False and config.resume == "auto"
    assert config.lr_steps == (3.0, 4.0)
    assert config.flip_label_swaps == {0: 1, 1: 0}


def test_help_shows_the_default_in_force(capsys):
    assert "learning rate of the global batch (default 0.01)" in help_text(capsys)
    text = help_text(capsys, "--preset", "kinetics")
    assert "learning rate of the global batch (default 0.02)" in text
    assert "epochs to train (default 100)" in text


def test_presets_only_name_existing_settings():
    names = {spec.name for spec in dataclasses.fields(TrainConfig)}
    for preset in PRESETS.values():
        assert set(preset) <= names
