"""Fault profiles written in the numbers people have: percentiles per endpoint kind."""

from __future__ import annotations

import math
import random
import statistics
import tomllib

import pytest

from payflow.provider.faults import (
    FaultProfile,
    Faults,
    _lognormal,
    endpoint_kind,
    load_profile,
    parse_profile,
    sigma_from_percentiles,
)

PROFILE = """
name = "percentiles"
[defaults]
after_commit_share = 0.25
throttle_rate = 0.0
[defaults.read]
p50_s = 0.2
p95_s = 0.6

[[keyframes]]
at = "00:00"
p50_s = 1.5
p95_s = 4.0
error_rate = 0.02

[[keyframes]]
at = "12:00"
p50_s = 1.5
p95_s = 4.0
p99_s = 6.0
throttle_rate = 0.10
error_rate = 0.02
no_response_rate = 0.03
[keyframes.capture]
p50_s = 0.8
p95_s = 2.0
"""


def _old_draw(f: Faults, rng: random.Random) -> tuple[float, float, str]:
    """The draw as it was before the percentile form (the reference stream)."""
    u_t, u_r, u_e, u_a, u_l = (rng.random() for _ in range(5))
    before = _lognormal(rng.random(), f.latency_before_s, f.latency_sigma, f.latency_max_s)
    after = _lognormal(rng.random(), f.latency_after_s, f.latency_sigma, f.latency_max_s)
    action = "ok"
    if u_t < f.p_throttle:
        action = "throttle"
    elif u_r < f.p_reset_before_commit:
        action = "reset"
    elif u_e < f.p_server_error:
        action = "error_after" if u_a < f.server_error_after_commit else "error_before"
    elif u_l < f.p_lost_after_commit:
        action = "lost"
    return before, after, action


@pytest.mark.parametrize("name", ["slow-provider-day", "brownout", "outage-recovery"])
def test_old_form_profiles_draw_exactly_as_before(name: str) -> None:
    profile = load_profile(name)
    for t in (0.0, 11 * 3600.0, 13.5 * 3600.0):
        f = profile.at(t)
        assert not f.kinds
        a, b, c = random.Random(7), random.Random(7), random.Random(7)
        for kind in ("create", "read", None, "refund") * 50:
            before, after, action, _ = f.draw_parts(a, kind)
            assert (before, after, action) == _old_draw(f, b)
            assert f.draw(c).latency_before_s == before


def test_sigma_is_pinned_by_p50_and_p95() -> None:
    sigma = sigma_from_percentiles(1.5, 4.0)
    assert 1.5 * math.exp(sigma * 1.6448536) == pytest.approx(4.0)
    # with a consistent p99 the fit is the same sigma
    p99 = 1.5 * math.exp(sigma * 2.3263479)
    assert sigma_from_percentiles(1.5, 4.0, p99) == pytest.approx(sigma)
    with pytest.raises(ValueError, match=r"x\.p95_s: must be >= p50_s"):
        sigma_from_percentiles(2.0, 1.0, where="x")


def test_percentile_profile_reproduces_its_percentiles_and_rates() -> None:
    profile = parse_profile(tomllib.loads(PROFILE), "p.toml")
    noon = profile.at(12 * 3600.0)
    assert {k for k, _ in noon.kinds} == {"read", "capture"}
    rng = random.Random(3)
    n = 40_000
    draws = [noon.draw_parts(rng, "create") for _ in range(n)]
    ok = sorted(b + a for b, a, action, _ in draws if action == "ok")
    assert statistics.median(ok) == pytest.approx(1.5, rel=0.04)
    assert ok[int(0.95 * len(ok))] == pytest.approx(4.0, rel=0.15)
    share = [a / (b + a) for b, a, action, _ in draws[:100] if action == "ok"]
    assert all(s == pytest.approx(0.25) for s in share)
    rates = {
        x: sum(1 for *_, act, _m in [(d[0], d[1], d[2], d[3]) for d in draws] if act == x) / n
        for x in ("throttle", "lost")
    }
    errors = sum(1 for d in draws if d[2].startswith("error")) / n
    assert rates["throttle"] == pytest.approx(0.10, abs=0.006)
    assert errors == pytest.approx(0.02, abs=0.003)
    assert rates["lost"] == pytest.approx(0.03, abs=0.004)
    reads = sorted(
        b + a
        for b, a, action, _ in (noon.draw_parts(rng, "read") for _ in range(5000))
        if action == "ok"
    )
    assert statistics.median(reads) == pytest.approx(0.2, rel=0.06)
    caps = sorted(
        b + a
        for b, a, action, _ in (noon.draw_parts(rng, "capture") for _ in range(5000))
        if action == "ok"
    )
    assert statistics.median(caps) == pytest.approx(0.8, rel=0.06)
    # the capture table inherits the keyframe's rates
    assert noon.for_kind("capture").p_throttle == pytest.approx(0.10)


def test_mixing_forms_is_an_error_naming_it() -> None:
    text = PROFILE.replace(
        'at = "12:00"\np50_s = 1.5\np95_s = 4.0\np99_s = 6.0',
        'at = "12:00"\nlatency_before_s = 1.0',
    )
    with pytest.raises(ValueError, match="mix the percentile form"):
        parse_profile(tomllib.loads(text), "p.toml")
    with pytest.raises(ValueError, match=r"keyframes\[0\]\.p95_s: required"):
        parse_profile({"keyframes": [{"at": "00:00", "p50_s": 1.0}]}, "p.toml")
    with pytest.raises(ValueError, match=r"keyframes\[0\]\.bogus: unknown field"):
        parse_profile({"keyframes": [{"at": "00:00", "bogus": 1.0}]}, "p.toml")


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/v10/payments", "create"),
        ("GET", "/v10/payments/abc", "read"),
        ("GET", "/v10/payments?orderId=o-1", "read"),
        ("POST", "/v10/payments/abc/capture", "capture"),
        ("POST", "/v10/payments/abc/cancel", "cancel"),
        ("POST", "/v10/refunds", "refund"),
        ("GET", "/v10/refunds/r1", "read"),
        ("DELETE", "/v10/payments/abc", None),
        ("GET", "/health", None),
    ],
)
def test_endpoint_kind(method: str, path: str, kind: str | None) -> None:
    assert endpoint_kind(method, path) == kind


def test_per_kind_latency_in_the_sim() -> None:
    from payflow.sim import Scenario, run

    profile = parse_profile(tomllib.loads(PROFILE), "p.toml")
    scenario = Scenario("mine", faults=profile, read_latency=0.3)
    result = run(scenario, "recommended", seed=1, orders=60)
    assert result.summary["orders"] == 60
    assert isinstance(FaultProfile.constant(), FaultProfile)
