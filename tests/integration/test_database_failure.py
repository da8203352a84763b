"""A node whose database cannot be written (disk full) answers UNAVAILABLE and recovers.

Defect 5: the old node answered INTERNAL and stayed SERVING on health. Now the failed call
changes nothing, the caller gets UNAVAILABLE / DATABASE_UNAVAILABLE, health is NOT_SERVING
until a write succeeds again, and the node recovers without a restart.

The disk is a real, small tmpfs that the test fills up (root only, like the namespace tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.type.v1 import types_pb2

from tests.support import Pki, eventually, node_config, refusal, running

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@contextlib.contextmanager
def small_disk(directory: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``directory``; always unmounted."""
    directory.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], check=True
    )
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path) -> Path:
    """Writes a filler file until the disk is full; returns it (delete it to free the disk)."""
    filler = directory / "filler"
    # Unbuffered: the write that finds the disk full fails itself, not a later close().
    with filler.open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
    return filler


def test_a_full_disk_is_unavailable_then_recovers_without_a_restart(ca: Pki, tmp_path: Path):
    async def scenario() -> None:
        with small_disk(tmp_path / "disk") as disk:
            config = node_config(
                tmp_path,
                ca,
                "approval",
                "institution",
                database_url=f"sqlite:///{disk / 'node.db'}",
            )
            async with running(config) as approval, ca.channel(approval.runtime.address) as channel:
                admin = approval_pb2_grpc.ApprovalAdminServiceStub(channel)
                health = health_pb2_grpc.HealthStub(channel)

                async def status() -> int:
                    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                    return int(answer.status)

                request = approval_pb2.IssueProgramSerialRequest(
                    request_id="serial-on-a-full-disk", role=types_pb2.ROLE_RETAIL, note="full"
                )
                filler = fill(disk)
                refused = await refusal(admin.IssueProgramSerial(request, timeout=10))
                assert (refused.code, refused.reason) == (
                    grpc.StatusCode.UNAVAILABLE,
                    "DATABASE_UNAVAILABLE",
                )
                assert await status() == health_pb2.HealthCheckResponse.NOT_SERVING
                filler.unlink()

                async def serving() -> bool:
                    return await status() == health_pb2.HealthCheckResponse.SERVING

                await eventually(serving)
                first = await admin.IssueProgramSerial(request, timeout=10)
                again = await admin.IssueProgramSerial(request, timeout=10)
                assert first == again
                listed = await admin.ListProgramSerials(
                    approval_pb2.ListProgramSerialsRequest(), timeout=10
                )
                assert [s.note for s in listed.program_serials] == ["full"], "nothing half-written"

    asyncio.run(scenario())
