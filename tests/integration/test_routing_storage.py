"""Routing an anonymous user ID by prefix on both storage engines: whatever a caller sends
as the ID, approval's directory answers SETTLEMENT_AGENCY_NOT_FOUND for an ID no agency
issued, never an internal error (SearchSettlementAgencyIdentification only requires the ID
to be non-empty)."""

from __future__ import annotations

import pytest

from nodes.approval import guarantees
from nodes.common.errors import DomainError
from storage.approval.repository import ApprovalRepository
from storage.common import migrations
from storage.common.database import Store, open_database
from tests.storage_support import registry_entry


@pytest.mark.parametrize(
    ("anonymous_user_id", "routed_to"),
    [("\x00", None), ("41\x000000000000000000", None), ("4111\x0000000000000000", "agency-1")],
)
def test_an_id_with_a_nul_character_gets_a_domain_answer_on_either_engine(
    engine, new_database, anonymous_user_id, routed_to
):
    """PostgreSQL refuses a NUL character in a query parameter (psycopg2 raises ValueError,
    which reaches the caller as an internal error), so the ID's candidate prefixes must not
    reach it as they are: the old lookup compared in Python (startswith), and routed the
    last ID to the agency whose prefix starts it. A refusal (a DomainError) is fine too."""
    store = Store(open_database(new_database("approval")), workers=1)
    repo = ApprovalRepository(store.database)
    try:
        store.transaction(lambda: migrations.migrate(store.database, "approval"))
        store.transaction(
            lambda: repo.entities.insert(
                **registry_entry("agency-1", "settlement", 1, routing_prefix="4111")
            ).execute()
        )

        def answer() -> str:
            try:
                return str(guarantees.search_settlement_agency(repo, anonymous_user_id).entity_id)
            except DomainError as refused:
                # A refusal the caller can act on (NOT_FOUND, or a refused ID) is an answer.
                return f"refused: {refused.reason}"

        outcome = store.transaction(answer)
        assert outcome == routed_to or outcome.startswith("refused: "), outcome
    finally:
        store.close()
