"""Server reflection that keeps the protos' comments, so `grpcurl describe` documents itself.

grpcio-reflection rebuilds file descriptors from the Python descriptor pool, which drops
source info (comments). This servicer answers the same requests from the descriptor set
that scripts/generate_protos.sh writes with ``--include_source_info``, falling back to the
stock behaviour for files that are not ours (health, reflection itself).

Both versions of the reflection protocol are served: ``grpc.reflection.v1`` (which
``buf curl`` and newer grpcurl ask for first) and ``grpc.reflection.v1alpha``. The two are
the same messages under another package, so one servicer answers both; grpcio-reflection
ships only v1alpha, so the v1 file descriptor is made from it by renaming its package.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import _async, reflection, reflection_pb2, reflection_pb2_grpc

V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
V1_FILE_NAME = "grpc/reflection/v1/reflection.proto"
_V1ALPHA_PACKAGE = "grpc.reflection.v1alpha"


def _register_v1_descriptor() -> None:
    """Adds grpc/reflection/v1/reflection.proto to the default pool (once), from v1alpha."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(V1_FILE_NAME)
        return
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    file.name = V1_FILE_NAME
    file.package = "grpc.reflection.v1"
    old, new = f".{_V1ALPHA_PACKAGE}.", ".grpc.reflection.v1."
    for message in file.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = new + field.type_name[len(old) :]
    for service in file.service:
        for method in service.method:
            method.input_type = new + method.input_type[len(old) :]
            method.output_type = new + method.output_type[len(old) :]
    file.options.Clear()
    pool.AddSerializedFile(file.SerializeToString())


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
    """Serves reflection (v1 and v1alpha) for ``service_names`` with commented descriptors."""
    _register_v1_descriptor()
    servicer = DocumentedReflectionServicer(
        [*service_names, reflection.SERVICE_NAME, V1_SERVICE_NAME]
    )
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    # The wire format of v1 is v1alpha's, so v1alpha's (de)serializers read and write it.
    v1_handler = grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1_handler,))
