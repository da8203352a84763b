"""The purchaser's requests end to end: local supply, or credit enquiry and mediation.

These flows cross the network, so none of them can hold one database transaction: each
runs as short transactions around recorded partner calls. The purchaser's request_id
derives the transaction ID and every partner call's request_id, so a retry (or the resume
loop after a crash) picks the flow up where it stopped and the partner sees the same IDs.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf.message import Message
from suretynet.marketplace.v1 import marketplace_pb2 as pb

from nodes.common import metrics
from nodes.common.errors import DomainError, ErrorKind, required
from nodes.common.idempotency import request_digest, run_once, stored_response
from nodes.common.identity import entity_uri
from nodes.marketplace import catalog, credit, data_log, orders, outbox, requester
from nodes.marketplace.partners import Partners
from nodes.marketplace.settings import MarketplaceSettings
from nodes.marketplace.views import purchaser_view
from storage.common import statements
from storage.common.database import Store
from storage.common.models import utc_now
from storage.marketplace.models import TransactionRow
from storage.marketplace.repository import MarketplaceRepository

R = TypeVar("R", bound=Message)


def credit_refused(enquiry: pb.CreditEnquiryResult) -> DomainError:
    """The refusal a purchaser gets when its credit is not guaranteed, with the breakdown."""
    return DomainError(
        ErrorKind.FAILED_PRECONDITION,
        "CREDIT_ENQUIRY_FAILED",
        f"the credit enquiry scored {enquiry.total_points} points; "
        f"{enquiry.threshold_points} are needed for a credit guarantee",
        metadata=credit.breakdown(enquiry),
    )


@dataclass(frozen=True)
class _Started:
    """What the first transaction of a flow decided."""

    answer: Message | None = None
    refusal: DomainError | None = None
    call_id: str = ""
    enquiry: pb.CreditEnquiryResult | None = None
    contracts: tuple[Any, ...] = ()


class Mediator:
    """The purchaser-facing flows of one marketplace."""

    def __init__(
        self,
        store: Store,
        repo: MarketplaceRepository,
        partners: Partners,
        settings: MarketplaceSettings,
        self_id: str,
    ) -> None:
        self._store = store
        self._repo = repo
        self._partners = partners
        self._settings = settings
        self._self_id = self_id

    def _scope(self, member_id: str) -> str:
        # Idempotency keys are per member: two purchasers may pick the same request_id.
        return f"member:{member_id}"

    def _stored(self, member_id: str, method: str, request: Message, kind: type[R]) -> R | None:
        return stored_response(
            self._repo.idempotency,
            scope=self._scope(member_id),
            method=method,
            request=request,
            response_type=kind,
        )

    def _once(
        self,
        member_id: str,
        method: str,
        request: Message,
        kind: type[R],
        effect: Callable[[], R],
    ) -> R:
        """The member's answer, stored with the request_id in the running transaction."""
        return run_once(
            self._repo.idempotency,
            scope=self._scope(member_id),
            method=method,
            request=request,
            response_type=kind,
            effect=effect,
        )

    async def _finish(self, member_id: str, method: str, request: Any, kind: type[R]) -> R:
        """Stores and returns the purchaser's view of the transaction after its flow."""
        transaction_id = getattr(request, "transaction_id", "") or orders.derived_id(
            "TX", member_id, request.request_id
        )

        def effect() -> R:
            row = orders.owned(self._repo, member_id, transaction_id)
            return kind(transaction=purchaser_view(row))

        return await self._store.run(lambda: self._once(member_id, method, request, kind, effect))

    async def request_purchase(
        self, member_id: str, method: str, request: pb.RequestPurchaseRequest
    ) -> pb.RequestPurchaseResponse:
        """Claim 1: supply locally, or enquire (claims 2-4) and mediate with a partner."""
        if not request.commodity_id:
            raise required("commodity_id")
        orders.check_quantity(request.quantity)
        kind = pb.RequestPurchaseResponse
        digest = request_digest(request)
        transaction_id = orders.derived_id("TX", member_id, request.request_id)
        call_id = f"{transaction_id}:request"

        def begin() -> _Started:
            stored = self._stored(member_id, method, request, kind)
            if stored is not None:
                return _Started(answer=stored)
            now = utc_now()
            existing = statements.find(self._repo.transactions, transaction_id=transaction_id)
            if existing is not None:
                if existing.request_sha256 != digest:
                    raise DomainError(
                        ErrorKind.INVALID_ARGUMENT,
                        "IDEMPOTENCY_KEY_REUSED",
                        f"request_id {request.request_id!r} opened a different purchase",
                    )
                return _Started(call_id=call_id)
            local = orders.supply_locally(
                self._repo,
                member_id=member_id,
                transaction_id=transaction_id,
                request_sha256=digest,
                commodity_id=request.commodity_id,
                quantity=request.quantity,
                now=now,
            )
            if local is not None:
                return _Started(
                    answer=self._once(
                        member_id,
                        method,
                        request,
                        kind,
                        lambda: kind(transaction=purchaser_view(local)),
                    )
                )
            enquiry = credit.enquire(self._repo, member_id, now)
            data_log.credit_enquiry(
                self._repo,
                enquiry,
                by=entity_uri("marketplace", self._self_id),
                purpose=f"before asking a partner marketplace for {request.commodity_id}, "
                "which is not in stock here",
                reference=transaction_id,
            )
            if not enquiry.guaranteed:
                return _Started(refusal=credit_refused(enquiry))
            contracts = tuple(catalog.outbound_contracts(self._repo, now))
            return _Started(enquiry=enquiry, contracts=contracts)

        started = await self._store.run(begin)
        if started.refusal is not None:
            metrics.flow_outcome("mediation", "refused", started.refusal.reason)
            raise started.refusal
        if started.answer is not None:
            return started.answer  # type: ignore[return-value]
        if not started.call_id:
            assert started.enquiry is not None
            quotes, unreachable = await self._partners.quotes(
                list(started.contracts), request.commodity_id, request.quantity
            )
            best = requester.choose_partner(quotes, self._settings.currency_code)
            if best is None and unreachable:
                # Not a "no": a partner that might supply did not answer. Retryable.
                raise DomainError(
                    ErrorKind.UNAVAILABLE,
                    "PARTNER_UNAVAILABLE",
                    f"no reachable partner can supply {request.commodity_id!r} right now; "
                    f"{len(unreachable)} partner(s) did not answer; retry with the same "
                    "request_id",
                    metadata={"unreachable_partners": ",".join(sorted(unreachable))},
                )
            if best is None:
                metrics.flow_outcome("mediation", "refused", "NO_ELIGIBLE_PARTNER")
                raise DomainError(
                    ErrorKind.FAILED_PRECONDITION,
                    "NO_ELIGIBLE_PARTNER",
                    f"neither this marketplace nor any partner under contract can supply "
                    f"{request.quantity} of {request.commodity_id!r}",
                )
            enquiry = started.enquiry

            def open_mediation() -> None:
                existing = statements.find(self._repo.transactions, transaction_id=transaction_id)
                if existing is None:
                    requester.open_mediation(
                        self._repo,
                        member_id=member_id,
                        transaction_id=transaction_id,
                        request_sha256=digest,
                        commodity_id=request.commodity_id,
                        quantity=request.quantity,
                        enquiry=enquiry,
                        quote=best,
                        self_id=self._self_id,
                        settings=self._settings,
                        call_request_id=call_id,
                        now=utc_now(),
                    )

            await self._store.run(open_mediation)
            metrics.flow_started("mediation")
        await self._partners.complete(call_id)
        return await self._finish(member_id, method, request, kind)

    async def _step(
        self,
        member_id: str,
        method: str,
        request: Any,
        kind: type[R],
        step: str,
        local: Callable[[TransactionRow, datetime.datetime], TransactionRow],
        mediated: Callable[[TransactionRow, str, datetime.datetime], pb.CreditEnquiryResult | None],
    ) -> R:
        """A purchaser's change to a transaction: applied here, or relayed to the partner."""
        if not request.transaction_id:
            raise required("transaction_id")
        request_hash = hashlib.sha256(request.request_id.encode()).hexdigest()[:16]

        def begin() -> _Started:
            stored = self._stored(member_id, method, request, kind)
            if stored is not None:
                return _Started(answer=stored)
            now = utc_now()
            row = orders.owned(self._repo, member_id, request.transaction_id)
            if row.kind == "LOCAL":
                return _Started(
                    answer=self._once(
                        member_id,
                        method,
                        request,
                        kind,
                        lambda: kind(transaction=purchaser_view(local(row, now))),
                    )
                )
            call_id = f"{row.transaction_id}:{step}:{request_hash}"
            calls = self._repo.partner_calls
            recorded = statements.find(calls, request_id=call_id)
            if recorded is None or recorded.status == outbox.REFUSED:
                enquiry = mediated(row, call_id, now)
                if enquiry is not None:
                    return _Started(refusal=credit_refused(enquiry))
            return _Started(call_id=call_id)

        started = await self._store.run(begin)
        if started.refusal is not None:
            raise started.refusal
        if started.answer is not None:
            return started.answer  # type: ignore[return-value]
        await self._partners.complete(started.call_id)
        return await self._finish(member_id, method, request, kind)

    async def reply(
        self, member_id: str, method: str, request: pb.ReplyToEstimateRequest
    ) -> pb.ReplyToEstimateResponse:
        """Claim 5: the purchaser's accept or decline, relayed to the supplying partner."""
        decision = pb.EstimateDecision.Name(request.decision).removeprefix("ESTIMATE_DECISION_")
        if decision not in ("ACCEPT", "DECLINE"):
            raise required("decision")
        if not request.estimate_id:
            raise required("estimate_id")

        def local(row: TransactionRow, now: datetime.datetime) -> TransactionRow:
            orders.require_state(row, ("ESTIMATE_PENDING",), "reply to the estimate of")
            raise AssertionError("a local transaction never has a pending estimate")

        def mediated(
            row: TransactionRow, call_id: str, now: datetime.datetime
        ) -> pb.CreditEnquiryResult | None:
            requester.record_reply(
                self._repo, row, request.estimate_id, decision, call_id, self._settings, now
            )
            return None

        return await self._step(
            member_id, method, request, pb.ReplyToEstimateResponse, "reply", local, mediated
        )

    def _amend(
        self, kind: Any, **fields: Any
    ) -> Callable[[TransactionRow, str, datetime.datetime], pb.CreditEnquiryResult | None]:
        def mediated(
            row: TransactionRow, call_id: str, now: datetime.datetime
        ) -> pb.CreditEnquiryResult | None:
            amendment = pb.AmendMediatedTransactionRequest(request_id=call_id, kind=kind, **fields)
            return requester.record_amendment(
                self._repo, row, amendment, self._settings, self._self_id, now
            )

        return mediated

    async def cancel(
        self, member_id: str, method: str, request: pb.CancelOrderRequest
    ) -> pb.CancelOrderResponse:
        return await self._step(
            member_id,
            method,
            request,
            pb.CancelOrderResponse,
            "cancel",
            lambda row, now: orders.cancel_local(self._repo, row, request.reason, now),
            self._amend(pb.AMENDMENT_KIND_CANCEL, reason=request.reason),
        )

    async def change(
        self, member_id: str, method: str, request: pb.ChangeOrderRequest
    ) -> pb.ChangeOrderResponse:
        orders.check_quantity(request.quantity)
        return await self._step(
            member_id,
            method,
            request,
            pb.ChangeOrderResponse,
            "change",
            lambda row, now: orders.change_local(
                self._repo, row, request.quantity, request.reason, now
            ),
            self._amend(
                pb.AMENDMENT_KIND_CHANGE_QUANTITY, quantity=request.quantity, reason=request.reason
            ),
        )

    async def return_goods(
        self, member_id: str, method: str, request: pb.ReturnGoodsRequest
    ) -> pb.ReturnGoodsResponse:
        return await self._step(
            member_id,
            method,
            request,
            pb.ReturnGoodsResponse,
            "return",
            lambda row, now: orders.return_local(
                self._repo, row, request.defective, request.reason, now
            ),
            self._amend(
                pb.AMENDMENT_KIND_RETURN_GOODS, defective=request.defective, reason=request.reason
            ),
        )
