"""Benchmark: `vcdn package` against plain ffmpeg on the same ABR encode.

    cd /work/main && .venv/bin/python -m bench.packager [--seconds 60] [--repeat 1]

Generates a 1080p30 source (testsrc2 + sine, not timed), then times, in one run:

  vcdn     `vcdn package SOURCE --title bench` (default 4-rung ladder, 4 s segments), the
           whole command: Python start-up, probe, encode, measuring, hashing, publish;
  plain    the same encode written as one plain ffmpeg command line (decode once, split,
           four x264 encoders, four HLS muxers): what the wrapper must not be slower than;
  separate four plain ffmpeg runs, one per rung, and one for the audio, one after the
           other: each decodes (and scales) the source again;
  aes-128  `vcdn package --encrypt aes-128 --control URL`: the same, every segment encrypted,
           the key stored with a real `vcdn control` on loopback;
  cenc     `vcdn package --encrypt cenc --control URL`: the same with Common Encryption.

All write what `vcdn package` writes: video-only renditions plus one shared `audio/`
rendition (CMAF, one track per file). It prints wall time, real-time factor (source
seconds per wall second) and the ratios vcdn/plain (target <= 1.05), vcdn/separate
(target < 1) and encrypted/vcdn (issue 18: target <= 1.05). Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from bench.record import Run
from onebox.procs import free_port
from packager.ladder import DEFAULT_HEIGHTS, Geometry, Rung, plan

ROOT: Final = Path(__file__).resolve().parents[2]
SEGMENT_S: Final = 4
PRESET: Final = "veryfast"

# The encode written out by hand, as an engineer would type it: one rung's encoder + muxer.
HLS_ARGS: Final = (
    "-f hls -hls_time {seg} -hls_playlist_type vod -hls_list_size 0 -hls_segment_type fmp4 "
    "-hls_flags independent_segments -start_number 1 -hls_fmp4_init_filename init.mp4 "
    "-hls_segment_filename {out}/{name}/seg_%05d.m4s {out}/{name}/index.m3u8"
)
RUNG_ARGS: Final = (
    "-map [v{i}] -c:v libx264 -preset {preset} -b:v {kbps}k -maxrate:v {maxrate}k "
    "-bufsize:v {bufsize}k -g {gop} -keyint_min {gop} -sc_threshold 0 "
    "-force_key_frames expr:gte(t,n_forced*{seg}) " + HLS_ARGS
)
# The shared audio rendition: encoded once, at the best rung's audio bit rate.
AUDIO_ARGS: Final = "-map 0:a -c:a aac -b:a {akbps}k -ac 2 -ar 48000 " + HLS_ARGS
AUDIO: Final = "audio"
BENCH_TOKEN: Final = "bench-packager-token-0123456789"


def one_command(source: Path, rungs: tuple[Rung, ...], out: Path, fps: float) -> list[str]:
    """ffmpeg -i SRC -filter_complex 'split=4 ... asplit=4' + one output per rung."""
    n = len(rungs)
    chains = [f"[0:v]split={n}" + "".join(f"[s{i}]" for i in range(n))]
    chains += [
        f"[s{i}]scale={r.width}:{r.height},setsar=1,format=yuv420p[v{i}]"
        for i, r in enumerate(rungs)
    ]
    cmd = f"ffmpeg -hide_banner -loglevel error -nostdin -y -i {source} -filter_complex "
    cmd += shlex.quote(";".join(chains))
    for i, r in enumerate(rungs):
        cmd += " " + _rung_args(i, r, out, fps)
    cmd += " " + _audio_args(rungs, out)
    return shlex.split(cmd)


def separate_command(source: Path, rung: Rung, out: Path, fps: float) -> list[str]:
    """One rung alone: decode, scale, encode, mux."""
    graph = f"[0:v]scale={rung.width}:{rung.height},setsar=1,format=yuv420p[v0]"
    cmd = f"ffmpeg -hide_banner -loglevel error -nostdin -y -i {source} -filter_complex "
    cmd += shlex.quote(graph) + " " + _rung_args(0, rung, out, fps)
    return shlex.split(cmd)


def audio_command(source: Path, rungs: tuple[Rung, ...], out: Path) -> list[str]:
    """The shared audio rendition alone."""
    cmd = f"ffmpeg -hide_banner -loglevel error -nostdin -y -i {source} "
    return shlex.split(cmd + _audio_args(rungs, out))


def _rung_args(i: int, r: Rung, out: Path, fps: float) -> str:
    return RUNG_ARGS.format(
        i=i, preset=PRESET, kbps=r.video_kbps, maxrate=r.maxrate_kbps, bufsize=r.bufsize_kbps,
        gop=round(fps * SEGMENT_S), seg=SEGMENT_S, out=out, name=r.name,
    )


def _audio_args(rungs: tuple[Rung, ...], out: Path) -> str:
    return AUDIO_ARGS.format(akbps=max(r.audio_kbps for r in rungs), seg=SEGMENT_S, out=out,
                             name=AUDIO)




@contextmanager
def control_plane(work: Path) -> Iterator[str]:
    """A real `vcdn control` on loopback (SQLite) holding the encrypted runs' keys."""
    port = free_port()
    env = {**os.environ, "VCDN_CONTROL_TOKENS": f"packager:{BENCH_TOKEN}"}
    log = open(work / "control.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vcdn.cli", "control", "--db",
         f"sqlite:///{work / 'control.db'}", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("vcdn control did not start; see control.log") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def generate(path: Path, seconds: float) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=30:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "128k", str(path)],
        check=True,
    )


def timed(run: Callable[[], None]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system of the child processes) of `run`.

    On a shared machine the wall time moves with other people's load; the CPU time is what
    the work itself cost, so both are printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def segment_counts(root: Path, rungs: tuple[Rung, ...]) -> list[int]:
    """Media segments written per rendition (the audio last): the same encode must cut the
    same segments."""
    return [len(list((root / name).glob("seg_*.m4s")))
            for name in [*(r.name for r in rungs), AUDIO]]


def media_bytes(title: Path) -> int:
    """Media and media playlists only, like the plain runs write."""
    return dir_bytes(title) - sum(
        (title / name).stat().st_size for name in ("manifest.json", "master.m3u8", "manifest.mpd")
        if (title / name).exists())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.packager", description=(__doc__ or "").split("\n")[0]
    )
    ap.add_argument("--seconds", type=float, default=60.0, help="source length (default 60)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each contender (median)")
    args = ap.parse_args(argv)
    if not 1 <= args.seconds <= 600 or not 1 <= args.repeat <= 5:
        ap.error("--seconds must be 1..600 and --repeat 1..5")
    if shutil.which("ffmpeg") is None:
        print("bench.packager: ffmpeg is not installed (apt-get install ffmpeg)", file=sys.stderr)
        return 1
    fps = 30.0
    rungs = plan(DEFAULT_HEIGHTS, Geometry(1920, 1080, 1.0, fps))
    with tempfile.TemporaryDirectory(prefix="vcdn-bench-packager-") as tmp, \
            control_plane(Path(tmp)) as control:
        work = Path(tmp)
        source = work / "source.mp4"
        print(f"generating a {args.seconds:g} s 1080p30 source ...", flush=True)
        generate(source, args.seconds)
        names = ("vcdn", "plain", "separate", "aes-128", "cenc")
        times: dict[str, list[float]] = {k: [] for k in names}
        cpu: dict[str, list[float]] = {k: [] for k in names}
        sizes: dict[str, int] = {}
        problems: list[str] = []
        for n in range(args.repeat):
            origin = work / f"origin{n}"

            def package(title: str, *extra: str, origin: Path = origin) -> None:
                subprocess.run(
                    [sys.executable, "-m", "vcdn.cli", "package", str(source), "--title",
                     title, "--origin-root", str(origin), "--segment-seconds",
                     str(SEGMENT_S), "--preset", PRESET, "--quiet", *extra],
                    cwd=ROOT, check=True, env={**os.environ, "VCDN_CONTROL_TOKEN": BENCH_TOKEN},
                )

            def run_vcdn() -> None:
                package("bench")

            def run_aes() -> None:
                package("bench-aes", "--encrypt", "aes-128", "--control", control)

            def run_cenc() -> None:
                package("bench-cenc", "--encrypt", "cenc", "--control", control)

            plain_out = work / f"plain{n}"
            for name in [*(r.name for r in rungs), AUDIO]:
                (plain_out / name).mkdir(parents=True)

            def run_plain(out: Path = plain_out) -> None:
                subprocess.run(one_command(source, rungs, out, fps), check=True)

            sep_out = work / f"separate{n}"
            for name in [*(r.name for r in rungs), AUDIO]:
                (sep_out / name).mkdir(parents=True)

            def run_separate(out: Path = sep_out) -> None:
                for r in rungs:
                    subprocess.run(separate_command(source, r, out, fps), check=True)
                subprocess.run(audio_command(source, rungs, out), check=True)

            contenders = [("vcdn", run_vcdn), ("plain", run_plain), ("separate", run_separate),
                          ("aes-128", run_aes), ("cenc", run_cenc)]
            # Rotate the order each round so slow drifts in machine load hit everyone.
            k = n % len(contenders)
            for name, fn in contenders[k:] + contenders[:k]:
                print(f"round {n + 1}/{args.repeat}: {name} ...", flush=True)
                wall, used = timed(fn)
                times[name].append(wall)
                cpu[name].append(used)
            title = origin / "bench"
            sizes = {
                "vcdn": media_bytes(title),
                "plain": dir_bytes(plain_out),
                "separate": dir_bytes(sep_out),
                "aes-128": media_bytes(origin / "bench-aes"),
                "cenc": media_bytes(origin / "bench-cenc"),
            }
            counts = {"vcdn": segment_counts(title, rungs),
                      "plain": segment_counts(plain_out, rungs),
                      "separate": segment_counts(sep_out, rungs),
                      "aes-128": segment_counts(origin / "bench-aes", rungs),
                      "cenc": segment_counts(origin / "bench-cenc", rungs)}
            if len(set(map(tuple, counts.values()))) != 1 or 0 in counts["vcdn"]:
                problems.append(f"round {n + 1}: segments per rung differ or are missing: {counts}")
    med = {k: statistics.median(v) for k, v in times.items()}
    mcpu = {k: statistics.median(v) for k, v in cpu.items()}
    print()
    print(f"packager benchmark: {args.seconds:g} s 1080p30 source, ladder "
          f"{','.join(str(r.height) for r in rungs)}, {SEGMENT_S} s fMP4 segments, x264 {PRESET}, "
          f"median of {args.repeat}")
    print(f"{'contender':<10} {'wall s':>8} {'x real time':>12} {'cpu s':>8} {'output MB':>10}")
    for name in names:
        print(f"{name:<10} {med[name]:8.2f} {args.seconds / med[name]:12.2f} "
              f"{mcpu[name]:8.2f} {sizes[name] / 1e6:10.1f}")
    print(f"ratio vcdn/plain    wall {med['vcdn'] / med['plain']:.3f}  "
          f"cpu {mcpu['vcdn'] / mcpu['plain']:.3f}  (target <= 1.05)")
    print(f"ratio vcdn/separate wall {med['vcdn'] / med['separate']:.3f}  "
          f"cpu {mcpu['vcdn'] / mcpu['separate']:.3f}  (target < 1)")
    for enc in ("aes-128", "cenc"):
        print(f"ratio {enc + '/vcdn':<13} wall {med[enc] / med['vcdn']:.3f}  "
              f"cpu {mcpu[enc] / mcpu['vcdn']:.3f}  (target <= 1.05)")
    for problem in problems:
        print(f"WRONG OUTPUT: {problem}")
    run = Run("packager", settings={"seconds": args.seconds, "repeat": args.repeat,
                                    "ladder": [r.height for r in rungs], "preset": PRESET})
    note = (f"{args.seconds:g} s 1080p30 source, {len(rungs)} rungs, x264 {PRESET}, median of "
            f"{args.repeat}; output checked: same segments per rung in every contender")
    for other, target, label in (("plain", "<= 1.05", "one plain ffmpeg command line"),
                                 ("separate", "< 1", "four separate ffmpeg runs")):
        for metric, values in (("wall_s", times), ("cpu_s", cpu)):
            run.case(f"vs_{other}_{metric.removesuffix('_s')}",
                     ours={metric: values["vcdn"]}, theirs={metric: values[other]},
                     server="ffmpeg", ratio_of=metric, target=target, correct=not problems,
                     unit="s", title=f"`vcdn package` {metric[:-2]} time vs {label}",
                     notes=note)
    for enc in ("aes-128", "cenc"):
        for metric, values in (("wall_s", times), ("cpu_s", cpu)):
            run.case(f"{enc.replace('-', '')}_vs_plain_package_{metric.removesuffix('_s')}",
                     ours={metric: values[enc]}, theirs={metric: values["vcdn"]},
                     server="vcdn package", ratio_of=metric, target="<= 1.05",
                     correct=not problems, unit="s",
                     title=f"`vcdn package --encrypt {enc}` {metric[:-2]} time vs unencrypted",
                     notes=note)
    run.case("realtime", ours={"x_realtime": [args.seconds / t for t in times["vcdn"]]},
             correct=not problems, unit="x real time", title="`vcdn package` speed", notes=note)
    run.save()
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
