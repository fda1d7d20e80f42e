"""ffmpeg plays an https:// master playlist through an appliance's video listener (HTTPS
on `tls_port`, plain HTTP on `port` at once), verifying the certificate against the test
CA, and copies exactly the frames it gets from the origin directly."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from onebox.procs import free_port
from tests.appliance.conftest import appliance_toml, run_appliance, signed
from tests.conftest import require_tool
from tests.edge.test_ffmpeg import TITLE, _package, _run
from tests.vcdn.tls_helpers import ca_file, issue

pytestmark = pytest.mark.slow


async def test_ffmpeg_plays_https_through_an_appliance(
    tmp_path: Path, origin, origin_root: Path, control  # type: ignore[no-untyped-def]
) -> None:
    from appliance import settings as settings_mod

    await _package(origin_root)
    ca = trustme.CA()
    chain = issue(ca, tmp_path / "tls", "localhost", "127.0.0.1")
    ca_pem = ca_file(ca, tmp_path / "ca")
    port, admin, tls_port = free_port(), free_port(), free_port()
    path = appliance_toml(
        tmp_path / "a.toml", id="a1", site="s1", port=port, admin_port=admin,
        cache_dir=tmp_path / "cache", control_url=control.url, origin_url=origin.url,
        tls_port=tls_port, tls_cert=str(chain.cert), tls_key=str(chain.key),
        public_url=f"http://localhost:{port}", fill_interval=60.0,
    )
    running = await run_appliance(settings_mod.load(path, env={}))
    try:
        assert running.appliance.settings.tls_url == f"https://localhost:{tls_port}"
        ffmpeg = require_tool("ffmpeg")
        token = signed(TITLE)
        over_tls = f"https://localhost:{tls_port}/s/{token}/{TITLE}/master.m3u8"
        plain = f"http://127.0.0.1:{port}/s/{token}/{TITLE}/master.m3u8"
        tail = ["-map", "0:v", "-c", "copy", "-f", "framemd5", "-"]
        verify = ["-tls_verify", "1", "-ca_file", str(ca_pem)]
        direct = await _run(ffmpeg, "-v", "error", "-i", f"{origin.url}/v/{TITLE}/master.m3u8",
                            *tail)
        first = await _run(ffmpeg, "-v", "error", *verify, "-i", over_tls, *tail)  # fills
        assert first == direct and first.count(b"\n0,") >= 15
        again = await _run(ffmpeg, "-v", "error", *verify, "-i", over_tls, *tail)  # hits
        assert again == direct
        assert await _run(ffmpeg, "-v", "error", "-i", plain, *tail) == direct  # both at once
        assert running.appliance.edge.stats.fast_hits > 0
        # A CA ffmpeg does not trust: the HTTPS listener's certificate is really checked.
        other = ca_file(trustme.CA(), tmp_path / "other")
        with pytest.raises(AssertionError):
            await _run(ffmpeg, "-v", "error", "-tls_verify", "1", "-ca_file", str(other),
                       "-i", over_tls, *tail)
    finally:
        await running.stop()
