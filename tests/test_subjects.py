"""Command and event subjects, subject tokens, and the JSON wire format."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from noetl_actors.bridge import (
    SCHEMA_VERSION,
    Subject,
    SubjectKind,
    check_token,
    command_subject,
    decode,
    encode,
    event_subject,
    parse_subject,
)
from noetl_actors.errors import BridgeError, MalformedMessage

BAD_CHARACTERS = [".", "*", ">", " ", "\t", "\n"]
PARTS = ["plugin", "workflow id", "step id"]


def _parts_with(bad: str, position: int) -> list[str]:
    parts = ["http", "wf-42", "extract-download"]
    parts[position] = f"ab{bad}cd"
    return parts


class TestBuildingSubjects:
    def test_a_command_subject_is_command_plugin_workflow_step(self) -> None:
        assert command_subject("http", "wf-42", "extract-download") == (
            "command.http.wf-42.extract-download"
        )

    def test_an_event_subject_is_event_plugin_workflow_step(self) -> None:
        assert event_subject("python", "wf_7", "parse") == "event.python.wf_7.parse"

    @pytest.mark.parametrize("build", [command_subject, event_subject])
    @pytest.mark.parametrize("bad", BAD_CHARACTERS)
    @pytest.mark.parametrize("position", range(3))
    def test_a_token_with_a_dot_a_wildcard_or_white_space_is_refused_naming_the_part(
        self, build: Callable[[str, str, str], str], bad: str, position: int
    ) -> None:
        with pytest.raises(ValueError) as caught:
            build(*_parts_with(bad, position))
        message = str(caught.value)
        assert message.startswith(PARTS[position])
        assert f"ab{bad}cd" in message or repr(f"ab{bad}cd") in message

    @pytest.mark.parametrize("position", range(3))
    def test_an_empty_token_is_refused_naming_the_part(self, position: int) -> None:
        parts = ["http", "wf-42", "extract-download"]
        parts[position] = ""
        with pytest.raises(ValueError, match=f"^{PARTS[position]} must be a non-empty string"):
            command_subject(*parts)

    def test_check_token_returns_a_good_token_and_names_the_part_of_a_bad_one(self) -> None:
        assert check_token("workers-1", "queue group") == "workers-1"
        with pytest.raises(ValueError, match=r"^queue group 'a>b' cannot be a NATS subject token"):
            check_token("a>b", "queue group")


class TestParsingSubjects:
    @pytest.mark.parametrize("build, kind", [
        (command_subject, SubjectKind.COMMAND),
        (event_subject, SubjectKind.EVENT),
    ])
    def test_a_built_subject_parses_back_into_its_parts(
        self, build: Callable[[str, str, str], str], kind: SubjectKind
    ) -> None:
        subject = build("http", "wf-42", "extract-download")

        parsed = parse_subject(subject)

        assert parsed == Subject(kind, "http", "wf-42", "extract-download")
        assert str(parsed) == subject

    @pytest.mark.parametrize("subject", [
        "command.http.wf-42",
        "command.http.wf-42.step.extra",
        "noetl.deadletter",
        "job.http.wf-42.step",
        "",
    ])
    def test_a_subject_that_is_not_a_command_or_an_event_is_refused(self, subject: str) -> None:
        with pytest.raises(ValueError, match="is not a command or event subject"):
            parse_subject(subject)

    @pytest.mark.parametrize("subject, part", [
        ("command.*.wf-42.step", "plugin"),
        ("event.http.>.step", "workflow id"),
        ("event.http.wf-42.a b", "step id"),
        ("command.http..step", "workflow id"),
    ])
    def test_a_wildcard_or_empty_token_in_a_parsed_subject_is_refused_naming_the_part(
        self, subject: str, part: str
    ) -> None:
        with pytest.raises(ValueError, match=f"^{part} "):
            parse_subject(subject)


class TestCodec:
    def test_encode_adds_the_schema_version(self) -> None:
        assert json.loads(encode({"status": "ok"})) == {
            "schema_version": SCHEMA_VERSION, "status": "ok"}

    def test_encode_keeps_a_schema_version_already_there(self) -> None:
        assert json.loads(encode({"schema_version": 1, "n": 2})) == {"schema_version": 1, "n": 2}

    def test_what_encode_writes_decode_reads_back(self) -> None:
        data = {"workflow_id": "wf-1", "attempt": 2, "input": {"rows": [1, 2]}, "name": "é"}

        assert decode(encode(data)) == {"schema_version": SCHEMA_VERSION, **data}

    @pytest.mark.parametrize("value", [[1, 2], "text", 3])
    def test_encode_refuses_what_is_not_a_mapping(self, value: object) -> None:
        with pytest.raises(TypeError, match="a payload must be a mapping"):
            encode(value)  # type: ignore[arg-type]

    def test_encode_refuses_what_json_cannot_carry(self) -> None:
        with pytest.raises(TypeError, match="Object of type object is not JSON serializable"):
            encode({"when": object()})

    def test_what_only_the_standard_library_takes_still_goes_both_ways(self) -> None:
        # orjson does most payloads; an int past 64 bits, NaN read from another
        # producer, keys that are not strings: as Python's json did.
        big = 2**70
        assert decode(encode({"big": big, 1: "one"})) == {
            "schema_version": SCHEMA_VERSION, "big": big, "1": "one"}
        got = decode(b'{"schema_version": 1, "x": NaN}')
        assert got["x"] != got["x"]  # NaN

    def test_encode_writes_nan_as_null_which_any_json_reader_takes(self) -> None:
        assert json.loads(encode({"x": float("nan"), "y": float("inf")})) == {
            "schema_version": SCHEMA_VERSION, "x": None, "y": None}

    @pytest.mark.parametrize("payload, reason", [
        (b"not json at all", "not JSON"),
        (b"{\"schema_version\": 1", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2, 3]", "not a JSON object but list"),
        (b"\"a string\"", "not a JSON object but str"),
        (b"42", "not a JSON object but int"),
        (b"null", "not a JSON object but NoneType"),
        (b"{\"status\": \"ok\"}", "no 'schema_version' field"),
        (b"{\"schema_version\": 99}", "schema_version 99 is not one this runtime reads"),
        (b"{\"schema_version\": \"1\"}", "schema_version '1' is not one this runtime reads"),
    ])
    def test_decode_says_why_a_payload_is_malformed(self, payload: bytes, reason: str) -> None:
        with pytest.raises(MalformedMessage) as caught:
            decode(payload)
        assert str(caught.value).startswith(reason)

    def test_a_malformed_message_is_a_bridge_error_and_a_value_error(self) -> None:
        with pytest.raises(BridgeError):
            decode(b"[]")
        with pytest.raises(ValueError):
            decode(b"[]")
