"""The agency's flow steps that call other nodes between database steps, and its resumer.

Each runs under the caller's idempotency key: a stored answer is returned as it is; a new
one is remembered only once every outgoing call it depends on has succeeded, so a retry
with the same ``request_id`` finishes the step instead of repeating it.

The agency drives its own part of every flow to an end and never relies on the shop for
it: its resumer files transaction reports that verification has not acknowledged, and
delivers its voids to verification (docs/RELIABILITY.md).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence

from suretynet.settlement.v1 import settlement_pb2
from suretynet.type.v1 import types_pb2

from nodes.common import disclosures, logs, metrics, resumer, voids
from nodes.common.convert import enum_label, timestamp
from nodes.common.errors import DomainError, ErrorKind
from nodes.common.idempotency import remember_served, served_answer, stored_served
from nodes.common.identity import EntityIdentity, entity_uri
from nodes.common.node import NodeRuntime
from nodes.settlement import anonymous_ids, cancellations, purchases
from nodes.settlement.notices import NoticeBoard
from nodes.settlement.peers import SettlementPeers
from nodes.settlement.settings import SettlementSettings
from storage.common.models import utc_now
from storage.settlement.models import AnonymousIdRow, MemberRow, SettlementOrderRow
from storage.settlement.repository import SettlementRepository

log = logging.getLogger(__name__)

# Failures worth retrying with the same request_id; anything else undoes the reservation.
TRANSIENT_KINDS = resumer.TRANSIENT_KINDS
# The resumer leaves a report or void this long to the RPC that is delivering it itself.
RESUME_GRACE_S = 2.0


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
            disclosures.record(
                repo.data_disclosures,
                member_id=member.member_id,
                kind="ANONYMOUS_ID_ISSUED",
                recipient=entity_uri("retail", shop.retail_entity_id),
                data=f"anonymous user ID {row.value} for {shop.retail_entity_id}, "
                f"valid until {row.expires_at.isoformat()}Z",
                purpose="delivered to the shop by the agency (directory discovery)"
                if delivered
                else "issued to you to present at the shop",
                reference=row.value,
            )
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
        shop_id = search.retail_entity.retail_entity_id
        answer_type = settlement_pb2.SearchBillingAgencyIdentificationResponse

        def look_up() -> tuple[
            settlement_pb2.SearchBillingAgencyIdentificationResponse | None,
            SettlementOrderRow | None,
            AnonymousIdRow | None,
        ]:
            """One trip: the stored answer, else the recorded order, else the member."""
            stored = stored_served(repo.idempotency, request, answer_type)
            if stored is not None:
                return stored, None, None
            purchases.validate_search(search, caller)
            # The first answer stands: a recorded order is finished, never re-checked.
            order = purchases.recorded_order(repo, search)
            if order is not None:
                return None, order, None
            return None, None, anonymous_ids.resolve(repo, search.anonymous_user_id, shop_id)

        stored, order, anonymous = await self._store.run(look_up)
        if stored is not None:
            return stored
        if order is None:
            assert anonymous is not None, "look_up resolves the member of a new order"
            order = await self._approve(search, anonymous)
        if order.billing_state == "VOIDED":
            raise voids.refusal(order.order_number)
        if order.reported_at is None:
            await self._peers.submit_transaction_report(purchases.transaction_report(order))

        def finish() -> settlement_pb2.SearchBillingAgencyIdentificationResponse:
            purchases.mark_reported(repo, order.order_number)
            purchases.record_disclosures(repo, order, caller)
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

    async def _approve(
        self, search: settlement_pb2.BillingAgencyIdentificationSearch, anonymous: AnonymousIdRow
    ) -> SettlementOrderRow:
        """Steps 6-8 for a new order: the shop's guarantee, credit, the record."""
        metrics.flow_started("purchase_approval")
        repo = self._repo
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
        return order

    async def void_order(
        self, caller: EntityIdentity, request: settlement_pb2.VoidOrderRequest
    ) -> settlement_pb2.VoidOrderResponse:
        """The purchase's compensation: record the void, release the hold, tell verification."""
        reason = enum_label(types_pb2.ErrorReason, "ERROR_REASON_", request.reason).upper()
        voids.validate(request.order_number, reason)
        repo = self._repo
        stored = await served_answer(
            self._store, repo.idempotency, request, settlement_pb2.VoidOrderResponse
        )
        if stored is not None:
            return stored
        void = voids.Void(
            order_number=request.order_number,
            retail_entity_id=caller.entity_id,
            settlement_agency_id=self._runtime.config.entity_id,
            reason=reason,
        )

        def apply() -> tuple[settlement_pb2.VoidOrderResponse, str]:
            order = repo.order(void.order_number, lock=True)
            if order is not None and order.retail_entity_id != caller.entity_id:
                raise DomainError(
                    ErrorKind.PERMISSION_DENIED,
                    "NOT_OWNER",
                    f"{caller.uri} did not sell order {void.order_number}",
                )
            row = voids.record(repo.voids, void)
            credited = purchases.void_order(repo, order, reason) if order is not None else 0
            response = purchases.void_response(row, order, credited)
            return remember_served(repo.idempotency, request, response), (
                order.member_id if order is not None else ""
            )

        response, member_id = await self._store.run(apply)
        if member_id:
            self._board.publish(member_id)
        logs.event(log, "order voided", order_number=void.order_number, reason=reason)
        metrics.flow_outcome("purchase_approval", "voided", reason)
        try:
            await self._forward_void(void.order_number)
        except DomainError as error:
            # The resumer delivers it; the shop's void is complete once recorded here.
            logs.event(
                log,
                "void not yet forwarded",
                logging.WARNING,
                order_number=void.order_number,
                reason=error.reason,
            )
        return response

    async def _forward_void(self, order_number: str) -> None:
        repo = self._repo
        row = await self._store.run(lambda: repo.voids.get_by_id(order_number))
        if row.forwarded_at is not None:
            return
        await self._peers.void_transaction_report(row)
        await self._store.run(
            lambda: (
                repo.voids.update(forwarded_at=utc_now())
                .where(repo.voids.order_number == order_number)
                .execute()
            )
        )

    async def _file_report(self, order_number: str) -> None:
        repo = self._repo
        order = await self._store.run(lambda: purchases.get_order(repo, order_number))
        if order.reported_at is None:
            await self._peers.submit_transaction_report(purchases.transaction_report(order))
            await self._store.run(lambda: purchases.mark_reported(repo, order_number))

    def resumer(self) -> resumer.Resumer:
        """The agency's own resumer: unacknowledged transaction reports, unforwarded voids."""
        repo = self._repo

        def due(limit: int) -> Sequence[resumer.DueFlow]:
            cutoff = utc_now() - datetime.timedelta(seconds=RESUME_GRACE_S)
            reports, pending_voids = purchases.undelivered(repo, utc_now(), cutoff, limit)
            return [
                *(
                    resumer.DueFlow(
                        "report:" + row.order_number,
                        "verification",
                        row.trace_id,
                        row.created_at,
                        row.next_report_at,
                    )
                    for row in reports
                ),
                *(
                    resumer.DueFlow(
                        "void:" + row.order_number,
                        "verification",
                        since=row.voided_at,
                        due_at=row.next_forward_at,
                    )
                    for row in pending_voids
                ),
            ]

        async def drive(flow: resumer.DueFlow) -> None:
            kind, order_number = flow.key.split(":", 1)
            if kind == "report":
                await self._file_report(order_number)
            else:
                await self._forward_void(order_number)

        async def postpone(flow: resumer.DueFlow, wait_s: float | None) -> None:
            kind, order_number = flow.key.split(":", 1)
            await self._store.run(
                lambda: purchases.postpone_delivery(repo, kind, order_number, wait_s)
            )

        def claim(flow: resumer.DueFlow) -> bool:
            kind, order_number = flow.key.split(":", 1)
            table, due_field = (
                (repo.orders, repo.orders.next_report_at)
                if kind == "report"
                else (repo.voids, repo.voids.next_forward_at)
            )
            return resumer.claim_row(
                table, table.order_number, order_number, due_field, flow.due_at, utc_now()
            )

        return resumer.Resumer(
            "agency resumer",
            due=lambda limit: self._store.run(lambda: due(limit)),
            drive=drive,
            postpone=postpone,
            claim=lambda flow: self._store.run(lambda: claim(flow)),
        )

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
