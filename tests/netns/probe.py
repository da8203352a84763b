"""One RPC from wherever this process runs (e.g. inside a namespace), result as JSON.

    python -m tests.netns.probe --target IP:PORT --method /pkg.Service/Method
        [--request JSON] [--ca PEM --cert PEM --key PEM | --server-tls-only --ca PEM |
         --plaintext] [--metadata KEY=VALUE ...]

Prints {"code": "OK"|"<STATUS>", "reason": ..., "message": ..., "response": {...}}.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
from pathlib import Path

import grpc
import suretynet
from google.protobuf import descriptor_pool, json_format, message_factory

from nodes.common.status import decode_rpc_error


def _load_all_protos() -> None:
    for module in pkgutil.walk_packages(suretynet.__path__, "suretynet."):
        if module.name.endswith("_pb2"):
            importlib.import_module(module.name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--request", default="{}")
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--plaintext", action="store_true")
    parser.add_argument("--metadata", action="append", default=[])
    parser.add_argument("--timeout-s", type=float, default=10.0)
    args = parser.parse_args()
    _load_all_protos()
    service_name, method_name = args.method.lstrip("/").rsplit("/", 1)
    pool = descriptor_pool.Default()
    method = pool.FindServiceByName(service_name).methods_by_name[method_name]
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    request = json_format.Parse(args.request, request_type())
    if args.plaintext:
        channel = grpc.insecure_channel(args.target)
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(args.ca).read_bytes(),
            private_key=Path(args.key).read_bytes() if args.key else None,
            certificate_chain=Path(args.cert).read_bytes() if args.cert else None,
        )
        channel = grpc.secure_channel(args.target, credentials)
    call = channel.unary_unary(
        args.method,
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    metadata = [tuple(item.split("=", 1)) for item in args.metadata]
    try:
        response = call(request, timeout=args.timeout_s, metadata=metadata)
        result = {"code": "OK", "response": json_format.MessageToDict(response)}
    except grpc.RpcError as error:
        remote = decode_rpc_error(error)
        result = {"code": remote.code.name, "reason": remote.reason, "message": remote.message}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
