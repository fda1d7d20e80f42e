"""The shared range/conditional table (tests/http_cases.py) against the origin, with a real
aiohttp client over loopback and with real curl against a running `vcdn origin`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from origin.content.app import make_app
from origin.content.settings import OriginSettings
from tests.conftest import require_tool
from tests.http_cases import CASES, EMPTY_CASES, Case, Resource, check
from tests.origin.content.conftest import TITLE, Running

FILES = ["small.bin", "large.bin"]


@pytest.fixture
async def client(aiohttp_client, store) -> TestClient:
    root, _ = store
    return await aiohttp_client(make_app(OriginSettings(root=root)))


async def fetch(client: TestClient, method: str, path: str, headers: dict[str, str]):
    async with client.request(method, path, headers=headers) as resp:
        body = await resp.read()
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, body


async def resource(client: TestClient, path: str, data: bytes) -> Resource:
    status, headers, _ = await fetch(client, "HEAD", path, {})
    assert status == 200
    return Resource(data, headers["etag"], headers["last-modified"])


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("case", CASES, ids=str)
async def test_origin_answers_case(client: TestClient, store, name: str, case: Case) -> None:
    """Each table case gives the RFC 9110 answer, for a small (RAM) and a large (sendfile) file."""
    _, files = store
    path = f"/v/{TITLE}/{name}"
    res = await resource(client, path, files[name])
    status, headers, body = await fetch(client, case.method, path, case.request_headers(res))
    check(case, res, status, headers, body)


@pytest.mark.parametrize("case", EMPTY_CASES, ids=str)
async def test_origin_answers_empty_file_case(client: TestClient, case: Case) -> None:
    """A zero-length file is served as a 200 with Content-Length 0."""
    path = f"/v/{TITLE}/empty.bin"
    res = await resource(client, path, b"")
    status, headers, body = await fetch(client, case.method, path, case.request_headers(res))
    check(case, res, status, headers, body)


def curl(url: str, method: str, headers: dict[str, str], tmp: Path) -> tuple[int, dict, bytes]:
    exe = require_tool("curl")
    head_file, body_file = tmp / "h", tmp / "b"
    head_file.unlink(missing_ok=True)
    body_file.unlink(missing_ok=True)
    cmd = [exe, "-s", "-S", "--max-time", "10", "-D", str(head_file), "-o", str(body_file)]
    cmd += ["--head"] if method == "HEAD" else []
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    subprocess.run([*cmd, url], check=True, timeout=15)
    lines = head_file.read_bytes().decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    parsed = {}
    for line in lines[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            parsed[k.strip().lower()] = v.strip()
    # With --head curl reads no body and writes the headers to -o as well.
    body = body_file.read_bytes() if body_file.exists() and method != "HEAD" else b""
    return status, parsed, body


CURL_CASES = [c for c in CASES if c.curl]


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("case", CURL_CASES, ids=str)
def test_curl_against_running_origin(
    origin: Running, tmp_path: Path, name: str, case: Case
) -> None:
    """The curl subset of the table against `vcdn origin` running as a process."""
    url = f"{origin.url}/v/{TITLE}/{name}"
    status, headers, _ = curl(url, "HEAD", {}, tmp_path)
    assert status == 200
    res = Resource(origin.files[name], headers["etag"], headers["last-modified"])
    status, headers, body = curl(url, case.method, case.request_headers(res), tmp_path)
    check(case, res, status, headers, body)
