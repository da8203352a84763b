"""The marketplace's settings, read from ``[options]`` of its node config."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MarketplaceSettings:
    """Bounds and terms of one marketplace; every one has a default that suits a demo."""

    # The currency this marketplace trades in; partner quotes in another are not taken.
    currency_code: str = "JPY"
    session_ttl: datetime.timedelta = datetime.timedelta(hours=8)
    # How long a credit guarantee attached to a mediated request stays valid.
    guarantee_validity: datetime.timedelta = datetime.timedelta(hours=1)
    # Guaranteed amount above the quoted total, in basis points, for price moves between
    # quote and estimate. 0 guarantees exactly the quoted total.
    guarantee_headroom_basis_points: int = 0
    # How long a supplier's estimate can be accepted (never beyond the guarantee).
    estimate_validity: datetime.timedelta = datetime.timedelta(minutes=30)
    # Payment terms of invoices for purchases supplied from own stock.
    payment_terms_days: int = 30
    # At most this many partners are asked for a quote per request.
    max_partners_quoted: int = 8
    # Resume loop: how often it looks for unanswered partner calls, how many per pass,
    # how long the RPC that recorded a call has before the loop resends it, and when a
    # call is given up (its flow is then undone where it can be).
    resume_interval_s: float = 1.0
    resume_batch: int = 20
    resume_after: datetime.timedelta = datetime.timedelta(seconds=10)
    resume_max_attempts: int = 50
    resume_backoff_max_s: float = 60.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MarketplaceSettings:
        def seconds(key: str, default: datetime.timedelta) -> datetime.timedelta:
            return datetime.timedelta(seconds=float(options.get(key, default.total_seconds())))

        defaults = cls()
        settings = cls(
            currency_code=str(options.get("currency_code", defaults.currency_code)),
            session_ttl=seconds("session_ttl_s", defaults.session_ttl),
            guarantee_validity=seconds("guarantee_validity_s", defaults.guarantee_validity),
            guarantee_headroom_basis_points=int(
                options.get(
                    "guarantee_headroom_basis_points", defaults.guarantee_headroom_basis_points
                )
            ),
            estimate_validity=seconds("estimate_validity_s", defaults.estimate_validity),
            payment_terms_days=int(options.get("payment_terms_days", defaults.payment_terms_days)),
            max_partners_quoted=int(
                options.get("max_partners_quoted", defaults.max_partners_quoted)
            ),
            resume_interval_s=float(options.get("resume_interval_s", defaults.resume_interval_s)),
            resume_batch=int(options.get("resume_batch", defaults.resume_batch)),
            resume_after=seconds("resume_after_s", defaults.resume_after),
            resume_max_attempts=int(
                options.get("resume_max_attempts", defaults.resume_max_attempts)
            ),
            resume_backoff_max_s=float(
                options.get("resume_backoff_max_s", defaults.resume_backoff_max_s)
            ),
        )
        if settings.guarantee_headroom_basis_points < 0 or settings.max_partners_quoted < 1:
            raise ValueError("options: guarantee headroom >= 0 and max_partners_quoted >= 1")
        if settings.resume_batch < 1 or settings.resume_max_attempts < 1:
            raise ValueError("options: resume_batch and resume_max_attempts must be >= 1")
        return settings
