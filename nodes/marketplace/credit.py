"""The credit enquiry (seed 000 claims 2-4): one standard per history item, plus or minus.

Each item of the purchaser's history at this marketplace (order cancels, order content
changes, non-defective goods sent back, payment delays) is counted over its standard's
window. An item whose count is at most the standard's ``max_count`` scores +1, otherwise
-1; an item without a standard scores 0. The credit is guaranteed when the total reaches
the threshold. The breakdown is kept, so that an operator can explain a refusal.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from suretynet.marketplace.v1 import marketplace_pb2 as pb

from nodes.common.convert import timestamp
from nodes.common.errors import Violations
from storage.marketplace.repository import MarketplaceRepository

ITEMS = ("ORDER_CANCELS", "ORDER_CHANGES", "NON_DEFECTIVE_RETURNS", "PAYMENT_DELAYS")
THRESHOLD_SETTING = "credit_threshold_points"
STANDARDS_UPDATED_SETTING = "credit_standards_updated_at"
MAX_WINDOW_DAYS = 3660
MAX_COUNT = 10_000


@dataclass(frozen=True)
class Standard:
    """At most ``max_count`` occurrences of ``item`` in the last ``window_days`` days."""

    item: str
    max_count: int
    window_days: int


# Used until an operator sets its own (SetCreditStandards): a purchaser with at most one
# item off its standard is guaranteed (3 - 1 = 2 points); two items off are refused.
DEFAULT_STANDARDS = (
    Standard("ORDER_CANCELS", 2, 365),
    Standard("ORDER_CHANGES", 3, 365),
    Standard("NON_DEFECTIVE_RETURNS", 1, 365),
    Standard("PAYMENT_DELAYS", 0, 365),
)
DEFAULT_THRESHOLD_POINTS = 2


@dataclass(frozen=True)
class ItemScore:
    item: str
    observed_count: int
    standard: Standard
    points: int


@dataclass(frozen=True)
class Score:
    items: tuple[ItemScore, ...]
    total_points: int
    threshold_points: int

    @property
    def guaranteed(self) -> bool:
        return self.total_points >= self.threshold_points


def score(counts: Mapping[str, int], standards: Sequence[Standard], threshold_points: int) -> Score:
    """Scores observed counts against the standards (claim 4); pure, for any caller."""
    items = []
    for standard in standards:
        observed = counts.get(standard.item, 0)
        points = 1 if observed <= standard.max_count else -1
        items.append(ItemScore(standard.item, observed, standard, points))
    total = sum(item.points for item in items)
    return Score(tuple(items), total, threshold_points)


def validate_standards(standards: Sequence[Standard], threshold_points: int) -> None:
    """Refuses standards that could not tell purchasers apart.

    At least one standard is required, and the threshold lies between 1 and the number of
    standards: with none, or with a threshold of 0 or below, a purchaser failing as many
    items as it meets (or every one) would still be guaranteed; above the number of
    standards, no purchaser ever could be.
    """
    violations = Violations()
    if not standards:
        violations.add("standards", "at least one credit standard is required")
    seen: set[str] = set()
    for index, standard in enumerate(standards):
        path = f"standards[{index}]"
        if standard.item not in ITEMS:
            violations.add(f"{path}.item", "must be one of the four credit standard items")
        elif standard.item in seen:
            violations.add(f"{path}.item", "has a standard already; at most one per item")
        seen.add(standard.item)
        if not 0 <= standard.max_count <= MAX_COUNT:
            violations.add(f"{path}.max_count", f"must be 0-{MAX_COUNT}")
        if not 1 <= standard.window_days <= MAX_WINDOW_DAYS:
            violations.add(f"{path}.window_days", f"must be 1-{MAX_WINDOW_DAYS}")
    if not 1 <= threshold_points <= max(1, len(standards)):
        violations.add(
            "threshold_points", f"must be between 1 and the number of standards ({len(standards)})"
        )
    violations.raise_if_any()


def current_standards(repo: MarketplaceRepository) -> tuple[list[Standard], int]:
    """The standards in force: the operator's, or the defaults until it set any."""
    threshold = repo.setting(THRESHOLD_SETTING)
    if threshold is None:
        return list(DEFAULT_STANDARDS), DEFAULT_THRESHOLD_POINTS
    table = repo.standards
    rows = table.select().order_by(table.item)
    standards = [Standard(row.item, row.max_count, row.window_days) for row in rows]
    standards.sort(key=lambda standard: ITEMS.index(standard.item))
    return standards, int(threshold)


def set_standards(
    repo: MarketplaceRepository,
    standards: Sequence[Standard],
    threshold_points: int,
    now: datetime.datetime,
) -> None:
    validate_standards(standards, threshold_points)
    repo.standards.delete().execute()
    for standard in standards:
        repo.standards.create(
            item=standard.item, max_count=standard.max_count, window_days=standard.window_days
        )
    repo.put_setting(THRESHOLD_SETTING, str(threshold_points))
    repo.put_setting(STANDARDS_UPDATED_SETTING, now.isoformat())


def standard_set(repo: MarketplaceRepository) -> pb.CreditStandardSet:
    standards, threshold = current_standards(repo)
    updated = repo.setting(STANDARDS_UPDATED_SETTING)
    return pb.CreditStandardSet(
        standards=[standard_to_proto(standard) for standard in standards],
        threshold_points=threshold,
        updated_at=timestamp(datetime.datetime.fromisoformat(updated)) if updated else None,
    )


def count_item(
    repo: MarketplaceRepository, member_id: str, standard: Standard, now: datetime.datetime
) -> int:
    """Occurrences of one item in the member's history within the standard's window.

    Payment delays are the late payments recorded by RecordPayment plus the invoices still
    unpaid past their due date: a purchaser who never pays is not better off than a late one.
    """
    since = now - datetime.timedelta(days=standard.window_days)
    history = repo.history
    count = (
        history.select()
        .where(
            (history.member_id == member_id)
            & (history.item == standard.item)
            & (history.occurred_at >= since)
        )
        .count()
    )
    if standard.item == "PAYMENT_DELAYS":
        invoices = repo.invoices
        count += (
            invoices.select()
            .where(
                (invoices.drawee_member_id == member_id)
                & (invoices.status == "OPEN")
                & (invoices.due_at < now)
                & (invoices.due_at >= since)
            )
            .count()
        )
    return int(count)


def enquire(
    repo: MarketplaceRepository, member_id: str, now: datetime.datetime
) -> pb.CreditEnquiryResult:
    """Runs and records a credit enquiry on ``member_id`` (claims 2-4)."""
    standards, threshold = current_standards(repo)
    counts = {standard.item: count_item(repo, member_id, standard, now) for standard in standards}
    result = score(counts, standards, threshold)
    enquiry = pb.CreditEnquiryResult(
        credit_enquiry_id="CE-" + secrets.token_hex(8),
        member_id=member_id,
        items=[
            pb.CreditEnquiryItemResult(
                item=pb.CreditStandardItem.Value("CREDIT_STANDARD_ITEM_" + item.item),
                observed_count=item.observed_count,
                standard=standard_to_proto(item.standard),
                points=item.points,
            )
            for item in result.items
        ],
        total_points=result.total_points,
        threshold_points=result.threshold_points,
        guaranteed=result.guaranteed,
        enquired_at=timestamp(now),
    )
    repo.enquiries.create(
        credit_enquiry_id=enquiry.credit_enquiry_id,
        member_id=member_id,
        guaranteed=result.guaranteed,
        result=enquiry.SerializeToString(),
        enquired_at=now,
    )
    return enquiry


def breakdown(enquiry: pb.CreditEnquiryResult) -> dict[str, str]:
    """The enquiry as ErrorInfo metadata: one ``item -> "count/max in Nd: +1"`` per item."""
    details = {
        "credit_enquiry_id": enquiry.credit_enquiry_id,
        "total_points": str(enquiry.total_points),
        "threshold_points": str(enquiry.threshold_points),
    }
    for item in enquiry.items:
        name = pb.CreditStandardItem.Name(item.item).removeprefix("CREDIT_STANDARD_ITEM_").lower()
        details[name] = (
            f"{item.observed_count} (at most {item.standard.max_count} in "
            f"{item.standard.window_days} days): {item.points:+d}"
        )
    return details


def standard_to_proto(standard: Standard) -> pb.CreditStandard:
    return pb.CreditStandard(
        item=pb.CreditStandardItem.Value("CREDIT_STANDARD_ITEM_" + standard.item),
        max_count=standard.max_count,
        window_days=standard.window_days,
    )


def record_event(
    repo: MarketplaceRepository,
    member_id: str,
    item: str,
    transaction_id: str,
    detail: str,
    now: datetime.datetime,
) -> None:
    """Adds one event to the member's history; called only by the RPC that caused it."""
    assert item in ITEMS, item
    repo.history.create(
        member_id=member_id,
        item=item,
        transaction_id=transaction_id,
        detail=detail[:500],
        occurred_at=now,
    )
