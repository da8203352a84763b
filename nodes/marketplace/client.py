"""A small client for marketplace operators, purchasers' apps, the demo and the tests.

It holds no business rules: it fills in request IDs and metadata and calls the RPCs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from suretynet.marketplace.v1 import marketplace_pb2 as pb
from suretynet.marketplace.v1 import marketplace_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common import tls

TIMEOUT_S = 15.0


def request_id(prefix: str = "rq") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def money(amount_minor: int, currency_code: str = "JPY") -> types_pb2.Money:
    return types_pb2.Money(amount_minor=amount_minor, currency_code=currency_code)


def member_channel(address: str, ca: Path) -> grpc.aio.Channel:
    """Server-authenticated TLS to a marketplace's member port: no client certificate."""
    return grpc.aio.secure_channel(address, tls.client_credentials(ca.read_bytes()))


class Purchaser:
    """A logged-in contract member talking to its own marketplace."""

    def __init__(self, channel: grpc.aio.Channel, trace: Sequence[tuple[str, str]] = ()) -> None:
        self.stub = marketplace_pb2_grpc.PurchaserServiceStub(channel)
        self._trace = list(trace)
        self._token = ""

    def metadata(self) -> list[tuple[str, str]]:
        return [*self._trace, ("authorization", f"Bearer {self._token}")]

    async def login(self, member_id: str, password: str) -> pb.LoginResponse:
        response: pb.LoginResponse = await self.stub.Login(
            pb.LoginRequest(member_id=member_id, password=password),
            metadata=self._trace,
            timeout=TIMEOUT_S,
        )
        self._token = response.session_token
        return response

    async def call(self, method: str, **fields: Any) -> Any:
        """Calls ``method`` with a fresh request_id unless one is given."""
        rpc = getattr(self.stub, method)
        request_type = getattr(pb, f"{method}Request")
        if "request_id" in request_type.DESCRIPTOR.fields_by_name:
            fields.setdefault("request_id", request_id(method[:8].lower()))
        return await rpc(request_type(**fields), metadata=self.metadata(), timeout=TIMEOUT_S)


class Operator:
    """The marketplace operator's console over mutual TLS with an admin certificate."""

    def __init__(self, channel: grpc.aio.Channel, trace: Sequence[tuple[str, str]] = ()) -> None:
        self.stub = marketplace_pb2_grpc.MarketplaceAdminServiceStub(channel)
        self._trace = list(trace)

    async def call(self, method: str, request: Any = None, **fields: Any) -> Any:
        if request is None:
            name = (
                "MarketplaceAdminServiceListInvoicesRequest"
                if method == "ListInvoices"
                else f"{method}Request"
            )
            request_type = getattr(pb, name)
            if "request_id" in request_type.DESCRIPTOR.fields_by_name:
                fields.setdefault("request_id", request_id(method[:8].lower()))
            request = request_type(**fields)
        return await getattr(self.stub, method)(request, metadata=self._trace, timeout=TIMEOUT_S)

    async def commodity(
        self,
        commodity_id: str,
        unit_price_minor: int,
        stock_quantity: int,
        *,
        delivery_days: int = 3,
        currency_code: str = "JPY",
        display_name: str = "",
    ) -> pb.Commodity:
        response = await self.call(
            "UpsertCommodity",
            commodity=pb.Commodity(
                commodity_id=commodity_id,
                display_name=display_name or commodity_id,
                unit_price=money(unit_price_minor, currency_code),
                stock_quantity=stock_quantity,
                delivery_days=delivery_days,
            ),
        )
        return response.commodity

    async def member(
        self, member_id: str, password: str, *, corporation: bool = False
    ) -> pb.ContractMember:
        response = await self.call(
            "EnrollContractMember",
            member=pb.ContractMember(
                member_id=member_id,
                kind=pb.CONTRACT_MEMBER_KIND_CORPORATION
                if corporation
                else pb.CONTRACT_MEMBER_KIND_INDIVIDUAL,
                display_name=f"{member_id} (display name)",
                contact_email=f"{member_id}@example.org",
                postal_address=f"1-2-3 Example, {member_id}",
                contact_telephone="+81312345678",
                corporate_registration_number="1234-56-789012" if corporation else "",
            ),
            password=password,
        )
        return response.member

    async def contract(
        self,
        contract_id: str,
        partner_id: str,
        *,
        mode: Any,
        direction: Any,
        fee_basis_points: int,
        payment_terms_days: int = 30,
        active: bool = True,
    ) -> pb.MediationContract:
        response = await self.call(
            "UpsertMediationContract",
            contract=pb.MediationContract(
                contract_id=contract_id,
                partner_marketplace_id=partner_id,
                fee_basis_points=fee_basis_points,
                settlement_mode=mode,
                direction=direction,
                payment_terms_days=payment_terms_days,
                active=active,
            ),
        )
        return response.contract


async def sign_contract(
    requester: Operator,
    requester_id: str,
    supplier: Operator,
    supplier_id: str,
    contract_id: str,
    *,
    mode: Any,
    fee_basis_points: int,
    payment_terms_days: int = 30,
) -> None:
    """Records one contract at both marketplaces: outbound at the requester, inbound at the other."""
    await requester.contract(
        contract_id,
        supplier_id,
        mode=mode,
        direction=pb.MEDIATION_DIRECTION_OUTBOUND,
        fee_basis_points=fee_basis_points,
        payment_terms_days=payment_terms_days,
    )
    await supplier.contract(
        contract_id,
        requester_id,
        mode=mode,
        direction=pb.MEDIATION_DIRECTION_INBOUND,
        fee_basis_points=fee_basis_points,
        payment_terms_days=payment_terms_days,
    )
