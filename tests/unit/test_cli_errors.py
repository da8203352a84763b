"""An operator's mistake in any `suretynet` command: one line on stderr, non-zero, no traceback.

Runs ``nodes.cli.main`` in this process, so an exception that escapes it fails the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.cli import main

NODE_TOML = """role = "{role}"
entity_id = "{entity}"
database_url = "sqlite:///{directory}/node.db"
approval_address = "127.0.0.1:7000"
program_serial = "SN-1"
listen_address = "127.0.0.1:0"

[tls]
ca = "{directory}/missing-ca.pem"
cert = "{directory}/missing.pem"
key = "{directory}/missing.key"

[options]
{options}
"""


def node_toml(tmp_path: Path, role: str, options: str) -> str:
    path = tmp_path / f"{role}.toml"
    path.write_text(
        NODE_TOML.format(role=role, entity=f"{role}-1", directory=tmp_path, options=options)
    )
    return str(path)


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    error = capsys.readouterr().err
    assert code != 0, f"{argv} succeeded"
    assert "Traceback" not in error
    lines = error.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("suretynet: "), error
    return lines[0]


def test_a_missing_config_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    line = refused(capsys, ["node", "run", "retail", "--config", str(tmp_path / "none.toml")])
    assert "none.toml" in line


def test_an_unknown_option_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config = node_toml(tmp_path, "retail", 'discovry = "push"')
    assert "unknown key(s) discovry" in refused(
        capsys, ["node", "run", "retail", "--config", config]
    )


def test_a_missing_routing_prefix_is_named_with_what_to_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = node_toml(tmp_path, "settlement", "")
    line = refused(capsys, ["node", "run", "settlement", "--config", config])
    assert "options.routing_prefix: is required" in line and 'routing_prefix = "4111"' in line


def test_a_role_that_does_not_match_the_config_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = node_toml(tmp_path, "verification", "")
    assert "configures role 'verification'" in refused(
        capsys, ["node", "run", "retail", "--config", config]
    )


def test_missing_certificate_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config = node_toml(tmp_path, "verification", "")
    line = refused(capsys, ["node", "run", "verification", "--config", config])
    assert "missing" in line


@pytest.mark.parametrize(
    "command",
    [
        ["approval", "--network", "{missing}", "list-entities"],
        ["member", "--network", "{broken}", "login", "--agency", "a", "--member-id", "m"],
        ["settlement", "--network", "{empty}", "--agency", "agency-1", "run-billing"],
        ["shop", "--network", "{empty}", "--shop", "shop-1", "sales-records"],
        ["node", "restart", "shop-1", "--network", "{empty}"],
        ["up", "--data-dir", "{broken_dir}"],
        [
            "pki",
            "issue",
            "--dir",
            "{missing}",
            "--role",
            "retail",
            "--entity",
            "s",
            "--ip",
            "1.2.3.4",
        ],
    ],
)
def test_a_bad_network_descriptor_or_directory_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    empty = tmp_path / "empty.json"
    empty.write_text('{"ca": "ca.pem", "admin": {"cert": "a", "key": "b"}, "nodes": []}')
    broken_dir = tmp_path / "net"
    broken_dir.mkdir()
    (broken_dir / "network.json").write_text('{"nodes": [{"entity_id": 1}]}')
    values = {
        "missing": str(tmp_path / "missing"),
        "broken": str(broken),
        "empty": str(empty),
        "broken_dir": str(broken_dir),
    }
    refused(capsys, [part.format(**values) for part in command])
