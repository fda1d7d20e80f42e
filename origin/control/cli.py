"""`vcdn control`: run the control API, or manage its tokens.

    vcdn control [--db URL] [--host H] [--port P] [--config FILE.toml]
    vcdn control token create --role ROLE [--appliance ID] [--label TEXT] [--db URL]
    vcdn control token list [--db URL]
    vcdn control token revoke ID [--db URL]
    vcdn control appliance enroll --id ID --site SITE [--prefix P ...] [--label T] [--db URL]
    vcdn control appliance list [--db URL]

The server prints where it listens on stdout, logs JSON on stderr, and on SIGTERM/SIGINT
stops accepting, finishes what is in flight (a short grace period) and closes the store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from origin.control.auth import ROLES, Principal, check_role, hash_token, new_token
from origin.control.http_common import TOKEN_CACHE_SECONDS
from origin.control.settings import ENV_PREFIX, ControlSettings
from origin.control.store import EnrollmentRecord, Store, open_store, redact
from origin.control.validate import check_id
from vcdn.errors import ClientError, ConfigError
from vcdn.httpserve.server import start_service
from vcdn.keyreload import KeyWatch, read_keys
from vcdn.logs import event, setup_logging
from vcdn.prefixes import check_width
from vcdn.settings import load_settings
from vcdn.tls import add_tls_args, tls_overrides
from vcdn.tls_io import CertWatch

T = TypeVar("T")
SHUTDOWN_GRACE: Final = 5.0


def _settings(args: argparse.Namespace, **overrides: Any) -> ControlSettings:
    return load_settings(
        ControlSettings, args.config, overrides={"db": args.db, **overrides}, env_prefix=ENV_PREFIX
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vcdn control",
        description="Run the control-plane API (catalog, appliances, heartbeats, fill manifests).",
        epilog="Subcommand: 'vcdn control token create --role ROLE' prints a new API token once. "
        "'vcdn control appliance enroll --id ID --site SITE --prefix P' enrols an appliance and "
        f"prints its token. Bootstrap tokens for demos: {ENV_PREFIX}TOKENS='operator:SECRET'.",
    )
    p.add_argument(
        "--db", help="sqlite:///PATH (default sqlite:///data/control.db) or postgresql://..."
    )
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8090; 0 picks a free one)")
    p.add_argument("--config", type=Path, help="settings file (TOML)")
    add_tls_args(p)
    return p


def _token_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vcdn control token create",
        description="Create an API token, store its hash, print the token once.",
    )
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument(
        "--appliance", help="the enrolled appliance an appliance token is bound to (required)"
    )
    p.add_argument("--label", default="", help="a note for operators (who holds this token)")
    p.add_argument("--db", help="database URL, as for the server")
    p.add_argument("--config", type=Path, help="settings file (TOML)")
    return p


def main(argv: list[str]) -> int:
    if argv[:1] == ["token"]:
        return token_main(argv[1:])
    if argv[:1] == ["appliance"]:
        return appliance_main(argv[1:])
    args = _parser().parse_args(argv)
    settings = _settings(args, host=args.host, port=args.port, **tls_overrides(args))
    setup_logging("control", settings.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; pure asyncio also works
        pass
    asyncio.run(serve(settings))
    return 0


TOKEN_USAGE: Final = (
    "usage: vcdn control token create --role ROLE [--appliance ID] [--label TEXT] [--db URL]\n"
    "       vcdn control token list [--db URL]\n"
    "       vcdn control token revoke ID [--db URL]   (ID: the hash prefix 'list' shows)"
)
ID_CHARS: Final = 12


def token_main(argv: list[str]) -> int:
    actions = {"create": token_create, "list": token_list, "revoke": token_revoke}
    if not argv or argv[0] not in actions:
        print(TOKEN_USAGE, file=sys.stderr)
        return 2
    return actions[argv[0]](argv[1:])


async def _with_store(settings: ControlSettings, work: Callable[[Store], Awaitable[T]]) -> T:
    store = await open_store(settings.db)
    try:
        return await work(store)
    finally:
        await store.close()


def token_create(argv: list[str]) -> int:
    args = _token_parser().parse_args(argv)
    if args.appliance and args.role != "appliance":
        raise ConfigError("--appliance binds only tokens of the appliance role.")
    if args.role == "appliance" and not args.appliance:
        raise ConfigError(
            "An appliance token must be bound to one appliance: pass --appliance ID (the "
            "appliance must be enrolled: 'vcdn control appliance enroll --id ID --site SITE')."
        )
    settings = _settings(args)
    principal = Principal(check_role(args.role), args.appliance or None)
    token = new_token()

    async def create(store: Store) -> None:
        if args.appliance and await store.get_enrollment(args.appliance) is None:
            raise ConfigError(
                f"Appliance {args.appliance!r} is not enrolled in {redact(settings.db)}; "
                "enrol it first: 'vcdn control appliance enroll --id ID --site SITE'."
            )
        await store.add_token(hash_token(token), principal, args.label, time.time())

    asyncio.run(_with_store(settings, create))
    print(token)
    print(
        f"Created a {args.role} token in {redact(settings.db)}; it is shown only this once.",
        file=sys.stderr,
    )
    return 0


def _db_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--db", help="database URL, as for the server")
    p.add_argument("--config", type=Path, help="settings file (TOML)")
    return p


def token_list(argv: list[str]) -> int:
    args = _db_parser("vcdn control token list", "List stored tokens (never the tokens).")
    args = args.parse_args(argv)
    tokens = asyncio.run(_with_store(_settings(args), lambda s: s.list_tokens()))
    print(f"{'ID':<{ID_CHARS}}  {'ROLE':<9}  {'APPLIANCE':<16}  {'CREATED (UTC)':<19}  LABEL")
    for t in tokens:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t.created_at))
        print(
            f"{t.hash[:ID_CHARS]:<{ID_CHARS}}  {t.role:<9}  {t.subject or '-':<16}  "
            f"{created:<19}  {t.label}"
        )
    return 0


def token_revoke(argv: list[str]) -> int:
    parser = _db_parser("vcdn control token revoke", "Revoke a stored token by its ID.")
    parser.add_argument("id", help="the ID (hash prefix) that 'vcdn control token list' shows")
    args = parser.parse_args(argv)
    prefix = args.id.lower()
    if len(prefix) < 8 or any(c not in "0123456789abcdef" for c in prefix):
        raise ConfigError(
            "A token ID is at least 8 hex digits, as 'vcdn control token list' shows."
        )
    settings = _settings(args)

    async def revoke(store: Store) -> str:
        matches = [t for t in await store.list_tokens() if t.hash.startswith(prefix)]
        if len(matches) != 1:
            what = "No token" if not matches else f"{len(matches)} tokens"
            raise ConfigError(f"{what} in {redact(settings.db)} match ID {prefix!r}.")
        await store.delete_token(matches[0].hash)
        return matches[0].role

    role = asyncio.run(_with_store(settings, revoke))
    print(
        f"Revoked the {role} token {prefix}; running servers forget it within "
        f"{TOKEN_CACHE_SECONDS:g} s.",
        file=sys.stderr,
    )
    return 0


APPLIANCE_USAGE: Final = (
    "usage: vcdn control appliance enroll --id ID --site SITE [--prefix P ...] [--label T] "
    "[--db URL]\n"
    "       vcdn control appliance list [--db URL]"
)


def appliance_main(argv: list[str]) -> int:
    actions = {"enroll": appliance_enroll, "list": appliance_list}
    if not argv or argv[0] not in actions:
        print(APPLIANCE_USAGE, file=sys.stderr)
        return 2
    return actions[argv[0]](argv[1:])


def appliance_enroll(argv: list[str]) -> int:
    """Enrol (or re-enrol) an appliance and print a new token bound to it, once."""
    p = _db_parser(
        "vcdn control appliance enroll",
        "Enrol an appliance: its site and the client prefixes it may serve; prints its token.",
    )
    p.add_argument("--id", required=True, help="the appliance id (its settings file's 'id')")
    p.add_argument("--site", required=True, help="the site (ISP) it belongs to")
    p.add_argument("--prefix", action="append", default=[], help="an approved client prefix")
    p.add_argument("--label", default="", help="a note for operators")
    args = p.parse_args(argv)
    settings = _settings(args)
    try:
        check_id(args.id, "appliance id")
        check_id(args.site, "site")
        nets = check_width(args.prefix, settings.max_prefix_v4, settings.max_prefix_v6, "--prefix")
    except ClientError as exc:
        raise ConfigError(str(exc)) from None
    prefixes = list(dict.fromkeys(str(n) for n in nets))
    token = new_token()

    async def enrol(store: Store) -> bool:
        now = time.time()
        old = await store.get_enrollment(args.id)
        created_at = now if old is None else old.created_at
        record = EnrollmentRecord(args.id, args.site, prefixes, args.label, created_at, now)
        await store.put_enrollment(record)
        await store.add_token(hash_token(token), Principal("appliance", args.id), args.label, now)
        return old is None

    created = asyncio.run(_with_store(settings, enrol))
    print(token)
    what = "Enrolled" if created else "Re-enrolled"
    print(
        f"{what} appliance {args.id} (site {args.site}, prefixes {', '.join(prefixes) or 'none'}) "
        f"in {redact(settings.db)}; its token is shown only this once.",
        file=sys.stderr,
    )
    return 0


def appliance_list(argv: list[str]) -> int:
    args = _db_parser("vcdn control appliance list", "List enrolled appliances.").parse_args(argv)
    records = asyncio.run(_with_store(_settings(args), lambda s: s.list_enrollments()))
    print(f"{'APPLIANCE':<16}  {'SITE':<12}  PREFIXES")
    for e in records:
        print(f"{e.id:<16}  {e.site:<12}  {' '.join(e.prefixes) or '-'}")
    return 0


async def serve(settings: ControlSettings) -> None:
    from origin.control.app import make_app
    from origin.control.http_common import log
    from origin.control.http_keys import SIGNING_KEYS

    app = make_app(settings)
    runner, urls, certs = await start_service(
        app,
        settings.host,
        settings.port,
        settings.http_limits(),
        settings,
        shutdown_timeout=SHUTDOWN_GRACE,
    )
    watcher = asyncio.create_task(CertWatch(certs).run()) if certs is not None else None
    # The key service's signing keys rotate like steering's and the appliances': SIGHUP or
    # a changed signing_keys_file puts new keys in service without a restart.
    keys = app[SIGNING_KEYS]
    key_files = [settings.signing_keys_file] if settings.signing_keys_file else []
    key_watcher = asyncio.create_task(KeyWatch(
        lambda: read_keys(settings.signing_keys, settings.signing_keys_file), keys.set,
        key_files, current=keys.ring,
    ).run())
    try:
        for url in urls:
            print(f"vcdn control listening on {url} (store: {redact(settings.db)})", flush=True)
            host, _, port = url.partition("://")[2].rpartition(":")
            event(log, "listening", host=host.strip("[]"), port=int(port), url=url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        event(log, "stopping")
    finally:
        key_watcher.cancel()
        if watcher is not None:
            watcher.cancel()
        with contextlib.suppress(Exception):
            await runner.cleanup()
    event(log, "stopped")
