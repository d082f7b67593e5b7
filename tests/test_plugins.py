"""The built-in plugins under every runner they support, their manifests, and plugin discovery."""

from __future__ import annotations

import configparser
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from noetl_actors.errors import PlaybookError
from noetl_actors.playbook import Catalog, parse_playbook
from noetl_actors.runners import (
    INPUT_ERROR,
    OUTPUT_ERROR,
    PLUGIN_PATH_ENV,
    TIMEOUT,
    InprocRunner,
    ManifestError,
    PluginNotFound,
    ProcessRunner,
    Runner,
    Status,
    find_plugin,
    find_plugins,
    plugin_path,
    read_manifest,
)
from tests.plugin_helpers import (
    attempt,
    builtin,
    make_plugin,
    run,
    wait_gone,
)

pytest_plugins = ["tests.runner_fixtures"]  # the runner fixtures

PROJECT = Path(__file__).resolve().parents[1]
BUILTINS = ("echo", "fail", "http", "python", "shell", "sleep")


def local_modes(name: str) -> list[str]:
    return [m for m in builtin(name).modes if m != "kubernetes"]


def runner_for(mode: str) -> Runner:
    return InprocRunner(max_workers=2, cancel_grace=0.3) if mode == "inproc" else \
        ProcessRunner(term_grace=0.5)


@pytest.fixture(params=["inproc", "process"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def runner(mode: str) -> Iterator[Runner]:
    runner = runner_for(mode)
    yield runner
    runner.close(timeout=5)


# -- manifests -----------------------------------------------------------------------------


class TestManifests:
    def test_every_builtin_is_found_with_its_facts(self) -> None:
        """The facts that `noetl lint` and the validator read are as documented."""
        plugins = find_plugins()
        assert set(BUILTINS) <= set(plugins)
        assert plugins["echo"].idempotent and not plugins["echo"].network
        assert plugins["http"].network and not plugins["http"].idempotent
        assert not plugins["shell"].idempotent
        assert plugins["shell"].modes == ("process", "kubernetes")
        assert plugins["shell"].runner == "process"
        assert plugins["http"].inputs["url"]["required"] is True
        assert plugins["shell"].inputs["command"]["required"] is True
        for name in BUILTINS:
            info = plugins[name]
            assert info.runner in info.modes, name
            assert info.entry is not None and info.entry.name == "plugin.py", name
            assert info.version and info.description, name
            assert ("kubernetes" in info.modes) == (info.image is not None), name

    def test_every_plugin_folder_ships_with_the_package(self) -> None:
        """setup.cfg's data_files list each folder of plugins/ (and all its files)."""
        config = configparser.ConfigParser()
        config.read(PROJECT / "setup.cfg")
        shipped = {key.rsplit("/", 1)[1]: {f.strip() for f in value.split(",") if f.strip()}
                   for key, value in config["options.data_files"].items()
                   if key.startswith("share/noetl-actors/plugins/")}
        folders = {p.parent.name: p.parent for p in (PROJECT / "plugins").glob("*/plugin.yaml")}
        assert set(shipped) == set(folders)
        for name, folder in folders.items():
            files = {f"plugins/{name}/{f.name}" for f in folder.iterdir() if f.is_file()}
            assert shipped[name] == files, name

    def test_the_preset_policies_ship_with_the_package(self) -> None:
        config = configparser.ConfigParser()
        config.read(PROJECT / "setup.cfg")
        shipped = config["options.data_files"]["share/noetl-actors/supervisors"]
        presets = {f"supervisors/{p.name}" for p in (PROJECT / "supervisors").glob("*.yaml")}
        assert {f.strip() for f in shipped.split(",")} == presets

    @pytest.mark.parametrize(("manifest", "problem"), [
        ("name: other\nmodes: [inproc]\n", "plugin name 'other' must match its folder 'p'"),
        ("name: p\nidempotant: true\n", "unknown key(s) idempotant"),
        ("name: p\nmodes: [inproc]\nrunner: process\n",
         "runner 'process' must be one of its modes (inproc)"),
        ("name: p\nmodes: [process, kubernetes]\n", "mode 'kubernetes' needs an 'image'"),
        ("name: p\nmodes: [thread]\n", "modes must be a non-empty list of"),
        ("name: p\nnetwork: yes please\n", "network must be true or false"),
        ("name: p\ninputs: {x: {type: text}}\n", "inputs.x.type must be one of"),
        ("name: p\nentry: main.py\n", "its entry file 'main.py' is missing"),
        ("description: no name\n", "a plugin.yaml needs a 'name'"),
    ])
    def test_a_bad_manifest_says_what_is_wrong(self, tmp_path: Path, manifest: str,
                                               problem: str) -> None:
        folder = tmp_path / "p"
        folder.mkdir()
        (folder / "plugin.yaml").write_text(manifest)
        (folder / "plugin.py").write_text("def run(input, ctx):\n    return None\n")
        with pytest.raises(ManifestError) as caught:
            read_manifest(folder / "plugin.yaml")
        assert problem in str(caught.value)
        assert caught.value.file == str(folder / "plugin.yaml")

    def test_the_catalog_reports_a_bad_manifest_as_a_playbook_problem(
            self, tmp_path: Path) -> None:
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "plugin.yaml").write_text("name: good\n")
        with pytest.raises(PlaybookError, match=r"bad/plugin.yaml:1:1: plugin name 'good'"):
            Catalog.load(tmp_path, PROJECT / "supervisors")


# -- discovery -----------------------------------------------------------------------------


ECHO_TWICE = """
    def run(input, ctx):
        return {"twice": input["word"] * 2, "runner": ctx.runner}
"""


class TestDiscovery:
    def test_a_plugin_on_NOETL_PLUGIN_PATH_is_found_validated_and_run(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        make_plugin(tmp_path, "twice", ECHO_TWICE,
                    extra="inputs:\n  word: {type: string, required: true}\n")
        monkeypatch.setenv(PLUGIN_PATH_ENV, str(tmp_path))
        assert plugin_path()[0] == tmp_path.resolve()
        assert find_plugin("twice").folder == tmp_path / "twice"
        assert "echo" in find_plugins()  # the built-ins are still there
        catalog = Catalog.default()
        assert "twice" in catalog.plugins
        playbook = parse_playbook(
            "apiVersion: noetl.io/v1\nkind: Playbook\nname: pb\ntasks:\n"
            "  - {name: a, steps: [{name: s, plugin: twice, with: {word: ab}}]}\n",
            "pb.yaml", catalog=catalog)
        assert playbook.tasks[0].steps[0].plugin == "twice"
        with pytest.raises(PlaybookError, match=r"plugin 'twice' needs with\.word"):
            parse_playbook(
                "apiVersion: noetl.io/v1\nkind: Playbook\nname: pb\ntasks:\n"
                "  - {name: a, steps: [{name: s, plugin: twice}]}\n", "pb.yaml", catalog=catalog)
        with InprocRunner() as runner:
            outcome = run(runner, find_plugin("twice"), word="ab")
        assert outcome.output == {"twice": "abab", "runner": "inproc"}

    def test_an_earlier_folder_wins_over_a_later_one_and_over_the_builtins(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        first, second = tmp_path / "first", tmp_path / "second"
        make_plugin(first, "echo", "def run(input, ctx):\n    return 'first'\n")
        make_plugin(second, "echo", "def run(input, ctx):\n    return 'second'\n")
        make_plugin(second, "only2", "def run(input, ctx):\n    return 2\n")
        monkeypatch.setenv(PLUGIN_PATH_ENV, os.pathsep.join([str(first), str(second)]))
        plugins = find_plugins()
        assert plugins["echo"].folder == first / "echo"
        assert plugins["only2"].folder == second / "only2"
        with InprocRunner() as runner:
            assert run(runner, plugins["echo"]).output == "first"

    def test_an_unknown_plugin_names_the_path_searched(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(PLUGIN_PATH_ENV, str(tmp_path))
        with pytest.raises(PluginNotFound, match=f"no plugin 'nope' on the plugin path "
                                                 f"\\({tmp_path.resolve()}"):
            find_plugin("nope")


# -- echo, sleep, fail ------------------------------------------------------------------------


def test_echo_returns_its_input(runner: Runner) -> None:
    outcome = run(runner, "echo", msg="hello", n=[1, 2], nested={"a": None})
    assert outcome.status is Status.SUCCEEDED
    assert outcome.output == {"msg": "hello", "n": [1, 2], "nested": {"a": None}}


def test_sleep_waits_and_says_how_long(runner: Runner) -> None:
    outcome = run(runner, "sleep", seconds="0.01")  # a rendered template is a string
    assert outcome.output == {"slept": 0.01}
    assert outcome.finished_at - outcome.started_at >= 0.01


@pytest.mark.parametrize(("given", "problem"), [
    ({}, "plugin 'sleep' needs input 'seconds'"),
    ({"seconds": "soon"}, "input 'seconds' must be a number (got 'soon', a str)"),
    ({"seconds": -1}, "seconds must be >= 0"),
])
def test_sleep_refuses_a_bad_input(inproc: InprocRunner, given: dict[str, Any],
                                   problem: str) -> None:
    outcome = run(inproc, "sleep", **given)
    assert outcome.error_type == INPUT_ERROR
    assert problem in outcome.message


def test_fail_raises_a_plugin_error_until_its_attempt(runner: Runner) -> None:
    failed = run(runner, "fail", number=1, until_attempt=2, message="not yet")
    assert failed.status is Status.FAILED
    assert (failed.error_type, failed.message) == ("PluginError", "not yet (attempt 1)")
    assert run(runner, "fail", number=2, until_attempt=2).output == {"attempt": 2}
    assert run(runner, "fail", number=5).error_type == "PluginError"  # always, without it


def test_fail_exit_is_refused_under_inproc(inproc: InprocRunner) -> None:
    outcome = run(inproc, "fail", mode="exit")
    assert outcome.error_type == INPUT_ERROR
    assert "would kill the node itself" in outcome.message
    assert "runner: process" in outcome.message


def test_fail_exit_under_process_is_a_crash_with_exit_code_137(process: ProcessRunner) -> None:
    outcome = run(process, "fail", mode="exit", message="out of memory")
    assert outcome.error_type == "crash"
    assert "exited with code 137" in outcome.message
    assert "fail: exiting with code 137: out of memory" in outcome.message  # stderr tail


def test_fail_hang_never_answers_until_the_timeout(runner: Runner) -> None:
    outcome = run(runner, "fail", mode="hang", within=0.2)
    assert outcome.error_type == TIMEOUT
    assert "ran past its timeout of 0.2s" in outcome.message


def test_fail_refuses_an_unknown_mode(inproc: InprocRunner) -> None:
    outcome = run(inproc, "fail", mode="explode")
    assert outcome.error_type == INPUT_ERROR
    assert "input 'mode' must be one of raise, exit, hang" in outcome.message


# -- shell -----------------------------------------------------------------------------------


class TestShell:
    def test_a_string_runs_through_sh_with_env_and_cwd(self, process: ProcessRunner,
                                                        tmp_path: Path) -> None:
        outcome = run(process, "shell", command='echo "$GREETING from $(pwd)"; echo oops >&2',
                      env={"GREETING": "hi"}, cwd=str(tmp_path))
        assert outcome.output == {"exit_code": 0, "stdout": f"hi from {tmp_path}\n",
                                  "stderr": "oops\n"}

    def test_a_list_runs_directly_without_a_shell(self, process: ProcessRunner) -> None:
        outcome = run(process, "shell", command=["printf", "%s|", "a b", "$HOME"])
        assert outcome.output["stdout"] == "a b|$HOME|"

    def test_a_non_zero_exit_fails_with_its_code_and_stderr(self,
                                                            process: ProcessRunner) -> None:
        outcome = run(process, "shell", command="echo partial; echo broken >&2; exit 3")
        assert outcome.error_type == "ShellError"
        assert outcome.message == "command exited with code 3: broken"

    def test_with_check_false_a_non_zero_exit_is_its_output(self,
                                                             process: ProcessRunner) -> None:
        outcome = run(process, "shell", command="echo partial; exit 3", check=False)
        assert outcome.output == {"exit_code": 3, "stdout": "partial\n", "stderr": ""}
        missing = run(process, "shell", command=["/no/such/program"], check="false")
        assert missing.error_type == "ShellError", "a program that cannot start still fails"

    def test_a_missing_program_is_a_shell_error(self, process: ProcessRunner) -> None:
        outcome = run(process, "shell", command=["/no/such/program"])
        assert outcome.error_type == "ShellError"
        assert "/no/such/program" in outcome.message

    def test_it_does_not_run_inproc(self, inproc: InprocRunner) -> None:
        with pytest.raises(ValueError, match=r"plugin 'shell' cannot run inproc "
                                             r"\(its modes: process, kubernetes\)"):
            run(inproc, "shell", command="true")

    def test_what_the_command_leaves_behind_is_killed(self, process: ProcessRunner) -> None:
        """A background process is in the attempt's process group, which dies with it."""
        outcome = run(process, "shell", command="sleep 30 >/dev/null 2>&1 & echo $!")
        orphan = int(outcome.output["stdout"])
        assert wait_gone(orphan), f"the background sleep {orphan} outlived its attempt"


# -- http ------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.startswith("/json"):
            self._send(200, json.dumps({"path": self.path, "agent": self.headers["X-Agent"]}),
                       "application/json; charset=utf-8", extra={"X-Reply": "yes"})
        elif self.path == "/text":
            self._send(200, "plain words", "text/plain")
        elif self.path == "/missing":
            self._send(404, "no such thing here", "text/plain")
        elif self.path == "/slow":
            self.server.release.wait(10)
            self._send(200, "late", "text/plain")
        else:
            self._send(500, "unexpected", "text/plain")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        self._send(201, json.dumps({"type": self.headers["Content-Type"], "body": body}),
                   "application/json")

    def _send(self, status: int, body: str, kind: str, extra: dict[str, str] | None = None
              ) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    release: threading.Event

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout under test) is expected: stay quiet."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture
def web() -> Iterator[str]:
    """A local HTTP server on 127.0.0.1: its base URL. Stopped (and its threads joined) after."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.daemon_threads = False  # server_close() joins the handler threads
    server.release = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name="test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


class TestHttp:
    @pytest.mark.parametrize("mode", local_modes("http"))
    def test_a_json_answer_comes_back_decoded_with_status_and_headers(
            self, web: str, mode: str) -> None:
        runner = runner_for(mode)
        try:
            outcome = run(runner, "http", url=f"{web}/json", headers={"X-Agent": "noetl"},
                          params={"q": "1"})
        finally:
            runner.close(timeout=5)
        assert outcome.status is Status.SUCCEEDED, outcome
        assert outcome.output["status"] == 200
        assert outcome.output["body"] == {"path": "/json?q=1", "agent": "noetl"}
        assert outcome.output["headers"]["x-reply"] == "yes"

    def test_a_text_answer_stays_text(self, inproc: InprocRunner, web: str) -> None:
        assert run(inproc, "http", url=f"{web}/text").output["body"] == "plain words"

    @pytest.mark.parametrize(("given", "kind", "sent"), [
        ({"json": {"a": [1, 2]}}, "application/json", {"a": [1, 2]}),
        ({"data": "raw text"}, None, "raw text"),
        ({"data": {"k": "v w"}}, "application/x-www-form-urlencoded", "k=v+w"),
        ({"body": {"legacy": True}}, "application/json", {"legacy": True}),
    ])
    def test_a_post_sends_json_or_data(self, inproc: InprocRunner, web: str,
                                       given: dict[str, Any], kind: str | None,
                                       sent: Any) -> None:
        outcome = run(inproc, "http", method="post", url=f"{web}/echo", **given)
        assert outcome.output["status"] == 201
        echoed = outcome.output["body"]
        body = json.loads(echoed["body"]) if isinstance(sent, dict) else echoed["body"]
        assert body == sent
        if kind is not None:
            assert echoed["type"] == kind

    def test_json_and_data_together_are_refused(self, inproc: InprocRunner, web: str) -> None:
        outcome = run(inproc, "http", url=web, json={}, data="x")
        assert outcome.error_type == INPUT_ERROR
        assert "give one of json, data, body (got json, data)" in outcome.message

    @pytest.mark.parametrize("mode", local_modes("http"))
    def test_a_status_of_400_or_more_fails_with_http_error(self, web: str, mode: str) -> None:
        runner = runner_for(mode)
        try:
            outcome = run(runner, "http", url=f"{web}/missing")
        finally:
            runner.close(timeout=5)
        assert outcome.error_type == "HTTPError"
        assert outcome.message == f"GET {web}/missing: 404 Not Found: no such thing here"

    def test_a_slow_answer_is_a_timeout(self, inproc: InprocRunner, web: str) -> None:
        outcome = run(inproc, "http", url=f"{web}/slow", timeout=0.2)
        assert outcome.error_type == TIMEOUT
        assert "no answer within 0.2s" in outcome.message

    def test_the_request_never_outlives_the_attempt(self, inproc: InprocRunner,
                                                    web: str) -> None:
        """Under inproc the request's own timeout is capped by what the attempt has left."""
        handle = inproc.start(builtin("http"), attempt("http", within=0.3, url=f"{web}/slow",
                                                       timeout=30))
        outcome = handle.wait(5)
        assert outcome is not None and outcome.error_type == TIMEOUT
        assert "thread was abandoned" not in outcome.message  # it returned by itself
        assert inproc.statistics().abandoned == 0

    def test_a_refused_connection_is_a_connection_error(self, inproc: InprocRunner) -> None:
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        outcome = run(inproc, "http", url=f"http://127.0.0.1:{port}/")
        assert outcome.error_type == "ConnectionError"

    def test_a_missing_url_is_refused_by_the_validator(self) -> None:
        with pytest.raises(PlaybookError, match=r"plugin 'http' needs with\.url"):
            parse_playbook("apiVersion: noetl.io/v1\nkind: Playbook\nname: pb\ntasks:\n"
                           "  - {name: a, steps: [{name: s, plugin: http, timeout: 1s}]}\n",
                           "pb.yaml")


# -- python ----------------------------------------------------------------------------------


class TestPython:
    def test_it_calls_a_function_with_args_and_kwargs(self, runner: Runner) -> None:
        outcome = run(runner, "python", function="json:dumps", args=[{"b": 1, "a": 2}],
                      kwargs={"sort_keys": True})
        assert outcome.output == '{"a": 2, "b": 1}'

    def test_args_as_a_mapping_are_keyword_arguments(self, inproc: InprocRunner) -> None:
        outcome = run(inproc, "python", function="builtins:dict", args={"a": 1},
                      kwargs={"b": 2})
        assert outcome.output == {"a": 1, "b": 2}

    def test_an_exception_is_an_error_named_by_its_class(self, runner: Runner) -> None:
        outcome = run(runner, "python", function="json:loads", args=["{"])
        assert outcome.error_type == "JSONDecodeError"
        assert "Traceback" in outcome.detail

    @pytest.mark.parametrize(("function", "problem"), [
        ("no_such_module_xyz:f", "cannot find 'no_such_module_xyz:f'"),
        ("json:no_such_function", "cannot find 'json:no_such_function'"),
        ("json.dumps", "function must read 'module:function'"),
        (None, "needs input 'function'"),
    ])
    def test_a_bad_function_is_an_input_error(self, inproc: InprocRunner, function: str | None,
                                              problem: str) -> None:
        given: dict[str, Any] = {} if function is None else {"function": function}
        outcome = run(inproc, "python", **given)
        assert outcome.error_type == INPUT_ERROR
        assert problem in outcome.message

    def test_an_output_json_cannot_carry_is_an_output_error(self, runner: Runner) -> None:
        outcome = run(runner, "python", function="builtins:set", args=[[1]])
        assert outcome.error_type == OUTPUT_ERROR
        assert "not JSON-ready" in outcome.message


def test_the_python_plugin_imports_from_the_working_directory_under_process(
        process: ProcessRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mymod_for_noetl.py").write_text("def twice(x):\n    return x * 2\n")
    monkeypatch.chdir(tmp_path)
    outcome = run(process, "python", function="mymod_for_noetl:twice", args=[21])
    assert outcome.output == 42
    assert sys.modules.get("mymod_for_noetl") is None  # only the child imported it
