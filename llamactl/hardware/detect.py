"""Put the snapshot together: CPU and RAM always, then whichever GPU source answers.

Detection only reads the machine, through seams that tests replace with recorded outputs: the
environment, a command runner, a file reader, the OS name and NVML. It writes nothing (no
os.environ changes) and prints nothing.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from typing import Any

from llamactl.hardware import amd, apple, nvidia
from llamactl.hardware.cpu import detect_cpu, detect_memory
from llamactl.hardware.probe import ReadText, RunCommand, read_text, run_command
from llamactl.hardware.snapshot import Gpu, Hardware


def detect(
    *,
    env: Mapping[str, str] | None = None,
    run: RunCommand = run_command,
    read: ReadText = read_text,
    system: str | None = None,
    machine: str | None = None,
    nvml: Any | None = None,
    label: str | None = None,
) -> Hardware:
    """Detect this machine. Every argument is a seam; the defaults read the real one."""
    env = dict(os.environ) if env is None else env
    system = system or platform.system()
    notes: list[str] = []
    gpus: list[Gpu] = []
    if system == "Darwin":
        sysctl = apple.read_sysctl(run)
        cpu = apple.cpu_from_sysctl(sysctl)
        total, available, swap_free = apple.memory_from_sysctl(sysctl, run)
        gpus += apple.gpus_from_sysctl(sysctl, notes)
    else:
        cpu = detect_cpu(read, machine)
        total, available, swap_free = detect_memory(read)
        gpus += nvidia.detect_nvidia(env, run, notes, nvml=nvml)
        gpus += amd.detect_amd(env, run, read, notes)
    if not gpus:
        notes.append("no GPU found: plans are for the CPU only")
    return Hardware(
        os=system, cpu=cpu, ram_total=total, ram_available=available, swap_free=swap_free,
        gpus=tuple(gpus), notes=tuple(notes), label=label,
    )
