"""How every `suretynet` subcommand prints an answer: JSON with the .proto field names."""

from __future__ import annotations

from google.protobuf import json_format
from google.protobuf.message import Message


def print_message(message: Message) -> None:
    """Prints ``message`` as indented JSON, fields named as in the .proto (snake_case).

    The same names an operator types in ``grpcurl -d`` and reads in ``grpcurl describe``.
    """
    print(json_format.MessageToJson(message, preserving_proto_field_name=True))
