"""The KV cache outlives the process: save llama-server's slots before a planned stop and restore
them after the next start, so the first turn after a wake does not re-evaluate the whole prompt.

Files live in a 0700 directory llamactl owns (llama-server is started with --slot-save-path
pointing there). Their names carry a hash of what makes a saved state loadable (model file, context
size, slot count), so a state saved for another configuration is never offered to llama-server.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("llamactl.supervisor.slots")


def state_tag(model_path: str | None, ctx_size: int | None, parallel: int) -> str:
    key = f"{model_path}|{ctx_size}|{parallel}"
    if model_path:
        try:
            stat = Path(model_path).stat()
            key += f"|{stat.st_size}|{int(stat.st_mtime)}"
        except OSError:
            pass
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def slot_file(tag: str, slot_id: int) -> str:
    return f"{tag}-slot{slot_id}.bin"


async def save_slots(client: Any, directory: Path, tag: str, parallel: int) -> int:
    """POST /slots/{id}?action=save for every slot; returns the tokens saved. Never raises:
    a failed save only costs a slower first turn."""
    saved = 0
    for slot_id in range(parallel):
        name = slot_file(tag, slot_id)
        response = await _slot_action(client, slot_id, "save", name)
        if response is None:
            continue
        n_saved = _int(response, "n_saved")
        if n_saved == 0:
            (directory / name).unlink(missing_ok=True)
        saved += n_saved
    log.info("saved %d tokens of KV cache from %d slots", saved, parallel)
    return saved


async def restore_slots(client: Any, directory: Path, tag: str, parallel: int) -> int:
    """POST /slots/{id}?action=restore for every slot that has a saved file; returns tokens."""
    restored = 0
    for slot_id in range(parallel):
        name = slot_file(tag, slot_id)
        if not (directory / name).is_file():
            continue
        response = await _slot_action(client, slot_id, "restore", name)
        if response is not None:
            restored += _int(response, "n_restored")
    if restored:
        log.info("restored %d tokens of KV cache", restored)
    return restored


async def _slot_action(client: Any, slot_id: int, action: str, filename: str) -> Any | None:
    """POST /slots/{slot_id}?action=...: the response when it succeeded, else None (logged)."""
    doing = "saving" if action == "save" else "restoring"
    try:
        response = await client.post(
            f"/slots/{slot_id}",
            params={"action": action},
            json={"filename": filename},
            timeout=60.0,
        )
    except Exception as exc:  # noqa: BLE001 - best effort by design
        log.warning("%s slot %d failed: %s", doing, slot_id, exc)
        return None
    if response.status_code != 200:
        log.warning(
            "%s slot %d: HTTP %d %s", doing, slot_id, response.status_code, response.text[:200]
        )
        return None
    return response


def _int(response: Any, key: str) -> int:
    try:
        value = response.json().get(key)
    except (ValueError, AttributeError):
        return 0
    return value if isinstance(value, int) else 0
