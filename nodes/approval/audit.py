"""Approval's audit chain over the admin console: ExportAuditChain and ListAuditedRecords.

The chain itself is appended by ``nodes/approval/transactions.py``; the checkpoint
publisher and the export live in ``nodes/common/audit_chain.py``.
"""

from __future__ import annotations

import grpc
from suretynet.approval.v1 import approval_pb2

from nodes.approval import transactions
from nodes.approval.servicer import ApprovalAdminServicer, VerifiedKeyCache
from nodes.common.audit_chain import CheckpointPublisher, serve_audited_records, serve_export
from storage.approval.repository import ApprovalRepository
from storage.common.database import Store


class AuditedApprovalAdminServicer(ApprovalAdminServicer):
    """The institution's operator console, with the audit chain's read RPCs."""

    def __init__(
        self,
        store: Store,
        repo: ApprovalRepository,
        verified_keys: VerifiedKeyCache,
        entity_id: str,
        publisher: CheckpointPublisher,
    ) -> None:
        super().__init__(store, repo, verified_keys, entity_id)
        self._audit_store = store
        self._audit_repo = repo
        self._publisher = publisher

    async def ExportAuditChain(
        self, request: approval_pb2.ExportAuditChainRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb2.ExportAuditChainResponse:
        response: approval_pb2.ExportAuditChainResponse = await serve_export(
            self._audit_store,
            self._audit_repo.audit,
            self._publisher,
            request,
            approval_pb2.ExportAuditChainResponse,
        )
        return response

    async def ListAuditedRecords(
        self, request: approval_pb2.ListAuditedRecordsRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb2.ListAuditedRecordsResponse:
        response: approval_pb2.ListAuditedRecordsResponse = await serve_audited_records(
            self._audit_store,
            transactions.audited_tables(self._audit_repo),
            request,
            approval_pb2.ListAuditedRecordsResponse,
        )
        return response
