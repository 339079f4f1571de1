"""`/docs` and `/asyncapi` render with the network off: headless Chromium (Debian's package,
installed by deploy/tools.sh) loads each service's pages, may reach only that service, and the
rendered DOM lists every operation of the service's OpenAPI and AsyncAPI documents.

"Network off" is two flags: every host name but 127.0.0.1 resolves to nothing, and every
request not on loopback goes to a proxy on a closed port (a literal address skips the resolver,
not the proxy). Chromium's net log then says which URLs the page asked for: only the service's
own. A negative control renders the same Swagger UI page from a local server twice, its files
local and on a CDN: under the same flags the CDN one renders nothing, and every check notices.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.openapi.docs import get_swagger_ui_html

from hirestream.shared.web.documents import STATIC_DIR, missing_assets
from tests.support.system import SERVICES, System, running_system

pytestmark = pytest.mark.e2e

OFFLINE_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # the tests run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9",  # loopback bypasses it; nothing listens on the discard port
    # Virtual time: the page's scripts and its loads from the service run until idle, then
    # the DOM is dumped.
    "--virtual-time-budget=30000",
    "--enable-logging=stderr",  # the page's console messages, for the failure messages
    "--v=0",
)


@dataclass
class Rendered:
    dom: str
    requested: list[str]  # the URLs the page itself asked for: its own load and its resources
    console: str  # what the page logged to its console

    def __str__(self) -> str:
        return f"the page's console:\n{self.console or '(nothing)'}"

    def foreign(self, origin: str) -> list[str]:
        return [
            url
            for url in self.requested
            if urlsplit(url).scheme in {"http", "https", "ws", "wss"}
            and not url.startswith(f"{origin}/")
        ]


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "chromium not found: run `bash deploy/tools.sh` (as root it installs Debian's "
            "chromium package; ./dev.sh test runs it)",
            pytrace=False,
        )
    missing = missing_assets()
    if missing:
        pytest.fail(f"{missing[0]} missing: run shared/web-assets/build.sh", pytrace=False)
    return found


def page_requests(net_log: Path) -> list[str]:
    """The URLs of the requests a page made (the browser's own, with no initiator, are left
    out: the flags keep them off the network too)."""
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    # Each job logs a begin event, with the URL, and an end event, without.
    starts = [
        event["params"]
        for event in log["events"]
        if event["type"] == start_job and "url" in event.get("params", {})
    ]
    return [
        start["url"]
        for start in starts
        if start.get("request_type") == "main frame"
        or start.get("initiator", "not an origin") != "not an origin"
    ]


def render(chromium: str, url: str, workdir: Path) -> Rendered:
    workdir.mkdir(parents=True, exist_ok=True)
    net_log = workdir / "net-log.json"
    result = subprocess.run(
        [
            chromium,
            *OFFLINE_FLAGS,
            f"--user-data-dir={workdir / 'profile'}",
            f"--log-net-log={net_log}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=300,  # a guard against a hung browser only
        check=False,
    )
    assert result.returncode == 0, f"chromium failed on {url}:\n{result.stderr[-3000:]}"
    console = "\n".join(line for line in result.stderr.splitlines() if ":CONSOLE" in line)
    return Rendered(result.stdout, page_requests(net_log), console)


# ---- reading the rendered DOM -------------------------------------------------------------

VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
    "track", "wbr",
}  # fmt: skip


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: list[str] = field(default_factory=list)
    inner_attrs: list[dict[str, str]] = field(default_factory=list)  # its descendants'

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    @property
    def content(self) -> str:
        return " ".join("".join(self.text).split())


class Collector(HTMLParser):
    """The elements `select` picks, each with its text and its descendants' attributes."""

    def __init__(self, select: Callable[[Element], bool]) -> None:
        super().__init__()
        self.select = select
        self.open: list[tuple[str, Element | None]] = []
        self.found: list[Element] = []

    def _selected(self) -> list[Element]:
        return [element for _, element in self.open if element is not None]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        for outer in self._selected():
            outer.inner_attrs.append(element.attrs)
        chosen = self.select(element)
        if chosen:
            self.found.append(element)
        if tag not in VOID:
            self.open.append((tag, element if chosen else None))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.open) - 1, -1, -1):
            if self.open[index][0] == tag:
                del self.open[index:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._selected():
            element.text.append(data)


def elements(dom: str, select: Callable[[Element], bool]) -> list[Element]:
    collector = Collector(select)
    collector.feed(dom)
    collector.close()
    return collector.found


def swagger_operations(dom: str) -> list[Element]:
    """Swagger UI's operation blocks: `<div class="opblock opblock-get" id="operations-…">`."""
    return elements(
        dom, lambda e: "opblock" in e.classes and e.attrs.get("id", "").startswith("operations-")
    )


def served_urls(html: str) -> list[str]:
    """Absolute URLs in a page's HTML, and protocol-relative ones in src or href."""
    return [
        *re.findall(r"\b(?:https?|wss?)://[^\s\"'<>`]+", html),
        *re.findall(r"\b(?:src|href)\s*=\s*[\"']?(//[^\s\"'<>]+)", html),
    ]


def foreign_served_urls(html: str) -> list[str]:
    return [url for url in served_urls(html) if urlsplit(url).hostname != "127.0.0.1"]


# ---- the services -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def system(
    chromium: str, base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    with running_system(
        base_env, tmp_path_factory.mktemp("service-logs"), database_suffix=uuid.uuid4().hex[:8]
    ) as running:
        yield running


def document(system: System, service: str, path: str) -> dict[str, Any]:
    response = httpx.get(f"{system.url(service)}{path}", timeout=30)
    assert response.status_code == 200, response.text
    loaded: dict[str, Any] = response.json()
    return loaded


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("page", ["/docs", "/asyncapi"])
def test_the_page_names_no_other_host(system: System, service: str, page: str) -> None:
    response = httpx.get(f"{system.url(service)}{page}", timeout=30)
    assert response.status_code == 200, response.text
    assert not foreign_served_urls(response.text), (
        f"{service}'s {page} names other hosts: {foreign_served_urls(response.text)}"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_swagger_ui_renders_every_operation_offline(
    system: System, service: str, chromium: str, tmp_path: Path
) -> None:
    origin = system.url(service)
    rendered = render(chromium, f"{origin}/docs", tmp_path)
    assert not rendered.foreign(origin), (
        f"/docs reached beyond {origin}: {rendered.foreign(origin)}"
    )
    blocks = swagger_operations(rendered.dom)
    openapi = document(system, service, "/openapi.json")
    operations = [
        (method, path, operation)
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "responses" in operation
    ]
    assert operations, f"{service}'s OpenAPI lists no operation"
    for method, path, operation in operations:
        matching = [
            block
            for block in blocks
            if f"opblock-{method}" in block.classes
            and any(attrs.get("data-path") == path for attrs in block.inner_attrs)
        ]
        name = f"{method.upper()} {path}"
        assert matching, f"{service}'s /docs renders no operation block for {name}; {rendered}"
        text = matching[0].content
        assert operation["operationId"] in text, f"{name}: operationId not shown: {text[:200]}"
        if "summary" in operation:
            assert " ".join(operation["summary"].split()) in text, f"{name}: summary not shown"


@pytest.mark.parametrize("service", SERVICES)
def test_the_asyncapi_viewer_renders_every_operation_offline(
    system: System, service: str, chromium: str, tmp_path: Path
) -> None:
    origin = system.url(service)
    rendered = render(chromium, f"{origin}/asyncapi", tmp_path)
    assert not rendered.foreign(origin), (
        f"/asyncapi reached beyond {origin}: {rendered.foreign(origin)}"
    )
    asyncapi = document(system, service, "/asyncapi.json")
    assert asyncapi["operations"], f"{service}'s AsyncAPI lists no operation"
    # The viewer renders each operation as `<li id="operation-<action>-<operation id>">`,
    # headed by its channel's address: the Kafka topic.
    operations = elements(rendered.dom, lambda e: e.attrs.get("id", "").startswith("operation-"))
    shown = {element.attrs["id"]: element.content for element in operations}
    for operation_id, operation in asyncapi["operations"].items():
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        topic = asyncapi["channels"][channel.replace("~1", "/").replace("~0", "~")]["address"]
        key = f"operation-{operation['action']}-{operation_id}"
        assert key in shown, (
            f"{service}'s /asyncapi renders no operation {operation_id}; {rendered}"
        )
        assert topic in shown[key], f"{operation_id}: topic {topic} not shown: {shown[key][:200]}"


# ---- the negative control -----------------------------------------------------------------

CONTROL_OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "control", "version": "1"},
    "paths": {
        "/ping": {
            "get": {
                "operationId": "ping",
                "summary": "Answers pong",
                "responses": {"200": {"description": "pong"}},
            }
        }
    },
}


class QuietHandler(SimpleHTTPRequestHandler):
    def guess_type(self, path: str | PathLike[str]) -> str:
        """Text named UTF-8, as the services' static files are: the bundle is not ASCII."""
        guessed = super().guess_type(path)
        return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def control_server(tmp_path: Path) -> Iterator[str]:
    """A local server of two Swagger UI pages that differ only in where the viewer's files
    are: `local.html` on this server, `cdn.html` on FastAPI's default CDN."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "openapi.json").write_text(json.dumps(CONTROL_OPENAPI))
    shutil.copytree(STATIC_DIR / "swagger-ui", root / "swagger-ui")
    common: dict[str, Any] = {
        "openapi_url": "/openapi.json",
        "title": "control",
        "swagger_ui_parameters": {"validatorUrl": None},
    }
    local = get_swagger_ui_html(
        **common,
        swagger_js_url="/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/swagger-ui/favicon-32x32.png",
    )
    (root / "local.html").write_bytes(local.body)
    (root / "cdn.html").write_bytes(get_swagger_ui_html(**common).body)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_page_whose_files_are_on_a_cdn_renders_nothing(
    chromium: str, control_server: str, tmp_path: Path
) -> None:
    origin = control_server
    local = render(chromium, f"{origin}/local.html", tmp_path / "local")
    assert not local.foreign(origin), local.foreign(origin)
    assert [block.attrs["id"] for block in swagger_operations(local.dom)] == [
        "operations-default-ping"
    ], f"the control page with local files should render its one operation; {local}"

    cdn_html = httpx.get(f"{origin}/cdn.html", timeout=30).text
    assert foreign_served_urls(cdn_html), "the CDN page's HTML should name the CDN"
    cdn = render(chromium, f"{origin}/cdn.html", tmp_path / "cdn")
    assert cdn.foreign(origin), "the net log should show the page asking for the CDN's files"
    assert not swagger_operations(cdn.dom), "with the network off, the CDN page renders nothing"
