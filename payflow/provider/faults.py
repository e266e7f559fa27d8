"""How badly the provider behaves, as a pure function of the time of day.

A :class:`FaultProfile` is a list of keyframes over one day; :meth:`FaultProfile.at`
interpolates linearly between them (wrapping around midnight) and returns a
frozen :class:`Faults`. The HTTP server and the SimPy provider model both call
:meth:`Faults.draw` with their own :class:`random.Random` to decide what happens
to one request, so both see the same provider -- including how it misbehaves
(:class:`Mangle`: garbled, truncated, wrong-shape, foreign, unknown-state and 409
answers to changes it made, trickled answers, odd ``Retry-After`` and
``pollDelayInMs``; :mod:`payflow.provider.misbehaviour` makes the replies).

Named profiles live as TOML files in ``data/faults/`` (the package
``payflow.data``)::

    name = "brownout"
    description = "..."

    [defaults]                 # any field of Faults; used where a keyframe is silent
    latency_before_s = 0.2

    [[keyframes]]
    at = "10:00"               # "HH:MM", "HH:MM:SS" or seconds since midnight
    p_server_error = 0.0
"""

from __future__ import annotations

import math
import random
import re
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from statistics import NormalDist
from typing import Any, ClassVar, Final, Literal

from payflow._data import load_toml, shipped_names

__all__ = [
    "BODY_MANGLES",
    "DAY_S",
    "DEFAULT_ENDPOINTS",
    "ENDPOINT_KINDS",
    "ODD_POLL_DELAYS",
    "ODD_POLL_DELAY_VALUES",
    "ODD_RETRY_AFTER",
    "BodyMangle",
    "EndpointRule",
    "FaultDraw",
    "FaultProfile",
    "Faults",
    "Mangle",
    "endpoint_kind",
    "faults_from_percentiles",
    "load_profile",
    "parse_profile",
    "profile_names",
    "sigma_from_percentiles",
]

#: Seconds in a day; profiles repeat with this period.
DAY_S: Final = 86_400.0

_STANDARD_NORMAL: Final = NormalDist()
_inv_cdf = _STANDARD_NORMAL.inv_cdf


def _lognormal(u: float, median: float, sigma: float, cap: float) -> float:
    """The latency for uniform draw ``u``: lognormal around ``median``, capped at ``cap``
    (0 for a median of 0; ``u`` is always drawn, so random streams stay aligned)."""
    if median <= 0:
        return 0.0
    return min(median * math.exp(sigma * _inv_cdf(min(max(u, 1e-12), 1 - 1e-12))), cap)


#: The endpoint kinds a profile may give faults of its own (see :func:`endpoint_kind`).
ENDPOINT_KINDS: Final = ("create", "read", "capture", "cancel", "refund")

#: One classification rule: ``(kind, METHOD, regular expression)`` matched in full
#: against the path without its query string.
EndpointRule = tuple[str, str, str]

#: The MobilePay-style paths of ``docs/api.md``, tried in order.
DEFAULT_ENDPOINTS: Final[tuple[EndpointRule, ...]] = (
    ("create", "POST", r"/v10/payments"),
    ("capture", "POST", r"/v10/payments/[^/]+/capture"),
    ("cancel", "POST", r"/v10/payments/[^/]+/cancel"),
    ("refund", "POST", r"/v10/refunds"),
    ("read", "GET", r"/v10/payments(/[^/]+)?"),
    ("read", "GET", r"/v10/refunds/[^/]+"),
)

_COMPILED: dict[tuple[EndpointRule, ...], tuple[tuple[str, str, re.Pattern[str]], ...]] = {}


def endpoint_kind(
    method: str, path: str, rules: Sequence[EndpointRule] = DEFAULT_ENDPOINTS
) -> str | None:
    """The endpoint kind of a call (``create``, ``read``, ``capture``, ``cancel``,
    ``refund``) from its method and path, by the first matching rule; None if no
    rule matches. The query string is ignored. ``rules`` makes it configurable."""
    key = tuple(rules)
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = tuple((k, m.upper(), re.compile(rx)) for k, m, rx in key)
    bare = path.split("?", 1)[0]
    upper = method.upper()
    for kind, rule_method, pattern in compiled:
        if rule_method == upper and pattern.fullmatch(bare):
            return kind
    return None


#: Standard normal quantiles of the 95th and 99th percentiles.
Z95: Final = _inv_cdf(0.95)
Z99: Final = _inv_cdf(0.99)


def sigma_from_percentiles(
    p50_s: float, p95_s: float, p99_s: float | None = None, where: str = "latency"
) -> float:
    """The lognormal shape that puts a latency's percentiles where they were measured.

    A lognormal with median ``m`` and shape ``sigma`` has its ``q``-th percentile at
    ``m * exp(sigma * z_q)`` (``z_q`` the standard normal quantile), so ``p50_s``
    *is* the median and ``p95_s`` pins ``sigma = ln(p95/p50) / 1.645``. With
    ``p99_s`` too, ``sigma`` is the least-squares fit of ``ln(p/p50) = sigma * z``
    over both (the median stays pinned). Raises ValueError naming ``where`` for
    percentiles that are not positive and increasing.
    """
    for name, value in (("p50_s", p50_s), ("p95_s", p95_s), ("p99_s", p99_s)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}.{name}: must be a number, got {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{where}.{name}: must be a number > 0 seconds, got {value!r}")
    if p95_s < p50_s:
        raise ValueError(f"{where}.p95_s: must be >= p50_s ({p50_s!r}), got {p95_s!r}")
    a = math.log(p95_s / p50_s)
    if p99_s is None:
        return a / Z95
    if p99_s < p95_s:
        raise ValueError(f"{where}.p99_s: must be >= p95_s ({p95_s!r}), got {p99_s!r}")
    b = math.log(p99_s / p50_s)
    return (Z95 * a + Z99 * b) / (Z95 * Z95 + Z99 * Z99)


#: The keys of the percentile form (keyframes, ``defaults`` and per-kind tables).
PERCENTILE_KEYS: Final = frozenset(
    {"p50_s", "p95_s", "p99_s", "error_rate", "throttle_rate", "no_response_rate"}
)


def faults_from_percentiles(values: Mapping[str, Any], where: str = "keyframe") -> dict[str, Any]:
    """:class:`Faults` fields from the numbers people have.

    ``p50_s``/``p95_s`` (and optionally ``p99_s``) of the whole latency become
    ``latency_p50_s`` and ``latency_sigma`` (:func:`sigma_from_percentiles`); the
    rates are shares of *all* calls and become the conditional probabilities the
    draw uses (a throttle is decided first, then a server error, then a lost
    answer): ``p_throttle = throttle_rate``, ``p_server_error = error_rate /
    (1 - throttle_rate)``, ``p_lost_after_commit = no_response_rate / (1 -
    throttle_rate - error_rate)``. Other keys pass through unchanged.
    """
    out = {k: v for k, v in values.items() if k not in PERCENTILE_KEYS}
    if "p50_s" in values or "p95_s" in values or "p99_s" in values:
        for needed in ("p50_s", "p95_s"):
            if needed not in values:
                raise ValueError(f"{where}.{needed}: required with the other percentiles")
        for old in ("latency_before_s", "latency_after_s", "latency_sigma", "latency_p50_s"):
            if old in values:
                raise ValueError(f"{where}.{old}: give either it or p50_s/p95_s, not both")
        out["latency_sigma"] = sigma_from_percentiles(
            values["p50_s"], values["p95_s"], values.get("p99_s"), where
        )
        out["latency_p50_s"] = float(values["p50_s"])
    rates = {}
    for key, field_name in (
        ("throttle_rate", "p_throttle"),
        ("error_rate", "p_server_error"),
        ("no_response_rate", "p_lost_after_commit"),
    ):
        if key not in values:
            continue
        if field_name in values:
            raise ValueError(f"{where}.{field_name}: give either it or {key}, not both")
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"{where}.{key}: must be a share in [0, 1], got {value!r}")
        rates[key] = float(value)
    if rates:
        t = rates.get("throttle_rate", 0.0)
        e = rates.get("error_rate", 0.0)
        n = rates.get("no_response_rate", 0.0)
        if t + e + n > 1 + 1e-9:
            raise ValueError(f"{where}: throttle_rate + error_rate + no_response_rate exceed 1")
        if "throttle_rate" in rates:
            out["p_throttle"] = t
        if "error_rate" in rates:
            out["p_server_error"] = min(1.0, e / (1 - t)) if t < 1 else 0.0
        if "no_response_rate" in rates:
            out["p_lost_after_commit"] = min(1.0, n / (1 - t - e)) if t + e < 1 else 0.0
    return out


Action = Literal["ok", "throttle", "reset", "error_before", "error_after", "lost"]

#: What becomes of a 2xx answer (see :class:`Mangle`), in the order they are tried.
BodyMangle = Literal["garbled", "truncated", "wrong_shape", "foreign", "unknown_state", "conflict"]

#: The forms of each body mangle; a draw picks one uniformly.
BODY_MANGLES: Final[Mapping[BodyMangle, tuple[str, ...]]] = {
    # not JSON: a gzip-looking blob sent as application/json, an HTML error page, plain text
    "garbled": ("bytes", "html", "text"),
    # the JSON text cut after ``cut`` of its bytes (Content-Length says the shorter length)
    "truncated": ("cut",),
    "wrong_shape": ("[]", "{}", "no_state", "no_id", "null_id", "empty_202", "empty_204"),
    # another order's payment, another payment of the same order, ten times the
    # amount, another currency
    "foreign": ("other_order", "other_payment", "amount_x10", "currency"),
    "unknown_state": (
        "AUTHORIZED",
        "PROCESSING",
        "pending",
        "PENDING",
        "RESERVED",
        "Captured",
        "in_progress",
        "",
    ),
    # the ``code`` of the 409 ("" = no code at all)
    "conflict": ("conflict", "duplicate_request", "payment_in_progress", "", "request_in_progress"),
}

#: ``Retry-After`` values of ``p_odd_retry_after`` (sent verbatim, never time-scaled).
ODD_RETRY_AFTER: Final = (
    "\u00b2",  # superscript two: str.isdigit() says yes, int() says no
    "9" * 400,
    "-1",
    "1.5",
    "soon",
    "Wed, 21 Oct 2015 07:28:00 GMT",  # a valid HTTP date, in the past
    "31536000000",  # a thousand years
)

#: ``pollDelayInMs`` forms of ``p_odd_poll_delay`` (``missing``: the key is left out).
ODD_POLL_DELAYS: Final = ("negative", "float", "string", "null", "huge", "missing")

#: Their values on the wire (all but ``missing``).
ODD_POLL_DELAY_VALUES: Final[Mapping[str, Any]] = {
    "negative": -1000,
    "float": 1500.5,
    "string": "1000",
    "null": None,
    "huge": 2**63,
}


@dataclass(frozen=True, slots=True)
class Mangle:
    """How an answer misbehaves (on top of the :class:`FaultDraw` action).

    For an ``ok`` request whose answer is a 2xx (the change was committed or the
    read made):

    ``body``        one of :data:`BodyMangle` (None: the body is the ledger's);
    ``variant``     its form, one of ``BODY_MANGLES[body]``;
    ``cut``         a uniform number in [0, 1): where a truncated body is cut,
                    the seed of garbled bytes, the made-up ids of a foreign reply;
    ``poll_delay``  an odd ``pollDelayInMs`` (one of :data:`ODD_POLL_DELAYS`) or None;
    ``trickle_s``   the answer (status line, headers and body) arrives a few bytes
                    at a time over this many (simulated) seconds; 0: at once
                    (applies whatever the status).

    For a ``throttle``: ``retry_after`` is the odd ``Retry-After`` header value
    (one of :data:`ODD_RETRY_AFTER`) or None.
    """

    body: BodyMangle | None = None
    variant: str = ""
    cut: float = 0.0
    poll_delay: str | None = None
    retry_after: str | None = None
    trickle_s: float = 0.0


def _pick(u: float, p: float, choices: tuple[str, ...]) -> tuple[str, float]:
    """For ``u < p``: a choice (uniform) and a fresh uniform, both from ``u`` alone."""
    x = u / p * len(choices)
    i = min(int(x), len(choices) - 1)
    return choices[i], x - i


_BODY_ORDER: Final[tuple[BodyMangle, ...]] = (
    "garbled",
    "truncated",
    "wrong_shape",
    "foreign",
    "unknown_state",
    "conflict",
)


@dataclass(frozen=True, slots=True)
class FaultDraw:
    """What happens to one request.

    ``action`` is one of:

    ``ok``            answered normally;
    ``throttle``      answered 429 with ``Retry-After`` at once, never processed;
    ``reset``         connection reset before commit: nothing happens;
    ``error_before``  5xx, nothing happened;
    ``error_after``   5xx, but the change *was* committed;
    ``lost``          committed, but the response never arrives (client times out).

    ``mangle`` (see :class:`Mangle`) is set only for ``ok`` and ``throttle``,
    and only when the profile has a misbehaviour probability above zero.
    """

    #: The actions after which the ledger has applied the request -- the one
    #: definition (the provider pipeline asks it too, without building a draw).
    COMMITTING: ClassVar[frozenset[str]] = frozenset({"ok", "error_after", "lost"})

    latency_before_s: float
    latency_after_s: float
    action: Action
    #: How the answer misbehaves; None (always, unless a profile asks for it): it does not.
    mangle: Mangle | None = None

    @property
    def commits(self) -> bool:
        """True if the ledger applies the request."""
        return self.action in self.COMMITTING


@dataclass(frozen=True, slots=True)
class Faults:
    """The provider's behaviour at one moment.

    Latencies are lognormal with the given medians (seconds) and shape
    ``latency_sigma``, capped at ``latency_max_s``. ``latency_before_s`` passes
    between receiving a request and committing it, ``latency_after_s`` between
    committing and answering: a client that times out in the second window was
    charged anyway. ``p_*`` are probabilities per request; a server error is
    after commit with probability ``server_error_after_commit``. ``capacity``
    requests are served at once (the rest queue). ``poll_delay_ms`` is the
    ``pollDelayInMs`` the provider asks pollers to wait.

    Misbehaviour (each a probability per request; see ``docs/provider.md``):
    a 2xx answer to a request answered normally -- so a committed change -- is
    garbled (not JSON), truncated, of the wrong shape, about something else
    (``foreign``), in an unknown ``state``, or turned into a 409, tried in that
    order (the first that fires wins); independently its ``pollDelayInMs`` is
    odd and the answer trickles in over ``trickle_s`` seconds; a 429 carries
    an odd ``Retry-After``. With all of these probabilities 0 (the default),
    :meth:`draw_parts` draws exactly the numbers it drew before they existed.
    """

    latency_before_s: float = 0.1
    latency_after_s: float = 0.05
    latency_sigma: float = 0.3
    latency_max_s: float = 120.0
    p_server_error: float = 0.0
    server_error_after_commit: float = 0.5
    p_throttle: float = 0.0
    retry_after_s: float = 1.0
    p_lost_after_commit: float = 0.0
    p_reset_before_commit: float = 0.0
    capacity: int = 64
    poll_delay_ms: int = 1000
    p_garbled_body: float = 0.0
    p_truncated_body: float = 0.0
    p_wrong_shape: float = 0.0
    p_foreign_reply: float = 0.0
    p_unknown_state: float = 0.0
    p_conflict_after_commit: float = 0.0
    p_trickle: float = 0.0
    trickle_s: float = 10.0
    p_odd_retry_after: float = 0.0
    p_odd_poll_delay: float = 0.0
    #: The percentile form (see :func:`sigma_from_percentiles`): the median of the
    #: *whole* latency (before + after commit); 0 means the two-median form above.
    latency_p50_s: float = 0.0
    #: In the percentile form, the share of each latency that comes after commit.
    after_commit_share: float = 0.0
    #: Per endpoint kind (``create``, ``read``, ``capture``, ``cancel``, ``refund``;
    #: see :func:`endpoint_kind`), the faults of calls of that kind; a kind not
    #: listed gets these faults. Sorted ``(kind, Faults)`` pairs.
    kinds: tuple[tuple[str, Faults], ...] = ()
    #: Derived: some misbehaviour probability is > 0 (then draws take 9 more uniforms).
    misbehaves: bool = field(default=False, init=False, repr=False, compare=False)
    _by_kind: dict[str, Faults] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for f in _VALUE_FIELDS:
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{f.name}: must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{f.name}: must be a finite number >= 0, got {value!r}")
            if (
                f.name.startswith("p_")
                or f.name in ("server_error_after_commit", "after_commit_share")
            ) and value > 1:
                raise ValueError(f"{f.name}: a probability must be in [0, 1], got {value!r}")
        if not isinstance(self.capacity, int) or self.capacity < 1:
            raise ValueError(f"capacity: must be an integer >= 1, got {self.capacity!r}")
        if not isinstance(self.poll_delay_ms, int):
            raise ValueError(f"poll_delay_ms: must be an integer, got {self.poll_delay_ms!r}")
        misbehaves = (
            self.p_garbled_body > 0
            or self.p_truncated_body > 0
            or self.p_wrong_shape > 0
            or self.p_foreign_reply > 0
            or self.p_unknown_state > 0
            or self.p_conflict_after_commit > 0
            or self.p_trickle > 0
            or self.p_odd_retry_after > 0
            or self.p_odd_poll_delay > 0
        )
        object.__setattr__(self, "misbehaves", misbehaves)
        if not isinstance(self.kinds, tuple):
            raise ValueError(f"kinds: must be a tuple of (kind, Faults) pairs, got {self.kinds!r}")
        by_kind: dict[str, Faults] = {}
        for pair in self.kinds:
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], Faults)):
                raise ValueError(f"kinds: must be (kind, Faults) pairs, got {pair!r}")
            kind, faults = pair
            if kind not in ENDPOINT_KINDS:
                raise ValueError(
                    f"kinds: unknown endpoint kind {kind!r} (valid: {', '.join(ENDPOINT_KINDS)})"
                )
            if faults.kinds:
                raise ValueError(f"kinds.{kind}: must not have kinds of its own")
            by_kind[kind] = faults
        object.__setattr__(self, "_by_kind", by_kind)

    def for_kind(self, kind: str | None) -> Faults:
        """The faults of a call of endpoint ``kind`` (these faults when it has none of its own)."""
        if kind is None or not self.kinds:
            return self
        return self._by_kind.get(kind, self)

    def _latency(self, rng: random.Random, median: float) -> float:
        # exactly one uniform draw per latency, so streams stay aligned
        return _lognormal(rng.random(), median, self.latency_sigma, self.latency_max_s)

    def _split(self, u_before: float, u_after: float) -> tuple[float, float]:
        sigma, cap = self.latency_sigma, self.latency_max_s
        if self.latency_p50_s > 0:  # the percentile form: one lognormal total, split
            total = _lognormal(u_before, self.latency_p50_s, sigma, cap)
            after = total * self.after_commit_share
            return total - after, after
        before = _lognormal(u_before, self.latency_before_s, sigma, cap)
        return before, _lognormal(u_after, self.latency_after_s, sigma, cap)

    def draw_latency(self, rng: random.Random, kind: str | None = None) -> tuple[float, float]:
        """Draw ``(before_commit_s, after_commit_s)`` (two uniforms, whatever the form)."""
        u_before = rng.random()
        return self.for_kind(kind)._split(u_before, rng.random())

    def draw(self, rng: random.Random, kind: str | None = None) -> FaultDraw:
        """Draw the fate of one request of endpoint ``kind``; always consumes the same
        number of draws (7 uniforms, 16 when :attr:`misbehaves`)."""
        before, after, action, mangle = self.draw_parts(rng, kind)
        return FaultDraw(before, after, action, mangle)

    def draw_parts(
        self, rng: random.Random, kind: str | None = None
    ) -> tuple[float, float, Action, Mangle | None]:
        """:meth:`draw` as a plain ``(before, after, action, mangle)`` tuple (the same draws).

        The hot path of the SimPy provider model: no :class:`FaultDraw` is built.
        The misbehaviour uniforms come after the others and only when
        :attr:`misbehaves`, so profiles without misbehaviour keep their streams.
        ``kind`` (see :func:`endpoint_kind`) picks the faults of that endpoint kind
        when the profile has any; the draws are the same uniforms either way.
        """
        f = self._by_kind.get(kind, self) if kind is not None and self.kinds else self
        random_ = rng.random
        u_throttle = random_()
        u_reset = random_()
        u_error = random_()
        u_after = random_()
        u_lost = random_()
        if f.latency_p50_s > 0:
            before, after = f._split(random_(), random_())
        else:
            sigma, cap = f.latency_sigma, f.latency_max_s
            before = _lognormal(random_(), f.latency_before_s, sigma, cap)
            after = _lognormal(random_(), f.latency_after_s, sigma, cap)
        action: Action = "ok"
        if u_throttle < f.p_throttle:
            action = "throttle"
        elif u_reset < f.p_reset_before_commit:
            action = "reset"
        elif u_error < f.p_server_error:
            action = "error_after" if u_after < f.server_error_after_commit else "error_before"
        elif u_lost < f.p_lost_after_commit:
            action = "lost"
        if not f.misbehaves:
            return before, after, action, None
        return before, after, action, f._draw_mangle(random_, action)

    def _draw_mangle(self, random_: Callable[[], float], action: Action) -> Mangle | None:
        """The misbehaviour of one request: always 9 uniforms, in a fixed order."""
        u_body = (random_(), random_(), random_(), random_(), random_(), random_())
        u_trickle = random_()
        u_retry = random_()
        u_poll = random_()
        if action == "throttle":
            p = self.p_odd_retry_after
            if u_retry < p:
                return Mangle(retry_after=_pick(u_retry, p, ODD_RETRY_AFTER)[0])
            return None
        if action != "ok":
            return None
        body: BodyMangle | None = None
        variant, cut = "", 0.0
        probabilities = (
            self.p_garbled_body,
            self.p_truncated_body,
            self.p_wrong_shape,
            self.p_foreign_reply,
            self.p_unknown_state,
            self.p_conflict_after_commit,
        )
        for kind, u, p in zip(_BODY_ORDER, u_body, probabilities, strict=True):
            if u < p:
                body = kind
                variant, cut = _pick(u, p, BODY_MANGLES[kind])
                break
        poll_delay = None
        if u_poll < self.p_odd_poll_delay:
            poll_delay = _pick(u_poll, self.p_odd_poll_delay, ODD_POLL_DELAYS)[0]
        trickle = self.trickle_s if u_trickle < self.p_trickle else 0.0
        if body is None and poll_delay is None and not trickle:
            return None
        return Mangle(body, variant, cut, poll_delay, None, trickle)


#: The fields a profile sets (``misbehaves`` is derived).
_VALUE_FIELDS: Final = tuple(f for f in fields(Faults) if f.init and f.name != "kinds")
_FIELD_TYPES: Final = {f.name: f.type for f in _VALUE_FIELDS}
_INT_FIELDS: Final = frozenset({"capacity", "poll_delay_ms"})
#: Per-kind sub-tables of a keyframe (``poll`` is another name for ``read``).
_KIND_TABLES: Final = {**{k: k for k in ENDPOINT_KINDS}, "poll": "read"}


def _interpolate(a: Faults, b: Faults, w: float) -> Faults:
    values: dict[str, Any] = {}
    for name in _FIELD_TYPES:
        x, y = getattr(a, name), getattr(b, name)
        if x == y:
            values[name] = x
            continue
        v = x + (y - x) * w
        values[name] = (
            max(1, round(v)) if name == "capacity" else (round(v) if name in _INT_FIELDS else v)
        )
    if a.kinds or b.kinds:
        names = sorted({k for k, _ in a.kinds} | {k for k, _ in b.kinds})
        values["kinds"] = tuple(
            (k, _interpolate(_bare(a.for_kind(k)), _bare(b.for_kind(k)), w)) for k in names
        )
    return Faults(**values)


def _bare(faults: Faults) -> Faults:
    return replace(faults, kinds=()) if faults.kinds else faults


class FaultProfile:
    """Piecewise-linear :class:`Faults` over a day, repeating every day.

    ``keyframes`` are ``(seconds_since_midnight, Faults)`` pairs in ``[0, 86400)``.
    Between the last keyframe and the first of the next day the profile
    interpolates across midnight; one keyframe means constant faults.
    """

    def __init__(
        self, name: str, keyframes: Sequence[tuple[float, Faults]], description: str = ""
    ) -> None:
        if not keyframes:
            raise ValueError(f"fault profile {name!r}: needs at least one keyframe")
        frames = sorted(keyframes, key=lambda kf: kf[0])
        for t, _ in frames:
            if not 0 <= t < DAY_S:
                raise ValueError(f"fault profile {name!r}: keyframe time {t!r} not in [0, 86400)")
        times = [t for t, _ in frames]
        if len(set(times)) != len(times):
            raise ValueError(f"fault profile {name!r}: two keyframes at the same time")
        forms = {
            f.latency_p50_s > 0 for _, base in frames for f in (base, *(k for _, k in base.kinds))
        }
        if len(forms) > 1:
            raise ValueError(
                f"fault profile {name!r}: keyframes mix the percentile form (p50_s/p95_s) "
                "with latency_before_s/latency_after_s; use one form throughout"
            )
        self.name = name
        self.description = description
        self.keyframes: tuple[tuple[float, Faults], ...] = tuple(frames)
        self._times = times

    @classmethod
    def constant(cls, faults: Faults | None = None, name: str = "constant") -> FaultProfile:
        """A profile that is the same all day."""
        return cls(name, [(0.0, faults or Faults())])

    def __repr__(self) -> str:
        return f"FaultProfile({self.name!r}, keyframes={len(self.keyframes)})"

    def at(self, t: float) -> Faults:
        """The faults at ``t`` seconds since midnight of day 0 (any day; wraps)."""
        frames = self.keyframes
        if len(frames) == 1:
            return frames[0][1]
        tod = t % DAY_S
        i = bisect_right(self._times, tod) - 1
        if i < 0:  # before the first keyframe: between yesterday's last and today's first
            t0, f0 = frames[-1][0] - DAY_S, frames[-1][1]
            t1, f1 = frames[0]
        elif i == len(frames) - 1:
            t0, f0 = frames[-1]
            t1, f1 = frames[0][0] + DAY_S, frames[0][1]
        else:
            t0, f0 = frames[i]
            t1, f1 = frames[i + 1]
        if tod == t0:
            return f0
        return _interpolate(f0, f1, (tod - t0) / (t1 - t0))


_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def _parse_time(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}.at: must be 'HH:MM' or seconds since midnight, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _TIME_RE.fullmatch(value)):
        h, mi, s = int(m[1]), int(m[2]), int(m[3] or 0)
        if h > 24 or mi > 59 or s > 59:
            raise ValueError(f"{where}.at: {value!r} is not a time of day")
        seconds = float(h * 3600 + mi * 60 + s)
    else:
        raise ValueError(f"{where}.at: must be 'HH:MM' or seconds since midnight, got {value!r}")
    if seconds == DAY_S:
        seconds = DAY_S - 1e-6  # "24:00" means the very end of the day
    if not 0 <= seconds < DAY_S:
        raise ValueError(f"{where}.at: {value!r} is not within one day")
    return seconds


def _check_values(table: Any, where: str, *, kinds: bool = True) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise ValueError(f"{where}: must be a table")
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key == "at":
            continue
        if kinds and key in _KIND_TABLES:
            out[key] = _check_values(value, f"{where}.{key}", kinds=False)
            continue
        if key not in _FIELD_TYPES and key not in PERCENTILE_KEYS:
            valid = ", ".join(
                sorted({*_FIELD_TYPES, *PERCENTILE_KEYS, *(_KIND_TABLES if kinds else ())})
            )
            raise ValueError(f"{where}.{key}: unknown field (valid: {valid})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}.{key}: must be a number, got {value!r}")
        if key in _INT_FIELDS and not isinstance(value, int):
            raise ValueError(f"{where}.{key}: must be an integer, got {value!r}")
        out[key] = value
    return out


def parse_profile(data: Mapping[str, Any], source: str = "<profile>") -> FaultProfile:
    """Build a profile from decoded TOML; errors name ``source`` and the field."""
    allowed = {"name", "description", "defaults", "keyframes"}
    for key in data:
        if key not in allowed:
            raise ValueError(f"{source}: {key}: unknown key (valid: {', '.join(sorted(allowed))})")
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{source}: name: must be a non-empty string")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"{source}: description: must be a string")
    try:
        defaults = _check_values(data.get("defaults", {}), "defaults")
        _build_faults(_split_kinds(defaults)[0], "defaults")
        raw_frames = data.get("keyframes")
        if not isinstance(raw_frames, list) or not raw_frames:
            raise ValueError("keyframes: must be a non-empty array of tables ([[keyframes]])")
        frames: list[tuple[float, Faults]] = []
        for i, raw in enumerate(raw_frames):
            where = f"keyframes[{i}]"
            values = _check_values(raw, where)
            if "at" not in raw:
                raise ValueError(f"{where}.at: required (time of day, 'HH:MM')")
            at = _parse_time(raw["at"], where)
            frames.append((at, _frame_faults(defaults, values, where)))
        return FaultProfile(name, frames, description)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def _split_kinds(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    flat = {k: v for k, v in values.items() if k not in _KIND_TABLES}
    kinds: dict[str, dict[str, Any]] = {}
    for key, table in values.items():
        if key in _KIND_TABLES:
            kind = _KIND_TABLES[key]
            if kind in kinds:
                raise ValueError(f"{key}: the same kind as another table ({kind})")
            kinds[kind] = table
    return flat, kinds


def _merge(defaults: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` over ``defaults``, where a latency given in one form replaces the other."""
    merged = dict(defaults)
    if any(k in values for k in ("p50_s", "p95_s", "p99_s")):
        for old in ("latency_before_s", "latency_after_s", "latency_sigma", "p99_s"):
            merged.pop(old, None)
    if any(k in values for k in ("latency_before_s", "latency_after_s")):
        for new in ("p50_s", "p95_s", "p99_s"):
            merged.pop(new, None)
    merged.update(values)
    return merged


def _build_faults(values: Mapping[str, Any], where: str) -> Faults:
    try:
        return Faults(**faults_from_percentiles(values, where))
    except ValueError as exc:
        text = str(exc)
        raise ValueError(text if text.startswith(where) else f"{where}.{text}") from None


def _frame_faults(defaults: Mapping[str, Any], values: Mapping[str, Any], where: str) -> Faults:
    default_flat, default_kinds = _split_kinds(defaults)
    flat, kinds = _split_kinds(values)
    base_values = _merge(default_flat, flat)
    base = _build_faults(base_values, where)
    pairs: list[tuple[str, Faults]] = []
    for kind in sorted({*default_kinds, *kinds}):
        kind_values = _merge(_merge(base_values, default_kinds.get(kind, {})), kinds.get(kind, {}))
        pairs.append((kind, _build_faults(kind_values, f"{where}.{kind}")))
    return replace(base, kinds=tuple(pairs)) if pairs else base


def profile_names() -> list[str]:
    """Names of the fault profiles shipped in ``data/faults/``, sorted."""
    return shipped_names("faults")


def load_profile(name: str) -> FaultProfile:
    """Load a shipped profile by name, or a TOML file by path.

    Raises :class:`LookupError` naming the valid profiles when ``name`` is
    unknown, and :class:`ValueError` naming the file and field when a file is bad.
    """
    data, source = load_toml("faults", name, "fault profile")
    return parse_profile(data, source)
