"""Atomic publish into the origin root: a title appears whole or not at all.

A title is built in ``{origin_root}/.vcdn-staging/{title}.{pid}.XXXX`` (same file system,
so the final step is a rename, never a copy) and renamed to ``{origin_root}/{title}`` only
when complete. Title ids cannot start with ``.``, so the staging directory can never be
mistaken for a title. Replacing an existing title (``--force``) swaps the two directories
in one ``renameat2(RENAME_EXCHANGE)`` call, so readers see the old title or the new one,
never a missing one; on file systems without it we fall back to two renames with a short
window in which the title is absent.

A run that dies leaves only its staging directory; the next run on the same origin root
removes staging directories whose process is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Final

from vcdn.errors import Conflict, StoreError

STAGING: Final = ".vcdn-staging"
AT_FDCWD: Final = -100
RENAME_EXCHANGE: Final = 1 << 1


def prepare_root(root: Path) -> Path:
    """Create the origin root and its staging area; StoreError if we cannot write there."""
    staging = root / STAGING
    try:
        staging.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=staging, prefix=".write-test.")
        probe.close()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StoreError(f"Origin root '{root}' is not writable: {reason}.") from None
    return staging


def check_free(root: Path, title: str, force: bool) -> None:
    """Refuse early (before encoding) to overwrite a title without --force."""
    if not force and os.path.lexists(root / title):
        raise Conflict(
            f"Title '{title}' already exists in '{root}'; use --force to replace it."
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staging_pid(name: str) -> int | None:
    """The pid in a staging name ``{title}.{pid}.{random}[.old|.log]``; None if not one."""
    parts = name.removesuffix(".old").removesuffix(".log").rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return int(parts[1])


def sweep_stale(root: Path) -> list[Path]:
    """Remove staging directories left by runs whose process no longer exists."""
    removed = []
    staging = root / STAGING
    for entry in staging.iterdir() if staging.is_dir() else []:
        pid = staging_pid(entry.name)
        if pid is None or pid == os.getpid() or _pid_alive(pid):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def new_staging(root: Path, title: str) -> Path:
    """A fresh, empty build directory for `title`."""
    try:
        return Path(tempfile.mkdtemp(prefix=f"{title}.{os.getpid()}.", dir=root / STAGING))
    except OSError as exc:
        raise StoreError(f"Cannot create a build directory in '{root}': {exc.strerror}.") from None


def discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _sync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish(build: Path, root: Path, title: str, *, force: bool) -> Path:
    """Move the finished `build` directory to ``root/title``; returns the title path."""
    dest = root / title
    os.chmod(build, 0o755)  # mkdtemp makes it 0700; the origin server may run as another user
    try:
        if not os.path.lexists(dest):
            try:
                # rename(2) onto a non-empty directory fails (ENOTEMPTY/EEXIST), so a
                # title published by a concurrent run since our check is never clobbered.
                os.rename(build, dest)
                _sync_dir(root)
                return dest
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        if not force:
            raise Conflict(
                f"Title '{title}' already exists in '{root}'; use --force to replace it."
            )
        if _exchange(build, dest):
            discard(build)  # now holds the previous version
        else:
            old = build.with_name(build.name + ".old")
            os.rename(dest, old)
            os.rename(build, dest)
            discard(old)
        _sync_dir(root)
        return dest
    except OSError as exc:
        raise StoreError(f"Cannot publish '{title}' into '{root}': {exc.strerror}.") from None
