"""Demo members and catalogs for a local network, so that purchases work right after `up`.

Seeded through the agencies' and shops' own admin RPCs (EnrollMember, UpsertCatalogItem),
with fixed request IDs: starting the same data directory again changes nothing.
The passwords are for local demo networks only.
"""

from __future__ import annotations

from dataclasses import dataclass

from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc

from nodes.common import telemetry
from nodes.common.convert import money
from nodes.network.local import LocalNetwork

CURRENCY = "USD"
SEED_TRACE_ID = "seed-demo-data"


@dataclass(frozen=True)
class DemoMember:
    """A member a demo agency enrols: credentials and a credit limit in minor units."""

    member_id: str
    display_name: str
    password: str
    credit_limit_minor: int


# Two members per agency: one with room to buy, one with a small limit for refusals.
DEMO_MEMBERS: dict[str, tuple[DemoMember, ...]] = {
    "agency-1": (
        DemoMember("alice", "Alice Anderson", "alice-demo-password", 200_000),
        DemoMember("bob", "Bob Brown", "bob-demo-password", 3_000),
    ),
    "agency-2": (
        DemoMember("carol", "Carol Clark", "carol-demo-password", 200_000),
        DemoMember("dave", "Dave Davis", "dave-demo-password", 3_000),
    ),
}

DEMO_CATALOG: tuple[retail_pb2.CatalogItem, ...] = (
    retail_pb2.CatalogItem(
        catalog_item_id="tea",
        display_name="Green tea, 100 g",
        description="Loose-leaf sencha",
        unit_price=money(1_200, CURRENCY),
        available=True,
    ),
    retail_pb2.CatalogItem(
        catalog_item_id="mug",
        display_name="Ceramic mug",
        description="350 ml, dishwasher safe",
        unit_price=money(2_500, CURRENCY),
        available=True,
    ),
    retail_pb2.CatalogItem(
        catalog_item_id="kettle",
        display_name="Electric kettle",
        description="1.2 l, auto shut-off",
        unit_price=money(7_900, CURRENCY),
        available=True,
    ),
)


def members_of(entity_id: str) -> tuple[DemoMember, ...]:
    """The demo members of an agency; agencies not listed get two generic ones."""
    return DEMO_MEMBERS.get(
        entity_id,
        (
            DemoMember(
                f"{entity_id}-member", f"Member of {entity_id}", "member-demo-password", 200_000
            ),
        ),
    )


async def seed(network: LocalNetwork) -> None:
    """Enrols demo members at every agency and stocks every shop's catalog."""
    metadata = [(telemetry.TRACEPARENT_METADATA_KEY, telemetry.traceparent_for(SEED_TRACE_ID))]
    for node in network.nodes:
        if node.spec.role == "settlement":
            async with network.admin_channel(node.address) as channel:
                admin = settlement_pb2_grpc.SettlementAdminServiceStub(channel)
                for member in members_of(node.spec.entity_id):
                    await admin.EnrollMember(
                        settlement_pb2.EnrollMemberRequest(
                            request_id=f"demo-member-{member.member_id}",
                            member_id=member.member_id,
                            display_name=member.display_name,
                            password=member.password,
                            credit_limit=money(member.credit_limit_minor, CURRENCY),
                        ),
                        metadata=metadata,
                        timeout=10,
                    )
        elif node.spec.role == "retail":
            await stock_catalog(network, node.address)


async def stock_catalog(network: LocalNetwork, address: str) -> None:
    """Puts the demo catalog on sale at the shop served at ``address``."""
    metadata = [(telemetry.TRACEPARENT_METADATA_KEY, telemetry.traceparent_for(SEED_TRACE_ID))]
    async with network.admin_channel(address) as channel:
        shop = retail_pb2_grpc.RetailAdminServiceStub(channel)
        for item in DEMO_CATALOG:
            await shop.UpsertCatalogItem(
                retail_pb2.UpsertCatalogItemRequest(
                    request_id=f"demo-item-{item.catalog_item_id}", catalog_item=item
                ),
                metadata=metadata,
                timeout=10,
            )
