"""Reflection answers as grpc.reflection.v1 and as v1alpha, with the protos' comments."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from tests.support import Pki, grpcurl_binary, node_config, running

VERSIONS = ("grpc.reflection.v1", "grpc.reflection.v1alpha")


async def ask(channel, version: str, request: reflection_pb2.ServerReflectionRequest):
    """One request on ``version``'s ServerReflectionInfo stream (the wire format is shared)."""
    call = channel.stream_stream(
        f"/{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    responses = [response async for response in call(iter([request]), timeout=10)]
    assert len(responses) == 1
    return responses[0]


@pytest.mark.parametrize("version", VERSIONS)
def test_services_are_listed_and_described_with_comments_through_each_version(
    ca: Pki, tmp_path: Path, version: str
):
    async def scenario():
        async with running(node_config(tmp_path, ca, "approval", "institution")) as node:
            async with ca.channel(node.runtime.address) as channel:
                listed = await ask(
                    channel, version, reflection_pb2.ServerReflectionRequest(list_services="")
                )
                described = await ask(
                    channel,
                    version,
                    reflection_pb2.ServerReflectionRequest(
                        file_containing_symbol="suretynet.approval.v1.EnrollmentService"
                    ),
                )
                reflected = await ask(
                    channel,
                    version,
                    reflection_pb2.ServerReflectionRequest(
                        file_containing_symbol="grpc.reflection.v1.ServerReflection"
                    ),
                )
                return listed, described, reflected

    listed, described, reflected = asyncio.run(scenario())
    names = {service.name for service in listed.list_services_response.service}
    assert {
        "suretynet.approval.v1.EnrollmentService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(data)
        for data in described.file_descriptor_response.file_descriptor_proto
    ]
    approval = next(file for file in files if file.package == "suretynet.approval.v1")
    comments = [location.leading_comments for location in approval.source_code_info.location]
    assert any("program serial" in comment.lower() for comment in comments)
    v1 = descriptor_pb2.FileDescriptorProto.FromString(
        reflected.file_descriptor_response.file_descriptor_proto[0]
    )
    assert v1.package == "grpc.reflection.v1"
    assert v1.service[0].method[0].input_type == ".grpc.reflection.v1.ServerReflectionRequest"


def test_grpcurl_lists_through_v1_without_falling_back(ca: Pki, tmp_path: Path):
    """grpcurl asks v1 first; with v1 served it lists and describes as before."""

    async def scenario() -> subprocess.CompletedProcess[str]:
        async with running(node_config(tmp_path, ca, "approval", "institution")) as node:
            admin = ca.issue("admin", "operator")
            command = [
                grpcurl_binary(),
                "-cacert",
                str(admin.ca),
                "-cert",
                str(admin.cert),
                "-key",
                str(admin.key),
                node.runtime.address,
                "describe",
                "grpc.reflection.v1.ServerReflection",
            ]
            return await asyncio.to_thread(
                subprocess.run, command, capture_output=True, text=True, timeout=60, check=False
            )

    result = asyncio.run(scenario())
    assert result.returncode == 0, result.stderr
    assert "ServerReflectionInfo" in result.stdout
