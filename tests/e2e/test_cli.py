"""The operator's `suretynet` commands, run as an operator runs them (subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography import x509

from nodes.network.local import LocalNetwork
from tests.support import suretynet


def test_pki_init_and_issue_write_a_ca_and_a_node_certificate(tmp_path: Path):
    pki = tmp_path / "pki"
    assert suretynet("pki", "init", "--dir", str(pki)).returncode == 0
    again = suretynet("pki", "init", "--dir", str(pki))
    assert again.returncode == 2 and "already exists" in again.stderr
    issued = suretynet(
        "pki",
        "issue",
        "--dir",
        str(pki),
        "--role",
        "retail",
        "--entity",
        "shop-9",
        "--ip",
        "10.0.0.9",
    )
    assert issued.returncode == 0, issued.stderr
    cert = x509.load_pem_x509_certificate((pki / "retail-shop-9.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["suretynet://retail/shop-9"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.9"]
    assert (pki / "retail-shop-9.key").stat().st_mode & 0o077 == 0, "the key is owner-only"
    bad = suretynet(
        "pki",
        "issue",
        "--dir",
        str(pki),
        "--role",
        "retail",
        "--entity",
        "Shop_9",
        "--ip",
        "10.0.0.9",
    )
    assert bad.returncode == 2 and "entity ID" in bad.stderr


def test_the_institution_manages_serials_keys_and_status_from_the_cli(network: LocalNetwork):
    manifest = str(network.data_dir / "network.json")
    serial = suretynet(
        "approval",
        "--network",
        manifest,
        "issue-serial",
        "--role",
        "retail",
        "--note",
        "shop nine",
        "--request-id",
        "cli-serial-9",
    )
    assert serial.returncode == 0, serial.stderr
    issued = json.loads(serial.stdout)["program_serial"]
    assert issued["role"] == "ROLE_RETAIL" and issued["serial"].startswith("SN-RET-")

    keys = json.loads(
        suretynet("approval", "--network", manifest, "list-keys", "--entity", "shop-2").stdout
    )["license_keys"]
    assert [key["state"] for key in keys] == ["LICENSE_KEY_STATE_ACTIVE"]
    assert all("license_key" not in key for key in keys), "secrets never leave approval"

    suspended = suretynet(
        "approval",
        "--network",
        manifest,
        "set-status",
        "--entity",
        "shop-2",
        "--status",
        "suspended",
        "--reason",
        "audit",
        "--request-id",
        "cli-s",
    )
    assert json.loads(suspended.stdout)["entity"]["status"] == "ENTITY_STATUS_SUSPENDED"
    revoked = suretynet(
        "approval",
        "--network",
        manifest,
        "revoke-key",
        "--key-id",
        keys[0]["license_key_id"],
        "--reason",
        "audit",
        "--request-id",
        "cli-r",
    )
    assert json.loads(revoked.stdout)["license_key"]["state"] == "LICENSE_KEY_STATE_REVOKED"


def test_a_refused_admin_call_prints_its_code_and_reason(network: LocalNetwork):
    manifest = str(network.data_dir / "network.json")
    refused = suretynet(
        "approval",
        "--network",
        manifest,
        "revoke-key",
        "--key-id",
        "nope",
        "--reason",
        "x",
        "--request-id",
        "cli-nope",
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("suretynet: NOT_FOUND LICENSE_KEY_UNKNOWN:")


def test_a_member_buys_and_cancels_and_operators_follow_it_from_the_cli(network: LocalNetwork):
    """Steps 1-11 and claim 2 through `suretynet member`, checked with the operators' CLIs."""
    manifest = str(network.data_dir / "network.json")

    def run(*args: str) -> dict:
        result = suretynet(*args)
        assert result.returncode == 0, f"{args}: {result.stderr}"
        return json.loads(result.stdout[result.stdout.index("{") : result.stdout.rindex("}") + 1])

    member = ("member", "--network", manifest)
    logged_in = run(
        *member,
        "login",
        "--agency",
        "agency-1",
        "--member-id",
        "alice",
        "--password",
        "alice-demo-password",
    )
    assert logged_in["member_id"] == "alice"
    anonymous = run(*member, "anonymous-id", "--shop", "shop-1")["anonymous_user_id"]["value"]
    assert anonymous.startswith("4111")
    order = run(
        *member,
        "buy",
        "--shop",
        "shop-1",
        "--anonymous-id",
        anonymous,
        "--item",
        "tea=2",
        "--item",
        "mug",
    )
    assert order["status"] == "ORDER_STATUS_COMPLETED"
    assert order["amount"] == {"amount_minor": "4900", "currency_code": "USD"}
    number = order["order_number"]
    assert (
        run(
            *member,
            "order",
            "--shop",
            "shop-1",
            "--order-number",
            number,
            "--anonymous-id",
            anonymous,
        )["status"]
        == "ORDER_STATUS_COMPLETED"
    )

    agency = ("settlement", "--network", manifest, "--agency", "agency-1")
    billed = run(*agency, "run-billing", "--request-id", "cli-billing-1")
    assert number in billed["billed_order_numbers"]
    assert run(*agency, "get-order", "--order-number", number)["order"]["billing_state"] == (
        "BILLING_STATE_BILLED"
    )

    cancelled = run(
        *member,
        "cancel",
        "--shop",
        "shop-1",
        "--order-number",
        number,
        "--anonymous-id",
        anonymous,
        "--reason",
        "changed my mind",
        "--request-id",
        "cli-cancel-1",
    )
    assert cancelled["order"]["status"] == "ORDER_STATUS_CANCELLED"
    # Billed already, so the agency credits it back (claim 2's decision).
    assert cancelled["cancel_process_result"]["decision"] == "CANCEL_DECISION_CREDITED_BACK"
    assert cancelled["cancel_process_result"]["amount"]["amount_minor"] == "4900"
    shop = ("shop", "--network", manifest, "--shop", "shop-1")
    record = run(*shop, "sales-record", "--order-number", number)
    assert "cancelled_at" in json.dumps(record)
