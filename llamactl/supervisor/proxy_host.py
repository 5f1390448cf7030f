"""Hosting the proxy inside the supervisor's asyncio loop (uvicorn on a socket we bound ourselves).

The app is `llamactl.proxy.app.create_app(config, gate)`. The daemon binds the socket itself (to
name the process holding a taken port, and to keep the previous run's port when it is "auto");
uvicorn's own signal capture is disabled: the supervisor owns SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("llamactl.supervisor.proxy_host")


def proxy_config(owner: Any) -> Any:
    from llamactl.proxy.config import ProxyConfig

    launch, record = owner._launch, owner.record
    return ProxyConfig(
        upstream_url=f"http://127.0.0.1:{owner.server_port}",
        upstream_api_key=owner.server_key,
        api_key=launch.proxy_api_key,
        host=record.proxy_host,
        port=record.proxy_port or 0,
        served_model=launch.model,
        aliases=tuple(a for a in launch.aliases if a != launch.model),
        ctx_size=launch.slot_ctx,
        mode=launch.proxy_mode,
        side_slot=side_slot(launch.parallel, kv_unified=launch.kv_unified),
        key_hint=f"see `llamactl env {launch.profile}`",
    )


def side_slot(parallel: int, *, kv_unified: bool) -> int | None:
    """With two slots or more, side requests (titles) go to slot 1 and the conversation keeps
    slot 0, so a title request never evicts the conversation's KV cache.

    Not with a unified KV cache: there llama-server parks the idle slot's tokens in its host-RAM
    prompt cache when another slot runs, and a request pinned with `id_slot` skips the load from
    that cache, so pinning made every turn re-evaluate its whole prompt (measured: 1476 of 1476
    tokens vs 15 unpinned). Unpinned, llama-server's similarity choice keeps both cached."""
    return 1 if parallel >= 2 and not kv_unified else None


def small_profile_routes(name: str) -> dict[str, tuple[str, str | None]]:
    """Routes from the `claude.small_profile` instance's model names to its proxy (URL and key),
    read from its state and launch files; empty while it is not running."""
    from llamactl.supervisor import state as st
    from llamactl.supervisor.launch import read_launch

    record = st.read_state(name)
    if record is None or record.proxy_url is None:
        return {}
    if record.state not in (st.READY, st.IDLE, st.STARTING, st.RESTARTING):
        return {}
    try:
        launch = read_launch(name)
    except (OSError, ValueError, TypeError):
        return {}
    route = (record.proxy_url, launch.proxy_api_key)
    names = [launch.model, *launch.aliases]
    return {model: route for model in names if model}


def build_proxy(owner: Any, gate: Any) -> Any:
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # the supervisor handles signals
            yield

    from llamactl.proxy.app import create_app

    app = create_app(proxy_config(owner), gate)
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="auto",
        timeout_graceful_shutdown=owner.policy.drain_s,
        access_log=False,
        server_header=False,
        date_header=False,
        proxy_headers=False,  # clients connect directly; skip X-Forwarded-* processing
    )
    return _Server(config)


async def serve_proxy(server: Any, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    finally:
        with contextlib.suppress(OSError):
            sock.close()


async def stop_proxy(server: Any, task: asyncio.Task, drain_s: float) -> None:
    server.should_exit = True
    try:
        await asyncio.wait_for(asyncio.shield(task), drain_s + 2.0)
    except TimeoutError:
        server.force_exit = True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    except Exception as exc:  # noqa: BLE001 - the proxy's failure must not stop the shutdown
        log.warning("proxy stopped with an error: %s", exc)
