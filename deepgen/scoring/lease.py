"""A lease per results store and model, so two rescoring runs that overlap still score each item once.

The lease is one small JSON file, ``STORE/leases/model_id=<id>.json``, holding its owner and an
expiry. It is taken atomically (``O_CREAT|O_EXCL`` on local disk, a conditional PUT with
``If-None-Match: *`` on S3), renewed by a heartbeat while its run works, and released at the end.
A run that finds the lease held waits for it; a lease whose owner died is taken over once it has
expired (at once when the owner ran on this machine and its process is gone), by a compare-and-swap
on the version read (``If-Match`` on S3), so only one taker wins.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from deepgen import storage
from deepgen.errors import DeepgenError

TTL_S = 300.0  # a lease not renewed for this long is stale (its owner died)
POLL_S = 0.5


def _dead_here(holder: dict) -> bool:
    """True when the lease's owner ran on this machine and its process is gone (a killed run's lease
    need not wait for its expiry)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def lease_uri(store: str, model_id: str) -> str:
    return storage.join(store, "leases", f"model_id={model_id}.json")


class Lease:
    """Hold the rescoring lease of ``model_id`` on ``store`` (a context manager); waits up to ``wait_s``."""

    def __init__(self, store: str, model_id: str, ttl_s: float = TTL_S, wait_s: float = 600.0):
        self.uri = lease_uri(store, model_id)
        self.store, self.model_id, self.ttl_s, self.wait_s = store, model_id, ttl_s, wait_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.version: str | None = None
        self.waited_s = 0.0
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._lock = threading.Lock()

    def _content(self) -> bytes:
        now = time.time()
        return json.dumps({"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                           "model_id": self.model_id, "renewed": now, "expires": now + self.ttl_s}).encode()

    def acquire(self) -> Lease:
        """Take the lease: at once when free, after its holder releases it, or over an expired one."""
        t0 = time.monotonic()
        holder = None
        while True:
            self.version = storage.create_exclusive(self.uri, self._content())
            if self.version is not None:
                break
            current = storage.read_versioned(self.uri)
            if current is not None:
                data, version = current
                try:
                    holder = json.loads(data)
                    expired = float(holder["expires"]) < time.time() or _dead_here(holder)
                except (ValueError, KeyError, TypeError):
                    expired = True  # damaged (leases appear whole, storage.create_exclusive): take it over
                if expired:
                    self.version = storage.replace_if_version(self.uri, self._content(), version)
                    if self.version is not None:
                        break
            if time.monotonic() - t0 > self.wait_s:
                who = holder.get("owner") if isinstance(holder, dict) else "another run"
                raise DeepgenError(
                    f"another rescore ({who}) has held the lease {self.uri} for over {self.wait_s:.0f} s; "
                    "wait for it to finish, or delete that file if no rescore is running.")
            time.sleep(POLL_S)
        self.waited_s = time.monotonic() - t0
        self._beat = threading.Thread(target=self._heartbeat, name="deepgen-lease", daemon=True)
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.renew()
            except Exception:  # a transient storage error: try again next beat (the lease lasts 3 beats)
                continue

    def renew(self) -> None:
        """Push the expiry forward (only while this run still holds the lease)."""
        with self._lock:
            if self.version is None:
                return
            self.version = storage.replace_if_version(self.uri, self._content(), self.version)

    @property
    def held(self) -> bool:
        return self.version is not None

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        with self._lock:
            if self.version is not None:
                storage.delete_if_version(self.uri, self.version)
                self.version = None

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
