"""The agency's three flow steps that call other nodes between database steps.

Each runs under the caller's idempotency key: a stored answer is returned as it is; a new
one is remembered only once every outgoing call it depends on has succeeded, so a retry
with the same ``request_id`` finishes the step instead of repeating it.
"""

from __future__ import annotations

import logging

from suretynet.settlement.v1 import settlement_pb2
from suretynet.type.v1 import types_pb2

from nodes.common import logs, metrics
from nodes.common.convert import timestamp
from nodes.common.errors import DomainError, ErrorKind
from nodes.common.idempotency import remember_served, served_answer
from nodes.common.identity import EntityIdentity
from nodes.common.node import NodeRuntime
from nodes.settlement import anonymous_ids, cancellations, purchases
from nodes.settlement.notices import NoticeBoard
from nodes.settlement.peers import SettlementPeers
from nodes.settlement.settings import SettlementSettings
from storage.settlement.models import MemberRow
from storage.settlement.repository import SettlementRepository

log = logging.getLogger(__name__)

# Failures worth retrying with the same request_id; anything else undoes the reservation.
TRANSIENT_KINDS = (ErrorKind.UNAVAILABLE, ErrorKind.DEADLINE_EXCEEDED, ErrorKind.ABORTED)


class AgencyFlows:
    """Anonymous ID issuing (step 3), purchase approval (steps 5-9), cancellation (claims 2-3)."""

    def __init__(
        self,
        runtime: NodeRuntime,
        repo: SettlementRepository,
        peers: SettlementPeers,
        board: NoticeBoard,
        settings: SettlementSettings,
    ) -> None:
        self._runtime = runtime
        self._store = runtime.store
        self._repo = repo
        self._peers = peers
        self._board = board
        self._settings = settings

    async def issue_anonymous_user_id(
        self, member: MemberRow, request: settlement_pb2.IssueAnonymousUserIdRequest
    ) -> settlement_pb2.IssueAnonymousUserIdResponse:
        """Step 3: the member's ID for a shop; claim 1's directory shops receive it too."""
        repo = self._repo
        scope = f"member:{member.member_id}"
        stored = await served_answer(
            self._store,
            repo.idempotency,
            request,
            settlement_pb2.IssueAnonymousUserIdResponse,
            scope=scope,
        )
        if stored is not None:
            return stored
        shop = await self._peers.retail_entity_guarantee(
            types_pb2.RetailEntityIdentification(retail_entity_id=request.retail_entity_id), ""
        )
        if shop.status != types_pb2.ENTITY_STATUS_ACTIVE:
            raise DomainError(
                ErrorKind.FAILED_PRECONDITION,
                "ENTITY_SUSPENDED",
                f"retail entity {shop.retail_entity_id} is not active",
            )
        settings = self._settings
        row = await self._store.run(
            lambda: anonymous_ids.issue(
                repo,
                member_id=member.member_id,
                retail_entity_id=request.retail_entity_id,
                routing_prefix=settings.routing_prefix,
                validity_s=settings.anonymous_id_validity_s,
            )
        )
        anonymous_user_id = types_pb2.AnonymousUserId(
            value=row.value,
            retail_entity_id=row.retail_entity_id,
            routing_prefix=settings.routing_prefix,
            issued_at=timestamp(row.issued_at),
            expires_at=timestamp(row.expires_at),
        )
        # Claim 1 (directory variant): the agency itself transmits the ID to the shop.
        delivered = shop.discovery_variant == types_pb2.DISCOVERY_VARIANT_DIRECTORY
        if delivered:
            await self._peers.deliver_anonymous_user_id(shop.address, anonymous_user_id)

        def finish() -> settlement_pb2.IssueAnonymousUserIdResponse:
            if delivered:
                anonymous_ids.mark_delivered(repo, row.value)
            return remember_served(
                repo.idempotency,
                request,
                settlement_pb2.IssueAnonymousUserIdResponse(
                    anonymous_user_id=anonymous_user_id, delivered_to_retail_entity=delivered
                ),
                scope=scope,
            )

        return await self._store.run(finish)

    async def approve_purchase(
        self,
        caller: EntityIdentity,
        request: settlement_pb2.SearchBillingAgencyIdentificationRequest,
    ) -> settlement_pb2.SearchBillingAgencyIdentificationResponse:
        """Steps 5-9: resolve the ID, guarantee the shop, check credit, report, answer."""
        search = request.billing_agency_identification_search
        repo = self._repo
        stored = await served_answer(
            self._store,
            repo.idempotency,
            request,
            settlement_pb2.SearchBillingAgencyIdentificationResponse,
        )
        if stored is not None:
            return stored
        purchases.validate_search(search, caller)
        metrics.flow_started("purchase_approval")
        shop_id = search.retail_entity.retail_entity_id
        anonymous = await self._store.run(
            lambda: anonymous_ids.resolve(repo, search.anonymous_user_id, shop_id)
        )
        guarantee = await self._peers.retail_entity_guarantee(
            search.retail_entity, search.order_number
        )
        purchases.check_guarantee(search, guarantee)
        purchase = purchases.Purchase(
            search=search,
            member_id=anonymous.member_id,
            agency_id=self._runtime.config.entity_id,
            retail_entity_display_name=guarantee.display_name,
            trace_id=logs.current_trace_id(),
        )
        order = await self._store.run(lambda: purchases.record_order(repo, purchase))
        self._board.publish(order.member_id)
        logs.event(log, "order approved", order_number=order.order_number)
        if order.reported_at is None:
            await self._peers.submit_transaction_report(purchases.transaction_report(order))

        def finish() -> settlement_pb2.SearchBillingAgencyIdentificationResponse:
            purchases.mark_reported(repo, order.order_number)
            return remember_served(
                repo.idempotency,
                request,
                settlement_pb2.SearchBillingAgencyIdentificationResponse(
                    transaction_completion_report=purchases.completion_report(order)
                ),
            )

        answer = await self._store.run(finish)
        metrics.flow_outcome("purchase_approval", "completed")
        return answer

    async def process_cancel_request(
        self, caller: EntityIdentity, request: settlement_pb2.NotifyCancelRequestRequest
    ) -> settlement_pb2.NotifyCancelRequestResponse:
        """Claims 2-3: decide, notify verification, and answer with the process result."""
        cancellations.validate(request, caller)
        repo = self._repo
        stored = await served_answer(
            self._store, repo.idempotency, request, settlement_pb2.NotifyCancelRequestResponse
        )
        if stored is not None:
            return stored
        notice = request.cancel_request_notice
        row = await self._store.run(lambda: cancellations.begin(repo, notice, caller))
        if row.acknowledged_at is None:
            try:
                answer = await self._peers.submit_cancel_process_notice(
                    cancellations.process_notice(row, self._runtime.config.entity_id)
                )
            except DomainError as error:
                if error.kind not in TRANSIENT_KINDS and row.status == "PENDING":
                    await self._store.run(lambda: cancellations.abandon(repo, row))
                raise
            verification = (
                answer.cancel_verification if answer.HasField("cancel_verification") else None
            )
            if row.procedure == "VERIFIED" and verification is None:
                await self._store.run(lambda: cancellations.abandon(repo, row))
                raise DomainError(
                    ErrorKind.FAILED_PRECONDITION,
                    "CANCEL_REQUEST_NOT_FOUND",
                    "verification holds no VERIFIED cancel request notice for this cancellation",
                )
            row = await self._store.run(lambda: cancellations.acknowledge(repo, row, verification))
        self._board.publish(row.member_id)
        logs.event(
            log, "cancellation processed", order_number=row.order_number, decision=row.decision
        )
        return await self._store.run(
            lambda: remember_served(repo.idempotency, request, cancellations.response(row))
        )
