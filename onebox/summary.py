"""The summary `vcdn up` prints after playing a title, pure: data in, text out."""

from __future__ import annotations

from typing import Any


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def render_summary(data: dict[str, Any]) -> str:
    play = data["play"]
    lines = [
        "",
        "=" * 72,
        f"vcdn up: title '{data['title']}' "
        + ("PLAYED through the CDN" if play["ok"] else "did NOT play cleanly"),
        "=" * 72,
        f"First steered URL, served by {play['first_appliance']}:",
        f"  {play['urls'][0]}",
        "ffmpeg read the master playlist and rendition 0:v:0: "
        + ("ok" if play["ffmpeg_ok"] else f"FAILED ({play['ffmpeg_error']})")
        + f" in {play['ffmpeg_seconds']:.1f} s",
        f"HLS client read rendition {play['rendition']}: {play['segments']} segments "
        f"(init included), {_mb(play['bytes'])}, every sha256 checked against manifest.json, "
        f"{play['failovers']} failovers"
        + (f", FAILED: {play['failed']}" if play["failed"] else ""),
    ]
    for who, fig in play["by_appliance"].items():
        lines.append(f"  from {who}: {fig['segments']} segments, {_mb(fig['bytes'])}")
    lines += ["", "Appliances (from their /metrics):"]
    header = f"  {'id':<4} {'site':<7} {'state':<9} {'hits':>5} {'misses':>6} {'hit ratio':>9} " \
             f"{'sent':>10} {'filled':>10} {'cached':>10}"
    lines.append(header)
    total_hits = total_misses = 0
    for a in data["appliances"]:
        hits = a["requests"].get("hit", 0)
        misses = a["requests"].get("miss", 0)
        total_hits += hits
        total_misses += misses
        ratio = "-" if a["hit_ratio"] is None else f"{a['hit_ratio']:.0%}"
        lines.append(
            f"  {a['id']:<4} {a['site']:<7} {a['state']:<9} {hits:>5} {misses:>6} {ratio:>9} "
            f"{_mb(a['sent_bytes']):>10} {_mb(a['fill_bytes']):>10} {_mb(a['cache_bytes']):>10}"
        )
    if total_hits + total_misses:
        lines.append(
            f"  fleet hit ratio: {total_hits / (total_hits + total_misses):.0%} "
            f"({total_hits} hits, {total_misses} misses; the fill goes through the cache, "
            "so each filled file counts one miss)"
        )
    lines += ["", "DNS answer for the demo name (as dig shows it):"]
    lines += ["  " + line for line in data["dns"].splitlines()]
    pages = data["pages"]
    lines += [
        "",
        "Web pages:",
        f"  player:     {pages['player']}",
        f"  dashboard:  {pages['dashboard']}",
        f"  playback:   {pages['playback_api']}",
        f"  control:    {pages['control_api']}",
        *([f"  live:       {pages['live_player']}"] if "live_player" in pages else []),
        f"(all up in {data['elapsed_s']:.1f} s)",
    ]
    if data.get("tls"):
        lines.insert(-1, f"TLS: {data['tls']}")
    return "\n".join(lines)
