"""The profile schema: what a profiles/*.toml file may say, validated strictly.

Loading, search paths and error rendering live in profiles.py; this module only defines the shape.
Every field carries a description; profiles/README.md documents each one (a test keeps them in step).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Flags llamactl sets itself; a profile that passes them in extra_args would silently override
# them (llama-server is last-flag-wins), so they are refused with the key to use instead.
MANAGED_FLAGS: dict[str, str] = {
    "--host": "llamactl always binds llama-server to 127.0.0.1; clients reach it via [proxy]",
    "--port": "set [proxy] port; llama-server's own port is picked by llamactl",
    "--api-key": "set [proxy] api_key; llama-server gets a private key through its environment",
    "--api-key-file": "set [proxy] api_key",
    "-m": "set `model` (a .gguf path) or `hf`",
    "--model": "set `model` (a .gguf path) or `hf`",
    "-hf": "set `hf`",
    "-hfr": "set `hf`",
    "--hf-repo": "set `hf`",
    "--rpc": "RPC offload is not managed by llamactl (it exposes an unauthenticated backend)",
    "--slot-save-path": "llamactl manages slot saving in its own private directory",
    "-c": "set [server] ctx_size",
    "--ctx-size": "set [server] ctx_size",
    "-ngl": "set [server] n_gpu_layers",
    "--gpu-layers": "set [server] n_gpu_layers",
    "--n-gpu-layers": "set [server] n_gpu_layers",
    "-np": "set [server] parallel",
    "--parallel": "set [server] parallel",
    "--alias": "set `aliases`",
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

CacheType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]


def parse_duration(value: str | int | float) -> float:
    """'30m' -> 1800.0; a bare number is seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f'expected a duration such as "30m", "90s" or "2h", got {value!r}')
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Strict):
    binary: str | None = Field(
        None, description="Path to the llama-server to run; default: discovery (see README)."
    )
    ctx_size: int | Literal["auto"] = Field(
        "auto",
        description='Context size in tokens (total over all slots), or "auto": as large as fits.',
    )
    n_gpu_layers: int | Literal["auto"] = Field(
        "auto", description='Layers to put on the GPU, or "auto": decided by the fit planner.'
    )
    n_cpu_moe: int | Literal["auto"] = Field(
        "auto",
        description='MoE: keep the expert tensors of the first N layers on the CPU, or "auto".',
    )
    parallel: int | Literal["auto"] = Field(
        "auto", description="Slots: requests llama-server runs at once; auto = planner decides."
    )
    flash_attn: Literal["auto", "on", "off"] = Field(
        "auto", description="Flash attention (needed for a quantised V cache)."
    )
    cache_type_k: CacheType | Literal["auto"] = Field(
        "auto", description='KV cache type for K, or "auto" (q8_0 when that buys needed context).'
    )
    cache_type_v: CacheType | Literal["auto"] = Field(
        "auto", description='KV cache type for V, or "auto" (follows cache_type_k).'
    )
    batch_size: int | Literal["auto"] = Field("auto", description="Logical batch size (-b).")
    ubatch_size: int | Literal["auto"] = Field(
        "auto", description="Physical batch size (-ub); larger speeds up prompt processing."
    )
    threads: int | Literal["auto"] = Field(
        "auto", description="CPU threads for generation (-t); auto = physical cores."
    )
    jinja: bool = Field(True, description="Use the model's Jinja chat template (needed for tools).")
    chat_template_file: str | None = Field(
        None, description="A Jinja chat template file to use instead of the model's."
    )
    reasoning_format: str | None = Field(
        None, description="llama-server --reasoning-format (e.g. deepseek, none)."
    )
    extra_args: list[str] = Field(
        default_factory=list,
        description="More llama-server flags, verbatim. Flags llamactl manages are refused.",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for llama-server."
    )
    load_timeout: str = Field(
        "5m", description="Give up when loading shows no progress for this long (a stall timer)."
    )

    @field_validator(
        "ctx_size", "n_gpu_layers", "n_cpu_moe", "parallel", "batch_size", "ubatch_size", "threads"
    )
    @classmethod
    def _non_negative(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("must not be negative")
        return value

    @field_validator("ctx_size")
    @classmethod
    def _ctx_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError('expected a positive integer or "auto"')
        return value

    @field_validator("extra_args")
    @classmethod
    def _no_managed_flags(cls, args: list[str]) -> list[str]:
        for arg in args:
            flag = arg.split("=", 1)[0]
            if flag in MANAGED_FLAGS:
                raise ValueError(f"{flag} is managed by llamactl: {MANAGED_FLAGS[flag]}")
        return args

    @field_validator("load_timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class ProxySettings(_Strict):
    host: str = Field(
        "127.0.0.1", description="Address the proxy listens on. Keep loopback unless you mean it."
    )
    port: int | Literal["auto"] = Field(
        "auto", description='Port the proxy listens on, or "auto": a free one.'
    )
    api_key: str | None = Field(
        None, description="Key clients must send; default: one generated and kept in the state dir."
    )
    mode: Literal["translate", "native"] = Field(
        "translate",
        description='"translate": llamactl translates /v1/messages; "native": llama-server\'s own.',
    )

    @field_validator("port")
    @classmethod
    def _port(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 65535:
            raise ValueError('expected a port from 1 to 65535 or "auto"')
        return value


class FitSettings(_Strict):
    gpu_margin_mib: int = Field(
        768, ge=0, description="VRAM to leave free on every GPU (MiB), for the desktop and drivers."
    )
    ram_margin_mib: int = Field(
        2048, ge=0, description="Host RAM to leave free (MiB) for the OS and other programs."
    )
    min_ctx: int = Field(
        0, ge=0, description="Context the profile needs (e.g. 65536 for Claude Code); warns below."
    )
    max_ctx: int | None = Field(
        None, ge=1, description='Upper bound when ctx_size is "auto" (default: trained context).'
    )


class ClaudeSettings(_Strict):
    model: str | None = Field(
        None, description="Model name Claude Code asks for (default: the profile's first alias)."
    )
    small_profile: str | None = Field(
        None, description="Profile to serve Claude Code's haiku tier (background tasks) from."
    )
    max_output_tokens: int | None = Field(
        None, ge=1, description="CLAUDE_CODE_MAX_OUTPUT_TOKENS; default: sized from the context."
    )
    binary: str | None = Field(None, description="Path to the claude binary; default: PATH.")


class Profile(_Strict):
    name: str = Field(description="The profile's name (its file name without .toml).")
    source: Path | None = Field(None, description="The file this profile was read from.")
    description: str = Field("", description="One line saying what this profile serves.")
    model: str | None = Field(
        None, description="Path to a .gguf file (for split files, the -00001-of-N part)."
    )
    hf: str | None = Field(
        None, description="Hugging Face repo[:quant], passed to llama-server's -hf."
    )
    generated: str | None = Field(
        None, description="A model llamactl generates itself: tiny, tiny-strict, moe (for demos)."
    )
    aliases: list[str] = Field(
        default_factory=list,
        description='Model names clients may ask for; glob patterns like "claude-*" allowed.',
    )
    idle_unload: str | None = Field(
        None, description='Stop llama-server after this long without requests ("30m"); proxy stays.'
    )
    server: ServerSettings = Field(default_factory=ServerSettings)
    proxy: ProxySettings = Field(default_factory=ProxySettings)
    fit: FitSettings = Field(default_factory=FitSettings)
    claude: ClaudeSettings = Field(default_factory=ClaudeSettings)

    @model_validator(mode="after")
    def _one_model_source(self) -> Profile:
        given = [k for k in ("model", "hf", "generated") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "set exactly one model source: `model` (a .gguf path), `hf` (repo[:quant]) "
                f"or `generated`; got {', '.join(given) if given else 'none'}"
            )
        return self

    @field_validator("idle_unload")
    @classmethod
    def _idle(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def idle_unload_s(self) -> float | None:
        return parse_duration(self.idle_unload) if self.idle_unload else None
