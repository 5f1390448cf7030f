"""Alive but wedged: llama-server answers /health, yet inference fails or hangs (after a CUDA
error: llama.cpp#13085, llama-swap#125). The process is alive, so the crash check never fires.

Two signals, both cheap and neither fooled by a long prompt:
- failures: the proxy reports every real request's outcome through the gate; after `failures`
  5xx answers or connection failures in a row, one tiny test completion decides. It failing too
  means wedged; it succeeding means the requests were bad, not the server (the count restarts).
- hang: while requests are in flight, llama-server's main loop must answer GET /slots within
  `hang_s`. /health is answered by the HTTP threads, /slots by the main loop between two batches,
  so a long prefill (progress per batch) keeps answering and a stuck loop does not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("llamactl.supervisor.wedge")

PROBE_BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "stream": False}


@dataclass(frozen=True)
class WedgePolicy:
    failures: int = 3
    """Consecutive failed requests before a test completion is sent (0 disables the signal)."""
    hang_s: float = 300.0
    """/slots unanswered this long while requests wait: wedged (0 disables the signal). One
    prompt batch (n_batch tokens) must fit in it, so it is generous."""
    interval_s: float = 5.0
    probe_timeout_s: float = 60.0
    """A test completion that takes longer is inconclusive (it may be queued behind real work)."""


class WedgeWatch:
    """One look at one llama-server: `verdict(gate)` says why it is wedged, or None."""

    def __init__(self, base_url: str, key: str, policy: WedgePolicy) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {key}"}
        self.policy = policy

    async def verdict(self, gate: Any) -> str | None:
        policy = self.policy
        failures = gate.consecutive_failures
        if policy.failures and failures >= policy.failures:
            last = gate.last_failure
            probe = await self._test_completion()
            if probe is not None:
                return (
                    f"it answers /health but {failures} requests in a row failed (last: {last}) "
                    f"and a test completion failed too ({probe})"
                )
            gate.report_upstream_success()  # the server is fine: those requests were the cause
        if policy.hang_s and gate.in_flight and not await self._main_loop_answers():
            return (
                f"it answers /health but not /slots for {policy.hang_s:.0f}s while "
                f"{gate.in_flight} request(s) waited: its main loop is stuck"
            )
        return None

    async def _test_completion(self) -> str | None:
        """Why a one-token completion failed, or None (it answered, or is merely slow)."""
        try:
            async with self._client(self.policy.probe_timeout_s) as client:
                response = await client.post("/v1/chat/completions", json=PROBE_BODY)
        except httpx.TimeoutException:
            log.info("test completion timed out: inconclusive")
            return None
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if response.status_code >= 500 and response.status_code != 503:
            return f"HTTP {response.status_code}: {response.text[:200]}"
        return None

    async def _main_loop_answers(self) -> bool:
        try:
            async with self._client(self.policy.hang_s) as client:
                await client.get("/slots")
        except httpx.TimeoutException:
            return False
        except httpx.HTTPError:
            return True  # refused connections show up as failed requests, the other signal
        return True

    def _client(self, timeout: float) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers=self.headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
            trust_env=False,
        )
