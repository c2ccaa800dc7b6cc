"""Raw TCP to a label printer (port 9100, "JetDirect"), as Zebra-compatible printers take ZPL."""

from __future__ import annotations

import socket

DEFAULT_PORT = 9100
CONNECT_TIMEOUT_S = 5.0
SEND_TIMEOUT_S = 10.0


class PrinterUnreachable(Exception):
    """The printer did not take the label: nothing was printed."""


def parse_address(text: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6 address]:port``; the port defaults to 9100."""
    value = text.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest.removeprefix(":") if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"printer address {text!r} is not host:port")
    else:
        host, _, port_text = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    if not host:
        raise ValueError(f"printer address {text!r} has no host")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"printer address {text!r}: the port is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"printer address {text!r}: the port is out of range")
    return host, port


def send(address: str, payload: bytes) -> None:
    """Deliver ``payload`` to the printer, or raise ``PrinterUnreachable`` saying why.

    The printer has taken the label when every byte was written and the connection closed
    in order (our FIN sent after the data); a refused or timed-out connection, or one reset
    while sending, means it did not.
    """
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as connection:
            connection.settimeout(SEND_TIMEOUT_S)
            connection.sendall(payload)
            connection.shutdown(socket.SHUT_WR)
    except TimeoutError:
        raise PrinterUnreachable(
            f"the printer at {host}:{port} did not answer within {CONNECT_TIMEOUT_S:g} s"
        ) from None
    except ConnectionRefusedError:
        raise PrinterUnreachable(
            f"the printer at {host}:{port} refused the connection (is it on, on port {port}?)"
        ) from None
    except OSError as error:
        raise PrinterUnreachable(
            f"the printer at {host}:{port} could not be reached: {error.strerror or error}"
        ) from None
