"""The public surface and the layering rules that keep the kernel reusable."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import noetl_actors.errors
import noetl_actors.supervision


def _public_names(module: object) -> list[str]:
    return sorted(name for name in vars(module) if not name.startswith("_"))


def test_the_supervision_package_exports_exactly_its_all() -> None:
    exported = set(noetl_actors.supervision.__all__)
    public = {n for n in _public_names(noetl_actors.supervision)}
    assert public == exported


def test_every_error_descends_from_noetl_error() -> None:
    for name in noetl_actors.errors.__all__:
        error = getattr(noetl_actors.errors, name)
        if name == "ErrorKind":  # the kinds of ApiError, an enum
            continue
        assert issubclass(error, noetl_actors.errors.NoetlError), name


def test_the_kernel_imports_no_nats_yaml_cli_or_ui() -> None:
    """The supervision kernel must load with every outer-layer library blocked."""
    script = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"nats", "yaml", "click", "rich", "textual"}:
                    raise ImportError(f"the kernel imported {name}")
        sys.meta_path.insert(0, Block())
        import noetl_actors.supervision
        import noetl_actors.errors
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_the_cli_reports_its_version_and_lists_its_commands() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "noetl_actors.cli", "--version"],
        capture_output=True, text=True, timeout=60,
    )
    assert version.returncode == 0
    assert version.stdout.strip() == f"noetl, version {noetl_actors.__version__}"


def test_the_demo_runs_to_a_clean_stop() -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "noetl_actors.cli", "demo"],
        capture_output=True, text=True, timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    out = demo.stdout
    assert "gave_up      /demo/extract" in out
    assert "restarted    /demo/extract  (restart #1)" in out
    assert out.rstrip().endswith("tree stopped: /demo stopped")


def test_the_bridge_package_exports_exactly_its_all() -> None:
    import noetl_actors.bridge

    assert set(_public_names(noetl_actors.bridge)) == set(noetl_actors.bridge.__all__)


def test_noetl_server_runs_the_embedded_server_until_interrupted(tmp_path) -> None:
    import signal
    import urllib.request

    process = subprocess.Popen(
        [sys.executable, "-m", "noetl_actors.cli", "server", "--state-dir", str(tmp_path),
         "--monitor-port", "0"],  # off unless asked for
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("nats-server on nats://127.0.0.1:"), first
        monitor = first.split("(monitoring ")[1].split(")")[0]
        with urllib.request.urlopen(f"{monitor}/healthz", timeout=5) as answer:
            assert answer.status == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "nats-server stopped." in out
        assert (tmp_path / "jetstream").is_dir()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
