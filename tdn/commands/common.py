"""Pieces shared by the subcommands: their parser class, common options, logging, output.

Not a subcommand itself (``tdn.cli.COMMANDS`` lists those). Cheap to import: no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from typing import Any, Callable

from ..engine.train_config import TrainConfig


def setup_logging(rank: int = 0, log_file: str | None = None) -> None:
    """INFO to stderr on rank 0 (warnings only on other ranks), and to ``log_file`` if given."""
    logger = logging.getLogger("tdn")
    logger.setLevel(logging.INFO)
    prefix = f"[rank {rank}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    formatter = logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(message)s", "%H:%M:%S")
    if not any(getattr(h, "_tdn_cli", False) for h in logger.handlers):
        stream = logging.StreamHandler(sys.stderr)
        stream.setLevel(logging.INFO if rank == 0 else logging.WARNING)
        stream.setFormatter(formatter)
        stream._tdn_cli = True
        logger.addHandler(stream)
        logger.propagate = False
    for old in [h for h in logger.handlers if getattr(h, "_tdn_cli_file", False)]:
        logger.removeHandler(old)  # one log file per command run, even when run in-process
        old.close()
    if log_file and rank == 0:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handler = logging.FileHandler(log_file)
        handler.setFormatter(formatter)
        handler._tdn_cli_file = True
        logger.addHandler(handler)


# Video decoders (tdn.data.decoding, which imports torch: the names are repeated here).
DECODER_CHOICES = ("auto", "av", "torchcodec", "decord")


def decoder_choice(text: str) -> str:
    """``--decoder`` value; ``pyav``, the name earlier versions used, still means ``av``."""
    return "av" if text == "pyav" else text


DECODER_HELP = ("video decoder: av (PyAV), torchcodec, decord, or auto (torchcodec when it "
                "loads, else PyAV)")


# Options that several commands take, keyed by the TrainConfig field they set: argparse
# keywords besides the default and the help, which come from the field (see add_settings).
DATA_OPTIONS = {
    "data_root": {},
    "list_format": dict(choices=("auto", "frames", "videos")),
    "image_template": {},
    "first_frame_index": dict(type=int),
    "decoder": dict(type=decoder_choice, choices=DECODER_CHOICES, help=DECODER_HELP),
    "workers": dict(type=int),
    "class_names": {},
}
RUNTIME_OPTIONS = {
    "device": {},
    "backend": {},
    "amp": dict(action="store_true"),
    "channels_last": dict(action="store_true"),
    "progress": dict(flags=["--no-progress"], action="store_false", help="no progress bars"),
}


def add_decoder_option(parser, default: str = "auto") -> None:
    """``--decoder`` for commands without the full data options (predict, explain)."""
    parser.add_argument("--decoder", type=decoder_choice, choices=DECODER_CHOICES,
                        default=default, help=DECODER_HELP + " (default %(default)s)")


def add_keep_memory_option(parser) -> None:
    """``--no-keep-memory`` for the inference commands (see :func:`keep_memory_on_cpu`)."""
    parser.add_argument("--no-keep-memory", dest="keep_memory", action="store_false",
                        help="on a CPU, leave the C library's allocator as it is (default: "
                             "keep freed memory for the next batch, tdn.keep_freed_cpu_memory, "
                             "which saved 17-19%% of a forward on the benchmark machine)")


def keep_memory_on_cpu(args, device: str) -> None:
    """Before any work: unless ``--no-keep-memory``, make an inference run on ``device`` (as
    given on the command line) keep freed feature maps for reuse."""
    if not getattr(args, "keep_memory", True):
        return
    from ..engine.distributed import resolve_device

    if resolve_device(device).type == "cpu":
        from ..cpu_memory import keep_freed_cpu_memory

        keep_freed_cpu_memory()


def add_settings(group, options: dict[str, dict], settings: type, *,
                 command_line_value: Callable[[str, Any], Any] = lambda name, value: value):
    """One option per entry of ``options`` (field name -> argparse keywords), for the fields of
    the dataclass ``settings``.

    The flag is the field name with dashes (or the entry's ``flags``), the default is the
    field's (spelled for the command line by ``command_line_value``), the help is the field's
    ``doc`` (or the entry's ``help``) followed by the default in force. A ``None`` default and
    on/off switches show none.
    """
    fields = {spec.name: spec for spec in dataclasses.fields(settings)}
    for name, keywords in options.items():
        spec = fields[name]
        keywords = dict(keywords)
        own_flag = "--" + name.replace("_", "-")
        flags = keywords.pop("flags", [own_flag])
        help_text = keywords.pop("help", spec.metadata.get("doc", ""))
        if flags != [own_flag]:
            keywords["dest"] = name
        if not keywords.get("required"):
            keywords["default"] = command_line_value(name, _field_default(spec))
            shown = keywords["default"] not in (None, "") and "action" not in keywords
            if shown and "default" not in help_text:
                help_text += " (default %(default)s)"  # argparse fills in the one in force
        group.add_argument(*flags, help=help_text, **keywords)


def _field_default(spec: dataclasses.Field):
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return None  # a required option


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """The data options, documented and defaulted as in :class:`tdn.engine.TrainConfig`."""
    add_settings(parser.add_argument_group("data"), DATA_OPTIONS, TrainConfig)


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """The runtime options, documented and defaulted as in :class:`tdn.engine.TrainConfig`."""
    add_settings(parser.add_argument_group("runtime"), RUNTIME_OPTIONS, TrainConfig)


def print_json_line(payload: dict) -> None:
    """The machine-readable last line of a command's output."""
    sys.stdout.write(json.dumps(payload, sort_keys=False) + "\n")
    sys.stdout.flush()


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


class CommandParser(argparse.ArgumentParser):
    """The parser of one subcommand, which may offer ``--preset NAME`` (:meth:`add_presets`).

    A preset's values become the parser's defaults (``set_defaults``, the way timm's train.py
    applies a --config file), so flags given explicitly override the recipe wherever they
    stand on the command line.
    """

    presets: dict[str, dict] | None = None

    def add_presets(self, presets: dict[str, dict], help: str) -> None:
        self.presets = presets
        self.add_argument("--preset", choices=sorted(presets), default=None, help=help)

    def parse_known_args(self, args=None, namespace=None):
        if not self.presets:
            return super().parse_known_args(args, namespace)
        # The preset as spelled in full is applied before parsing, so that --help shows its
        # values; the loop below catches an abbreviated --preset.
        reader = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        reader.add_argument("--preset")
        applied = reader.parse_known_args(args)[0].preset
        if applied not in self.presets:
            applied = None  # the full parse reports the bad choice
        else:
            self.set_defaults(**self.presets[applied])
        while True:
            # A fresh namespace each pass: argparse fills in only the defaults it lacks.
            fresh = None if namespace is None else argparse.Namespace(**vars(namespace))
            parsed, extras = super().parse_known_args(args, fresh)
            if parsed.preset == applied:
                return parsed, extras
            applied = parsed.preset
            self.set_defaults(**self.presets[applied])

