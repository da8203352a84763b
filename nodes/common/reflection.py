"""Server reflection that keeps the protos' comments, so `grpcurl describe` documents itself.

grpcio-reflection rebuilds file descriptors from the Python descriptor pool, which drops
source info (comments). This servicer answers the same requests from the descriptor set
that scripts/generate_protos.sh writes with ``--include_source_info``, falling back to the
stock behaviour for files that are not ours (health, reflection itself).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import _async, reflection, reflection_pb2_grpc


def _load_documented_files() -> dict[str, bytes]:
    data = resources.files("suretynet").joinpath("descriptors.binpb").read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    return {file.name: file.SerializeToString() for file in files}


class DocumentedReflectionServicer(_async.ReflectionServicer):
    """The stock aio reflection servicer, answering file requests with commented descriptors."""

    def __init__(self, service_names: list[str]) -> None:
        super().__init__(service_names)
        self._documented = _load_documented_files()

    def _with_comments(self, response: Any) -> Any:
        if not response.HasField("file_descriptor_response"):
            return response
        protos = response.file_descriptor_response.file_descriptor_proto
        for index, serialized in enumerate(protos):
            name = descriptor_pb2.FileDescriptorProto.FromString(serialized).name
            if name in self._documented:
                protos[index] = self._documented[name]
        return response

    def _file_by_filename(self, request: Any, filename: str) -> Any:
        return self._with_comments(super()._file_by_filename(request, filename))

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        return self._with_comments(super()._file_containing_symbol(request, fully_qualified_name))


def enable_documented_reflection(service_names: list[str], server: grpc.aio.Server) -> None:
    """Serves reflection for ``service_names`` (and itself) with commented descriptors."""
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        DocumentedReflectionServicer([*service_names, reflection.SERVICE_NAME]), server
    )
