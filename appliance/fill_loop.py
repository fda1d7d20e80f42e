"""The fill loop: fetch the fill manifest, keep the last one on disk, run a fill pass.

Every `fill_interval` (sooner after a failed fetch, or when the fill window opens, or at
once on `fill-now`) it asks the control plane for this appliance's manifest and hands it
to the `Filler`, which downloads only while the window is open (or when forced). The last
manifest is saved beside the cache, so a restart with the control plane unreachable still
pins and fills what was planned. One failed pass never stops the loop (nor serving).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Final

from appliance.fill import Filler
from appliance.settings import ApplianceSettings
from appliance.state import Status
from vcdn.control_client import ControlClient
from vcdn.errors import ClientError, StoreError, UpstreamError
from vcdn.logs import event
from vcdn.schemas import FillManifest, decode, encode

log = logging.getLogger("vcdn.appliance")
MANIFEST_FILE: Final = "fill-manifest.json"  # the last manifest, so a restart can resume
REGISTRATION_GRACE: Final = 10.0


async def wait_for(event_: asyncio.Event, seconds: float) -> None:
    """Until `event_` is set, at most `seconds`."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event_.wait()


class FillLoop:
    """One appliance's fill loop (see module doc)."""

    def __init__(
        self, settings: ApplianceSettings, filler: Filler, status: Status, now: asyncio.Event
    ) -> None:
        self.settings = settings
        self.filler = filler
        self.status = status
        #: Set by `fill-now` (admin API): the next pass starts at once and downloads even
        #: outside the window.
        self.now = now

    def _manifest_path(self) -> Path:
        return self.settings.cache_dir / MANIFEST_FILE

    def _load_manifest(self) -> FillManifest | None:
        try:
            return decode(FillManifest, json.loads(self._manifest_path().read_text()))
        except (OSError, ValueError, ClientError):
            return None

    def _save_manifest(self, manifest: FillManifest) -> None:
        path = self._manifest_path()
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(encode(manifest)))
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk: we still have it in memory

    async def run(self, api: ControlClient, registered: asyncio.Event | None = None) -> None:
        s = self.settings
        window = s.window
        manifest = await asyncio.to_thread(self._load_manifest)
        # The control plane answers 404 for an appliance it does not know yet: give the
        # first registration a moment rather than wait a whole fill interval after a 404.
        if registered is not None:
            await wait_for(registered, min(s.fill_interval, REGISTRATION_GRACE))
        while True:
            fetched = False
            forced = self.now.is_set()
            self.now.clear()
            self.status.fill.window_open = window.is_open(datetime.now())
            try:
                manifest = await api.fill_manifest(s.id)
                fetched = True
                self.status.fill.manifest_at = time.time()
                await asyncio.to_thread(self._save_manifest, manifest)
            except (UpstreamError, ClientError) as exc:
                self.status.fill.last_error = f"fill manifest: {exc}"
                event(log, "fill_manifest_failed", logging.WARNING, error=str(exc),
                      have_previous=manifest is not None)
            if manifest is not None:
                try:
                    await self.filler.run(manifest, download=forced or self.status.fill.window_open)
                except StoreError as exc:
                    self.status.fill.last_error = str(exc)
                    event(log, "fill_failed", logging.ERROR, error=str(exc))
                except Exception as exc:  # never let one bad pass stop the fill (or serving)
                    self.status.fill.last_error = f"fill pass failed: {exc!r}"
                    log.exception("fill_pass_error")
            delay = s.fill_interval
            if not fetched:  # retry sooner, like the heartbeat does
                delay = min(delay, max(1.0, 2 * s.heartbeat_interval))
            if not self.status.fill.window_open:
                delay = min(delay, max(1.0, window.seconds_until_open(datetime.now())))
            await wait_for(self.now, delay)
