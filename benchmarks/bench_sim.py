"""Simulation speed, measured in one run against bare SimPy (the floor any SimPy model pays).

Prints, all from this one run on this machine:

1. bare SimPy M/M/c: customers per second (a process per customer + ``simpy.Resource``);
2. ``payflow.sim.run`` of a slow-provider day under ``recommended`` (50,000 orders,
   ``--orders`` to scale down, ``trace=False``): orders/s and provider calls/s, and
   their ratios to the bare rate (per order and per provider call);
3. peak memory of that day, in a fresh child process (``VmHWM``, and the
   interpreter's baseline so the day's own share is visible);
4. the effect protocol, counted: effects and dataclass records per provider call on
   the happy path, against the figures before the one-loop redesign;
5. sweep speed-up: the same small ``payflow.sim.sweep`` on a process pool of 1 and 2
   workers, three times (median and range: a shared host drifts between runs; only
   meaningful on an otherwise idle machine with >= 2 cores).

    python benchmarks/bench_sim.py [--orders 50000] [--sweep-orders 2000] [--skip-memory]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
import types
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import ClassVar

import simpy

from payflow.core import Policy, Response
from payflow.core import _flows as flows
from payflow.core._calls import Context
from payflow.core.messages import Call, Sleep
from payflow.drivers import ScriptedPerformer, run
from payflow.sim import run as run_day
from payflow.sim._strategies import get_strategy
from payflow.sim.sweep import sweep


def bare_mmc(
    customers: int,
    arrival_rate: float = 9.0,
    service_rate: float = 1.0,
    servers: int = 10,
    seed: int = 0,
) -> float:
    """Customers/s of a textbook SimPy M/M/c: one process per customer, a Resource."""
    rng = random.Random(seed)
    env = simpy.Environment()
    counter = simpy.Resource(env, capacity=servers)
    waits: list[float] = []

    def customer(env: simpy.Environment) -> simpy.events.ProcessGenerator:
        arrived = env.now
        with counter.request() as req:
            yield req
            waits.append(env.now - arrived)
            yield env.timeout(rng.expovariate(service_rate))

    def source(env: simpy.Environment) -> simpy.events.ProcessGenerator:
        for _ in range(customers):
            yield env.timeout(rng.expovariate(arrival_rate))
            env.process(customer(env))

    env.process(source(env))
    start = time.perf_counter()
    env.run()
    elapsed = time.perf_counter() - start
    assert len(waits) == customers
    return customers / elapsed


class _CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it schedules (for the cost model only)."""

    made: ClassVar[list[_CountingEnvironment]] = []

    def __init__(self, initial_time: float = 0) -> None:
        super().__init__(initial_time)
        self.scheduled = 0
        _CountingEnvironment.made.append(self)

    def schedule(self, event: simpy.Event, priority: int = 1, delay: float = 0) -> None:
        self.scheduled += 1
        super().schedule(event, priority, delay)  # type: ignore[arg-type]


def events_scheduled(work: Callable[[], object]) -> int:
    """How many SimPy events ``work`` schedules (every Environment it makes counts them)."""
    real = simpy.Environment
    _CountingEnvironment.made.clear()
    simpy.Environment = _CountingEnvironment  # type: ignore[misc]
    try:
        work()
    finally:
        simpy.Environment = real  # type: ignore[misc]
    counted = sum(env.scheduled for env in _CountingEnvironment.made)
    _CountingEnvironment.made.clear()  # do not keep the counted model alive
    if not counted:
        raise RuntimeError("no SimPy events counted: the model did not use simpy.Environment")
    return counted


def day(orders: int, scenario: str, strategy: str) -> tuple[float, int, dict[str, object]]:
    start = time.perf_counter()
    result = run_day(scenario, strategy, seed=0, orders=orders, trace=False)
    elapsed = time.perf_counter() - start
    return elapsed, int(result.summary["provider_calls"]), result.summary


_CHILD = """
import resource, sys

def hwm():  # peak RSS of this process in KiB (VmHWM; ru_maxrss as a fallback)
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

try:  # forget the parent's peak that a forked child inherits (Linux clear_refs)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
from payflow.sim import run
imported = hwm()
run(sys.argv[1], sys.argv[2], seed=0, orders=int(sys.argv[3]), trace=False)
print(imported, hwm())
"""


def peak_memory_mb(orders: int, scenario: str, strategy: str) -> tuple[float, float]:
    """(peak RSS of a fresh child that runs the day, its peak after imports), in MiB."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, scenario, strategy, str(orders)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    imported, peak = (int(x) / 1024 for x in out)  # KiB on Linux
    return peak, imported


def sweep_seconds(workers: int, orders: int, seeds: int) -> float:
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        sweep(
            ["slow-provider-day", "calm-day"],
            ["naive", "recommended"],
            range(seeds),
            executor=pool,
            orders=orders,
            progress=False,
        )
    return time.perf_counter() - start


class _InstantProvider:
    """A performer answering the happy path at once: create, polls while the payer
    decides (pending twice), capture. Counts provider calls."""

    def __init__(self, responses: dict[str, object]) -> None:
        self.responses, self.clock, self.polls, self.calls = responses, 0.0, 0, 0

    def now(self) -> float:
        return self.clock

    def call(self, call: Call) -> object:
        self.calls += 1
        op = call.request.operation
        if op == "poll":
            self.polls += 1
            return self.responses["pending" if self.polls < 3 else "reserved"]
        return self.responses[op if op == "create" else "capture"]

    def sleep(self, sleep: Sleep) -> None:
        self.clock += sleep.seconds

    def save(self, save: object) -> None: ...
    def forget(self, forget: object) -> None: ...
    def emit(self, event: object) -> None: ...
    def authenticate(self, authenticate: object) -> bool:
        return False

    def ask_operator(self, question: object) -> bool:
        return True


def _happy_path_replies() -> dict[str, object]:
    def body(state: str) -> dict[str, object]:
        return {"paymentId": "p-1", "orderId": "o-1", "amount": 1000, "currency": "DKK",
                "state": state, "pollDelayInMs": 1000, "refundedAmount": 0}  # fmt: skip

    return {
        "create": Response(201, body("initiated")),
        "pending": Response(200, body("initiated")),
        "reserved": Response(200, body("reserved")),
        "capture": Response(200, body("captured")),
    }


def flows_alone(orders: int = 20_000, strategy: str = "recommended") -> tuple[float, int]:
    """Orders/s of the shipped pay flow alone: an instant scripted provider, no SimPy,
    no ledger (create, three polls while the payer decides, capture). Any model that
    runs the shipped flows pays at least this per order. Returns (orders/s, calls/order)."""
    st = get_strategy(strategy)
    rng = random.Random(0)
    replies = _happy_path_replies()
    calls = 0
    start = time.perf_counter()
    for _ in range(orders):  # the replies name order o-1: every order is o-1 (no journal here)
        provider = _InstantProvider(replies)
        ctx = Context(st.policy, rng, st.new_budget(), clock=provider.now)
        run(flows.pay("o-1", 1000, "DKK", ctx), provider)  # type: ignore[arg-type]
        calls += provider.calls
    return orders / (time.perf_counter() - start), calls // orders


#: The protocol before the one-loop redesign (commit f474fd8, same happy path, same
#: count): 39 effects (17 clock reads, 13 Emit wrappers) and 53 dataclass records.
BEFORE_REDESIGN = {"effects per call": 39 / 4, "records per call": 53 / 4}


def protocol_per_call() -> dict[str, float]:
    """Effects yielded and dataclass records built per provider call on the happy
    path of ``pay`` (create, poll, poll, capture), counted -- not timed: every
    effect through the loop, and every ``__init__`` of a dataclass (effects,
    events, requests, replies, records) while the flow runs."""
    counted: Counter[str] = Counter()

    def profile(frame: types.FrameType, event: str, arg: object) -> None:
        code = frame.f_code
        if event == "call" and code.co_name == "__init__" and code.co_filename == "<string>":
            counted["records"] += 1  # dataclasses' generated __init__

    replies = _happy_path_replies()
    script = ScriptedPerformer(
        [replies["create"], replies["pending"], replies["reserved"], replies["capture"]]
    )
    flow = flows.pay("o-1", 1000, "DKK", script.context(Policy(), random.Random(3)))
    sys.setprofile(profile)
    try:
        script.run(flow)
    finally:
        sys.setprofile(None)
    calls = len(script.calls)
    return {
        "effects per call": len(script.log) / calls,
        "records per call": counted["records"] / calls,
    }


def _bare_job(seed: int) -> float:
    return bare_mmc(60_000, seed=seed)


def pool_seconds(workers: int, jobs: int = 8) -> float:
    """Seconds for ``jobs`` bare M/M/c runs on a process pool of ``workers``."""
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_bare_job, range(jobs)))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--scenario", default="slow-provider-day")
    parser.add_argument("--strategy", default="recommended")
    parser.add_argument("--bare", type=int, default=200_000, help="bare M/M/c customers")
    parser.add_argument("--sweep-orders", type=int, default=2_000)
    parser.add_argument("--sweep-seeds", type=int, default=4)  # 16 runs: a balanced tail
    parser.add_argument("--sweep-repeats", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()

    print(
        f"python {sys.version.split()[0]}, simpy {simpy.__version__}, "
        f"{os.cpu_count()} cpus, load avg {os.getloadavg()[0]:.2f}"
    )
    bare = max(bare_mmc(args.bare, seed=s) for s in range(2))
    print(f"bare SimPy M/M/c (c=10, rho=0.9): {bare:10,.0f} customers/s (best of 2)")

    elapsed, calls, summary = day(args.orders, args.scenario, args.strategy)
    bare_after = bare_mmc(args.bare, seed=2)
    bare = max(bare, bare_after)  # the faster bare rate: a conservative ratio
    orders_s, calls_s = args.orders / elapsed, calls / elapsed
    print(f"{args.strategy} on {args.scenario}, {args.orders:,} orders: {elapsed:.1f} s")
    print(f"  {orders_s:10,.0f} orders/s  = {orders_s / bare:.3f} of bare per order")
    print(
        f"  {calls_s:10,.0f} calls/s   = {calls_s / bare:.3f} of bare per provider call "
        f"({calls / args.orders:.1f} calls/order)"
    )
    print(
        f"  shipped {summary['fulfilled']:,}, refunds {summary['refunds']:,}, "
        f"duplicates {summary['duplicate_charges']}, orphans {summary['orphan_charges']}"
    )

    # The cost model: SimPy events are the floor of any SimPy model, so count them.
    count_orders = min(args.orders, 5_000)
    per_customer = events_scheduled(lambda: bare_mmc(20_000)) / 20_000
    counted: dict[str, object] = {}

    def counted_day() -> None:
        counted.update(run_day(args.scenario, args.strategy, seed=0, orders=count_orders,
                           trace=False).summary)  # fmt: skip

    per_order = events_scheduled(counted_day) / count_orders
    per_call = per_order / float(counted["provider_calls_per_order"])  # type: ignore[arg-type]
    print(
        f"SimPy events ({count_orders:,}-order day): {per_order:.1f} per order "
        f"({per_call:.1f} per provider call) against {per_customer:.1f} per bare customer: "
        f"if an event cost what a bare one does and the model's own logic nothing, the "
        f"per-order ratio would be about {per_customer / per_order:.2f} at most"
    )

    after = protocol_per_call()
    print(
        "effect protocol, happy-path pay (4 calls), counted: "
        + ", ".join(
            f"{name} {after[name]:.2f} (before the redesign {BEFORE_REDESIGN[name]:.2f})"
            for name in after
        )
    )

    flow_rate, flow_calls = flows_alone()
    print(
        f"the shipped pay flow alone ({flow_calls} calls, no SimPy, no ledger): "
        f"{flow_rate:,.0f} orders/s = {flow_rate / bare:.2f} of bare: above what any model "
        f"that runs the shipped flows could reach per order (the cheapest order, nothing else)"
    )

    if not args.skip_memory:
        peak, imported = peak_memory_mb(args.orders, args.scenario, args.strategy)
        print(
            f"peak memory (child VmHWM), {args.orders:,}-order day: {peak:.0f} MiB "
            f"({imported:.0f} MiB after imports, so {peak - imported:.0f} MiB for the day)"
        )

    if not args.skip_sweep:
        n_runs = 2 * 2 * args.sweep_seeds
        speedups, host = [], []
        for _ in range(args.sweep_repeats):  # 1 and 2 workers back to back: a shared host drifts
            one = sweep_seconds(1, args.sweep_orders, args.sweep_seeds)
            two = sweep_seconds(2, args.sweep_orders, args.sweep_seeds)
            speedups.append(one / two)
            # The machine's own 2-worker speed-up on the same kind of work, measured now.
            host.append(pool_seconds(1) / pool_seconds(2))
            print(
                f"sweep of {n_runs} runs x {args.sweep_orders:,} orders: 1 worker {one:.1f} s, "
                f"2 workers {two:.1f} s, speed-up {one / two:.2f}; bare SimPy on the same "
                f"pools {host[-1]:.2f} (load avg now {os.getloadavg()[0]:.2f})"
            )
        print(
            f"sweep speed-up on 2 workers: median {statistics.median(speedups):.2f} of "
            f"{len(speedups)} (range {min(speedups):.2f}-{max(speedups):.2f}); the host's own "
            f"for bare SimPy: median {statistics.median(host):.2f} (range {min(host):.2f}-"
            f"{max(host):.2f})"
        )


if __name__ == "__main__":
    main()
