"""``litemq web``: the management page, served with the standard library."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket

from .common import UsageError, given, read_only

TOKEN_VARIABLE = "LITEMQ_WEB_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is this machine's own (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def cmd_web(args: argparse.Namespace) -> int:
    from ..web import management_app, serve

    token = args.token or os.environ.get(TOKEN_VARIABLE) or None
    loopback = is_loopback(args.host)
    if not loopback and token is None:
        raise UsageError(f"--host {args.host} is reachable from other machines: give --token (or ${TOKEN_VARIABLE}), "
                         "which every request must present, or bind to 127.0.0.1")
    read_only(args, lambda store: None)  # a missing file or schema is said at once, before serving
    # On a loopback address without a token, only names of this machine are answered: a page on another site
    # cannot reach it by pointing a name of its own at 127.0.0.1 (DNS rebinding).
    hosts = None if token is not None else {"127.0.0.1", "localhost", "::1", "[::1]", args.host.lower()}
    app = management_app(given(args), read_only=args.read_only, token=token, allowed_hosts=hosts,
                         sample_seconds=args.sample_seconds)
    try:
        serve(app, args.host, args.port)
    except OSError as exc:
        raise UsageError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from None
    finally:
        app.rates.stop()
        app.source.close()
    return 0
