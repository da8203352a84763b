"""Idempotency by ``request_id``: the same request twice has one effect and one answer.

Stored answers are sealed under the node's key (nodes/common/secrets.py), because some
carry secrets (a license key) that a replay must deliver again.

The key is checked and stored inside the caller's transaction (``Store.run``), together with
the effect, so a crash can never leave an effect without its key or a key without its effect.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar

import peewee
from google.protobuf.message import Message

from nodes.common.calls import call_info
from nodes.common.errors import DomainError, ErrorKind, FieldViolation, invalid, required
from storage.common import statements
from storage.common.database import Store
from storage.common.models import IdempotencyRecord

R = TypeVar("R", bound=Message)

MAX_REQUEST_ID_LENGTH = 128


def check_request_id(request_id: str) -> None:
    """Refuses a missing or oversized ``request_id`` (INVALID_ARGUMENT on field request_id)."""
    if not request_id:
        raise required("request_id")
    if len(request_id) > MAX_REQUEST_ID_LENGTH or not request_id.isprintable():
        raise invalid("request_id", f"must be 1-{MAX_REQUEST_ID_LENGTH} printable characters")


def request_digest(request: Message) -> str:
    """The SHA-256 that tells two requests with the same ``request_id`` apart."""
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


def _row_context(scope: str, method: str, request_id: str) -> str:
    # Binds a sealed answer to its row: copied into another row, it does not open.
    return f"{scope}\n{method}\n{request_id}"


def _seal(records: type[IdempotencyRecord], blob: bytes, context: str) -> bytes:
    box = records.secret_box
    return blob if box is None else bytes(box.seal(blob, context))


def _open(records: type[IdempotencyRecord], blob: bytes, context: str) -> bytes:
    box = records.secret_box
    return blob if box is None else bytes(box.open(blob, context))


def stored_response(
    records: type[IdempotencyRecord],
    *,
    scope: str,
    method: str,
    request: Message,
    response_type: type[R],
) -> R | None:
    """The first answer to this ``(scope, method, request_id)``, or None if it never ran.

    For flows that call peers between checking the key and storing the answer (they cannot
    hold one transaction across a network call). Refuses a reused key like ``run_once``.
    """
    request_id = getattr(request, "request_id")  # noqa: B009 - every mutating request has it
    check_request_id(request_id)
    existing = statements.find(records, scope=scope, method=method, request_id=request_id)
    if existing is None:
        return None
    if existing.request_sha256 != request_digest(request):
        raise DomainError(
            ErrorKind.INVALID_ARGUMENT,
            "IDEMPOTENCY_KEY_REUSED",
            f"request_id {request_id!r} was already used for a different {method} request",
            violations=[FieldViolation("request_id", "was already used for a different request")],
            metadata={"request_id": request_id},
        )
    context = _row_context(scope, method, request_id)
    return response_type.FromString(_open(records, bytes(existing.response), context))


def remember(
    records: type[IdempotencyRecord],
    *,
    scope: str,
    method: str,
    request: Message,
    response: R,
) -> R:
    """Stores ``response`` as the answer to ``request``; inside the effect's transaction.

    A concurrent duplicate that stored first wins; this one is told to retry (ABORTED),
    and the retry returns the stored answer. The refusal ends the whole transaction, effect
    included, so no savepoint is kept around the insert (it cost two statements a request).
    """
    request_id = getattr(request, "request_id")  # noqa: B009 - every mutating request has it
    try:
        records.create(
            scope=scope,
            method=method,
            request_id=request_id,
            request_sha256=request_digest(request),
            response=_seal(
                records,
                response.SerializeToString(deterministic=True),
                _row_context(scope, method, request_id),
            ),
        )
    except peewee.IntegrityError as error:
        raise DomainError(
            ErrorKind.ABORTED,
            "REQUEST_IN_PROGRESS",
            f"request_id {request_id!r} is being processed concurrently; retry",
        ) from error
    return response


def run_once(
    records: type[IdempotencyRecord],
    *,
    scope: str,
    method: str,
    request: Message,
    response_type: type[R],
    effect: Callable[[], R],
) -> R:
    """Runs ``effect`` unless this ``(scope, method, request_id)`` already ran.

    ``scope`` is the caller's identity, so two callers choosing the same ID never collide.
    Must be called inside a transaction. A replay with a different request body is refused
    with IDEMPOTENCY_KEY_REUSED; a concurrent duplicate loses the unique-index race and is
    told to retry (ABORTED), which then returns the stored answer.
    """
    stored = stored_response(
        records, scope=scope, method=method, request=request, response_type=response_type
    )
    if stored is not None:
        return stored
    return remember(records, scope=scope, method=method, request=request, response=effect())


async def serve_once(
    store: Store,
    records: type[IdempotencyRecord],
    request: Message,
    response_type: type[R],
    effect: Callable[[], R],
    *,
    scope: str | None = None,
) -> R:
    """``run_once`` for the RPC being served, in one transaction.

    Scoped to the calling certificate's entity, or to ``scope`` (required for members).
    """
    info = call_info()
    key_scope = scope or info.scope
    return await store.run(
        lambda: run_once(
            records,
            scope=key_scope,
            method=info.method,
            request=request,
            response_type=response_type,
            effect=effect,
        )
    )


async def served_answer(
    store: Store,
    records: type[IdempotencyRecord],
    request: Message,
    response_type: type[R],
    *,
    scope: str | None = None,
) -> R | None:
    """``stored_response`` for the RPC being served (its caller's scope unless ``scope``)."""
    return await store.run(lambda: stored_served(records, request, response_type, scope=scope))


def stored_served(
    records: type[IdempotencyRecord],
    request: Message,
    response_type: type[R],
    *,
    scope: str | None = None,
) -> R | None:
    """``served_answer`` inside a transaction the caller runs, so that a flow reads the
    stored answer and what its next step needs in one database trip."""
    info = call_info()
    return stored_response(
        records,
        scope=scope or info.scope,
        method=info.method,
        request=request,
        response_type=response_type,
    )


def remember_served(
    records: type[IdempotencyRecord], request: Message, response: R, *, scope: str | None = None
) -> R:
    """``remember`` for the RPC being served; call it inside the effect's transaction."""
    info = call_info()
    return remember(
        records, scope=scope or info.scope, method=info.method, request=request, response=response
    )
