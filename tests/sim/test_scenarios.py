"""Scenario files: the shipped ones load; bad ones get errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from payflow.sim import load_scenario, parse_scenario, scenario_names

REQUIRED = {"calm-day", "slow-provider-day", "brownout", "lost-responses", "outage-recovery"}


def test_the_five_required_scenarios_ship() -> None:
    assert set(scenario_names()) >= REQUIRED


@pytest.mark.parametrize("name", scenario_names())
def test_every_shipped_scenario_loads_with_a_description(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.description
    assert scenario.profile().name


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(LookupError) as exc:
        load_scenario("tuesday")
    for name in REQUIRED:
        assert name in str(exc.value)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"traffic": {"orderz": 5}}, "traffic.orderz"),
        ({"traffic": {"orders": 0}}, "traffic.orders"),
        ({"traffic": {"orders": "many"}}, "traffic.orders"),
        ({"traffic": {"amount": [10, 5]}}, "traffic.amount"),
        ({"traffic": {"diurnal": [["25:00", 1.0]]}}, "traffic.diurnal[0]"),
        ({"traffic": {"diurnal": [["10:00", -1.0]]}}, "traffic.diurnal"),
        ({"customers": {"click_again": 1.5}}, "customers.click_again"),
        ({"customers": {"patience": 3}}, "customers.patience"),
        ({"provider": {"faults": "sunny"}}, "provider.faults"),
        ({"provider": {"payer": {"approve_probability": 2.0}}}, "approve_probability"),
        ({"provider": {"payer": {"colour": 1}}}, "provider.payer.colour"),
        ({"provider": {"read_latency": 0}}, "provider.read_latency"),
        ({"backend": {"crashes": ["noon"]}}, "backend.crashes[0]"),
        ({"backend": {"settle_s": -1}}, "backend.settle_s"),
        ({"weather": {}}, "weather"),
    ],
)
def test_bad_fields_are_named(data: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_scenario({"name": "x", **data}, "x.toml")
    message = str(exc.value)
    assert message.startswith("x.toml: ")
    assert field in message


def test_unknown_fault_profile_lists_the_profiles() -> None:
    with pytest.raises(ValueError, match="slow-provider-day"):
        parse_scenario({"provider": {"faults": "sunny"}}, "x.toml")


def test_a_scenario_file_by_path(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(
        'name = "tiny"\n[traffic]\norders = 7\n[provider]\nfaults = "brownout"\n',
        encoding="utf-8",
    )
    scenario = load_scenario(str(path))
    assert (scenario.name, scenario.traffic.orders, scenario.faults) == ("tiny", 7, "brownout")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.toml: not valid TOML"):
        load_scenario(str(bad))


def test_diurnal_curve_interpolates_and_is_flat_outside() -> None:
    traffic = parse_scenario(
        {"traffic": {"diurnal": [["06:00", 0.0], ["12:00", 1.0]]}}, "x.toml"
    ).traffic
    assert traffic.rate_weight(0.0) == 0.0
    assert traffic.rate_weight(9 * 3600.0) == pytest.approx(0.5)
    assert traffic.rate_weight(20 * 3600.0) == 1.0
