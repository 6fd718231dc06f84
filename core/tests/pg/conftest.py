"""PostgreSQL for the tests: the machine's server when one answers, else a private cluster started here.

``pg_server`` (session) is a base URL: ``$ALERTMUX_TEST_PG_URL`` when set, else the local server at
127.0.0.1:5432 (trust auth, database ``test``) when it answers, else a private cluster made with ``initdb`` on a
free port in a temporary directory, so the suite runs on a fresh machine. ``ALERTMUX_TEST_PG_URL=private`` skips
the local server and takes that fallback, to check it on a machine that has one. ``pg_url`` gives each test a fresh
schema on it (dropped afterwards), so tests, and concurrent runs of the suite, never see each other's tables.
``private_pg`` is always a private cluster: the only kind a test may stop and restart.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

LOCAL_URLS = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://127.0.0.1:5432/test")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=3).close()
        return True
    except psycopg.Error:
        return False


def _bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


class PrivateCluster:
    """A throw-away PostgreSQL cluster (initdb, pg_ctl) on a free loopback port, owned by this test session.

    initdb refuses to run as root: as root, the cluster runs as the ``postgres`` (or ``nobody``) user.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="alertmux-pg-"))  # /tmp itself: pytest's tmp dirs are root-only
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._user = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                with contextlib.suppress(KeyError):
                    self._user = pwd.getpwnam(name)
                    break
            assert self._user is not None, "running as root without a postgres or nobody user"
            os.chown(self.dir, self._user.pw_uid, self._user.pw_gid)

    def _run(self, *args: str, timeout: float = 60) -> None:
        user = self._user

        def drop_privileges() -> None:
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        result = subprocess.run([str(self.bindir / args[0]), *args[1:]], capture_output=True, text=True,
                                timeout=timeout, preexec_fn=drop_privileges, cwd=self.dir, check=False)
        if result.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} {args[1:]} failed: {result.stderr.strip()}\n{tail}")

    def init(self) -> PrivateCluster:
        """initdb (trust auth, no fsync: nothing here must survive a power cut)."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        return self

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        # fsync off: only an OS crash could lose data. synchronous_commit stays on: a server crash (stop("immediate"))
        # must not lose acknowledged commits, or offsets stored after them would skip those messages.
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
                   " -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clients disconnected, clean shutdown) or ``immediate`` (a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        """Whether the server accepts connections."""
        return _answers(self.url)

    def destroy(self) -> None:
        """Stop the server if it runs and remove its files."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def start_private_cluster() -> PrivateCluster:
    """Make and start a private cluster, or skip the test when PostgreSQL's binaries are not installed."""
    bindir = _bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        pytest.skip("no PostgreSQL server answers at 127.0.0.1:5432 and no initdb is installed")
    cluster = PrivateCluster(bindir)
    try:
        cluster.init().start()
    except Exception:
        cluster.destroy()
        raise
    return cluster


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A base URL of a PostgreSQL database the tests may create schemas in."""
    configured = os.environ.get("ALERTMUX_TEST_PG_URL")
    if configured and configured != "private":
        yield configured
        return
    for url in LOCAL_URLS if configured != "private" else ():
        if _answers(url):
            yield url
            return
    cluster = start_private_cluster()
    try:
        yield cluster.url
    finally:
        cluster.destroy()


def schema_url(base: str, schema: str) -> str:
    """``base`` with the search path set to ``schema`` (libpq's ``options``)."""
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def pg_schema(pg_server: str) -> Iterator[Callable[[], str]]:
    """``make()`` -> a URL on ``pg_server`` with its own, new schema; every schema made is dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        schema = f"alertmux_test_{uuid.uuid4().hex[:10]}"
        made.append(schema)
        return schema_url(pg_server, schema)

    yield make
    with psycopg.connect(pg_server, autocommit=True) as conn:
        for schema in made:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_url(pg_schema: Callable[[], str]) -> str:
    """A URL of a fresh, empty schema for this test (the store creates it on first use)."""
    return pg_schema()


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivateCluster]:
    """A private cluster this session owns: tests may stop and restart it (never the machine's server)."""
    cluster = start_private_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def private_pg_url(private_pg: PrivateCluster) -> Iterator[str]:
    """A fresh schema on the private cluster, which is running when the test starts."""
    if not private_pg.running():
        private_pg.start()
    schema = f"alertmux_test_{uuid.uuid4().hex[:10]}"
    yield schema_url(private_pg.url, schema)
    deadline = time.monotonic() + 30
    while not private_pg.running() and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(psycopg.Error), psycopg.connect(private_pg.url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- workers: `alertmux listen` processes -------------------------------------------------------------------------
WORKER_MAIN = "import sys; from alertmux.cli import main; sys.argv[0] = 'alertmux'; main()"


def kafka_env(client_config: dict[str, str], **extra: str) -> dict[str, str]:
    """The environment of a worker: librdkafka settings as ``ALERTMUX__KAFKA__*`` overrides (config.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTMUX__")}
    for key, value in {**client_config, **extra}.items():
        env["ALERTMUX__KAFKA__" + key.replace(".", "_").upper()] = str(value)
    return env


class Worker:
    """One ``alertmux ARGS`` process: stdout captured (the JSON report), stderr to a file (logs)."""

    def __init__(self, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.args = args
        self.log = log_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
        self._err = open(self.log, "wb")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER_MAIN, *args], stdout=subprocess.PIPE,
                                     stderr=self._err, env=env)

    def stop(self, timeout: float = 30) -> dict[str, object]:
        """SIGTERM (finish the batch in hand, commit, leave the group) and return the worker's JSON report."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=timeout)
        self._err.close()
        lines = [line for line in out.decode().splitlines() if line.startswith("{")]
        assert self.proc.returncode == 0 and lines, f"worker failed ({self.proc.returncode}): {self.logs()[-3000:]}"
        return json.loads(lines[-1])

    def kill(self) -> None:
        """SIGKILL: no batch finished, no commit, no goodbye to the group."""
        self.proc.kill()
        self.proc.wait(10)
        self._err.close()

    def logs(self) -> str:
        """What the worker wrote to stderr so far."""
        return self.log.read_text(errors="replace")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """``spawn(args, env)`` starts an ``alertmux`` process; any still running after the test is killed."""
    started: list[Worker] = []

    def make(args: list[str], env: dict[str, str]) -> Worker:
        worker = Worker(args, env, tmp_path)
        started.append(worker)
        return worker

    yield make
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill()


@pytest.fixture
def worker_env() -> Callable[..., dict[str, str]]:
    """``worker_env(**librdkafka)``: a worker's environment with the local broker's client settings, and these."""
    from alertmux.embedded import local_client_config

    fast = {"session.timeout.ms": "3000", "heartbeat.interval.ms": "1000"}  # joins and failovers in ~1.5 s, not 3
    return lambda **extra: kafka_env(local_client_config() | fast, **extra)
