"""Approval's directory: what nodes ask about each other (claims 1, 8-10, 17-19, 26-28).

The related-information lookups are what address correlation is built on: a node that
receives a call asks approval for the caller's registered address (claim 8 for a shop,
claim 9 for a settlement agency, the same for marketplaces). The purchase look-ups answer
flow steps 2 (payment information), 4 (settlement agency identification: search, and the
guarantee deltas push and cache shops sync by) and 6 (retail entity identification).
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.approval import enrollment, guarantees
from nodes.approval.servicer import payment_information
from nodes.common import logs
from nodes.common.calls import call_info
from nodes.common.convert import (
    decode_page_token,
    encode_page_token,
    enum_value,
    page_size,
    timestamp,
)
from nodes.common.errors import DomainError, ErrorKind, required
from nodes.common.identity import entity_uri
from storage.approval.models import EntityRow
from storage.approval.repository import ApprovalRepository
from storage.common.database import Store

log = logging.getLogger(__name__)


def _status(row: EntityRow) -> Any:
    return enum_value(types_pb2.EntityStatus, "ENTITY_STATUS_", row.status)


class DirectoryServicer(approval_pb2_grpc.DirectoryServiceServicer):
    """Directory look-ups for nodes; every answer comes from the registry as it is now."""

    def __init__(self, store: Store, repo: ApprovalRepository, max_cache_age_s: int) -> None:
        self._store = store
        self._repo = repo
        # Tells callers how long they may cache an answer: the bound on how long an info
        # change (claims 6-7) takes to reach every correlating node.
        self._max_cache_age_s = max_cache_age_s

    async def _registered(self, entity_id: str, field_name: str, role: str) -> EntityRow:
        if not entity_id:
            raise required(field_name)

        def lookup() -> EntityRow:
            row = enrollment.get_entity(self._repo, entity_id)
            if row.role != role:
                raise DomainError(
                    ErrorKind.NOT_FOUND, "ENTITY_NOT_FOUND", f"{entity_id!r} is not a {role} entity"
                )
            return row

        return await self._store.run(lookup)

    def _related(self, row: EntityRow) -> dict[str, Any]:
        """The fields every related-information message shares (claims 8-9)."""
        return {
            "display_name": row.display_name,
            "registered_address": row.address,
            "replica_addresses": [part for part in row.replica_addresses.split(",") if part],
            "status": _status(row),
            "certificate_identity": entity_uri(row.role, row.entity_id),
            "registry_serial": row.registry_serial,
            "updated_at": timestamp(row.updated_at),
        }

    async def GetRelatedRetailEntityInformation(
        self,
        request: approval_pb2.GetRelatedRetailEntityInformationRequest,
        context: grpc.aio.ServicerContext,
    ) -> approval_pb2.GetRelatedRetailEntityInformationResponse:
        row = await self._registered(request.retail_entity_id, "retail_entity_id", "retail")
        return approval_pb2.GetRelatedRetailEntityInformationResponse(
            information=approval_pb2.RelatedRetailEntityInformation(
                retail_entity_id=row.entity_id, **self._related(row)
            ),
            max_cache_age_s=self._max_cache_age_s,
        )

    async def GetRelatedSettlementAgencyInformation(
        self,
        request: approval_pb2.GetRelatedSettlementAgencyInformationRequest,
        context: grpc.aio.ServicerContext,
    ) -> approval_pb2.GetRelatedSettlementAgencyInformationResponse:
        row = await self._registered(
            request.settlement_agency_id, "settlement_agency_id", "settlement"
        )
        return approval_pb2.GetRelatedSettlementAgencyInformationResponse(
            information=approval_pb2.RelatedSettlementAgencyInformation(
                settlement_agency_id=row.entity_id,
                routing_prefix=row.routing_prefix or "",
                **self._related(row),
            ),
            max_cache_age_s=self._max_cache_age_s,
        )

    async def GetRelatedMarketplaceInformation(
        self,
        request: approval_pb2.GetRelatedMarketplaceInformationRequest,
        context: grpc.aio.ServicerContext,
    ) -> approval_pb2.GetRelatedMarketplaceInformationResponse:
        row = await self._registered(request.marketplace_id, "marketplace_id", "marketplace")
        return approval_pb2.GetRelatedMarketplaceInformationResponse(
            information=approval_pb2.RelatedMarketplaceInformation(
                marketplace_id=row.entity_id, **self._related(row)
            ),
            max_cache_age_s=self._max_cache_age_s,
        )

    async def GetPaymentInformation(
        self,
        request: approval_pb2.GetPaymentInformationRequest,
        context: grpc.aio.ServicerContext,
    ) -> approval_pb2.GetPaymentInformationResponse:
        guarantees.check_own(call_info().caller, "retail", request.retail_entity_id)
        row = await self._registered(request.retail_entity_id, "retail_entity_id", "retail")
        return approval_pb2.GetPaymentInformationResponse(
            payment_information=payment_information(row)
        )

    async def SearchSettlementAgencyIdentification(
        self,
        request: approval_pb2.SearchSettlementAgencyIdentificationRequest,
        context: grpc.aio.ServicerContext,
    ) -> approval_pb2.SearchSettlementAgencyIdentificationResponse:
        if not request.retail_entity_id:
            raise required("retail_entity_id")
        if not request.anonymous_user_id:
            raise required("anonymous_user_id")
        guarantees.check_own(call_info().caller, "retail", request.retail_entity_id)
        row = await self._store.run(
            lambda: guarantees.search_settlement_agency(self._repo, request.anonymous_user_id)
        )
        return approval_pb2.SearchSettlementAgencyIdentificationResponse(
            guarantee=guarantees.settlement_agency_guarantee(row)
        )

    async def ListSettlementAgencyGuarantees(
        self,
        request: approval_pb2.ListSettlementAgencyGuaranteesRequest,
        context: grpc.aio.ServicerContext,
    ) -> approval_pb2.ListSettlementAgencyGuaranteesResponse:
        if request.after_serial < 0:
            raise DomainError(
                ErrorKind.INVALID_ARGUMENT, "FIELD_INVALID", "after_serial: must not be negative"
            )
        size = page_size(request.page_size)
        token = decode_page_token(request.page_token)
        after = int(token) if token.isdigit() else request.after_serial

        def query() -> approval_pb2.ListSettlementAgencyGuaranteesResponse:
            rows, current = guarantees.changed_after(self._repo, after, size + 1)
            return approval_pb2.ListSettlementAgencyGuaranteesResponse(
                guarantees=[guarantees.settlement_agency_guarantee(row) for row in rows[:size]],
                registry_serial=current,
                next_page_token=encode_page_token(str(rows[size - 1].registry_serial))
                if len(rows) > size
                else "",
            )

        return await self._store.run(query)

    async def SearchRetailEntityIdentification(
        self,
        request: approval_pb2.SearchRetailEntityIdentificationRequest,
        context: grpc.aio.ServicerContext,
    ) -> approval_pb2.SearchRetailEntityIdentificationResponse:
        identification = request.retail_entity
        row = await self._registered(
            identification.retail_entity_id, "retail_entity.retail_entity_id", "retail"
        )
        guarantee = guarantees.retail_entity_guarantee(row, identification)
        if guarantee.mismatched_fields:
            # The shop presented itself otherwise than it is registered: the purchase will
            # fail with GUARANTEE_MISMATCH, so say here which field differs, and how.
            logs.event(
                log,
                "retail entity identification differs from the registry",
                logging.WARNING,
                retail_entity_id=row.entity_id,
                mismatched_fields=list(guarantee.mismatched_fields),
                presented={
                    name: getattr(identification, name) for name in guarantee.mismatched_fields
                },
                registered={name: getattr(guarantee, name) for name in guarantee.mismatched_fields},
            )
        return approval_pb2.SearchRetailEntityIdentificationResponse(guarantee=guarantee)
