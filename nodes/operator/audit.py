"""``suretynet audit verify``: checks approval's and verification's audit chains.

Reads both chains and their audited records over the admin RPCs (ExportAuditChain,
ListAuditedRecords) with the operator certificate of ``network.json``, then:

1. re-hashes every entry and checks it links to the one before, with sequences 1, 2, ...
   (an edited, deleted or reordered entry breaks this at the first bad one);
2. checks every signed checkpoint against the node's public key, and that the chain still
   holds the entry each checkpoint signed (entries deleted from the end);
3. replays each record's entries and compares the result with the row its table holds (a
   row edited, deleted or inserted directly in the table);
4. cross-checks the two: every transaction record matches an approved transaction report
   (parties, amount, currency), and every cancellation approval recorded matches a cancel
   process notice at verification (order, decision, amount).

Findings are listed in chain order per node, so the first one printed for a node is the
first bad record. Exit status 0 when there are none, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.type.v1 import types_pb2
from suretynet.verification.v1 import verification_pb2, verification_pb2_grpc

from nodes.common import tls
from nodes.common.audit_chain import checkpoint_message
from nodes.common.channels import secure_channel
from nodes.network.descriptor import find_role, load_network, role_address
from storage.common.audit_chain import GENESIS_HASH, entry_hash

TIMEOUT_S = 30.0
PAGE_SIZE = 500


@dataclass(frozen=True)
class Finding:
    """One problem: on which node, at which entry (0: none), about which record, what."""

    node: str
    sequence: int
    subject: str
    problem: str

    def line(self) -> str:
        where = f"entry {self.sequence}" if self.sequence else "table"
        subject = f" {self.subject}" if self.subject else ""
        return f"{self.node}: {where}{subject}: {self.problem}"


@dataclass
class ChainExport:
    """Everything one node exported: entries, checkpoints, key, head, current records."""

    node: str
    entity_id: str
    entries: list[types_pb2.AuditChainEntry] = field(default_factory=list)
    checkpoints: list[types_pb2.AuditCheckpoint] = field(default_factory=list)
    public_key: str = ""
    head_sequence: int = 0
    head_hash: str = GENESIS_HASH
    records: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class AuditReport:
    """The outcome of one verification run."""

    exports: list[ChainExport]
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings

    def lines(self) -> list[str]:
        out = []
        for export in self.exports:
            out.append(
                f"{export.node} ({export.entity_id}): {len(export.entries)} entries, "
                f"{len(export.checkpoints)} signed checkpoints, {len(export.records)} records"
            )
        if self.ok:
            out.append("OK: both chains are intact, signed, match their tables and each other")
        else:
            out.append(f"TAMPERED: {len(self.findings)} finding(s); the first per node comes first")
            out += [finding.line() for finding in self.findings]
        return out


def check_chain(export: ChainExport) -> list[Finding]:
    """Steps 1-2: links, hashes, sequences, checkpoints, head. Stops linking at the first
    break (everything after it is unverifiable, not separately wrong)."""
    findings: list[Finding] = []
    previous, expected = GENESIS_HASH, 1
    hashes: dict[int, str] = {}
    for entry in export.entries:
        problem = ""
        if entry.sequence != expected:
            problem = (
                f"expected entry {expected} here, found entry {entry.sequence}: "
                "entries were deleted or reordered"
            )
        elif entry.previous_hash != previous:
            problem = "does not link to the entry before it: an entry was replaced or reordered"
        elif (
            entry_hash(
                entry.sequence,
                entry.kind,
                entry.subject,
                entry.state_json,
                entry.recorded_at,
                entry.previous_hash,
            )
            != entry.entry_hash
        ):
            problem = "its contents do not match its hash: the entry was edited"
        if problem:
            findings.append(Finding(export.node, entry.sequence, entry.subject, problem))
            break
        hashes[entry.sequence] = entry.entry_hash
        previous, expected = entry.entry_hash, expected + 1
    last = export.entries[-1] if export.entries else None
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(export.public_key))
    for checkpoint in export.checkpoints:
        message = checkpoint_message(
            export.entity_id, checkpoint.sequence, checkpoint.entry_hash, checkpoint.signed_at
        )
        try:
            key.verify(bytes.fromhex(checkpoint.signature), message)
        except (InvalidSignature, ValueError):
            findings.append(
                Finding(export.node, checkpoint.sequence, "", "checkpoint signature is invalid")
            )
            continue
        if last is None or checkpoint.sequence > last.sequence:
            findings.append(
                Finding(
                    export.node,
                    checkpoint.sequence,
                    "",
                    f"a signed checkpoint covers entry {checkpoint.sequence} but the chain ends "
                    f"at {last.sequence if last else 0}: entries were deleted",
                )
            )
        elif checkpoint.sequence in hashes and hashes[checkpoint.sequence] != checkpoint.entry_hash:
            findings.append(
                Finding(
                    export.node,
                    checkpoint.sequence,
                    "",
                    "differs from the signed checkpoint: the chain was rewritten",
                )
            )
    if last is not None and (export.head_sequence, export.head_hash) != (
        last.sequence,
        last.entry_hash,
    ):
        findings.append(
            Finding(
                export.node,
                last.sequence,
                "",
                f"the chain head says entry {export.head_sequence}; the chain ends at "
                f"{last.sequence}: entries were deleted or the head was edited",
            )
        )
    return findings


def replay(entries: list[types_pb2.AuditChainEntry]) -> dict[str, tuple[int, dict[str, Any]]]:
    """Each subject's state from its entries in order, with its last entry's sequence."""
    states: dict[str, tuple[int, dict[str, Any]]] = {}
    for entry in entries:
        _, state = states.get(entry.subject, (0, {}))
        states[entry.subject] = (entry.sequence, {**state, **json.loads(entry.state_json)})
    return states


def check_records(export: ChainExport) -> list[Finding]:
    """Step 3: the tables hold exactly what the chain says."""
    findings = []
    expected = replay(export.entries)
    for subject, (sequence, state) in expected.items():
        current = export.records.get(subject)
        if current is None:
            findings.append(
                Finding(export.node, sequence, subject, "the row was deleted from its table")
            )
        elif current != state:
            changed = sorted(
                name for name in set(state) | set(current) if state.get(name) != current.get(name)
            )
            findings.append(
                Finding(
                    export.node,
                    sequence,
                    subject,
                    f"the row was edited in its table: {', '.join(changed)} differ from the chain",
                )
            )
    for subject in sorted(set(export.records) - set(expected)):
        findings.append(
            Finding(export.node, 0, subject, "the row is in its table but not in the chain")
        )
    return findings


def cross_check(approval: ChainExport, verification: ChainExport) -> list[Finding]:
    """Step 4: approval's transaction records against verification's reports and notices."""
    findings = []
    reports = replay(verification.entries)
    for subject, (sequence, record) in replay(approval.entries).items():
        if not subject.startswith("transaction_record/"):
            continue
        order = record["order_number"]
        _, report = reports.get(f"transaction_report/{order}", (0, None))
        if report is None:
            findings.append(
                Finding(approval.node, sequence, subject, "verification holds no report for it")
            )
            continue
        fields = ("retail_entity_id", "settlement_agency_id", "amount_minor", "currency_code")
        differing = [name for name in fields if record[name] != report[name]]
        if report["result"] != "APPROVED":
            differing.append("result")
        if differing:
            findings.append(
                Finding(
                    approval.node,
                    sequence,
                    subject,
                    f"disagrees with verification's report in {', '.join(differing)}",
                )
            )
        if record.get("cancel_request_id"):
            _, process = reports.get(
                f"cancel_process_notice/{record['cancel_request_id']}", (0, None)
            )
            if process is None or (
                process["order_number"],
                process["decision"],
                process["amount_minor"],
            ) != (order, record["cancel_decision"], record["cancelled_amount_minor"]):
                findings.append(
                    Finding(
                        approval.node,
                        sequence,
                        subject,
                        "its cancellation is not the cancel process notice verification holds",
                    )
                )
    return findings


def verify(approval: ChainExport, verification: ChainExport) -> AuditReport:
    findings: list[Finding] = []
    for export in (approval, verification):
        findings += sorted(
            check_chain(export) + check_records(export),
            key=lambda f: (f.sequence == 0, f.sequence, f.subject),
        )
    findings += cross_check(approval, verification)
    return AuditReport([approval, verification], findings)


async def _export(
    node: str,
    entity_id: str,
    export_call: Callable[[Any], Awaitable[Any]],
    export_request: Callable[[str], Any],
    records_call: Callable[[Any], Awaitable[Any]],
    records_request: Callable[[str], Any],
) -> ChainExport:
    export = ChainExport(node, entity_id)
    token = ""
    while True:
        page = await export_call(export_request(token))
        export.entries += page.entries
        export.checkpoints += page.checkpoints
        export.public_key = page.signing_public_key
        export.head_sequence, export.head_hash = page.head_sequence, page.head_hash
        token = page.next_page_token
        if not token:
            break
    while True:
        page = await records_call(records_request(token))
        for record in page.records:
            export.records[record.subject] = json.loads(record.state_json)
        token = page.next_page_token
        if not token:
            break
    return export


def load_manifest(manifest_path: Path) -> tuple[dict[str, Any], grpc.ChannelCredentials]:
    """``network.json`` (checked by ``load_network``) and the operator credentials it names."""
    manifest = load_network(manifest_path)
    credentials = tls.client_credentials(
        Path(manifest["ca"]).read_bytes(),
        Path(manifest["admin"]["cert"]).read_bytes(),
        Path(manifest["admin"]["key"]).read_bytes(),
    )
    return manifest, credentials


async def read_network(
    manifest: dict[str, Any], credentials: grpc.ChannelCredentials
) -> tuple[ChainExport, ChainExport]:
    """Both nodes' exports, read over their admin RPCs."""

    approval_node = find_role(manifest, "approval")
    verification_node = find_role(manifest, "verification")
    # Through whichever replica of each is up (an entity may run as several processes).
    async with secure_channel(role_address(manifest, "approval"), credentials) as channel:
        stub = approval_pb2_grpc.ApprovalAdminServiceStub(channel)
        approval = await _export(
            "approval",
            approval_node["entity_id"],
            lambda request: stub.ExportAuditChain(request, timeout=TIMEOUT_S),
            lambda token: approval_pb2.ExportAuditChainRequest(
                page_size=PAGE_SIZE, page_token=token
            ),
            lambda request: stub.ListAuditedRecords(request, timeout=TIMEOUT_S),
            lambda token: approval_pb2.ListAuditedRecordsRequest(
                page_size=PAGE_SIZE, page_token=token
            ),
        )
    async with secure_channel(role_address(manifest, "verification"), credentials) as channel:
        admin = verification_pb2_grpc.VerificationAdminServiceStub(channel)
        verification = await _export(
            "verification",
            verification_node["entity_id"],
            lambda request: admin.ExportAuditChain(request, timeout=TIMEOUT_S),
            lambda token: verification_pb2.ExportAuditChainRequest(
                page_size=PAGE_SIZE, page_token=token
            ),
            lambda request: admin.ListAuditedRecords(request, timeout=TIMEOUT_S),
            lambda token: verification_pb2.ListAuditedRecordsRequest(
                page_size=PAGE_SIZE, page_token=token
            ),
        )
    return approval, verification


def verify_network(manifest_path: Path) -> AuditReport:
    """Reads and checks the network that ``network.json`` describes."""
    manifest, credentials = load_manifest(manifest_path)
    approval, verification = asyncio.run(read_network(manifest, credentials))
    return verify(approval, verification)


def add_parser(commands: Any) -> None:
    """``suretynet audit verify --network N/network.json``."""
    audit = commands.add_parser("audit", help="check the institution's tamper-evident records")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    check = audit_commands.add_parser(
        "verify", help="check approval's and verification's audit chains and cross-check them"
    )
    check.add_argument("--network", required=True, help="path to network.json")
    check.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    report = verify_network(Path(args.network))
    print("\n".join(report.lines()))
    return 0 if report.ok else 1
