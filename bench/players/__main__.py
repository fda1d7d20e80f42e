"""`python -m bench.players [--seconds 30]`: real browser players through an appliance.

Issue 18's playback targets: dash.js and Shaka Player play a title through an appliance for
30 s with 0 stalls and 0 errors, with a time to first frame within 1.5x of hls.js on the
same title; and the encrypted titles (AES-128 in hls.js, CENC with ClearKey/EME in dash.js)
play the same way. One cluster (`onebox.cluster`: control, origin, steering, one appliance)
on loopback; the titles are packaged by `vcdn package` (the encrypted ones with their keys
in the cluster's control plane) and filled; each player is the control plane's web player
(`/player?protocol=...`) in headless Chromium, one after the other, each in a new page.

Time to first frame: from the page's navigation start to the video element's first
`playing` event (playback API call, manifests, first segments, decode). Stalls: the web
player's count of `waiting` after playback started. Errors: fatal player errors.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

import aiohttp

from bench.record import Run
from onebox.cluster import Cluster, ClusterConfig
from onebox.demo import fill_title, make_sample, read_manifest, wait_for_fleet
from onebox.procs import vcdn_argv

CHROMIUM: Final = "/usr/bin/chromium"
ARGS: Final = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
# (label, title, protocol): the plain title in each player, then the encrypted ones.
PLAYS: Final = (
    ("hls.js", "plain", "hls"), ("dash.js", "plain", "dash"), ("shaka", "plain", "shaka"),
    ("hls.js aes-128", "aes", "hls"), ("dash.js cenc", "cenc", "dash"),
)
TTFF: Final = """window.__ttff = null;
document.addEventListener('playing', () => {
  if (window.__ttff === null) window.__ttff = performance.now(); }, true);"""


async def setup(work: Path, seconds: float) -> Cluster:
    cluster = Cluster(ClusterConfig(data=work / "cluster", appliances=1, heartbeat_interval=1.0))
    await cluster.start()
    source = work / "source.mp4"
    await make_sample(source, seconds + 6, "640x360", rate=24)
    env = cluster.env(VCDN_CONTROL_TOKEN=cluster.secrets.packager)
    for title, extra in (("plain", []), ("aes", ["--encrypt", "aes-128"]),
                         ("cenc", ["--encrypt", "cenc"])):
        await asyncio.to_thread(subprocess.run, vcdn_argv(
            "package", str(source), "--title", title, "--ladder", "360,240",
            "--segment-seconds", "2", "--origin-root", str(cluster.origin_root),
            "--control", cluster.control_url, "-q", *extra), check=True, env=env)
    async with aiohttp.ClientSession() as session:
        await wait_for_fleet(session, cluster)
        for title in ("plain", "aes", "cenc"):
            manifest = read_manifest(cluster.origin_root, title)
            assert manifest is not None
            await fill_title(session, cluster, manifest, within=120)
    return cluster


async def play(browser: Any, cluster: Cluster, title: str, protocol: str,
               seconds: float) -> dict[str, Any]:
    page = await browser.new_page()
    await page.add_init_script(TTFF)
    await page.goto(f"{cluster.control_url}/player?title={title}&steering="
                    f"{cluster.steering_url}&protocol={protocol}")
    try:
        await page.wait_for_function(
            f"document.getElementById('video').currentTime >= {seconds}"
            " || window.vcdnPlayer.fatal.length > 0", timeout=(seconds * 3 + 30) * 1000)
    except Exception as exc:  # a timeout is a result too: report what the player saw
        print(f"  {title}/{protocol}: {exc}", file=sys.stderr)
    state = await page.evaluate("window.vcdnPlayer")
    played = await page.evaluate("document.getElementById('video').currentTime")
    ttff = await page.evaluate("window.__ttff")
    await page.close()
    return {"ttff_ms": ttff, "played_s": played, "stalls": state["stalls"],
            "errors": len(state["fatal"]), "failovers": state["failovers"]}


async def run(seconds: float) -> dict[str, dict[str, Any]]:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="vcdn-bench-players-") as tmp:
        cluster = await setup(Path(tmp), seconds)
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                try:
                    results = {}
                    for label, title, protocol in PLAYS:
                        print(f"playing {title} with {label} ...", flush=True)
                        results[label] = await play(browser, cluster, title, protocol, seconds)
                    return results
                finally:
                    await browser.close()
        finally:
            await cluster.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.players", description=__doc__)
    p.add_argument("--seconds", type=float, default=30.0, help="seconds each player plays")
    args = p.parse_args(argv)
    if not 3 <= args.seconds <= 120:
        p.error("--seconds must be 3..120")
    if not Path(CHROMIUM).exists() or shutil.which("ffmpeg") is None:
        print("bench.players: needs /usr/bin/chromium and ffmpeg", file=sys.stderr)
        return 1
    results = asyncio.run(run(args.seconds))
    hls = results["hls.js"]
    print(f"\nplayers benchmark: {args.seconds:g} s each through one appliance, 360p/240p, "
          "2 s segments (headless Chromium)")
    print(f"{'player':<16} {'first frame ms':>15} {'played s':>9} {'stalls':>7} {'errors':>7}")
    for label, r in results.items():
        ttff = f"{r['ttff_ms']:.0f}" if r["ttff_ms"] is not None else "-"
        print(f"{label:<16} {ttff:>15} {r['played_s']:9.1f} {r['stalls']:7d} {r['errors']:7d}")
    run_ = Run("players", settings={"seconds": args.seconds})
    ok = True
    for label, r in results.items():
        full = r["played_s"] >= args.seconds and r["errors"] == 0
        ok = ok and full and r["stalls"] == 0
        if label == "hls.js" or r["ttff_ms"] is None or hls["ttff_ms"] is None:
            continue
        ratio = r["ttff_ms"] / hls["ttff_ms"]
        print(f"ratio first frame {label}/hls.js {ratio:.2f}  (target <= 1.5)")
        run_.case(f"ttff_{label.replace(' ', '_').replace('.', '')}_vs_hlsjs",
                  ours={"ttff_ms": [r["ttff_ms"]]}, theirs={"ttff_ms": [hls["ttff_ms"]]},
                  server="hls.js", ratio_of="ttff_ms", target="<= 1.5",
                  errors=r["errors"] + r["stalls"], correct=full, unit="ms",
                  title=f"{label} time to first frame vs hls.js, {args.seconds:g} s played",
                  notes=f"stalls {r['stalls']}, errors {r['errors']}, played "
                        f"{r['played_s']:.1f} s")
    run_.save()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
