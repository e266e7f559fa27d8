"""Cost of ``Faults.draw_parts`` (the SimPy provider model's hot path), in one run.

Compares it with a copy of the code before misbehaviour existed (commit 4a312b1),
on profiles without misbehaviour (the ratio should be ~1.0: one flag test more)
and shows what a misbehaving profile costs (9 more uniforms, and a Mangle now
and then). Rounds alternate old/new so drift on a shared machine hits both.

    python benchmarks/bench_faults.py [--n 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import math
import random
import timeit
from statistics import NormalDist

from payflow.provider.faults import Faults, load_profile

_inv_cdf = NormalDist().inv_cdf


def _lognormal(u: float, median: float, sigma: float, cap: float) -> float:
    if median <= 0:
        return 0.0
    return min(median * math.exp(sigma * _inv_cdf(min(max(u, 1e-12), 1 - 1e-12))), cap)


class OldFaults(Faults):
    """:class:`Faults` with ``draw_parts`` as it was before misbehaviour existed."""

    __slots__ = ()

    def draw_parts(self, rng: random.Random) -> tuple[float, float, str]:  # type: ignore[override]
        random_ = rng.random
        u_throttle = random_()
        u_reset = random_()
        u_error = random_()
        u_after = random_()
        u_lost = random_()
        sigma, cap = self.latency_sigma, self.latency_max_s
        before = _lognormal(random_(), self.latency_before_s, sigma, cap)
        after = _lognormal(random_(), self.latency_after_s, sigma, cap)
        action = "ok"
        if u_throttle < self.p_throttle:
            action = "throttle"
        elif u_reset < self.p_reset_before_commit:
            action = "reset"
        elif u_error < self.p_server_error:
            action = "error_after" if u_after < self.server_error_after_commit else "error_before"
        elif u_lost < self.p_lost_after_commit:
            action = "lost"
        return before, after, action


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n = args.n
    cases = {
        "brownout 12:00 (no misbehaviour)": load_profile("brownout").at(12 * 3600.0),
        "calm (no misbehaviour)": load_profile("calm").at(0.0),
    }
    rng = random.Random(0)
    print(f"n={n} calls per timing, best of {args.rounds} alternating rounds")
    for name, faults in cases.items():
        old = OldFaults(
            **{k: getattr(faults, k) for k in Faults.__dataclass_fields__ if k != "misbehaves"}
        )
        new_t, old_t = math.inf, math.inf
        for _ in range(args.rounds):
            new_t = min(new_t, timeit.timeit(lambda f=faults: f.draw_parts(rng), number=n) / n)
            old_t = min(old_t, timeit.timeit(lambda f=old: f.draw_parts(rng), number=n) / n)
        print(
            f"{name:38s} new {new_t * 1e9:7.1f} ns  old {old_t * 1e9:7.1f} ns"
            f"  new/old = {new_t / old_t:5.2f}"
        )
    misbehaving = load_profile("misbehaving").at(12 * 3600.0)
    plain = load_profile("calm").at(0.0)
    m = min(timeit.repeat(lambda: misbehaving.draw_parts(rng), number=n, repeat=args.rounds)) / n
    p = min(timeit.repeat(lambda: plain.draw_parts(rng), number=n, repeat=args.rounds)) / n
    print(
        f"{'misbehaving 12:00 vs calm':38s} {m * 1e9:7.1f} ns vs {p * 1e9:7.1f} ns = {m / p:5.2f} x"
    )


if __name__ == "__main__":
    main()
