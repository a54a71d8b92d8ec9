"""`harness recordings list|show|verify|prune` on real recording directories."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import httpx
import pytest

from harness.recording import cli
from harness.recording.errors import RecordingError
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.transport import wrap_transport
from harness.recording.usage import write_last_run
from tests.support.recording import in_test

TEST_A = "tests/integration/test_a.py::test_one"
TEST_B = "tests/integration/test_b.py::test_two"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def record(directory: Path, test_id: str, path: str, body: dict | None = None) -> Path:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ok": True})

    settings = RecordingSettings(mode=Mode.RECORD, directory=directory)
    with (
        in_test(test_id),
        httpx.Client(
            base_url="http://provider",
            transport=wrap_transport(httpx.MockTransport(answer), settings),
        ) as http,
    ):
        http.post(path, json=body or {})
    return max(directory.rglob("*.json"), key=lambda p: p.stat().st_mtime_ns)


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    directory = tmp_path / "recordings"
    record(directory, TEST_A, "/v1/chat/completions", {"n": 1})
    record(directory, TEST_A, "/v1/embeddings", {"n": 2})
    record(directory, TEST_B, "/v1/chat/completions", {"n": 3})
    return directory


def test_list_shows_count_endpoints_and_size_per_test(
    recordings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["recordings", "list", "--dir", str(recordings)]) == 0
    out = capsys.readouterr().out.splitlines()
    line_a = next(line for line in out if line.startswith(TEST_A))
    assert "2 recording(s)" in line_a
    assert "POST /v1/chat/completions, POST /v1/embeddings" in line_a
    assert "bytes" in line_a
    assert out[-1] == "3 recording(s) in 2 test(s)"


def test_list_uses_recording_dir_env(
    recordings: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMA_STACK_TEST_RECORDING_DIR", str(recordings))
    assert run(["recordings", "list"]) == 0
    assert "3 recording(s)" in capsys.readouterr().out


def test_show_by_fingerprint_prefix_and_by_path(
    recordings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = next(recordings.rglob("*.json"))
    assert run(["recordings", "show", "--dir", str(recordings), path.stem[:12]]) == 0
    by_prefix = capsys.readouterr().out
    assert run(["recordings", "show", "--dir", str(recordings), str(path)]) == 0
    assert capsys.readouterr().out == by_prefix
    assert json.loads(by_prefix.split("\n", 1)[1])["fingerprint"] == path.stem


def test_show_unknown_fingerprint_is_an_error(recordings: Path) -> None:
    with pytest.raises(RecordingError, match="no recording"):
        run(["recordings", "show", "--dir", str(recordings), "0" * 64])


def test_verify_passes_on_clean_recordings(
    recordings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["recordings", "verify", "--dir", str(recordings)]) == 0
    assert "3 recording(s) OK" in capsys.readouterr().out


def test_verify_fails_listing_tampered_malformed_and_secret_files(
    recordings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tampered, malformed, leaky = sorted(recordings.rglob("*.json"))
    data = json.loads(tampered.read_text())
    data["request"]["body"] = {"n": 99}
    tampered.write_text(json.dumps(data))
    malformed.write_text("{not json")
    data = json.loads(leaky.read_text())
    data["response"]["body"] = {"note": "Authorization: Bearer abcdef0123456789xyz"}
    leaky.write_text(json.dumps(data))
    assert run(["recordings", "verify", "--dir", str(recordings)]) == 1
    out = capsys.readouterr().out
    assert f"{tampered.relative_to(recordings).as_posix()}: fingerprint recomputed" in out
    assert f"{malformed}: malformed recording: expected JSON" in out
    assert f"{leaky.relative_to(recordings).as_posix()}: looks like it holds a secret" in out
    assert "3 problem(s) in 3 recording(s)" in out


# Credential shapes, assembled from parts so that no secret scanner reads one in this file.
CREDENTIALS = {
    "sk- API key": "sk-" + "proj-" + "Ab3dEf6hIj9kLm2nOp5q",
    "Google API key": "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    "AWS access key": "AKIA" + "IOSFODNN7EXAMPLE",
    "GitHub token": "ghp_" + "a1B2" * 9,
    "GitHub fine-grained token": "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmn",
    "Slack token": "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKl",
    "JSON web token": "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl",
}


def escaped(text: str, index: int = 2) -> str:
    """`text` with one character written as a JSON \\uXXXX escape, as a JSON encoder may."""
    return f"{text[:index]}\\u{ord(text[index]):04x}{text[index + 1 :]}"


def put_in_response(path: Path, text: str) -> None:
    """Write `text` verbatim into the recording's response body (the fingerprint stays right)."""
    data = json.loads(path.read_text())
    data["response"]["body"] = {"note": "PLACEHOLDER"}
    path.write_text(json.dumps(data, indent=2, sort_keys=True).replace("PLACEHOLDER", text))


@pytest.mark.parametrize("name", sorted(CREDENTIALS))
@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda token: token, id="plain"),
        pytest.param(escaped, id="json-escaped"),
        pytest.param(lambda token: escaped(token, 0), id="first-character-escaped"),
        # Inside a stream chunk's JSON, itself a string of the recording's JSON: escaped twice.
        pytest.param(lambda token: escaped(token).replace("\\", "\\\\"), id="escaped-twice"),
    ],
)
def test_verify_finds_each_credential_shape_however_it_is_escaped(
    recordings: Path, capsys: pytest.CaptureFixture[str], name: str, spelling: object
) -> None:
    token = CREDENTIALS[name]
    written = spelling(token)  # type: ignore[operator]
    leaky = sorted(recordings.rglob("*.json"))[0]
    put_in_response(leaky, written)
    if written != token:
        assert token not in leaky.read_text()  # only a decoder sees the credential

    assert run(["recordings", "verify", "--dir", str(recordings)]) == 1
    out = capsys.readouterr().out
    relative = leaky.relative_to(recordings).as_posix()
    assert f"{relative}: looks like it holds a secret: {name}" in out
    assert "1 problem(s) in 3 recording(s)" in out


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer <redacted>",
        "Authorization: Bearer \\u003credacted\\u003e",
        "Authorization: Bearer replay-needs-no-key",
        "the key is <redacted>; sk-short; task-management-and-scheduling",
        # Base64 image data that happens to hold "AIza", in a run longer than a key.
        "data:image/png;base64,iVBORw0KGgo/AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6QxYz",
    ],
)
def test_verify_does_not_take_the_harness_placeholders_for_credentials(
    recordings: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    put_in_response(sorted(recordings.rglob("*.json"))[0], text)

    assert run(["recordings", "verify", "--dir", str(recordings)]) == 0
    assert "3 recording(s) OK" in capsys.readouterr().out


def test_verify_passes_on_the_projects_committed_recordings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    committed = Path(__file__).resolve().parents[2] / "recordings"

    assert run(["recordings", "verify", "--dir", str(committed)]) == 0
    assert "recording(s) OK" in capsys.readouterr().out


def test_verify_flags_a_recording_in_the_wrong_module_directory(
    recordings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = next(recordings.glob("tests/integration/test_b/*.json"))
    moved = recordings / "tests/integration/test_a" / source.name
    source.rename(moved)
    assert run(["recordings", "verify", "--dir", str(recordings)]) == 1
    assert "belongs under tests/integration/test_b/" in capsys.readouterr().out


def test_prune_deletes_only_recordings_the_last_run_did_not_use(
    recordings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sorted(recordings.glob("tests/**/*.json"))
    keep = files[0].relative_to(recordings).as_posix()
    write_last_run(recordings, [keep], tests=[TEST_A, TEST_B], started=time.time())
    assert run(["recordings", "prune", "--dir", str(recordings), "--dry-run"]) == 0
    assert "2 unused recording(s) (dry run)" in capsys.readouterr().out
    assert sorted(recordings.glob("tests/**/*.json")) == files
    assert run(["recordings", "prune", "--dir", str(recordings)]) == 0
    assert [p.relative_to(recordings).as_posix() for p in recordings.glob("tests/**/*.json")] == [
        keep
    ]
    assert (recordings / ".last-run.json").is_file()
    assert not (recordings / "tests/integration/test_b").exists()  # emptied dirs removed


def test_prune_without_a_last_run_is_a_clear_error(recordings: Path) -> None:
    with pytest.raises(RecordingError, match="complete replay run"):
        run(["recordings", "prune", "--dir", str(recordings)])


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="recordings directory not found"):
        run(["recordings", "verify", "--dir", str(tmp_path / "nope")])


def test_harness_command_reports_malformed_recording_as_clean_error(
    recordings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    broken = next(recordings.rglob("*.json"))
    broken.write_text("[]")
    assert main(["recordings", "show", "--dir", str(recordings), str(broken)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("harness: error: ")
    assert str(broken) in err and "a JSON object at the top level" in err
