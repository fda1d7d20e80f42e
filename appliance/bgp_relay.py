"""The ExaBGP helper process: copy the JSON lines ExaBGP writes to our stdin into the
appliance's Unix socket, one line per message.

ExaBGP runs it (``process vcdn-relay { run python -m appliance.bgp_relay SOCKET; }``) and
respawns it if it exits; it exits when ExaBGP closes stdin or the appliance goes away.
Kept tiny and free of vcdn imports: it starts on every (re)connection of the session.
"""

from __future__ import annotations

import socket
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m appliance.bgp_relay SOCKET", file=sys.stderr)
        return 2
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(argv[0])
        except OSError as exc:
            print(f"bgp_relay: cannot connect to {argv[0]}: {exc.strerror}", file=sys.stderr)
            return 1
        for line in sys.stdin.buffer:
            try:
                sock.sendall(line if line.endswith(b"\n") else line + b"\n")
            except OSError:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
