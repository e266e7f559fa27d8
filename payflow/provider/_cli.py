"""``payflow provider serve``: the reference provider on the command line.

Clients come from ``--client ID:TOKEN`` (repeatable) and from the environment
variable ``PAYFLOW_CLIENTS`` (``ID:TOKEN[,ID:TOKEN...]``), so tokens need not
appear in ``ps``; the inspection token likewise from ``--inspect-token`` or
``PAYFLOW_INSPECT_TOKEN``.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["CLIENTS_ENV", "INSPECT_TOKEN_ENV", "parse_clients", "register"]

#: Environment variable with ``ID:TOKEN[,ID:TOKEN...]``.
CLIENTS_ENV = "PAYFLOW_CLIENTS"
#: Environment variable with the inspection token.
INSPECT_TOKEN_ENV = "PAYFLOW_INSPECT_TOKEN"

_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})")


def parse_clients(values: Iterable[str], source: str = "--client") -> dict[str, str]:
    """Parse ``ID:TOKEN`` strings; errors name ``source`` but never echo a token."""
    clients: dict[str, str] = {}
    for n, value in enumerate(values, 1):
        client_id, sep, token = value.strip().partition(":")
        if not sep or not client_id or not token:
            raise ValueError(f"{source}: value #{n} must be CLIENT_ID:TOKEN")
        if client_id in clients:
            raise ValueError(f"{source}: client id {client_id!r} given twice")
        clients[client_id] = token
    return clients


def _day_offset(value: str) -> float:
    match = _TIME_RE.fullmatch(value.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise argparse.ArgumentTypeError(f"--start: {value!r} is not a time of day HH:MM")
    return float(int(match[1]) * 3600 + int(match[2]) * 60)


def _positive(option: str) -> Callable[[str], float]:
    """An argparse type for ``option``: a positive, finite number (the error names it)."""

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option}: {value!r} is not a number") from None
        if not number > 0 or number == float("inf"):
            raise argparse.ArgumentTypeError(f"{option}: must be a positive number, got {value}")
        return number

    return parse


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    from payflow.provider._serve import serve
    from payflow.provider.faults import load_profile

    env = os.environ if environ is None else environ
    clients: dict[str, str] = {}
    raw_env = env.get(CLIENTS_ENV, "")
    if raw_env.strip():
        clients.update(parse_clients(raw_env.split(","), CLIENTS_ENV))
    for client_id, token in parse_clients(args.client or []).items():
        clients[client_id] = token
    if not clients and _loopback(args.host):
        # As Jupyter prints its token: a loopback server with no clients gets a demo one.
        import secrets

        token = secrets.token_urlsafe(18)
        clients["demo"] = token
        print(
            "no --client given: this loopback server accepts a demo client\n"
            f"    client id: demo\n    token:     {token}\n"
            f"    e.g. payflow.PaymentClient('http://{args.host}:{args.port}', 'demo', '{token}')",
            flush=True,
        )
    if not clients:
        raise ValueError(
            f"--client: give at least one CLIENT_ID:TOKEN (or set {CLIENTS_ENV}); only a "
            "loopback --host gets a demo client"
        )
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port: {args.port} is not a TCP port")
    faults = load_profile(args.faults) if args.faults else None
    inspect = args.inspect_token or env.get(INSPECT_TOKEN_ENV) or None
    return serve(
        clients,
        host=args.host,
        port=args.port,
        faults=faults,
        time_scale=args.time_scale,
        inspect_token=inspect,
        seed=args.seed,
        day_offset_s=args.start,
        log_level=args.log_level,
        token_ttl=args.token_ttl,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )


def register(subparsers: Any) -> None:
    """Add ``provider serve`` and ``provider sample`` to the ``payflow`` command."""
    provider = subparsers.add_parser(
        "provider", help="the reference payment provider", description=__doc__
    )
    commands = provider.add_subparsers(dest="provider_command", metavar="COMMAND")
    provider.set_defaults(handler=lambda args: (provider.print_help(), 2)[1])
    serve = commands.add_parser(
        "serve",
        help="serve the provider over HTTP until stopped",
        description="Serve the MobilePay-style reference provider (docs/provider.md).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    serve.add_argument("--faults", metavar="NAME", help="fault profile name or a .toml path")
    serve.add_argument(
        "--time-scale",
        type=_positive("--time-scale"),
        default=1.0,
        metavar="X",
        help="simulated seconds per real second (default: 1)",
    )
    serve.add_argument(
        "--client",
        action="append",
        metavar="CLIENT_ID:TOKEN",
        help=f"a client allowed to call (repeatable; also ${CLIENTS_ENV})",
    )
    serve.add_argument(
        "--inspect-token",
        metavar="T",
        help=f"enable GET /_payflow/ledger with this bearer token (also ${INSPECT_TOKEN_ENV})",
    )
    serve.add_argument(
        "--token-ttl",
        type=_positive("--token-ttl"),
        default=None,
        metavar="SECONDS",
        help="only accept access tokens from POST /token, each valid this many seconds "
        "(default: the --client tokens are accepted and issued tokens never expire)",
    )
    serve.add_argument("--ssl-certfile", metavar="PEM", help="serve HTTPS with this certificate")
    serve.add_argument("--ssl-keyfile", metavar="PEM", help="the certificate's private key")
    serve.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    serve.add_argument(
        "--start",
        type=_day_offset,
        default=0.0,
        metavar="HH:MM",
        help="simulated time of day at start (default: 00:00)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (default: info)",
    )
    serve.set_defaults(handler=_serve)
    sample = commands.add_parser(
        "sample",
        help="draw an access log from a fault profile (the inverse of payflow fit)",
        description="Draw a log of calls (timestamp,method,path,status,latency_ms) from a "
        "fault profile: calls spread uniformly over one day, endpoint kinds from a fixed "
        "mix (docs/provider.md).",
    )
    sample.add_argument("--faults", required=True, metavar="PROFILE", help="profile name or path")
    sample.add_argument("--calls", type=int, required=True, metavar="N", help="calls to draw")
    sample.add_argument("--seed", type=int, default=0, metavar="S", help="random seed")
    sample.add_argument("--out", required=True, metavar="LOG.csv", help="the log to write")
    sample.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the caller gives up after this long (logged as no response); default: waits",
    )
    sample.add_argument(
        "--date", default=None, metavar="YYYY-MM-DD", help="write ISO-8601 timestamps on this day"
    )
    sample.set_defaults(handler=_sample)


def _sample(args: argparse.Namespace) -> int:
    from pathlib import Path

    from payflow.provider._sample import sample_log
    from payflow.provider.faults import load_profile

    if args.calls < 1:
        raise ValueError(f"--calls: must be >= 1, got {args.calls}")
    if args.date is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", args.date):
        raise ValueError(f"--date: {args.date!r} is not YYYY-MM-DD")
    out = Path(args.out)
    log = sample_log(
        load_profile(args.faults), args.calls, args.seed, timeout_s=args.timeout, date=args.date
    )
    if out.suffix == ".parquet":
        log.to_parquet(out, index=False)
    elif out.suffix in (".jsonl", ".ndjson"):
        log.to_json(out, orient="records", lines=True)
    else:
        log.to_csv(out, index=False)
    print(f"wrote {out}: {len(log)} calls drawn from {args.faults} (seed {args.seed})")
    return 0
