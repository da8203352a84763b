"""Members see who saw their data: the disclosure log of agencies and marketplaces.

Every time a node hands member-linked data to someone else (an anonymous user ID for a
shop, a completion report, a credit guarantee under a pseudonym, a fraud disclosure) or an
operator reads a member's records through an admin RPC, the node records who received it,
what, when and why, in the same transaction as the act where there is one. The member
lists its own disclosures (``ListDataDisclosures``) and no one else's.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from suretynet.type.v1 import types_pb2

from nodes.common.calls import current_call
from nodes.common.convert import enum_value, timestamp
from nodes.common.paging import newest_first
from storage.common.models import DataDisclosureRow, utc_now

DATA_MAX_CHARS = 500
PURPOSE_MAX_CHARS = 300


def record(
    table: type[DataDisclosureRow],
    *,
    member_id: str,
    kind: str,
    recipient: str,
    data: str,
    purpose: str,
    reference: str = "",
) -> DataDisclosureRow:
    """Records one disclosure; ``kind`` is a DataDisclosureKind name without its prefix."""
    enum_value(types_pb2.DataDisclosureKind, "DATA_DISCLOSURE_KIND_", kind)
    row: DataDisclosureRow = table.create(
        disclosure_id=f"{time.time_ns():020d}{secrets.token_hex(4)}",
        member_id=member_id,
        kind=kind,
        recipient=recipient,
        data=data[:DATA_MAX_CHARS],
        purpose=purpose[:PURPOSE_MAX_CHARS],
        reference=reference,
        disclosed_at=utc_now(),
    )
    return row


def operator_uri() -> str:
    """The certificate holder of the admin RPC being served (the operator who reads)."""
    info = current_call.get()
    caller = info.caller if info is not None else None
    return caller.uri if caller is not None else "an operator"


def operator_method() -> str:
    info = current_call.get()
    return info.method.lstrip("/").removeprefix("suretynet.") if info is not None else ""


def to_proto(row: DataDisclosureRow) -> types_pb2.DataDisclosure:
    return types_pb2.DataDisclosure(
        disclosure_id=row.disclosure_id,
        kind=enum_value(types_pb2.DataDisclosureKind, "DATA_DISCLOSURE_KIND_", row.kind),
        recipient=row.recipient,
        data=row.data,
        purpose=row.purpose,
        reference=row.reference,
        disclosed_at=timestamp(row.disclosed_at),
    )


def page(
    table: type[DataDisclosureRow], member_id: str, request: Any
) -> tuple[list[types_pb2.DataDisclosure], str]:
    """One page of ``member_id``'s disclosures, newest first; inside ``Store.run``."""
    rows, token = newest_first(
        table.select().where(table.member_id == member_id),
        table.disclosed_at,
        table.disclosure_id,
        request.page_size,
        request.page_token,
    )
    return [to_proto(row) for row in rows], token
