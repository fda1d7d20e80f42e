"""`vcdn cert obtain --acme-directory URL --domain NAME ... --cert FILE --key FILE`.

Answers the ACME server's HTTP-01 requests on a listener of its own (`--http-port`,
port 80 by default, which is where a public ACME CA validates), then writes the full
chain and its key atomically (the key readable by its owner only), so a server watching
the files (`vcdn.tls_io.CertWatch`) never reads half of either.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from vcdn.acme_client import Issued, obtain, validity
from vcdn.acme_http import Challenges, make_app
from vcdn.errors import ConfigError
from vcdn.httplimits import HttpLimits
from vcdn.httpserve.server import start

USAGE = "usage: vcdn cert obtain --acme-directory URL --domain NAME [...] --cert FILE --key FILE"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vcdn cert obtain", description=__doc__.split("\n")[2])
    p.add_argument("--acme-directory", required=True, metavar="URL",
                   help="the ACME server's directory URL")
    p.add_argument("--domain", action="append", required=True, metavar="NAME",
                   help="a name the certificate is for; repeat for more")
    p.add_argument("--cert", type=Path, required=True, help="where to write the full chain")
    p.add_argument("--key", type=Path, required=True, help="where to write its private key")
    p.add_argument("--email", default="", help="contact address for the ACME account")
    p.add_argument("--account-key", type=Path,
                   help="the ACME account key (JSON JWK); made there when missing")
    p.add_argument("--http-host", default="0.0.0.0", help="address of the HTTP-01 listener")
    p.add_argument("--http-port", type=int, default=80, help="port of the HTTP-01 listener")
    p.add_argument("--ca-bundle", type=Path,
                   help="CA certificates to verify the ACME server with (default: system)")
    return p


def write_pair(issued: Issued, cert: Path, key: Path) -> None:
    """Key first, then chain, each by rename: a watcher sees the old pair or the new."""
    for path, data, mode in ((key, issued.key_pem, 0o600), (cert, issued.fullchain_pem, 0o644)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)


async def _obtain(args: argparse.Namespace) -> Issued:
    challenges = Challenges()
    runner, url = await start(make_app(challenges), args.http_host, args.http_port,
                              HttpLimits())
    try:
        print(f"vcdn cert: answering HTTP-01 on {url}", file=sys.stderr, flush=True)
        return await asyncio.to_thread(
            obtain, args.acme_directory, list(dict.fromkeys(args.domain)), challenges,
            email=args.email, account_key=args.account_key, ca_bundle=args.ca_bundle)
    finally:
        await runner.cleanup()


def main(argv: list[str]) -> int:
    if argv[:1] != ["obtain"]:
        print(USAGE, file=sys.stderr)
        return 2
    args = _parser().parse_args(argv[1:])
    if args.ca_bundle is not None and not args.ca_bundle.is_file():
        raise ConfigError(f"CA bundle '{args.ca_bundle}' does not exist.")
    issued = asyncio.run(_obtain(args))
    write_pair(issued, args.cert, args.key)
    _, not_after = validity(issued.fullchain_pem)
    print(f"Wrote {args.cert} and {args.key} for {', '.join(args.domain)}, valid until "
          f"{not_after:%Y-%m-%d %H:%M} UTC.")
    return 0
