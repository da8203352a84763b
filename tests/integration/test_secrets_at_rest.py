"""No secret at rest in clear: license keys never appear in any node's files, yet a replayed
registration or rotation still delivers the key; database and key files are owner-only."""

from __future__ import annotations

import asyncio
import dataclasses
import stat
from pathlib import Path

import pytest
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common.channels import LICENSE_KEY_METADATA_KEY
from nodes.common.config import ConfigError
from nodes.common.node import Node
from tests.integration.test_enrollment import issue_serial, registration
from tests.support import Pki, node_config, running


def every_byte_under(directory: Path) -> bytes:
    """The database, its WAL and every other file a node wrote, concatenated."""
    return b"".join(path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file())


def test_license_keys_are_never_stored_in_clear_but_a_replay_still_delivers_them(
    ca: Pki, tmp_path: Path
):
    approval_dir, shop_dir = tmp_path / "approval", tmp_path / "shop"
    approval_dir.mkdir()
    shop_dir.mkdir()
    keys: list[str] = []

    async def scenario() -> None:
        async with running(node_config(approval_dir, ca, "approval", "institution")) as approval:
            address = approval.runtime.address
            serial = await issue_serial(ca, address, types_pb2.ROLE_RETAIL, "serial-secret")
            async with ca.channel(address, "retail", "shop-7") as channel:
                stub = approval_pb2_grpc.EnrollmentServiceStub(channel)
                request = registration(serial, "shop-7")
                first = await stub.RegisterEntity(request, timeout=5)
                replayed = await stub.RegisterEntity(request, timeout=5)
                assert replayed == first, "the caller whose answer was lost gets its key"
                rotation = approval_pb2.RotateLicenseKeyRequest(request_id="rotate-1")
                metadata = [(LICENSE_KEY_METADATA_KEY, first.license_key)]
                rotated = await stub.RotateLicenseKey(rotation, metadata=metadata, timeout=5)
                again = await stub.RotateLicenseKey(rotation, metadata=metadata, timeout=5)
                assert again == rotated
                keys.extend([first.license_key, rotated.license_key])
            # A node enrolling for real stores its own key, sealed too.
            shop_serial = await issue_serial(ca, address, types_pb2.ROLE_RETAIL, "serial-shop")
            shop = node_config(
                shop_dir, ca, "retail", "shop-8", approval_address=address,
                program_serial=shop_serial, options={"discovery": "directory"},
            )  # fmt: skip
            async with running(shop) as node:
                assert node.keeper is not None
                keys.append(node.keeper.key or "")
            async with running(shop) as node:
                assert node.keeper is not None
                assert node.keeper.key == keys[-1], "a restart opens the sealed key"

    asyncio.run(scenario())
    assert all(keys)
    stored = every_byte_under(approval_dir) + every_byte_under(shop_dir)
    for key in keys:
        # snlk_<key id>_<secret>; the URL-safe secret may itself contain "_".
        secret = key.split("_", 2)[2].encode()
        assert len(secret) >= 40
        assert secret not in stored, "a license key is stored in clear"
    for directory, entity in ((approval_dir, "institution"), (shop_dir, "shop-8")):
        for name in (f"{entity}.db", f"{entity}.secrets.key"):
            mode = stat.S_IMODE((directory / name).stat().st_mode)
            assert mode == 0o600, (name, oct(mode))


def test_a_secrets_key_others_can_read_is_refused(ca: Pki, tmp_path: Path):
    key = tmp_path / "node.key"
    key.write_bytes(bytes(32))
    key.chmod(0o644)
    config = node_config(tmp_path, ca, "approval", "institution", secrets_key_file=str(key))

    async def build() -> Node:
        return Node(config)

    with pytest.raises(ConfigError, match="chmod 600"):
        asyncio.run(build())


def test_a_database_that_is_not_a_sqlite_file_needs_a_secrets_key_file(ca: Pki, tmp_path: Path):
    config = dataclasses.replace(
        node_config(
            tmp_path, ca, "approval", "institution", database_url="postgresql://u@db.invalid/a"
        ),
        secrets_key_file=None,
    )
    with pytest.raises(ConfigError, match="secrets_key_file"):
        Node(config)
