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
from typing import Any, Final, Literal

from payflow._data import load_toml, shipped_names

__all__ = [
    "BODY_MANGLES",
    "DAY_S",
    "ODD_POLL_DELAYS",
    "ODD_POLL_DELAY_VALUES",
    "ODD_RETRY_AFTER",
    "BodyMangle",
    "FaultDraw",
    "FaultProfile",
    "Faults",
    "Mangle",
    "load_profile",
    "parse_profile",
    "profile_names",
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

    latency_before_s: float
    latency_after_s: float
    action: Action
    #: How the answer misbehaves; None (always, unless a profile asks for it): it does not.
    mangle: Mangle | None = None

    @property
    def commits(self) -> bool:
        """True if the ledger applies the request."""
        return self.action in ("ok", "error_after", "lost")


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
    #: Derived: some misbehaviour probability is > 0 (then draws take 9 more uniforms).
    misbehaves: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for f in _VALUE_FIELDS:
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{f.name}: must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{f.name}: must be a finite number >= 0, got {value!r}")
            if (f.name.startswith("p_") or f.name == "server_error_after_commit") and value > 1:
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

    def _latency(self, rng: random.Random, median: float) -> float:
        # exactly one uniform draw per latency, so streams stay aligned
        return _lognormal(rng.random(), median, self.latency_sigma, self.latency_max_s)

    def draw_latency(self, rng: random.Random) -> tuple[float, float]:
        """Draw ``(before_commit_s, after_commit_s)``."""
        return self._latency(rng, self.latency_before_s), self._latency(rng, self.latency_after_s)

    def draw(self, rng: random.Random) -> FaultDraw:
        """Draw the fate of one request; always consumes the same number of draws
        (7 uniforms, 16 when :attr:`misbehaves`)."""
        before, after, action, mangle = self.draw_parts(rng)
        return FaultDraw(before, after, action, mangle)

    def draw_parts(self, rng: random.Random) -> tuple[float, float, Action, Mangle | None]:
        """:meth:`draw` as a plain ``(before, after, action, mangle)`` tuple (the same draws).

        The hot path of the SimPy provider model: no :class:`FaultDraw` is built.
        The misbehaviour uniforms come after the others and only when
        :attr:`misbehaves`, so profiles without misbehaviour keep their streams.
        """
        random_ = rng.random
        u_throttle = random_()
        u_reset = random_()
        u_error = random_()
        u_after = random_()
        u_lost = random_()
        sigma, cap = self.latency_sigma, self.latency_max_s
        before = _lognormal(random_(), self.latency_before_s, sigma, cap)
        after = _lognormal(random_(), self.latency_after_s, sigma, cap)
        action: Action = "ok"
        if u_throttle < self.p_throttle:
            action = "throttle"
        elif u_reset < self.p_reset_before_commit:
            action = "reset"
        elif u_error < self.p_server_error:
            action = "error_after" if u_after < self.server_error_after_commit else "error_before"
        elif u_lost < self.p_lost_after_commit:
            action = "lost"
        if not self.misbehaves:
            return before, after, action, None
        return before, after, action, self._draw_mangle(random_, action)

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
_VALUE_FIELDS: Final = tuple(f for f in fields(Faults) if f.init)
_FIELD_TYPES: Final = {f.name: f.type for f in _VALUE_FIELDS}
_INT_FIELDS: Final = frozenset({"capacity", "poll_delay_ms"})


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
    return Faults(**values)


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


def _check_values(table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise ValueError(f"{where}: must be a table")
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key == "at":
            continue
        if key not in _FIELD_TYPES:
            valid = ", ".join(sorted(_FIELD_TYPES))
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
        raw_frames = data.get("keyframes")
        if not isinstance(raw_frames, list) or not raw_frames:
            raise ValueError("keyframes: must be a non-empty array of tables ([[keyframes]])")
        try:
            base = Faults(**defaults)
        except ValueError as exc:
            raise ValueError(f"defaults.{exc}") from None
        frames: list[tuple[float, Faults]] = []
        for i, raw in enumerate(raw_frames):
            where = f"keyframes[{i}]"
            values = _check_values(raw, where)
            if "at" not in raw:
                raise ValueError(f"{where}.at: required (time of day, 'HH:MM')")
            at = _parse_time(raw["at"], where)
            try:
                frames.append((at, replace(base, **values)))
            except ValueError as exc:
                raise ValueError(f"{where}.{exc}") from None
        return FaultProfile(name, frames, description)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


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
