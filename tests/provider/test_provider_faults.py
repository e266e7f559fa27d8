"""Fault profiles: interpolation over the day, draws, loading and bad files."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from payflow.provider.faults import (
    DAY_S,
    FaultProfile,
    Faults,
    load_profile,
    parse_profile,
    profile_names,
)

H = 3600.0


def two_point() -> FaultProfile:
    return FaultProfile(
        "t",
        [
            (6 * H, Faults(latency_before_s=1.0, capacity=10, poll_delay_ms=1000)),
            (18 * H, Faults(latency_before_s=13.0, capacity=20, poll_delay_ms=3000)),
        ],
    )


@pytest.mark.parametrize(
    ("t", "latency", "capacity", "poll"),
    [
        (6 * H, 1.0, 10, 1000),
        (12 * H, 7.0, 15, 2000),
        (18 * H, 13.0, 20, 3000),
        (0.0, 7.0, 15, 2000),  # wraps across midnight: halfway from 18:00 to 06:00
        (DAY_S + 12 * H, 7.0, 15, 2000),  # the next day repeats
        (9 * H, 4.0, 12, 1500),
    ],
)
def test_interpolation(t: float, latency: float, capacity: int, poll: int) -> None:
    f = two_point().at(t)
    assert f.latency_before_s == pytest.approx(latency)
    assert f.capacity == capacity
    assert f.poll_delay_ms == poll
    assert isinstance(f.capacity, int) and isinstance(f.poll_delay_ms, int)


def test_constant_profile() -> None:
    f = Faults(p_server_error=0.5)
    assert FaultProfile.constant(f).at(12345.0) is f


def test_draw_actions_follow_probabilities() -> None:
    rng = random.Random(0)
    f = Faults(
        p_throttle=0.1, p_reset_before_commit=0.1, p_server_error=0.2, p_lost_after_commit=0.1
    )
    counts = Counter(f.draw(rng).action for _ in range(20_000))
    assert counts["throttle"] == pytest.approx(2000, rel=0.15)
    assert counts["error_before"] + counts["error_after"] == pytest.approx(
        0.9 * 0.2 * 18_000, rel=0.15
    )
    assert counts["lost"] > 0 and counts["reset"] > 0 and counts["ok"] > 0


def test_draw_is_deterministic_and_stream_aligned() -> None:
    a, b = random.Random(5), random.Random(5)
    calm, stormy = Faults(), Faults(p_throttle=1.0, latency_before_s=0.0)
    for _ in range(100):
        calm.draw(a)
        stormy.draw(b)
    assert a.random() == b.random()  # same number of draws whatever the faults


def test_latency_draws() -> None:
    rng = random.Random(1)
    f = Faults(latency_before_s=2.0, latency_after_s=0.0, latency_sigma=0.5, latency_max_s=10.0)
    draws = [f.draw_latency(rng) for _ in range(2000)]
    befores = sorted(d[0] for d in draws)
    assert befores[1000] == pytest.approx(2.0, rel=0.1)  # the median
    assert max(befores) <= 10.0
    assert all(d[1] == 0.0 for d in draws)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"p_server_error": 1.5}, "p_server_error"),
        ({"latency_before_s": -1.0}, "latency_before_s"),
        ({"capacity": 0}, "capacity"),
        ({"latency_sigma": float("nan")}, "latency_sigma"),
    ],
)
def test_faults_validate(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Faults(**kwargs)  # type: ignore[arg-type]


def test_shipped_profiles() -> None:
    names = profile_names()
    assert {"calm", "slow-provider-day", "brownout", "lost-responses", "outage-recovery"} <= set(
        names
    )
    for name in names:
        profile = load_profile(name)
        assert profile.name == name
        assert profile.description
        for hour in range(24):
            profile.at(hour * H)


def test_slow_provider_day_climbs_to_tens_of_seconds_for_hours() -> None:
    p = load_profile("slow-provider-day")

    def total(t: float) -> float:
        f = p.at(t)
        return f.latency_before_s + f.latency_after_s

    assert total(8 * H) == pytest.approx(1.0, abs=0.3)
    slow_hours = [h for h in range(24) if total(h * H) >= 10.0]
    assert len(slow_hours) >= 3
    assert max(total(h * H) for h in range(24)) >= 30.0


def test_brownout_has_5xx_and_429_and_outage_fails_everything() -> None:
    b = load_profile("brownout").at(12 * H)
    assert b.p_server_error > 0 and b.p_throttle > 0 and b.retry_after_s > 0
    assert load_profile("outage-recovery").at(12 * H + 600).p_server_error == 1.0
    assert load_profile("lost-responses").at(12 * H).p_lost_after_commit > 0


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(LookupError, match="calm") as info:
        load_profile("no-such-day")
    assert "no-such-day" in str(info.value)


def test_load_from_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('[[keyframes]]\nat = "00:00"\np_throttle = 0.5\n')
    profile = load_profile(str(path))
    assert profile.name == "mine"
    assert profile.at(0).p_throttle == 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keyframes = 3", "keyframes"),
        ('[[keyframes]]\nat = "00:00"\nlatency = 1.0', "keyframes[0].latency"),
        ('[[keyframes]]\nat = "00:00"\ncapacity = 1.5', "keyframes[0].capacity"),
        ('[[keyframes]]\nat = "00:00"\np_throttle = 2.0', "keyframes[0].p_throttle"),
        ('[[keyframes]]\nat = "00:00"\np_throttle = "high"', "keyframes[0].p_throttle"),
        ("[[keyframes]]\np_throttle = 0.1", "keyframes[0].at"),
        ('[[keyframes]]\nat = "25:00"', "keyframes[0].at"),
        ('[[keyframes]]\nat = "noon"', "keyframes[0].at"),
        ('[defaults]\ncapacity = 0\n[[keyframes]]\nat = "00:00"', "defaults.capacity"),
        ('colour = "red"\n[[keyframes]]\nat = "00:00"', "colour"),
        ('[[keyframes]]\nat = "01:00"\n[[keyframes]]\nat = 3600', "same time"),
        ("this is = = not toml", "not valid TOML"),
    ],
)
def test_bad_files_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"bad\.toml") as info:
        load_profile(str(path))
    assert message in str(info.value)


def test_parse_profile_from_mapping() -> None:
    p = parse_profile({"name": "x", "keyframes": [{"at": 0, "capacity": 3}]})
    assert p.at(100).capacity == 3
