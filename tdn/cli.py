"""The ``tdn`` command line (also ``python -m tdn``).

Each subcommand lives in ``tdn/commands/<name>.py`` and exposes ``add_parser(subparsers)``,
which registers it and calls ``set_defaults(func=run)``; ``run(args)`` returns the exit code.
Command modules keep their heavy imports (torch, the models) inside ``run`` so that building
the parser stays cheap. ``tdn <command> ...`` imports only that command's module; ``tdn
--help`` imports each listed module to show its one-line help.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .commands.common import CommandParser

# Subcommands, in the order ``tdn --help`` lists them (module tdn.commands.<name>).
COMMANDS = ["convert", "flops", "train", "evaluate", "ensemble", "predict", "synth", "index",
            "export", "explain"]


def _version() -> str:
    from . import __version__

    return __version__


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command registered, or just ``only`` (a name in COMMANDS)."""
    parser = argparse.ArgumentParser(
        prog="tdn", description="Temporal Difference Networks (CVPR 2021) on fused operators.")
    parser.add_argument("--version", action="version", version=f"tdn {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=CommandParser)
    for name in COMMANDS:
        if only is not None and name != only:
            continue
        module = importlib.import_module(f"tdn.commands.{name}")
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(only=command).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as e:
        # Bad input (arguments, files, checkpoints): a message, not a traceback.
        print(f"tdn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
