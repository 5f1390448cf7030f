"""The seams detection reads the machine through: a command runner, a file reader, and the
parsing of *_VISIBLE_DEVICES lists. Tests pass functions that return recorded outputs."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

log = logging.getLogger("llamactl.hardware")

RunCommand = Callable[[Sequence[str]], str | None]
"""Runs argv and returns its stdout, or None when the tool is missing or fails."""

ReadText = Callable[[Path], str]
"""Returns a file's text; raises OSError when it is missing."""

COMMAND_TIMEOUT_S = 10.0

T = TypeVar("T")


def run_command(argv: Sequence[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("%s failed: %s", argv[0], exc)
        return None
    if done.returncode != 0:
        log.debug("%s exited %d: %s", argv[0], done.returncode, done.stderr.strip()[:200])
        return None
    return done.stdout


def read_text(path: Path) -> str:
    return path.read_text(errors="replace")


def select_visible(
    devices: Sequence[T], value: str | None, ids: Callable[[T], Sequence[str]]
) -> list[T]:
    """Apply a CUDA_VISIBLE_DEVICES-style list: indices or ids (UUID prefixes), in the list's order.

    Unset = all devices; an empty value hides all; like CUDA, parsing stops at the first entry that
    names no device.
    """
    if value is None:
        return list(devices)
    chosen: list[int] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            break
        if item.isdigit():
            index: int | None = int(item) if int(item) < len(devices) else None
        else:
            index = next(
                (i for i, d in enumerate(devices) if any(x and x.startswith(item) for x in ids(d))),
                None,
            )
        if index is None or index in chosen:
            break
        chosen.append(index)
    return [devices[i] for i in chosen]
