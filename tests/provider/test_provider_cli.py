"""``payflow provider serve``: option parsing and clear errors (no server is started)."""

from __future__ import annotations

import argparse

import pytest

from payflow.cli import main
from payflow.provider import _cli as cli


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["provider", "serve", *argv])


def test_parse_clients() -> None:
    assert cli.parse_clients(["a:t1", "b:t:2"]) == {"a": "t1", "b": "t:2"}


@pytest.mark.parametrize("value", ["nocolon", ":tok", "id:", ""])
def test_bad_client_names_the_option_but_not_the_token(value: str) -> None:
    with pytest.raises(ValueError, match="--client") as info:
        cli.parse_clients([value])
    assert "tok" not in str(info.value)


def test_duplicate_client() -> None:
    with pytest.raises(ValueError, match="twice"):
        cli.parse_clients(["a:x", "a:y"])


def test_defaults_and_handler() -> None:
    args = parse("--client", "a:b")
    assert args.host == "127.0.0.1" and args.port == 8000 and args.time_scale == 1.0
    assert args.handler is not None


def test_no_clients_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(cli.CLIENTS_ENV, raising=False)
    assert main(["provider", "serve", "--host", "0.0.0.0"]) == 2
    assert "--client" in capsys.readouterr().err


def test_a_loopback_server_without_clients_makes_and_prints_a_demo_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict[str, object] = {}

    def fake_serve(clients: dict[str, str], **kwargs: object) -> int:
        seen.update(clients=clients)
        return 0

    monkeypatch.setattr("payflow.provider._serve.serve", fake_serve)
    monkeypatch.delenv(cli.CLIENTS_ENV, raising=False)
    assert main(["provider", "serve"]) == 0
    clients = seen["clients"]
    assert isinstance(clients, dict) and list(clients) == ["demo"]
    out = capsys.readouterr().out
    assert clients["demo"] in out and len(clients["demo"]) >= 20


def test_unknown_profile_lists_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["provider", "serve", "--client", "a:secret-tok", "--faults", "nope"]) == 2
    err = capsys.readouterr().err
    assert "calm" in err and "secret-tok" not in err


def test_clients_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fake_serve(clients: dict[str, str], **kwargs: object) -> int:
        seen.update(clients=clients, **kwargs)
        return 0

    monkeypatch.setattr("payflow.provider._serve.serve", fake_serve)
    monkeypatch.setenv(cli.CLIENTS_ENV, "a:t1,b:t2")
    monkeypatch.setenv(cli.INSPECT_TOKEN_ENV, "look")
    args = parse("--client", "c:t3", "--faults", "calm", "--time-scale", "60", "--start", "08:30")
    assert args.handler(args) == 0
    assert seen["clients"] == {"a": "t1", "b": "t2", "c": "t3"}
    assert seen["inspect_token"] == "look"
    assert seen["day_offset_s"] == 8.5 * 3600
    assert seen["time_scale"] == 60.0


@pytest.mark.parametrize(
    "argv", [["--time-scale", "0"], ["--time-scale", "x"], ["--start", "25:00"]]
)
def test_bad_values_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse("--client", "a:b", *argv)
    assert info.value.code == 2
