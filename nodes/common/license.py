"""The node's license key over its lifetime: kept, rotated before expiry, watched.

A retail, settlement or marketplace node receives its key at registration (claims 4-5)
and presents it on every call to approval. The keeper:
- rotates it (``EnrollmentService/RotateLicenseKey``) once two thirds of its lifetime have
  passed, stores the new key in the node's database in one transaction, and sends the new
  key from then on; approval honours the old one for its rotation grace (bounded by the
  old key's expiry), so calls in flight while it rotates still succeed;
- watches approval's answers: a key refused as revoked, expired or unknown makes the
  node report NOT_SERVING on health and log an ERROR that says what to do; the next
  accepted call (after a rotation or a re-registration) makes it SERVING again.

A failed rotation is retried with a backoff that doubles up to ``MAX_RETRY_S``, with the
same request ID (derived from the key being rotated), so a lost answer is never a second
key.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc

from nodes.common import logs
from nodes.common.errors import DomainError
from storage.common.models import utc_now

if TYPE_CHECKING:
    from nodes.common.node import NodeRuntime

log = logging.getLogger(__name__)

# Rotate once this share of the key's lifetime has passed.
ROTATE_AT_FRACTION = 2 / 3
# Bounds on how long the keeper sleeps between looks at the key, and on its retry backoff.
MIN_CHECK_S = 0.2
MAX_CHECK_S = 60.0
MIN_RETRY_S = 1.0
MAX_RETRY_S = 300.0

UNUSABLE_REASONS = {
    "LICENSE_KEY_REVOKED": (
        "the institution revoked this node's license key; to come back, get a new program "
        "serial from the institution (suretynet approval issue-serial), write it as "
        "program_serial in node.toml and restart: the node re-registers and gets a new key "
        "(docs/OPERATIONS.md, 'Revoking a node and bringing it back')"
    ),
    "LICENSE_KEY_EXPIRED": (
        "this node's license key expired before it could rotate it (was the node down past "
        "its expiry?); get a new program serial from the institution, write it as "
        "program_serial in node.toml and restart to re-register"
    ),
    "LICENSE_KEY_UNKNOWN": (
        "approval does not know this node's license key (was approval's database "
        "replaced?); get a new program serial and restart to re-register"
    ),
    "LICENSE_KEY_ENTITY_MISMATCH": (
        "the stored license key belongs to another entity: this database was copied from "
        "another node; restore this node's own database"
    ),
    "LICENSE_KEY_MISSING": "this node holds no license key: restart it so that it enrols",
}


class LicenseKeeper:
    """Holds the node's current key and its lifetime; see the module docstring."""

    def __init__(
        self,
        runtime: NodeRuntime,
        table: Any,
        on_usable: Callable[[bool], Awaitable[None]],
    ) -> None:
        self._runtime = runtime
        self._table = table
        self._on_usable = on_usable
        self.key: str | None = None
        self.key_id = ""
        self.issued_at: datetime.datetime | None = None
        self.expires_at: datetime.datetime | None = None
        self.usable = True
        self.rotations = 0
        self._pending: set[asyncio.Task[None]] = set()

    def hold(self, row: Any) -> None:
        """Takes the key a credential row stores (at start, and after every rotation)."""
        self.key = row.license_key
        self.key_id = row.license_key_id
        self.expires_at = row.expires_at
        self.issued_at = row.updated_at

    def rotate_at(self) -> datetime.datetime | None:
        if self.issued_at is None or self.expires_at is None:
            return None
        return self.issued_at + (self.expires_at - self.issued_at) * ROTATE_AT_FRACTION

    def answer(self, reason: str) -> None:
        """Channels report each answer from approval to a call carrying the key."""
        if reason and reason in UNUSABLE_REASONS and self.usable:
            self.usable = False
            logs.event(
                log,
                f"license key unusable: {UNUSABLE_REASONS[reason]}",
                logging.ERROR,
                reason=reason,
                license_key_id=self.key_id,
            )
            self._schedule(self._on_usable(False))
        elif not reason and not self.usable:
            self.usable = True
            logs.event(log, "license key accepted again", license_key_id=self.key_id)
            self._schedule(self._on_usable(True))

    def _schedule(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def rotate(self) -> None:
        """Rotates the key now; the new one is stored before it is used."""
        stub = self._runtime.channels.stub(
            self._runtime.config.approval_address, approval_pb2_grpc.EnrollmentServiceStub
        )
        old_id = self.key_id
        response = await self._runtime.channels.call(
            stub.RotateLicenseKey,
            approval_pb2.RotateLicenseKeyRequest(request_id=f"rotate-{old_id}"),
            peer="approval",
            idempotent=True,
            to_approval=True,
        )
        table = self._table
        entity_id = self._runtime.config.entity_id
        now = utc_now()

        def save() -> Any:
            table.update(
                license_key=response.license_key,
                license_key_id=response.license_key_id,
                expires_at=response.expires_at.ToDatetime(),
                updated_at=now,
            ).where(table.entity_id == entity_id).execute()
            return table.get(table.entity_id == entity_id)

        self.hold(await self._runtime.store.run(save))
        self.rotations += 1
        logs.event(
            log,
            "license key rotated",
            previous_license_key_id=old_id,
            license_key_id=self.key_id,
            expires_at=self.expires_at,
            previous_valid_until=response.previous_license_key_valid_until.ToDatetime(),
        )

    async def rotate_now(self) -> None:
        """An operator's rotation (SIGUSR1): rotate, or log why it could not."""
        try:
            await self.rotate()
        except DomainError as error:
            logs.event(
                log,
                "license key rotation failed",
                logging.ERROR,
                reason=error.reason,
                error=error.message,
            )

    async def run(self) -> None:
        """Rotates the key each time two thirds of its lifetime have passed, until cancelled."""
        retry_s = MIN_RETRY_S
        while True:
            due = self.rotate_at()
            if due is None:
                return
            wait_s = (due - utc_now()).total_seconds()
            if wait_s > 0:
                await asyncio.sleep(min(max(wait_s, MIN_CHECK_S), MAX_CHECK_S))
                continue
            try:
                await self.rotate()
                retry_s = MIN_RETRY_S
            except DomainError as error:
                logs.event(
                    log,
                    "license key rotation failed; retrying",
                    logging.WARNING if error.reason == "PEER_UNAVAILABLE" else logging.ERROR,
                    reason=error.reason,
                    error=error.message,
                    retry_in_s=retry_s,
                    expires_at=self.expires_at,
                )
                await asyncio.sleep(retry_s)
                retry_s = min(MAX_RETRY_S, retry_s * 2)
