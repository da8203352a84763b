"""The operator commands added for running a network for years, run as an operator runs
them (subprocesses) against `up`'s network: catalog, verification and marketplace look-ups,
serials, key rotation, the network descriptor, and the request ID `member buy` used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nodes.network.local import LocalNetwork
from tests.support import suretynet


def ok(*args: str) -> Any:
    result = suretynet(*args)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result


def messages(stdout: str) -> list[dict[str, Any]]:
    """The JSON objects a command printed, one after another."""
    decoder, found, index = json.JSONDecoder(), [], 0
    while index < len(stdout):
        if stdout[index] == "{":
            value, index = decoder.raw_decode(stdout, index)
            found.append(value)
        else:
            index += 1
    return found


def test_a_shop_operator_manages_the_catalog(network: LocalNetwork):
    manifest = str(network.data_dir / "network.json")
    shop = ("shop", "--network", manifest, "--shop", "shop-1")
    ok(
        *shop,
        "upsert-item",
        "--item-id",
        "teapot",
        "--name",
        "Cast-iron teapot",
        "--price-minor",
        "4500",
        "--request-id",
        "cli-teapot",
    )
    items = {item["catalog_item_id"]: item for item in messages(ok(*shop, "catalog").stdout)}
    assert items["teapot"]["unit_price"] == {"amount_minor": "4500", "currency_code": "USD"}
    assert items["teapot"]["available"] is True
    ok(
        *shop,
        "upsert-item",
        "--item-id",
        "teapot",
        "--name",
        "Cast-iron teapot",
        "--price-minor",
        "4500",
        "--unavailable",
        "--request-id",
        "cli-teapot-off",
    )
    items = {item["catalog_item_id"]: item for item in messages(ok(*shop, "catalog").stdout)}
    assert items["teapot"].get("available", False) is False
    bad = suretynet(*shop, "upsert-item", "--item-id", "x", "--name", "X", "--price-minor", "-1")
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr


def test_a_member_buy_says_its_request_id_and_a_retry_with_it_is_the_same_order(
    network: LocalNetwork,
):
    manifest = str(network.data_dir / "network.json")
    member = ("member", "--network", manifest)
    ok(
        *member,
        "login",
        "--agency",
        "agency-1",
        "--member-id",
        "alice",
        "--password",
        "alice-demo-password",
    )
    anonymous = messages(ok(*member, "anonymous-id", "--shop", "shop-2").stdout)[0]
    value = anonymous["anonymous_user_id"]["value"]
    first = ok(*member, "buy", "--shop", "shop-2", "--anonymous-id", value, "--item", "tea")
    assert first.stderr.startswith("request_id: ")
    request_id = first.stderr.split()[1]
    again = ok(
        *member,
        "buy",
        "--shop",
        "shop-2",
        "--anonymous-id",
        value,
        "--item",
        "tea",
        "--request-id",
        request_id,
    )
    assert messages(again.stdout)[0]["order_number"] == messages(first.stdout)[0]["order_number"]

    verification = ("verification", "--network", manifest)
    number = messages(first.stdout)[0]["order_number"]
    report = messages(ok(*verification, "transaction-report", "--order-number", number).stdout)
    assert report[0]["transaction_report"]["order_number"] == number
    missing = suretynet(*verification, "cancellation-record", "--order-number", "NOPE")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_a_marketplace_operator_reads_its_books_and_stocks_commodities(network: LocalNetwork):
    manifest = str(network.data_dir / "network.json")
    market = ("marketplace", "--network", manifest, "--market", "market-2")
    stocked = messages(
        ok(
            *market,
            "upsert-commodity",
            "--commodity-id",
            "matcha-30g",
            "--name",
            "Matcha, 30 g",
            "--price-minor",
            "1800",
            "--stock",
            "5",
            "--request-id",
            "cli-matcha",
        ).stdout
    )
    assert stocked[0]["commodity"]["commodity_id"] == "matcha-30g"
    for command in ("invoices", "payouts", "reconcile"):
        ok(*market, command)
    unknown = suretynet(*market, "transaction", "--transaction-id", "NOPE")
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr


def test_the_institution_lists_serials_and_a_node_rotates_its_key_on_demand(
    network: LocalNetwork,
):
    manifest = str(network.data_dir / "network.json")
    serials = messages(
        ok("approval", "--network", manifest, "list-serials", "--role", "retail").stdout
    )
    listed = serials[0]["program_serials"]
    assert {serial.get("registered_entity_id") for serial in listed} >= {"shop-1", "shop-2"}
    before = messages(
        ok("approval", "--network", manifest, "list-keys", "--entity", "agency-2").stdout
    )
    rotated = ok("node", "rotate-key", "agency-2", "--network", manifest)
    new_key = rotated.stdout.split()[-1]
    after = messages(
        ok("approval", "--network", manifest, "list-keys", "--entity", "agency-2").stdout
    )
    states = {key["license_key_id"]: key["state"] for key in after[0]["license_keys"]}
    assert states[new_key] == "LICENSE_KEY_STATE_ACTIVE"
    assert len(states) == len(before[0]["license_keys"]) + 1
    verification = suretynet("node", "rotate-key", "verification", "--network", manifest)
    assert verification.returncode == 2 and "holds no license key" in verification.stderr


def test_an_operator_writes_a_network_descriptor_the_clis_read(
    network: LocalNetwork, tmp_path: Path
):
    descriptor = tmp_path / "network.json"
    approval = network.node("institution")
    ok(
        "network",
        "add-node",
        "--network",
        str(descriptor),
        "--role",
        "approval",
        "--entity",
        "institution",
        "--address",
        approval.address,
        "--ca",
        str(network.ca),
        "--admin-cert",
        str(network.admin_cert),
        "--admin-key",
        str(network.admin_key),
    )
    entities = messages(ok("approval", "--network", str(descriptor), "list-entities").stdout)
    assert any(entity["entity_id"] == "shop-1" for entity in entities[0]["entities"])
    twice = suretynet(
        "network",
        "add-node",
        "--network",
        str(descriptor),
        "--role",
        "approval",
        "--entity",
        "institution",
        "--address",
        approval.address,
    )
    assert twice.returncode == 2 and "--replace" in twice.stderr
    bad = suretynet(
        "network",
        "add-node",
        "--network",
        str(descriptor),
        "--role",
        "retail",
        "--entity",
        "shop-9",
        "--address",
        "nowhere",
    )
    assert bad.returncode == 2 and "is not HOST:PORT" in bad.stderr
    missing = suretynet(
        "network",
        "add-node",
        "--network",
        str(tmp_path / "new.json"),
        "--role",
        "retail",
        "--entity",
        "shop-9",
        "--address",
        "10.0.0.9:7443",
    )
    assert missing.returncode == 2 and "--ca, --admin-cert and --admin-key" in missing.stderr
