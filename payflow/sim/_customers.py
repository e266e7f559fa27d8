"""The customers of a simulated day: who arrives when, and what they do in front of the page.

Rule: a customer only sees pages and emails. They click submit, wait as long as their
patience lasts, and when nothing definite is on screen they click again (unhappy
customer 3), reload (the browser re-POSTs; a disabled button cannot stop that) or give
up; promised an email, they wait for it only so long. What the page shows is the
backend's business (:mod:`payflow.sim._backend`); the customers call its ``submit``.

Every draw comes from the customers' own streams, so the same people shop under every
strategy (common random numbers).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Generator
from typing import Any

import simpy

from payflow.provider.faults import DAY_S
from payflow.sim._order import Order, note
from payflow.sim._scenarios import Scenario
from payflow.sim._strategies import Strategy

__all__ = ["DEFINITE", "Customers", "draw_email_patience", "draw_orders"]

#: Page messages that tell the customer the outcome (DESIGN: time to feedback).
DEFINITE = frozenset({"success", "failed", "email"})


class Customers:
    """The day's customers: :meth:`arrivals` is the SimPy process that brings them in.

    ``submit(order)`` is the shop's checkout form (the event fires with the page it
    shows); ``active`` counts customers still in front of a page.
    """

    def __init__(
        self,
        env: simpy.Environment,
        scenario: Scenario,
        strategy: Strategy,
        orders: list[Order],
        rng: random.Random,
        submit: Callable[[Order], simpy.Event],
    ) -> None:
        self.env = env
        self.scenario = scenario
        self.strategy = strategy
        self.orders = orders
        self.rng = rng
        self.submit = submit
        self.active = 0
        self.last_arrival = orders[-1].arrival if orders else 0.0
        # A spinner or a "taking longer" notice (with no email to promise) keeps people
        # waiting longer and clicking less.
        self._spinner = strategy.feedback == "spinner" or (
            strategy.delay_notice_s is not None and not strategy.email
        )

    def arrivals(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        for order in self.orders:
            delay = order.arrival - env.now
            if delay > 0:
                yield env.timeout(delay)
            env.process(self._customer(order))

    def _customer(self, order: Order) -> Generator[simpy.Event, Any, None]:
        self.active += 1
        try:
            if self.strategy.mode == "async":
                yield from self._on_status_page(order)
            else:
                yield from self._on_checkout_page(order)
        finally:
            self.active -= 1

    def _show(self, order: Order, message: str) -> bool:
        """The page shows ``message``; True if it is a definite outcome."""
        now = self.env.now
        order.last_page = message
        note(order, now, "page", message)
        if message in DEFINITE:
            if message == "email" and order.email_promised_at is None:
                order.email_promised_at = now
                self._await_email(order)
            elif message != "email":
                order.told = message
                if order.outcome_at is None:
                    order.outcome_at = now
            if order.feedback_at is None:
                order.feedback_at = now
                order.feedback = message
            return True
        return False

    def _await_email(self, order: Order) -> None:
        """The customer was promised an email: after their own patience without one they
        give up on the shop (order elsewhere), and some of them contact support."""
        if not math.isfinite(order.email_patience):
            return

        def lapse(_: simpy.Event) -> None:
            if order.email_at is not None:
                return
            now = self.env.now
            order.email_gave_up_at = now
            order.gave_up = True
            note(order, now, "customer", "no email yet: gives up on the shop")
            if order.support_draw < self.scenario.customers.contact_support:
                order.support_contact = True
                note(order, now, "customer", "contacts support")

        self.env.timeout(order.email_patience).callbacks.append(lapse)

    def _leave(self, order: Order, gave_up: bool) -> None:
        now = self.env.now
        order.left_at = now
        order.gave_up = gave_up
        note(order, now, "customer", "gives up" if gave_up else "leaves")

    def _first_clicks(self, order: Order) -> simpy.Event:
        """The submit click, and the double click some customers make right after it."""
        env, strategy = self.env, self.strategy
        order.clicks += 1
        note(order, env.now, "customer", "clicks submit")
        page = self.submit(order)
        if self.rng.random() < self.scenario.customers.double_click:
            order.clicks += 1
            if strategy.debounce:
                note(order, env.now, "customer", "double click ignored (button disabled)")
            else:
                note(order, env.now, "customer", "double click: submits again")
                page = self.submit(order)
        return page

    def _on_checkout_page(self, order: Order) -> Generator[simpy.Event, Any, None]:
        """Sync checkout: the customer watches the page their POST is waiting on."""
        env, rng, c, strategy = self.env, self.rng, self.scenario.customers, self.strategy
        patience = order.patience * (c.spinner_patience if self._spinner else 1.0)
        click_p = c.click_again * (c.spinner_click if self._spinner else 1.0)
        page = self._first_clicks(order)
        notice: simpy.Event | None = None
        if strategy.delay_notice_s is not None:
            notice = env.timeout(strategy.delay_notice_s)
        while True:
            timer = env.timeout(patience)
            waits = [page, timer] if notice is None else [page, timer, notice]
            yield env.any_of(waits)
            if page.triggered:
                if self._show(order, str(page.value)):
                    self._leave(order, gave_up=False)
                    return
                # A generic error page: nothing definite.
                if order.submits < c.max_submits and rng.random() < c.retry_after_error:
                    yield env.timeout(c.think_s)
                    order.clicks += 1
                    note(order, env.now, "customer", "submits again after the error page")
                    page = self.submit(order)
                    continue
                self._leave(order, gave_up=True)
                return
            if notice is not None and notice.triggered:
                notice = None
                if strategy.email and self._show(order, "email"):
                    self._leave(order, gave_up=False)
                    return
                note(order, env.now, "page", "this is taking longer than usual")
                continue
            # Patience ran out with nothing on the screen.
            u = rng.random()
            if u < click_p and order.submits < c.max_submits:
                order.clicks += 1
                if strategy.debounce:
                    note(order, env.now, "customer", "clicks again (button disabled)")
                else:
                    note(order, env.now, "customer", "nothing happens: clicks submit again")
                    page = self.submit(order)
                continue
            if u < click_p + c.reload and order.submits < c.max_submits:
                note(order, env.now, "customer", "reloads the page (re-POST)")
                page = self.submit(order)
                continue
            self._leave(order, gave_up=True)
            return

    def _on_status_page(self, order: Order) -> Generator[simpy.Event, Any, None]:
        """Accept-then-process: after the 202 the customer watches a status page."""
        env, rng, c, strategy = self.env, self.rng, self.scenario.customers, self.strategy
        patience = order.patience * c.spinner_patience  # the page says it is processing
        page = self._first_clicks(order)
        quick = self.scenario.backend.accept_s < patience
        while True:
            if quick:
                yield page  # the backend answers (202 or an error page) within accept_s
            else:
                yield page | env.timeout(patience)
                if not page.triggered:
                    self._leave(order, gave_up=True)
                    return
            if page.value == "accepted":
                break
            # The backend was down: an error page.
            self._show(order, str(page.value))
            if order.submits < c.max_submits and rng.random() < c.retry_after_error:
                yield env.timeout(c.think_s)
                order.clicks += 1
                page = self.submit(order)
                continue
            self._leave(order, gave_up=True)
            return
        if strategy.email and self._show(order, "email"):
            self._leave(order, gave_up=False)
            return
        self._show(order, "processing")
        settled = order.settled
        assert settled is not None
        while True:
            timer = env.timeout(patience)
            yield settled | timer
            if settled.triggered:
                if self._show(order, str(settled.value)):
                    self._leave(order, gave_up=False)
                else:
                    self._leave(order, gave_up=True)
                return
            if rng.random() < c.click_again + c.reload:
                note(order, env.now, "customer", "reloads the status page")
                continue
            self._leave(order, gave_up=True)
            return


def draw_orders(scenario: Scenario, rng: random.Random, trace: bool, first: int = 1) -> list[Order]:
    """Arrival times by thinning the diurnal curve, plus amount and patience per order.

    Exactly ``traffic.day_orders`` arrivals (the day's real load): candidates
    uniform over the day are kept with probability ``weight(t) / max weight``
    (the arrival times of a Poisson process given its count). Orders are
    numbered from ``first``.
    """
    traffic, customers = scenario.traffic, scenario.customers
    peak = max(w for _, w in traffic.diurnal)
    weight = traffic.rate_weight
    times: list[float] = []
    random_ = rng.random
    count = traffic.day_orders
    while len(times) < count:
        t = random_() * DAY_S
        if random_() * peak < weight(t):
            times.append(t)
    times.sort()
    low, high = traffic.amount
    p_low, p_high = customers.patience_range_s
    mu = math.log(customers.patience_median_s)
    orders = []
    for i, t in enumerate(times):
        amount = rng.randint(low, high)
        patience = min(p_high, max(p_low, rng.lognormvariate(mu, customers.patience_sigma)))
        orders.append(Order(first + i, t, amount, patience, trace))
    return orders


def draw_email_patience(scenario: Scenario, orders: list[Order], rng: random.Random) -> None:
    """Each customer's patience for a promised email, and their support-contact draw.

    Two draws per order from a stream of their own, whatever the strategy, so
    the same people wait under every strategy and the other streams are untouched.
    """
    c = scenario.customers
    mu = math.log(c.email_patience_median_s)
    low, high = c.email_patience_range_s
    for order in orders:
        order.email_patience = min(high, max(low, rng.lognormvariate(mu, c.email_patience_sigma)))
        order.support_draw = rng.random()
