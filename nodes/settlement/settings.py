"""The agency's configurable bounds, read from ``[options]`` of its node.toml."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SettlementSettings:
    """The agency's configurable bounds (``[options]`` of its node.toml)."""

    routing_prefix: str
    anonymous_id_validity_s: int
    session_ttl_s: int
    guarantee_refresh_interval_s: int
    guarantee_max_staleness_s: int
    # How often the agency's resumer looks for undelivered reports and voids.
    resume_interval_s: float

    @classmethod
    def from_options(cls, options: dict[str, object]) -> SettlementSettings:
        def bounded(name: str, default: int, low: int, high: int) -> int:
            value = int(str(options.get(name, default)))
            if not low <= value <= high:
                raise ValueError(f"options.{name}: must be between {low} and {high}")
            return value

        return cls(
            routing_prefix=str(options.get("routing_prefix", "")),
            anonymous_id_validity_s=bounded("anonymous_id_validity_s", 86_400, 1, 31 * 86_400),
            session_ttl_s=bounded("session_ttl_s", 3_600, 10, 86_400),
            guarantee_refresh_interval_s=bounded("guarantee_refresh_interval_s", 60, 1, 3_600),
            guarantee_max_staleness_s=bounded("guarantee_max_staleness_s", 600, 2, 86_400),
            resume_interval_s=float(bounded("resume_interval_s", 2, 1, 3_600)),
        )
