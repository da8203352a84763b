"""docs/CLAIMS.md stays honest: every row names tests that exist, and every element the two
claim pages number is mapped by some row."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
TEST_REFERENCE = re.compile(r"`((?:unit|integration|e2e|netns)/[a-z0-9_]+\.py)::(test_[a-z0-9_]+)`")
ELEMENT = re.compile(r"\b(\d+)\.(\d+)\b")
RANGE = re.compile(r"\b(\d+)\.(\d+)(?:\*\*)?\s*(?:-|to)\s*(?:\*\*)?(\d+)\.(\d+)\b")


def table_rows(section: str) -> list[list[str]]:
    """The cells of every row of every `| element | code | test |` table in ``section``."""
    rows, in_table = [], False
    for line in section.splitlines():
        if line.startswith("| element |"):
            in_table = True
            continue
        if in_table and line.startswith("|---"):
            continue
        if in_table and line.startswith("| "):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
        else:
            in_table = False
    return rows


def elements_in(text: str) -> set[tuple[int, int]]:
    found = {(int(a), int(b)) for a, b in ELEMENT.findall(text)}
    for claim, first, same_claim, last in RANGE.findall(text):
        if claim == same_claim:
            found |= {(int(claim), n) for n in range(int(first), int(last) + 1)}
    return found


def numbered_elements(page: Path) -> set[tuple[int, int]]:
    """Elements a claim page defines (lines that say "as 1.1" only repeat others)."""
    defined: set[tuple[int, int]] = set()
    for line in page.read_text().splitlines():
        if line.startswith("- **") and ": as " not in line:
            head = line.split("**", 3)
            defined |= elements_in("**".join(head[:4]) if len(head) > 3 else line)
    return defined


def sections() -> dict[str, str]:
    text = (DOCS / "CLAIMS.md").read_text()
    marketplace = text.index("## Seed 000")
    return {
        "CLAIMS_NETWORK.md": text[text.index("## Seed 001") : marketplace],
        "CLAIMS_MARKETPLACE.md": text[marketplace:],
    }


def test_every_row_names_a_test_that_exists():
    for page, section in sections().items():
        rows = table_rows(section)
        assert rows, page
        for cells in rows:
            references = TEST_REFERENCE.findall(cells[-1])
            assert references, f"{page}: row {cells[0]!r} names no test"
            for path, name in references:
                source = ROOT / "tests" / path
                assert source.exists(), f"{cells[0]!r}: {path} does not exist"
                assert re.search(rf"^def {name}\(", source.read_text(), re.M), (
                    f"{cells[0]!r}: {path}::{name} does not exist"
                )


def test_every_numbered_element_is_mapped():
    for page, section in sections().items():
        mapped = set().union(*(elements_in(cells[0]) for cells in table_rows(section)))
        missing = numbered_elements(DOCS / page) - mapped
        assert not missing, f"{page}: no row maps {sorted(missing)}"


def test_the_project_never_points_outside_itself_for_its_claims():
    for path in [ROOT / "README.md", *DOCS.glob("*.md")]:
        assert "shared/seeds" not in path.read_text(), path
