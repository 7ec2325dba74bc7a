"""Pieces shared by the train / evaluate / predict / synth subcommands."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys


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


def add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data-root", default=None,
                       help="folder the paths of the lists are relative to")
    group.add_argument("--list-format", choices=("auto", "frames", "videos"), default="auto",
                       help="'frames': 'path num_frames label' (frame folders); 'videos': "
                            "'path label' (video files); 'auto': by field count (default)")
    group.add_argument("--image-template", default="img_{:05d}.jpg",
                       help="frame file names inside frame folders (default img_{:05d}.jpg; "
                            "Something-Something V1 uses {:05d}.jpg)")
    group.add_argument("--first-frame-index", type=int, default=1,
                       help="number of the first frame file (default 1)")
    group.add_argument("--decoder", choices=("auto", "pyav", "decord"), default="auto",
                       help="video decoder: decord when installed, else PyAV (default auto)")
    group.add_argument("--workers", type=int, default=4, help="DataLoader workers (default 4)")
    group.add_argument("--class-names", default=None,
                       help="file with one class name per line (line i = class i)")


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runtime")
    group.add_argument("--device", default="auto",
                       help="auto (GPU if available), cpu, cuda or cuda:N (default auto)")
    group.add_argument("--backend", default=None,
                       help="tdn_ops backend of TDN's fused operators (auto, cpu, cuda, "
                            "triton, reference)")
    group.add_argument("--amp", action="store_true",
                       help="mixed precision (float16 + grad scaler on GPU, bfloat16 on CPU)")
    group.add_argument("--channels-last", action="store_true",
                       help="channels_last memory format for model and inputs")
    group.add_argument("--no-progress", dest="progress", action="store_false",
                       help="no progress bars")


def print_json_line(payload: dict) -> None:
    """The machine-readable last line of a command's output."""
    sys.stdout.write(json.dumps(payload, sort_keys=False) + "\n")
    sys.stdout.flush()


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value
