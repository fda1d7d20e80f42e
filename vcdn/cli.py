"""The `vcdn` command: one entry point that hands each subcommand to its component.

A component is imported only inside its own subcommand, so `vcdn package` never pays for
(or breaks on) the steering or edge code. Each component exposes ``main(argv) -> int``.
Errors that are the user's to fix (`VcdnError`) become one line on stderr and exit 1.
"""

from __future__ import annotations

import importlib
import sys
from typing import Final

from vcdn import __version__
from vcdn.errors import VcdnError

COMMANDS: Final[dict[str, tuple[str, str, str]]] = {
    "package": ("packager.cli", "main", "package a source video into HLS and publish it"),
    "live": ("packager.livecli", "main", "encode a live input and publish it to the origin"),
    "origin": ("origin.content.cli", "main", "serve the origin content store over HTTP"),
    "control": ("origin.control.cli", "main", "run the control-plane API"),
    "edge": ("edge.cli", "main", "run the edge cache engine alone (caching reverse proxy)"),
    "appliance": ("appliance.cli", "main", "run an appliance: edge + register, heartbeat, fill"),
    "appliance-ctl": ("appliance.ctl", "main", "operator tool for a running appliance"),
    "steering": ("steering.cli", "main", "run DNS and HTTP playback steering"),
    "up": ("onebox.up", "main", "run the whole CDN on this machine and play a title"),
    "cert": ("vcdn.certcli", "main", "obtain a TLS certificate from an ACME server (HTTP-01)"),
}


def usage() -> str:
    lines = [f"vcdn {__version__}: an open-source video CDN", "", "usage: vcdn COMMAND [ARGS]", ""]
    width = max(map(len, COMMANDS))
    for name, (_, _, text) in COMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {text}")
    lines += ["", "Run 'vcdn COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"vcdn {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"vcdn: unknown command {name!r}.\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    module = importlib.import_module(module_name)
    try:
        return int(getattr(module, func_name)(rest) or 0)
    except VcdnError as exc:
        print(f"vcdn {name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
