"""A kmock KubernetesEmulator (an in-memory Kubernetes API emulator, not a cluster) on 127.0.0.1 for tests.

kmock is asyncio/aiohttp based; the official `kubernetes` client is synchronous. The emulator runs in a
background thread with its own event loop; `kubeconfig(path)` writes a kubeconfig pointing at it. Tests
add reactions (errors, pod logs) with `on_loop`, which runs a function inside the emulator's loop.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Callable

import yaml


def dry_run_emulator_class() -> type:
    """KubernetesEmulator that answers `?dryRun=All` creates like an API server: echo, store nothing.

    (The stock emulator stores every create; a real server with dryRun=All validates and persists nothing.)
    `prune`, when a test sets it, stands for the server's schema pruning: prune(body) -> the object it answers.
    """
    import aiohttp.web
    import kmock

    class DryRunEmulator(kmock.KubernetesEmulator):
        prune: Callable[[dict[str, Any]], dict[str, Any]] | None = None

        async def _handle(self, request: Any) -> Any:
            if (request.resource is not None and request.action == kmock.action.CREATE
                    and (request.params or {}).get("dryRun") == "All"):
                body = self.prune(request.data) if self.prune is not None else request.data
                return aiohttp.web.json_response(body, status=201)
            return await super()._handle(request)

    return DryRunEmulator


class EmulatorThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.kmock: Any = None
        self.url = ""
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="kmock-emulator", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as e:  # noqa: BLE001 - reported to the starting thread
            self.error = e
            self._ready.set()

    async def _main(self) -> None:
        import kmock

        self._stop = asyncio.Event()
        async with dry_run_emulator_class()() as km, kmock.Server(km, host="127.0.0.1") as server:
            self.kmock = km
            self.url = f"http://127.0.0.1:{server.port}"
            self._ready.set()
            await self._stop.wait()

    def start(self, timeout_s: float = 30.0) -> "EmulatorThread":
        self.thread.start()
        if not self._ready.wait(timeout_s) or self.error is not None:
            raise RuntimeError(f"the kmock emulator did not start: {self.error!r}")
        return self

    def stop(self) -> None:
        if self._stop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout=30)

    def on_loop(self, fn: Callable[[Any], Any]) -> Any:
        """Run fn(kmock) inside the emulator's loop (the DSL and object store are not thread-safe)."""
        async def call() -> Any:
            return fn(self.kmock)
        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=30)

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "emulator",
               "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
               "users": [{"name": "tester", "user": {"token": "emulator-token"}}],
               "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester",
                                                              "namespace": namespace}}]}
        path.write_text(yaml.safe_dump(cfg))
        return path
