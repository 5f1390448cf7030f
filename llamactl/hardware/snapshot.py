"""The hardware snapshot: frozen data describing the GPUs, memory and CPU of one machine.

Sizes are bytes. `None` means unknown. A snapshot is JSON (`llamactl hw --json`) and reads back
with `load_hardware()`, so any machine can be planned for from anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llamactl.errors import HardwareError

SNAPSHOT_VERSION = 1

Vendor = Literal["nvidia", "amd", "apple", "intel", "other"]
Backend = Literal["CUDA", "ROCm", "Metal", "Vulkan"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gpu(_Frozen):
    """One GPU as llama.cpp will see it (after CUDA_VISIBLE_DEVICES and friends)."""

    index: int = Field(description="Index among the visible devices of its backend (CUDA0 = 0).")
    vendor: Vendor
    backend: Backend
    name: str
    memory_total: int = Field(ge=0, description="Device memory in bytes (GTT/working set for UMA).")
    memory_free: int = Field(ge=0, description="Free device memory in bytes at detection time.")
    memory_used: int | None = None
    unified_memory: bool = Field(False, description="Shares system RAM (Apple, AMD APU).")
    uuid: str | None = None
    pci_bus_id: str | None = None
    compute_capability: str | None = Field(None, description='NVIDIA "8.6", AMD "gfx1151".')
    driver_version: str | None = None
    source: str = Field(description="Where the figures came from: nvml, nvidia-smi, sysfs, ...")

    @property
    def device_name(self) -> str:
        """The name llama.cpp gives the device in its logs and --device lists."""
        if self.backend == "Metal":
            return f"MTL{self.index}"
        return f"{self.backend}{self.index}"


class Cpu(_Frozen):
    name: str | None = None
    arch: str = Field(description='Machine architecture: "x86_64", "arm64", ...')
    physical_cores: int | None = None
    logical_cores: int | None = None
    performance_cores: int | None = Field(
        None,
        description="Performance cores of a hybrid CPU (Apple perflevel0, Intel P-cores); "
        "None when all cores are alike.",
    )


class Hardware(_Frozen):
    """A frozen snapshot of one machine."""

    version: int = SNAPSHOT_VERSION
    os: str = Field(description='"Linux", "Darwin", "Windows".')
    cpu: Cpu
    ram_total: int = Field(ge=0, description="System RAM in bytes.")
    ram_available: int = Field(ge=0, description="RAM available to a new process (MemAvailable).")
    swap_free: int = Field(0, ge=0)
    gpus: tuple[Gpu, ...] = ()
    notes: tuple[str, ...] = Field((), description="What detection tried and what it could not.")
    label: str | None = Field(None, description="A human label for recorded snapshots.")

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)

    @property
    def unified_memory(self) -> bool:
        return any(gpu.unified_memory for gpu in self.gpus)

    @property
    def threads_for_generation(self) -> int | None:
        """llama.cpp's default: performance cores, else physical cores."""
        return self.cpu.performance_cores or self.cpu.physical_cores

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def load_hardware(path: Path | str) -> Hardware:
    """Read a snapshot written by `llamactl hw --json`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise HardwareError(f"{path}: cannot read hardware snapshot: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HardwareError(
            f"{path}: not JSON (line {exc.lineno}: {exc.msg}); "
            "write one with `llamactl hw --json > FILE`"
        ) from exc
    if not isinstance(data, dict):
        raise HardwareError(f"{path}: expected a JSON object from `llamactl hw --json`")
    version = data.get("version", SNAPSHOT_VERSION)
    if version != SNAPSHOT_VERSION:
        raise HardwareError(
            f"{path}: snapshot version {version!r} is not supported (expected {SNAPSHOT_VERSION})"
        )
    try:
        return Hardware.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise HardwareError(f"{path}: invalid hardware snapshot: {problems}") from exc
