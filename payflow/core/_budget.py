"""Retry budgets: a token bucket shared by every call to one provider.

A retry budget bounds *retry amplification*: when most calls fail, retries stop
before they multiply the load on a provider that is already struggling (the
"retry storm" of the exercise's slow day). Two presets follow published designs:

* :meth:`RetryBudget.grpc` -- gRPC retry throttling (gRFC A6): the bucket starts
  full at ``max_tokens``; each failed attempt costs 1 token, each success adds
  ``token_ratio``; a retry is allowed only while more than half the tokens remain.
* :meth:`RetryBudget.aws_standard` -- the AWS SDKs' "standard" retry mode: a quota
  of 500; a retry costs 5 (10 after a timeout); a successful retried call refunds
  its cost, any other success adds 1.

The bucket is plain mutable state with no clock: drivers share one instance per
provider, the simulation one per simulated backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RetryBudget"]


@dataclass(slots=True)
class RetryBudget:
    """A token bucket that says whether one more retry is allowed.

    ``threshold`` is the level the tokens must stay *above* for a retry
    (gRPC: half of ``max_tokens``; AWS: the retry's cost must be affordable).
    """

    max_tokens: float
    retry_cost: float
    timeout_cost: float
    failure_cost: float
    success_reward: float
    refund_retry_cost_on_success: bool
    threshold: float
    strictly_above: bool = False
    tokens: float = field(default=-1.0)
    retries_allowed: int = 0
    retries_refused: int = 0

    def __post_init__(self) -> None:
        if self.max_tokens <= 0:
            raise ValueError(f"max_tokens must be > 0, got {self.max_tokens}")
        if self.tokens < 0:
            self.tokens = self.max_tokens

    @classmethod
    def grpc(cls, max_tokens: float = 10.0, token_ratio: float = 0.1) -> RetryBudget:
        """gRPC retry throttling: ``maxTokens`` and ``tokenRatio`` as in gRFC A6."""
        if not 0 < token_ratio <= max_tokens:
            raise ValueError(f"token_ratio must be in (0, max_tokens], got {token_ratio}")
        return cls(
            max_tokens=max_tokens,
            retry_cost=0.0,
            timeout_cost=0.0,
            failure_cost=1.0,
            success_reward=token_ratio,
            refund_retry_cost_on_success=False,
            threshold=max_tokens / 2,
            strictly_above=True,
        )

    @classmethod
    def aws_standard(cls, quota: float = 500.0) -> RetryBudget:
        """The AWS SDK standard retry quota (500; 5 per retry, 10 after a timeout)."""
        return cls(
            max_tokens=quota,
            retry_cost=5.0,
            timeout_cost=10.0,
            failure_cost=0.0,
            success_reward=1.0,
            refund_retry_cost_on_success=True,
            threshold=0.0,
        )

    def record_failure(self) -> None:
        """A call attempt failed (timeout, 5xx, 429, refused)."""
        self.tokens = max(0.0, self.tokens - self.failure_cost)

    def acquire_retry(self, after_timeout: bool = False) -> float | None:
        """Take the cost of one retry; ``None`` if the budget refuses it.

        Returns the cost taken, to hand back to :meth:`record_success` so a
        successful retried call can be refunded (AWS standard mode).
        """
        cost = self.timeout_cost if after_timeout else self.retry_cost
        left = self.tokens - cost
        allowed = left > self.threshold if self.strictly_above else left >= self.threshold
        if not allowed:
            self.retries_refused += 1
            return None
        self.tokens -= cost
        self.retries_allowed += 1
        return cost

    def record_success(self, retry_cost_paid: float = 0.0) -> None:
        """A call succeeded; ``retry_cost_paid`` is what its retries took."""
        if self.refund_retry_cost_on_success and retry_cost_paid > 0:
            gain = retry_cost_paid
        else:
            gain = self.success_reward
        self.tokens = min(self.max_tokens, self.tokens + gain)
