"""A payment process for the crash tests: run as a script, killed at random points.

``python _child.py pay BASE_URL CLIENT_ID JOURNAL ORDER...``
    recover() at start-up (prints ``RECOVER <json>``), then pays each order with
    ``keep_record=True``, prints ``PAID <order> <payment id>`` (the caller has
    stored the result) and acknowledges it. Every event prints ``EV <name>``.
``python _child.py recover BASE_URL CLIENT_ID JOURNAL``
    prints ``READY``, waits for a line on stdin, then recover() and ``RECOVER <json>``.

The token comes from the environment (``PAYFLOW_TOKEN``), never the command line.
"""

from __future__ import annotations

import json
import os
import sys

from payflow.client import PaymentClient
from payflow.core import Policy, PollSchedule, RetryPolicy, Timeouts
from payflow.core._backoff import Backoff, Jitter
from payflow.errors import PayflowError

POLICY = Policy(
    retry=RetryPolicy(
        deadline=3.0,
        backoff=Backoff(Jitter.FULL, 0.001, 0.01),
        timeouts=Timeouts(write=0.2, read=0.1, poll=0.1),
    ),
    polling=PollSchedule(
        deadline=0.3, default_delay=0.005, backoff=Backoff(Jitter.FULL, 0.001, 0.01)
    ),
)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    mode, base_url, client_id, journal, *orders = sys.argv[1:]
    token = os.environ["PAYFLOW_TOKEN"]

    def hook(event: object) -> None:
        say(f"EV {type(event).__name__}")

    with PaymentClient(base_url, client_id, token, journal=journal, policy=POLICY,
                       hooks=[hook], budget=None) as client:  # fmt: skip
        if mode == "recover":
            say("READY")
            sys.stdin.readline()
        results = client.recover()
        say("RECOVER " + json.dumps([[r.reference, r.action, r.state] for r in results]))
        for order in orders:
            try:
                result = client.pay(order, 100, keep_record=True)
            except PayflowError as exc:
                say(f"FAILED {order} {type(exc).__name__}")
                continue
            say(f"PAID {order} {result.payment_id}")
            client.acknowledge(result)
            say(f"ACK {order}")


if __name__ == "__main__":
    main()
