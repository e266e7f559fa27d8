"""Scenarios: a day of a shop's traffic, its customers and its provider, as data.

A scenario is a TOML file in ``data/scenarios/`` (shipped as the package
``payflow.data``)::

    name = "slow-provider-day"
    description = "one line for --list"

    [traffic]
    orders = 2000                  # orders in the day (exactly this many arrive)
    amount = [5000, 150000]        # minor units, drawn uniformly (integers)
    currency = "DKK"
    diurnal = [["00:00", 0.1], ["12:00", 1.0], ["24:00", 0.1]]   # relative rate

    [customers]
    patience_median_s = 30.0       # lognormal patience before "nothing happens"
    click_again = 0.5              # ... then clicks submit again (unhappy customer 3)
    reload = 0.2                   # ... or reloads the page (re-POSTs the form)

    [provider]
    faults = "slow-provider-day"   # a profile in data/faults/
    read_latency = 0.3             # GETs take this share of the profile's latency
    queue_limit = 2000             # more waiting than this: 503 at once (load shedding)
    [provider.payer]               # payflow.provider.ledger.PayerModel
    decide_after_s = [1.0, 6.0]

    [backend]
    crashes = ["12:20"]            # backend restarts (process interrupts)

Every field has a default; unknown fields are errors naming the field and the
file, and so are bad values.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from payflow._data import load_toml, shipped_names
from payflow.provider.faults import DAY_S, FaultProfile, load_profile
from payflow.provider.ledger import DEFAULT_RESERVATION_EXPIRY_S, PayerModel

__all__ = [
    "Backend",
    "Costs",
    "Customers",
    "Scenario",
    "Traffic",
    "load_scenario",
    "parse_scenario",
    "parse_time_of_day",
    "scenario_names",
]


def parse_time_of_day(value: Any, where: str) -> float:
    """Seconds since midnight from ``"HH:MM"``, ``"HH:MM:SS"`` or a number (``24:00`` allowed)."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: must be 'HH:MM' or seconds since midnight, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        parts = value.split(":")
        try:
            if len(parts) not in (2, 3):
                raise ValueError
            numbers = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"{where}: must be 'HH:MM' or 'HH:MM:SS', got {value!r}") from None
        h, m, s = (*numbers, 0)[:3]
        if not (0 <= m < 60 and 0 <= s < 60):
            raise ValueError(f"{where}: {value!r} is not a time of day")
        seconds = float(h * 3600 + m * 60 + s)
    else:
        raise ValueError(f"{where}: must be 'HH:MM' or seconds since midnight, got {value!r}")
    if not 0 <= seconds <= DAY_S:
        raise ValueError(f"{where}: {value!r} is not within one day")
    return seconds


@dataclass(frozen=True, slots=True)
class Traffic:
    """How many orders arrive, when, and for how much.

    ``orders_per_day`` is the load in real terms: the shop's first clicks in one
    day, all of which reach the provider (whose capacity they share). ``orders``
    is only the sample: how many orders a run tracks and reports. A run
    simulates whole days of ``orders_per_day`` orders -- as many independent
    days as the sample needs -- and tracks ``orders`` of them drawn at random,
    so rates do not depend on the sample size. ``orders_per_day`` defaults to
    ``orders`` (``day_orders`` gives the value in force).

    ``diurnal`` is a piecewise-linear curve of relative arrival rate over the
    time of day, as ``(seconds_since_midnight, weight)`` pairs; arrivals are
    drawn from it by thinning (rejection against its peak).
    """

    orders: int = 2000
    amount: tuple[int, int] = (5_000, 150_000)
    currency: str = "DKK"
    diurnal: tuple[tuple[float, float], ...] = (
        (0.0, 0.1),
        (7 * 3600.0, 0.2),
        (10 * 3600.0, 1.0),
        (13 * 3600.0, 1.2),
        (16 * 3600.0, 0.9),
        (20 * 3600.0, 1.3),
        (23 * 3600.0, 0.4),
        (DAY_S, 0.1),
    )
    orders_per_day: int | None = None

    @property
    def day_orders(self) -> int:
        """The day's real load: ``orders_per_day``, or ``orders`` when it is not set."""
        return self.orders if self.orders_per_day is None else self.orders_per_day

    def __post_init__(self) -> None:
        # Built in code: "HH:MM" times and lists are welcome.
        if not isinstance(self.amount, tuple):
            object.__setattr__(self, "amount", tuple(self.amount))
        diurnal = tuple(
            (parse_time_of_day(t, f"traffic.diurnal[{i}]"), float(w))
            for i, (t, w) in enumerate(self.diurnal)
        )
        if diurnal != self.diurnal:
            object.__setattr__(self, "diurnal", diurnal)
        per_day = self.orders_per_day
        if per_day is not None and (
            isinstance(per_day, bool) or not isinstance(per_day, int) or per_day < 1
        ):
            raise ValueError(f"traffic.orders_per_day: must be an integer >= 1, got {per_day!r}")
        if isinstance(self.orders, bool) or not isinstance(self.orders, int) or self.orders < 1:
            raise ValueError(f"traffic.orders: must be an integer >= 1, got {self.orders!r}")
        low, high = self.amount
        if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
            raise ValueError(
                f"traffic.amount: must be [min, max] integer minor units, 1 <= min <= max, "
                f"got {list(self.amount)!r}"
            )
        if not (len(self.currency) == 3 and self.currency.isupper() and self.currency.isalpha()):
            raise ValueError(
                f"traffic.currency: must be 3 uppercase letters, got {self.currency!r}"
            )
        if len(self.diurnal) < 1:
            raise ValueError("traffic.diurnal: needs at least one [time, weight] point")
        times = [t for t, _ in self.diurnal]
        if times != sorted(times) or len(set(times)) != len(times):
            raise ValueError("traffic.diurnal: times must be strictly increasing")
        for t, w in self.diurnal:
            if not (math.isfinite(w) and w >= 0):
                raise ValueError(f"traffic.diurnal: weight at {t:.0f} s must be >= 0, got {w!r}")
        if max(w for _, w in self.diurnal) <= 0:
            raise ValueError("traffic.diurnal: at least one weight must be > 0")

    def rate_weight(self, tod: float) -> float:
        """The curve's relative rate at ``tod`` seconds since midnight (flat outside it)."""
        pts = self.diurnal
        if tod <= pts[0][0]:
            return pts[0][1]
        for (t0, w0), (t1, w1) in itertools.pairwise(pts):
            if tod <= t1:
                return w0 + (w1 - w0) * (tod - t0) / (t1 - t0)
        return pts[-1][1]


@dataclass(frozen=True, slots=True)
class Customers:
    """How people behave in front of a payment page.

    Patience is lognormal (median, sigma), clipped to ``patience_range_s``.
    When it runs out with nothing definite on the screen, a customer clicks
    submit again (``click_again``), reloads (``reload``: the browser re-POSTs
    the form, which a disabled button cannot stop) or gives up. After a generic
    error page, ``retry_after_error`` of them submit again. ``double_click`` is
    the share of accidental double clicks on the first submit. A spinner or
    "taking longer" notice multiplies patience by ``spinner_patience`` and the
    click-again habit by ``spinner_click``. Nobody submits more than
    ``max_submits`` times.

    A customer promised an email ("we will email you", or a status page with
    email) waits for it a patience of their own: lognormal with median
    ``email_patience_median_s`` and shape ``email_patience_sigma``, clipped to
    ``email_patience_range_s``. With no email by then they give up on the shop
    (they may order elsewhere: a lost sale if nothing is charged, a silent
    charge if the order later ships on their money), and ``contact_support`` of
    them contact the shop's support. The defaults are an assumption, not a
    measurement: the median customer checks their inbox for about an hour.

    ``hold_notice_s`` is how long a second hold on a customer's money must last
    to count as a duplicate hold: an hour is long enough for the customer to see
    both holds in their banking app and contact the shop (an assumption).
    """

    patience_median_s: float = 30.0
    patience_sigma: float = 0.5
    patience_range_s: tuple[float, float] = (5.0, 600.0)
    click_again: float = 0.5
    reload: float = 0.2
    retry_after_error: float = 0.5
    double_click: float = 0.02
    spinner_patience: float = 2.0
    spinner_click: float = 0.3
    max_submits: int = 3
    think_s: float = 1.0
    email_patience_median_s: float = 3600.0
    email_patience_sigma: float = 1.0
    email_patience_range_s: tuple[float, float] = (300.0, 7 * 86_400.0)
    contact_support: float = 0.3
    hold_notice_s: float = 3600.0

    def __post_init__(self) -> None:
        for name in (
            "click_again",
            "reload",
            "retry_after_error",
            "double_click",
            "spinner_click",
            "contact_support",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"customers.{name}: a probability must be in [0, 1], got {value!r}"
                )
        if self.click_again + self.reload > 1.0:
            raise ValueError("customers.click_again + customers.reload: must not exceed 1")
        for name in ("patience_median_s", "spinner_patience", "email_patience_median_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"customers.{name}: must be > 0, got {getattr(self, name)!r}")
        for name in ("patience_sigma", "email_patience_sigma"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"customers.{name}: must be >= 0, got {getattr(self, name)!r}")
        for name in ("patience_range_s", "email_patience_range_s"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"customers.{name}: must be [min, max] with 0 < min <= max")
        if isinstance(self.max_submits, bool) or not (
            isinstance(self.max_submits, int) and self.max_submits >= 1
        ):
            raise ValueError(
                f"customers.max_submits: must be an integer >= 1, got {self.max_submits!r}"
            )
        if not (math.isfinite(self.hold_notice_s) and self.hold_notice_s >= 0):
            raise ValueError(f"customers.hold_notice_s: must be >= 0, got {self.hold_notice_s!r}")
        if not self.think_s >= 0:
            raise ValueError(f"customers.think_s: must be >= 0, got {self.think_s!r}")


@dataclass(frozen=True, slots=True)
class Backend:
    """The shop's own server: its crashes, and how long the run goes on after the day.

    ``crashes`` are times of day at which the backend process dies (every
    running request handler, worker and reconciler is interrupted); it comes
    back ``restart_s`` later with its journal. ``settle_s`` is the
    reconciliation window after the last order of the day: the run continues
    that long (or until nothing is left to do) before metrics are taken.
    ``accept_s`` is the backend's own answer time for a page (no provider call).
    """

    crashes: tuple[float, ...] = ()
    restart_s: float = 60.0
    settle_s: float = 4 * 3600.0
    accept_s: float = 0.05

    def __post_init__(self) -> None:
        for name in ("restart_s", "settle_s", "accept_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"backend.{name}: must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class Costs:
    """What each harm, lost sale and provider call costs the shop, in minor units of
    ``traffic.currency`` (integers). The defaults are assumptions for a Danish web
    shop paying in øre, not measurements; set them from your own books:

    * ``support_contact`` 7500 (75 DKK): one customer contact, about ten minutes of
      a support agent at a loaded cost of 450 DKK an hour;
    * ``refund`` 2500 (25 DKK): handling one refund (finding it, issuing it,
      bookkeeping);
    * ``held_reservation`` 2500 (25 DKK): a customer's money held for days by the
      shop for nothing (a duplicate or orphan hold): an explanation by email, and
      some goodwill;
    * ``lost_sale_margin_pct`` 25: the share of the order amount a lost sale
      costs (the margin);
    * ``provider_call`` 10 (0.10 DKK): one call to the provider (infrastructure,
      and API fees where the provider charges per call).

    Per order (see ``docs/simulation.md``): every provider call; every refund the
    reconciliation issued, plus the refunds support must make by hand (each
    extra capture of a duplicate charge, every capture of an orphan charge); one
    support contact for a duplicate charge, an orphan charge, a silent charge, a
    "failed" message with money kept, or a customer who gave up waiting for a
    promised email and contacted support; a held reservation for a duplicate or
    orphan hold; the margin of a lost sale.
    """

    support_contact: int = 7500
    refund: int = 2500
    held_reservation: int = 2500
    lost_sale_margin_pct: int = 25
    provider_call: int = 10

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"costs.{f.name}: must be an integer >= 0 (minor units), got {value!r}"
                )
        if self.lost_sale_margin_pct > 100:
            margin = self.lost_sale_margin_pct
            raise ValueError(f"costs.lost_sale_margin_pct: must be at most 100, got {margin!r}")


@dataclass(frozen=True, slots=True)
class Scenario:
    """A day: traffic, customers, the provider (fault profile + payer) and the backend."""

    name: str
    description: str = ""
    traffic: Traffic = field(default_factory=Traffic)
    customers: Customers = field(default_factory=Customers)
    #: A fault profile: the name of one in ``data/faults/``, a path to a TOML file,
    #: or a :class:`~payflow.provider.faults.FaultProfile` built in code.
    faults: str | FaultProfile = "calm"
    payer: PayerModel = field(default_factory=PayerModel)
    read_latency: float = 1.0
    queue_limit: int | None = None
    backend: Backend = field(default_factory=Backend)
    #: How long an uncaptured reservation holds the payer's money before the provider
    #: releases it (``[provider] reservation_expiry_s``; default 7 days, see
    #: :data:`payflow.provider.ledger.DEFAULT_RESERVATION_EXPIRY_S` for the source).
    reservation_expiry_s: float = DEFAULT_RESERVATION_EXPIRY_S
    costs: Costs = field(default_factory=Costs)

    def __post_init__(self) -> None:
        if not isinstance(self.faults, str | FaultProfile):
            raise ValueError(
                "faults: must be a fault profile name, a TOML path or a FaultProfile, "
                f"got {self.faults!r}"
            )
        for name, cls in (
            ("traffic", Traffic),
            ("customers", Customers),
            ("payer", PayerModel),
            ("backend", Backend),
            ("costs", Costs),
        ):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"{name}: must be a {cls.__name__}, got {getattr(self, name)!r}")

    def profile(self) -> FaultProfile:
        """The provider's fault profile (``faults`` names one in ``data/faults/``, is a
        TOML path, or is a :class:`FaultProfile` itself)."""
        if isinstance(self.faults, FaultProfile):
            return self.faults
        return load_profile(self.faults)

    def with_orders(self, orders: int) -> Scenario:
        """The same day (the same load on the provider) with ``orders`` orders tracked."""
        from dataclasses import replace

        traffic = self.traffic
        return replace(
            self, traffic=replace(traffic, orders=orders, orders_per_day=traffic.day_orders)
        )

    def with_load(self, orders_per_day: int) -> Scenario:
        """A busier or quieter day: ``orders_per_day`` real orders (the sample keeps its size)."""
        from dataclasses import replace

        return replace(self, traffic=replace(self.traffic, orders_per_day=orders_per_day))


_SECTIONS = {"name", "description", "traffic", "customers", "provider", "backend", "costs"}


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: must be a table ([{key}])")
    return value


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ValueError(f"{where}.{key}: unknown field (valid: {', '.join(sorted(allowed))})")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: must be a number, got {value!r}")
    return float(value)


def _pair(value: Any, where: str, *, integer: bool = False) -> tuple[Any, Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{where}: must be a [min, max] pair, got {value!r}")
    if integer:
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{where}: must be integers, got {value!r}")
        return int(value[0]), int(value[1])
    return _number(value[0], where), _number(value[1], where)


def _build(cls: type[Any], values: dict[str, Any], where: str) -> Any:
    try:
        return cls(**values)
    except ValueError as exc:
        text = str(exc)
        raise ValueError(text if text.startswith(where) else f"{where}: {text}") from None
    except TypeError as exc:  # pragma: no cover - guarded by _check_keys
        raise ValueError(f"{where}: {exc}") from None


def _traffic(table: Mapping[str, Any]) -> Traffic:
    _check_keys(table, {f.name for f in fields(Traffic)}, "traffic")
    values: dict[str, Any] = {}
    for key in ("orders", "orders_per_day"):
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"traffic.{key}: must be an integer, got {value!r}")
            values[key] = value
    if "orders_per_day" in values and "orders" not in values:
        values["orders"] = values["orders_per_day"]  # track the whole day by default
    if "amount" in table:
        values["amount"] = _pair(table["amount"], "traffic.amount", integer=True)
    if "currency" in table:
        if not isinstance(table["currency"], str):
            raise ValueError(f"traffic.currency: must be a string, got {table['currency']!r}")
        values["currency"] = table["currency"]
    if "diurnal" in table:
        raw = table["diurnal"]
        if not isinstance(raw, list) or not raw:
            raise ValueError("traffic.diurnal: must be a list of [time, weight] pairs")
        points = []
        for i, point in enumerate(raw):
            where = f"traffic.diurnal[{i}]"
            if not isinstance(point, list) or len(point) != 2:
                raise ValueError(f"{where}: must be a [time, weight] pair, got {point!r}")
            points.append((parse_time_of_day(point[0], where), _number(point[1], where)))
        values["diurnal"] = tuple(points)
    return _build(Traffic, values, "traffic")  # type: ignore[no-any-return]


def _customers(table: Mapping[str, Any]) -> Customers:
    _check_keys(table, {f.name for f in fields(Customers)}, "customers")
    values: dict[str, Any] = {}
    for key, value in table.items():
        where = f"customers.{key}"
        if key in ("patience_range_s", "email_patience_range_s"):
            values[key] = _pair(value, where)
        elif key == "max_submits":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{where}: must be an integer, got {value!r}")
            values[key] = value
        else:
            values[key] = _number(value, where)
    return _build(Customers, values, "customers")  # type: ignore[no-any-return]


def _provider(table: Mapping[str, Any]) -> tuple[str, PayerModel, float, int | None, float]:
    _check_keys(
        table,
        {"faults", "payer", "read_latency", "queue_limit", "reservation_expiry_s"},
        "provider",
    )
    expiry = _number(
        table.get("reservation_expiry_s", DEFAULT_RESERVATION_EXPIRY_S),
        "provider.reservation_expiry_s",
    )
    if not (math.isfinite(expiry) and expiry > 0):
        raise ValueError(f"provider.reservation_expiry_s: must be > 0 seconds, got {expiry!r}")
    queue_limit = table.get("queue_limit")
    if queue_limit is not None and (
        isinstance(queue_limit, bool) or not isinstance(queue_limit, int) or queue_limit < 0
    ):
        raise ValueError(f"provider.queue_limit: must be an integer >= 0, got {queue_limit!r}")
    read_latency = _number(table.get("read_latency", 1.0), "provider.read_latency")
    if not 0 < read_latency <= 10:
        raise ValueError(f"provider.read_latency: must be in (0, 10], got {read_latency!r}")
    faults = table.get("faults", "calm")
    if not isinstance(faults, str) or not faults:
        raise ValueError(f"provider.faults: must be a fault profile name, got {faults!r}")
    payer_table = _table(table, "payer")
    _check_keys(payer_table, {f.name for f in fields(PayerModel)}, "provider.payer")
    values: dict[str, Any] = {}
    for key, value in payer_table.items():
        where = f"provider.payer.{key}"
        values[key] = _pair(value, where) if key == "decide_after_s" else _number(value, where)
    payer = _build(PayerModel, values, "provider.payer")
    return faults, payer, read_latency, queue_limit, expiry


def _backend(table: Mapping[str, Any]) -> Backend:
    _check_keys(table, {f.name for f in fields(Backend)}, "backend")
    values: dict[str, Any] = {}
    for key, value in table.items():
        where = f"backend.{key}"
        if key == "crashes":
            if not isinstance(value, list):
                raise ValueError(f"{where}: must be a list of times of day, got {value!r}")
            values[key] = tuple(
                sorted(parse_time_of_day(v, f"{where}[{i}]") for i, v in enumerate(value))
            )
        else:
            values[key] = _number(value, where)
    return _build(Backend, values, "backend")  # type: ignore[no-any-return]


def _costs(table: Mapping[str, Any]) -> Costs:
    _check_keys(table, {f.name for f in fields(Costs)}, "costs")
    return _build(Costs, dict(table), "costs")  # type: ignore[no-any-return]


def parse_scenario(data: Mapping[str, Any], source: str = "<scenario>") -> Scenario:
    """Build a :class:`Scenario` from decoded TOML; errors name ``source`` and the field."""
    try:
        _check_keys(data, _SECTIONS, "scenario")
        name = data.get("name", Path(source).stem)
        if not isinstance(name, str) or not name:
            raise ValueError("name: must be a non-empty string")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ValueError("description: must be a string")
        faults, payer, read_latency, queue_limit, expiry = _provider(_table(data, "provider"))
        scenario = Scenario(
            name=name,
            description=" ".join(description.split()),
            traffic=_traffic(_table(data, "traffic")),
            customers=_customers(_table(data, "customers")),
            faults=faults,
            payer=payer,
            read_latency=read_latency,
            queue_limit=queue_limit,
            backend=_backend(_table(data, "backend")),
            reservation_expiry_s=expiry,
            costs=_costs(_table(data, "costs")),
        )
        try:
            scenario.profile()
        except LookupError as exc:
            raise ValueError(f"provider.faults: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{source}: {str(exc).removeprefix('scenario.')}") from None
    return scenario


def scenario_names() -> list[str]:
    """Names of the scenarios shipped in ``data/scenarios/``, sorted."""
    return shipped_names("scenarios")


def load_scenario(name: str) -> Scenario:
    """Load a shipped scenario by name, or a TOML file by path.

    Raises :class:`LookupError` listing the valid names when ``name`` is
    unknown, and :class:`ValueError` naming the file and field when a file is bad.
    """
    data, source = load_toml("scenarios", name, "scenario")
    return parse_scenario(data, source)
