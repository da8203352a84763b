"""Keyset pages: every row exactly once, in order, in both directions; bad tokens refused."""

from __future__ import annotations

import pytest
from suretynet.approval.v1 import approval_pb2

from nodes.common.errors import DomainError
from nodes.common.paging import by_key
from storage.approval.models import ProgramSerialRow
from storage.common.database import Store, bind, open_database


@pytest.mark.parametrize("descending", [False, True])
def test_pages_walk_every_row_once_in_order(descending: bool):
    store = Store(open_database("sqlite:///:memory:"))
    table = bind(store.database, ProgramSerialRow)
    store.create_tables([table])
    serials = [f"SN-{number:03d}" for number in range(7)]
    store.transaction(lambda: [table.create(serial=s, role="retail") for s in serials])
    seen: list[str] = []
    token = ""
    for _ in range(10):  # bounded: 7 rows in pages of 3 need 3 pages
        request = approval_pb2.ListProgramSerialsRequest(page_size=3, page_token=token)

        def page(request: approval_pb2.ListProgramSerialsRequest = request):
            return by_key(table.select(), table.serial, request, descending=descending)

        rows, token = store.transaction(page)
        seen += [row.serial for row in rows]
        if not token:
            break
    assert seen == sorted(serials, reverse=descending)
    with pytest.raises(DomainError) as refused:
        store.transaction(
            lambda: by_key(
                table.select(),
                table.serial,
                approval_pb2.ListProgramSerialsRequest(page_token="not-ours"),
            )
        )
    assert refused.value.reason == "PAGE_TOKEN_INVALID"
    store.close()
