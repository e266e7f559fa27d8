"""The contract of ../shared/DESIGN.md, written down once for every test that checks it.

Kept in the tests on purpose (not imported from the package): the package must
meet this list, not define it.
"""

from __future__ import annotations

#: Keys every simulation summary (`payflow simulate --json`, `run().summary`,
#: a sweep's rows) carries.
SUMMARY_KEYS = (
    "scenario",
    "strategy",
    "seed",
    "orders",
    "duplicate_charge_rate",
    "silent_charge_rate",
    "orphan_charge_rate",
    "timeouts_per_order",
    "retries_per_order",
    "provider_calls_per_order",
    "feedback_p50_s",
    "feedback_p95_s",
    "feedback_p99_s",
    "refunds",
    "unresolved",
    # DESIGN.md: "`payflow simulate --json` also carries ..." (issue 12, honest numbers)
    "outcome_p50_s",
    "outcome_p95_s",
    "outcome_p99_s",
    "never_told_outcome_rate",
    "shipped_rate",
    "duplicate_hold_rate",
    "told_failed_but_charged_rate",
    "cost_per_order",
)
