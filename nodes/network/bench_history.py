"""A member's past orders for ``suretynet bench``, written into the stopped nodes' databases.

Ten thousand real purchases take minutes on a small machine, longer than the whole bench
may. So, with every node of the network stopped, the rows each past order leaves on each
node are written straight into the node's database through its own storage models, in
bulk: exactly the rows a completed purchase leaves, with their contents made by the
nodes' own builders wherever one exists:

- shop: the order (completed; its completion report and its stored answer) and the sales
  record; the billing search and the verification request come from ``nodes.retail.orders``;
- agency: the order (``purchases.billing_details``, ``search_digest``) and the member's
  credit in use (``members.hold_credit``), the member's
  completion notice (``purchases.completion_notice``, the member's next sequence numbers),
  the two data disclosures (``purchases.record_disclosures``) and the stored answer to the
  shop's billing search (``idempotency.remember``, sealed under the agency's key);
- verification: the transaction report (``purchases.transaction_report``), its audit chain
  entry (``audit.report_state``, chained by ``storage.common.audit_chain``) and the stored
  answer to the agency;
- approval: the transaction record, its audit chain entry (``transactions.record_state``)
  and the stored answer to the shop.

The member's credit check is run once for the whole history (``members.credit_used``)
instead of once per order; the member's running credit in use moves with every order
(``members.hold_credit``), as ``record_order`` moves it. What real purchases do besides (the network calls, the
identity and licence checks, the read-only lookups) leaves no row. The result is
consistent across the four nodes: ``suretynet reconcile`` finds it clean and every audit
chain verifies (tests/e2e/test_bench.py checks both, and that a seeded order leaves as
many rows in every table as a real one). When a purchase starts writing another row or
column, write it here too: that test fails until it is.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import peewee
from suretynet.approval.v1 import approval_pb2
from suretynet.retail.v1 import retail_pb2
from suretynet.settlement.v1 import settlement_pb2
from suretynet.type.v1 import types_pb2
from suretynet.verification.v1 import verification_pb2

from nodes.common import idempotency
from nodes.common.config import NodeConfig, load_config
from nodes.common.convert import timestamp
from nodes.common.identity import EntityIdentity
from nodes.common.node import node_secret_box
from storage.common.audit_chain import GENESIS_HASH, HEAD, canonical_json, entry_hash
from storage.common.database import Store, close_database, open_database
from storage.common.models import utc_now

BATCH_ORDERS = 1_000
# Rows per INSERT statement on PostgreSQL.
PAGE_ROWS = 500
MAX_ORDERS = 1_000_000

SEARCH_METHOD = "/suretynet.settlement.v1.BillingService/SearchBillingAgencyIdentification"
REPORT_METHOD = "/suretynet.verification.v1.VerificationService/SubmitTransactionReport"
VERIFY_METHOD = "/suretynet.approval.v1.TransactionService/VerifyTransaction"


@dataclasses.dataclass(frozen=True)
class HistoryOrders:
    """Past orders to write: ``count`` purchases of one ``item`` at ``shop_id`` under
    ``anonymous_user_id`` (issued to the member by ``agency_id``)."""

    shop_id: str
    agency_id: str
    anonymous_user_id: str
    count: int
    item: str = "tea"
    request_prefix: str = "history"


@dataclasses.dataclass(frozen=True)
class SeedResult:
    """What was written, and the request sizes the nodes' builders produced."""

    orders: int
    elapsed_s: float
    # Serialized size of each kind of inter-node request a purchase sends, in bytes.
    request_bytes: dict[str, int]


class _OpenNode:
    """A stopped node's database, opened as the node opens it (its secrets key included)."""

    def __init__(self, config: NodeConfig, repository: Callable[[peewee.Database], Any]) -> None:
        self.config = config
        self.database = open_database(config.database_url, max_connections=1)
        self.store = Store(self.database, workers=1)
        self.repo = repository(self.database)
        box = node_secret_box(config)
        for table in self.repo.tables:
            if hasattr(table, "secret_box"):
                table.secret_box = box

    def transaction(self, work: Callable[[], Any]) -> Any:
        return self.store.transaction(work)

    def close(self) -> None:
        self.store.close()
        close_database(self.database)


@contextmanager
def _opened(config_path: Path, role: str) -> Iterator[_OpenNode]:
    from storage.approval.repository import ApprovalRepository
    from storage.retail.repository import RetailRepository
    from storage.settlement.repository import SettlementRepository
    from storage.verification.repository import VerificationRepository

    repositories: dict[str, Callable[[peewee.Database], Any]] = {
        "approval": ApprovalRepository,
        "retail": RetailRepository,
        "settlement": SettlementRepository,
        "verification": VerificationRepository,
    }
    config = load_config(config_path)
    if config.role != role:
        raise ValueError(f"{config_path} configures a {config.role} node, not {role}")
    node = _OpenNode(config, repositories[role])
    try:
        yield node
    finally:
        node.close()


class _Chain:
    """Appends to a node's audit chain in bulk, as AuditChainTables.append does one entry."""

    def __init__(self, tables: Any) -> None:
        self.tables = tables
        self.sequence, self.previous = tables.head_state()
        self.entries: list[dict[str, Any]] = []

    def append(self, kind: str, subject: str, state: dict[str, object]) -> None:
        self.sequence += 1
        state_json = canonical_json(state)
        recorded_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
        hashed = entry_hash(self.sequence, kind, subject, state_json, recorded_at, self.previous)
        self.entries.append(
            {
                "sequence": self.sequence,
                "kind": kind,
                "subject": subject,
                "state_json": state_json,
                "recorded_at": recorded_at,
                "previous_hash": self.previous,
                "entry_hash": hashed,
            }
        )
        self.previous = hashed

    def write(self) -> None:
        if not self.entries:
            return
        _insert(self.tables.entries, self.entries)
        head = self.tables.head
        head.insert(name=HEAD, sequence=0, entry_hash=GENESIS_HASH).on_conflict_ignore().execute()
        head.update(sequence=self.sequence, entry_hash=self.previous).where(
            head.name == HEAD
        ).execute()
        self.entries = []


def _collector(table: Any, rows: list[Any]) -> Any:
    """``table`` whose create() collects the row instead of inserting it, and whose lookups
    (``get_or_none``, and ``raw`` under statements.find) find nothing, so that a node
    function that records one row can be used in bulk. Only for rows keyed by this batch's
    new order numbers, which no lookup could find."""

    def create(cls: Any, **fields: Any) -> Any:
        row = table(**fields)
        rows.append(row)
        return row

    def get_or_none(cls: Any, *args: Any, **kwargs: Any) -> None:
        return None

    def raw(cls: Any, *args: Any, **kwargs: Any) -> list[Any]:
        # statements.find's compiled lookups: nothing of this batch is written yet.
        return []

    meta = type(
        "Meta", (), {"database": table._meta.database, "table_name": table._meta.table_name}
    )
    return type(
        table.__name__,
        (table,),
        {
            "create": classmethod(create),
            "get_or_none": classmethod(get_or_none),
            "raw": classmethod(raw),
            "Meta": meta,
            "__module__": table.__module__,
        },
    )


def _insert(table: Any, rows: list[dict[str, Any]]) -> None:
    """One parameterised INSERT for all ``rows`` (dicts of the same fields), each value
    converted by its field as peewee's own insert converts it."""
    if not rows:
        return
    meta = table._meta
    fields = [meta.fields[name] for name in rows[0]]
    columns = ", ".join(f'"{field.column_name}"' for field in fields)
    values = [tuple(field.db_value(row[field.name]) for field in fields) for row in rows]
    cursor = meta.database.cursor()
    if isinstance(meta.database, peewee.PostgresqlDatabase):
        from psycopg2.extras import execute_values  # type: ignore[import-untyped]

        # Many rows per statement: executemany would be one round trip per row.
        statement = f'INSERT INTO "{meta.table_name}" ({columns}) VALUES %s'
        execute_values(cursor, statement, values, page_size=PAGE_ROWS)
        return
    marks = ", ".join([meta.database.param] * len(fields))
    cursor.executemany(f'INSERT INTO "{meta.table_name}" ({columns}) VALUES ({marks})', values)


def _data(rows: list[Any]) -> list[dict[str, Any]]:
    return [dict(row.__data__) for row in rows]


def seed_history(
    configs: dict[str, Path], orders: HistoryOrders, *, trace_id: str = "bench-history"
) -> SeedResult:
    """Writes ``orders`` into the stopped nodes whose node.toml files ``configs`` names
    (entity ID -> path: the shop, the agency, ``institution`` and ``verification``).

    Raises ValueError for a count out of bounds or a config of the wrong role, and the
    nodes' own DomainError for an anonymous ID the agency does not know or a member without
    the credit for the whole history.
    """
    if not 1 <= orders.count <= MAX_ORDERS:
        raise ValueError(f"history orders: must be between 1 and {MAX_ORDERS}")
    started = time.perf_counter()
    sizes: dict[str, int] = {}
    with (
        _opened(configs[orders.shop_id], "retail") as shop,
        _opened(configs[orders.agency_id], "settlement") as agency,
        _opened(configs["verification"], "verification") as verification,
        _opened(configs["institution"], "approval") as approval,
    ):
        context = _context(shop, agency, verification, approval, orders)
        for first in range(0, orders.count, BATCH_ORDERS):
            numbers = range(first, min(first + BATCH_ORDERS, orders.count))
            rows = _Rows(agency, verification, approval)
            for number in numbers:
                _one_order(context, rows, orders, number, trace_id, sizes)
            shop.transaction(functools.partial(rows.write_shop, shop))
            agency.transaction(functools.partial(rows.write_agency, agency))
            verification.transaction(functools.partial(rows.write_verification, verification))
            approval.transaction(functools.partial(rows.write_approval, approval))
    return SeedResult(orders.count, time.perf_counter() - started, sizes)


@dataclasses.dataclass
class _Context:
    """What every past order shares: identities, the route, the price, the member."""

    shop_identity: EntityIdentity
    agency_identity: EntityIdentity
    identification: types_pb2.RetailEntityIdentification
    guarantee: types_pb2.SettlementAgencyIdentificationGuarantee
    display_name: str
    lines: list[types_pb2.OrderLine]
    amount: types_pb2.Money
    member_id: str
    next_sequence: int
    shop_orders: Any
    shop_sales: Any
    agency_orders: Any
    reports: Any
    transactions: Any


def _context(
    shop: _OpenNode,
    agency: _OpenNode,
    verification: _OpenNode,
    approval: _OpenNode,
    orders: HistoryOrders,
) -> _Context:
    from nodes.approval import guarantees
    from nodes.retail import catalog
    from nodes.settlement import anonymous_ids, members

    guarantee = approval.transaction(
        lambda: guarantees.settlement_agency_guarantee(
            guarantees.search_settlement_agency(approval.repo, orders.anonymous_user_id)
        )
    )
    entity = approval.transaction(lambda: approval.repo.entity(orders.shop_id))
    if entity is None:
        raise ValueError(f"{orders.shop_id} is not registered with approval")
    lines, amount = shop.transaction(
        lambda: catalog.price(
            shop.repo, [retail_pb2.OrderItem(catalog_item_id=orders.item, quantity=1)]
        )
    )

    def member_state() -> tuple[str, int]:
        member_id = anonymous_ids.resolve(
            agency.repo, orders.anonymous_user_id, orders.shop_id
        ).member_id
        member = members.get_member(agency.repo, member_id)
        used = members.credit_used(agency.repo, member_id)
        if used + orders.count * amount.amount_minor > member.credit_limit_minor:
            raise ValueError(f"member {member_id}: the credit limit does not cover the history")
        notices = agency.repo.notices
        last = (
            notices.select(peewee.fn.MAX(notices.sequence))
            .where(notices.member_id == member_id)
            .scalar()
        )
        return member_id, int(last or 0) + 1

    member_id, next_sequence = agency.transaction(member_state)
    return _Context(
        shop_identity=EntityIdentity("retail", orders.shop_id),
        agency_identity=EntityIdentity("settlement", orders.agency_id),
        identification=types_pb2.RetailEntityIdentification(
            retail_entity_id=shop.config.entity_id,
            display_name=shop.config.display_name,
            address=shop.config.advertised_address or shop.config.listen_address,
        ),
        guarantee=guarantee,
        display_name=str(entity.display_name),
        lines=lines,
        amount=amount,
        member_id=member_id,
        next_sequence=next_sequence,
        shop_orders=shop.repo.orders,
        shop_sales=shop.repo.sales,
        agency_orders=agency.repo.orders,
        reports=verification.repo.reports,
        transactions=approval.repo.transactions,
    )


class _Rows:
    """One batch's rows for each node, collected before any is written."""

    def __init__(self, agency: _OpenNode, verification: _OpenNode, approval: _OpenNode) -> None:
        self.shop_orders: list[Any] = []
        self.sales: list[Any] = []
        self.agency_orders: list[Any] = []
        self.notices: list[dict[str, Any]] = []
        self.disclosures: list[Any] = []
        self.agency_answers: list[Any] = []
        self.reports: list[Any] = []
        self.verification_answers: list[Any] = []
        self.transactions: list[Any] = []
        self.approval_answers: list[Any] = []
        # The agency's own disclosure and stored-answer code, writing into these lists.
        self.agency_view = _RepositoryView(
            agency.repo,
            data_disclosures=_collector(agency.repo.data_disclosures, self.disclosures),
        )
        self.agency_idempotency = _collector(agency.repo.idempotency, self.agency_answers)
        self.verification_idempotency = _collector(
            verification.repo.idempotency, self.verification_answers
        )
        self.approval_idempotency = _collector(approval.repo.idempotency, self.approval_answers)
        self.verification_chain = _Chain(verification.repo.audit)
        self.approval_chain = _Chain(approval.repo.audit)

    def write_shop(self, shop: _OpenNode) -> None:
        _insert(shop.repo.orders, _data(self.shop_orders))
        _insert(shop.repo.sales, _data(self.sales))

    def write_agency(self, agency: _OpenNode) -> None:
        from nodes.settlement import members

        _insert(agency.repo.orders, _data(self.agency_orders))
        # What record_order does per order, once per member for the batch: the member's
        # running credit in use.
        held: dict[str, int] = {}
        for order in self.agency_orders:
            held[order.member_id] = held.get(order.member_id, 0) + order.amount_minor
        for member_id, amount_minor in held.items():
            members.hold_credit(agency.repo, member_id, amount_minor)
        _insert(agency.repo.notices, self.notices)
        _insert(agency.repo.data_disclosures, _data(self.disclosures))
        _insert(agency.repo.idempotency, _data(self.agency_answers))

    def write_verification(self, verification: _OpenNode) -> None:
        _insert(verification.repo.reports, _data(self.reports))
        _insert(verification.repo.idempotency, _data(self.verification_answers))
        self.verification_chain.write()

    def write_approval(self, approval: _OpenNode) -> None:
        _insert(approval.repo.transactions, _data(self.transactions))
        _insert(approval.repo.idempotency, _data(self.approval_answers))
        self.approval_chain.write()


class _RepositoryView:
    """A repository with some tables replaced (by collectors); the rest as they are."""

    def __init__(self, repo: Any, **tables: Any) -> None:
        self._repo = repo
        self._tables = tables

    def __getattr__(self, name: str) -> Any:
        if name in self._tables:
            return self._tables[name]
        return getattr(self._repo, name)


def _one_order(
    context: _Context,
    rows: _Rows,
    orders: HistoryOrders,
    number: int,
    trace_id: str,
    sizes: dict[str, int],
) -> None:
    from nodes.approval import transactions
    from nodes.retail import orders as shop_orders
    from nodes.settlement import purchases
    from nodes.verification import audit, reports

    now = utc_now()
    request = retail_pb2.PlaceOrderRequest(
        request_id=f"{orders.request_prefix}-{number}",
        anonymous_user_id=orders.anonymous_user_id,
        items=[retail_pb2.OrderItem(catalog_item_id=orders.item, quantity=1)],
        payment_method=types_pb2.PAYMENT_METHOD_SINGLE_PAYMENT,
    )
    guarantee = context.guarantee
    # The shop's order as it stands when the billing search leaves (create_order with its
    # route).
    shop_row = context.shop_orders(
        **{
            **shop_orders.new_order_values(
                shop_orders.NewOrder(request, context.lines, context.amount, trace_id), now
            ),
            **shop_orders.route_values(guarantee),
        }
    )
    order_number = shop_row.order_number
    search_request = shop_orders.billing_search_request(shop_row, context.identification)
    search = search_request.billing_agency_identification_search

    # The agency: purchases.record_order's order and notice, then what it answers.
    details = purchases.billing_details(search, orders.agency_id)
    agency_order = context.agency_orders(
        order_number=order_number,
        member_id=context.member_id,
        retail_entity_id=details.retail_entity_id,
        anonymous_user_id=search.anonymous_user_id,
        amount_minor=search.amount.amount_minor,
        currency_code=search.amount.currency_code,
        billing_details=details.SerializeToString(deterministic=True),
        request_sha256=purchases.search_digest(search),
        completion_notice_id="tcn-" + secrets.token_hex(8),
        retail_entity_display_name=context.display_name,
        trace_id=trace_id,
        created_at=now,
        completed_at=now,
        updated_at=now,
        reported_at=now,
    )
    rows.agency_orders.append(agency_order)
    sequence = context.next_sequence
    context.next_sequence += 1
    notice = purchases.completion_notice(agency_order, sequence=sequence)
    rows.notices.append(
        {
            "notice_id": agency_order.completion_notice_id,
            "member_id": context.member_id,
            "sequence": sequence,
            "kind": "TRANSACTION_COMPLETED",
            "order_number": order_number,
            "amount_minor": agency_order.amount_minor,
            "currency_code": agency_order.currency_code,
            "message": f"Order {order_number} at {context.display_name} approved"[:500],
            "payload": notice.SerializeToString(deterministic=True),
            "created_at": now,
        }
    )
    purchases.record_disclosures(cast(Any, rows.agency_view), agency_order, context.shop_identity)
    completion = purchases.completion_report(agency_order)
    idempotency.remember(
        rows.agency_idempotency,
        scope=context.shop_identity.uri,
        method=SEARCH_METHOD,
        request=search_request,
        response=settlement_pb2.SearchBillingAgencyIdentificationResponse(
            transaction_completion_report=completion
        ),
    )

    # Verification: reports.store_report's row and chain entry, and its answer.
    report = purchases.transaction_report(agency_order)
    report_request = verification_pb2.SubmitTransactionReportRequest(
        request_id=f"report-{order_number}", transaction_report=report
    )
    report_row = context.reports(**reports.report_values(report, trace_id, now))
    rows.reports.append(report_row)
    rows.verification_chain.append(
        "REPORT_RECEIVED", f"{audit.REPORT_TABLE}/{order_number}", audit.report_state(report_row)
    )
    idempotency.remember(
        rows.verification_idempotency,
        scope=context.agency_identity.uri,
        method=REPORT_METHOD,
        request=report_request,
        response=verification_pb2.SubmitTransactionReportResponse(
            transaction_report=report, received_at=timestamp(now)
        ),
    )

    # Approval: transactions.record_transaction's row and chain entry, and its answer.
    verify_request = shop_orders.verification_request(shop_row, orders.shop_id)
    asked = verify_request.transaction_verification_request
    record = context.transactions(
        **transactions.record_values(asked, report.completed_at.ToDatetime(), trace_id, now)
    )
    rows.transactions.append(record)
    rows.approval_chain.append(
        "TRANSACTION_RECORDED",
        f"{transactions.RECORD_TABLE}/{order_number}",
        transactions.record_state(record),
    )
    verification = transactions.verification_to_proto(record)
    idempotency.remember(
        rows.approval_idempotency,
        scope=context.shop_identity.uri,
        method=VERIFY_METHOD,
        request=verify_request,
        response=approval_pb2.VerifyTransactionResponse(
            transaction_verification=verification,
            transaction_record=transactions.record_to_proto(record),
        ),
    )

    # The shop: record_completion_report, then complete (the sales record).
    shop_row.completion_report = completion.SerializeToString(deterministic=True)
    shop_row.transaction_verification_id = verification.transaction_verification_id
    shop_row.status = "COMPLETED"
    shop_row.step = "done"
    shop_row.response = retail_pb2.PlaceOrderResponse(
        order=shop_orders.order_to_proto(shop_row)
    ).SerializeToString(deterministic=True)
    rows.shop_orders.append(shop_row)
    rows.sales.append(
        context.shop_sales(**shop_orders.sale_values(shop_row, completion, verification, now))
    )
    sizes.update(
        place_order=request.ByteSize(),
        billing_search=search_request.ByteSize(),
        transaction_report=report_request.ByteSize(),
        verify_transaction=verify_request.ByteSize(),
    )
