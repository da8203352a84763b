"""Reading approval's settlement agency identification guarantee changes (claims 10, 19).

Push shops catch up from approval with it, and settlement agencies serve cache shops' pulls
from it; both need every change after a serial, page by page, with a bound on the pages.
"""

from __future__ import annotations

from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common.channels import Channels

# Pages fetched in one read; the reader asks again for the rest.
MAX_GUARANTEE_PAGES = 20

Guarantee = types_pb2.SettlementAgencyIdentificationGuarantee


async def guarantee_changes(
    channels: Channels, approval_address: str, after_serial: int
) -> tuple[list[Guarantee], int]:
    """Guarantees changed after ``after_serial``, and the registry serial they bring a
    reader up to (the current serial once every page was read)."""
    directory = channels.stub(approval_address, approval_pb2_grpc.DirectoryServiceStub)
    collected: list[Guarantee] = []
    token, serial = "", after_serial
    for _ in range(MAX_GUARANTEE_PAGES):
        response: approval_pb2.ListSettlementAgencyGuaranteesResponse = await channels.call(
            directory.ListSettlementAgencyGuarantees,
            approval_pb2.ListSettlementAgencyGuaranteesRequest(
                after_serial=after_serial, page_token=token
            ),
            peer="approval",
            idempotent=True,
            to_approval=True,
        )
        collected.extend(response.guarantees)
        token = response.next_page_token
        if not token:
            return collected, response.registry_serial
        serial = max([serial, *(g.registry_serial for g in response.guarantees)])
    return collected, serial
