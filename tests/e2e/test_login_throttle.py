"""Password guessing is throttled at every login: agencies (members) and marketplaces."""

from __future__ import annotations

import asyncio

import grpc
from suretynet.marketplace.v1 import marketplace_pb2, marketplace_pb2_grpc
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc

from nodes.common.status import decode_rpc_error
from nodes.network.local import LocalNetwork, restart_node


def member_channel(network: LocalNetwork, entity_id: str) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(network.ca.read_bytes())
    return grpc.aio.secure_channel(network.node(entity_id).member_address, credentials)


async def reasons(login, request_of, attempts: list[str]) -> list[str]:
    found = []
    for password in attempts:
        try:
            await login(request_of(password), timeout=10)
            found.append("OK")
        except grpc.RpcError as error:
            found.append(decode_rpc_error(error).reason)
    return found


def test_five_wrong_passwords_from_one_address_throttle_it_and_a_restart_remembers(
    network: LocalNetwork,
):
    """After five failures from this address the sixth attempt from it, right password or
    not, is LOGIN_THROTTLED; the state is in the agency's database, so a restart keeps it.
    (Other addresses are not locked out: tests/unit/test_credentials.py.)"""

    async def attempts(member: str, passwords: list[str]) -> list[str]:
        async with member_channel(network, "agency-2") as channel:
            login = settlement_pb2_grpc.MemberServiceStub(channel).Login
            return await reasons(
                login,
                lambda password: settlement_pb2.LoginRequest(member_id=member, password=password),
                passwords,
            )

    dave = asyncio.run(
        attempts(
            "dave", ["guess-1", "guess-2", "guess-3", "guess-4", "guess-5", "dave-demo-password"]
        )
    )
    assert dave == ["MEMBER_CREDENTIALS_INVALID"] * 5 + ["LOGIN_THROTTLED"]
    assert asyncio.run(attempts("carol", ["carol-demo-password"])) == ["OK"]
    asyncio.run(restart_node(network, "agency-2"))
    assert asyncio.run(attempts("dave", ["dave-demo-password"])) == ["LOGIN_THROTTLED"]


def test_marketplace_purchasers_are_throttled_too(network: LocalNetwork):
    async def scenario() -> list[str]:
        async with member_channel(network, "market-1") as channel:
            login = marketplace_pb2_grpc.PurchaserServiceStub(channel).Login
            return await reasons(
                login,
                lambda password: marketplace_pb2.LoginRequest(
                    member_id="tanaka-trading", password=password
                ),
                ["no-1", "no-2", "no-3", "no-4", "no-5", "tanaka-trading-pass"],
            )

    assert asyncio.run(scenario()) == ["MEMBER_CREDENTIALS_INVALID"] * 5 + ["LOGIN_THROTTLED"]
