import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from alertmux import embedded
from alertmux.embedded import EmbeddedKafka, EmbeddedKafkaError, local_client_config

pytestmark = pytest.mark.kafka


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a killed, not yet reaped child still has a /proc entry)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no procfs: fall back to signal 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _port_open(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), 0.5).close()
    except OSError:
        return False
    return True


def test_start_stop_idempotent(tmp_path: Path) -> None:
    log = tmp_path / "tansu.log"
    kafka = EmbeddedKafka(log_path=log)
    assert kafka.start() is kafka
    assert kafka.start() is kafka  # a second start is a no-op
    pid, bootstrap = kafka.pid, kafka.bootstrap
    assert pid is not None and bootstrap.startswith("127.0.0.1:")
    assert _alive(pid) and _port_open(bootstrap)
    kafka.stop()
    kafka.stop()
    assert kafka.pid is None
    assert not _alive(pid)
    assert not _port_open(bootstrap)
    assert "listening on" in log.read_text()


def test_produce_consume_one_message() -> None:
    topic = f"t_{uuid.uuid4().hex[:8]}"
    with EmbeddedKafka() as kafka:
        producer = Producer({"bootstrap.servers": kafka.bootstrap})
        producer.produce(topic, b"hello", key=b"k", partition=0)  # auto-created topics get 4 partitions
        assert producer.flush(10) == 0
        # assign() rather than subscribe(): no group join, so the test stays well under a second
        consumer = Consumer(
            {"bootstrap.servers": kafka.bootstrap, "group.id": "g", "enable.auto.commit": False} | local_client_config()
        )
        consumer.assign([TopicPartition(topic, 0, 0)])
        try:
            deadline = time.monotonic() + 10
            msg = None
            while msg is None and time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is not None and msg.error():
                    msg = None
            assert msg is not None
            assert (msg.key(), msg.value()) == (b"k", b"hello")
        finally:
            consumer.close()


def test_start_failure_quotes_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", "/bin/false")
    with pytest.raises(EmbeddedKafkaError, match="exited with code 1"):
        EmbeddedKafka(startup_timeout=5).start()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_broker_dies_with_killed_parent() -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from alertmux.embedded import EmbeddedKafka
        kafka = EmbeddedKafka().start()
        print(kafka.pid, flush=True)
        time.sleep(60)
        """
    )
    # The child must import the same alertmux as this test, installed or not.
    src = [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in src if p)}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout is not None
        broker_pid = int(parent.stdout.readline())
        assert _alive(broker_pid)
    finally:
        parent.send_signal(signal.SIGKILL)  # no atexit, no finally: only the kernel can clean up
        parent.wait(5)
    deadline = time.monotonic() + 5
    while _alive(broker_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(broker_pid)


def test_broker_outlives_the_thread_that_started_it() -> None:
    # PR_SET_PDEATHSIG is per thread: used from a worker thread it would kill the broker when that thread ends.
    box: dict[str, EmbeddedKafka] = {}
    worker = threading.Thread(target=lambda: box.setdefault("kafka", EmbeddedKafka().start()))
    worker.start()
    worker.join()
    kafka = box["kafka"]
    try:
        time.sleep(0.1)
        assert kafka.pid is not None and _alive(kafka.pid)
    finally:
        kafka.stop()


def test_taken_port_is_retried_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: tansu's bind fails and connects are refused at once
        port = taken.getsockname()[1]
        free_port = embedded._free_port
        monkeypatch.setattr(embedded, "_free_port", lambda: port)
        with pytest.raises(EmbeddedKafkaError, match="AddrInUse"):
            EmbeddedKafka().start()
        ports = iter([port])  # taken once, then free ones: the retry succeeds
        monkeypatch.setattr(embedded, "_free_port", lambda: next(ports, None) or free_port())
        with EmbeddedKafka() as kafka:
            assert kafka.bootstrap != f"127.0.0.1:{port}"
