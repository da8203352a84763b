"""Keyset pages: every row exactly once, in order, in both directions; bad tokens refused."""

from __future__ import annotations

import pytest
from suretynet.approval.v1 import approval_pb2

from nodes.common.convert import encode_page_token
from nodes.common.errors import DomainError
from nodes.common.paging import across_sections, by_key
from storage.approval.models import EntityRow, ProgramSerialRow
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


@pytest.mark.parametrize("size", [1, 2, 3, 4, 10])
def test_pages_across_sections_walk_every_row_once(size: int):
    """Two tables read one after the other: every row once, whatever the page size; an empty
    section in between is skipped; a token naming a section that does not exist is refused."""
    store = Store(open_database("sqlite:///:memory:"))
    serials = bind(store.database, ProgramSerialRow)
    entities = bind(store.database, EntityRow)
    store.create_tables([serials, entities])

    def fill() -> None:
        for number in range(3):
            serials.create(serial=f"SN-{number}", role="retail")
        for number in range(4):
            entities.create(
                entity_id=f"shop-{number}",
                role="retail",
                display_name="Shop",
                address="127.0.0.1:1",
                program_serial=f"SN-{number}",
                registry_serial=number,
            )

    store.transaction(fill)
    sections = [
        (serials.select(), serials.serial),
        (serials.select().where(serials.serial.is_null()), serials.serial),
        (entities.select(), entities.entity_id),
    ]
    seen: list[tuple[int, str]] = []
    token = ""
    for _ in range(20):  # bounded: 7 rows need at most 7 pages

        def page(token: str = token):
            return across_sections(sections, size, token)

        rows, token = store.transaction(page)
        assert len(rows) <= size
        seen += [(index, getattr(row, "serial", None) or row.entity_id) for index, row in rows]
        if not token:
            break
    assert seen == [(0, "SN-0"), (0, "SN-1"), (0, "SN-2")] + [
        (2, f"shop-{number}") for number in range(4)
    ]
    with pytest.raises(DomainError) as refused:
        store.transaction(lambda: across_sections(sections, 2, encode_page_token("9|x")))
    assert refused.value.reason == "PAGE_TOKEN_INVALID"
    store.close()
