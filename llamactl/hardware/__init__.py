"""Hardware detection: a frozen snapshot of GPUs, RAM and CPU (see snapshot.py for the format)."""

from __future__ import annotations

from llamactl.hardware.detect import detect
from llamactl.hardware.snapshot import Cpu, Gpu, Hardware, load_hardware

__all__ = ["Cpu", "Gpu", "Hardware", "detect", "load_hardware"]
