"""The web console's performance: what the chat page ships, how fast it starts, streams,
opens a long conversation and lists many, in Debian's Chromium.

Targets (issue 14), on loopback:

1. JavaScript + CSS of the chat page <= 150 KB compressed (gzip, as served), everything the
   page loads at first load;
2. first load to an interactive chat <= 300 ms, cold (a new browser context: no cache),
   p50: navigation start -> the composer is enabled and has focus, the session restored
   from the refresh cookie;
3. a streamed token on screen within one frame (16 ms) of arriving at the browser, p95;
4. a conversation of 1,000 messages opens in <= 500 ms: click -> its last message visible;
5. the conversation list with 10,000 conversations: the first page shows <= 100 ms after
   it is asked for, and so does a search.

Set-up: a fake upstream (``tests.fakes.fake_upstream``, ``--itl-ms``: chunks one by one)
and ``enclave serve --no-engine`` (authentication on, its own ``ENCLAVE_HOME``), a user
made with the CLI, 10,000 conversations and one of 1,000 messages written straight into the
gateway's SQLite database (``bench/web_console_seed.py``). Chromium (``/usr/bin/chromium``,
headless) through Playwright; each measured page is a new context holding a fresh refresh
cookie (from ``POST /api/auth/login`` with ``X-Enclave-CSRF``). ``bench/web_console_probe.js``
is injected before the console's scripts and records the times with the page's own clock.

Run from the repository root, on an otherwise idle machine::

    .venv/bin/python bench/web_console.py                  # about 2 minutes
    .venv/bin/python bench/web_console.py --runs 5 --json /tmp/console.json

Exit status: 0 all targets met, 1 a target missed, 2 the benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python bench/web_console.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
import yaml  # noqa: E402

from bench import web_console_seed as seeding  # noqa: E402
from bench.common import console_script, percentile, warn_if_busy  # noqa: E402
from bench.servers import HOST, MODEL, own_env, run_fake, serve  # noqa: E402
from tests.browser.console import CHROMIUM, DESKTOP, launch  # noqa: E402
from tests.fakes.procs import ProcessFailed, free_port  # noqa: E402

VIEWPORT = DESKTOP
USER, PASSWORD = "bench", "bench-password-long-enough"
PROBE = (Path(__file__).parent / "web_console_probe.js").read_text()
CSRF = {"X-Enclave-CSRF": "1"}
TARGETS = {"bytes_kb": 150.0, "first_load_ms": 300.0, "token_p95_ms": 16.0,
           "long_open_ms": 500.0, "list_ms": 100.0}  # fmt: skip


@dataclass
class Site:
    url: str
    home: Path
    long_id: str


# --- the servers -------------------------------------------------------------------------


@contextmanager
def run_site(args: argparse.Namespace, logs: Path) -> Iterator[Site]:
    with run_fake("fake", args.tokens, args.itl_ms, None, logs) as fake:
        port = free_port()
        home = logs / "home"
        home.mkdir(parents=True, exist_ok=True)
        config = {
            "port": port,
            "access_log": False,
            "auth": {"mode": "on"},
            "engine": {"enabled": False, "embeddings": False, "ocr": False},
            "upstreams": [
                {"name": "fake", "base_url": f"http://{HOST}:{fake.port}/v1", "models": [MODEL]}
            ],
        }
        path = home / "enclave.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        env = own_env(ENCLAVE_HOME=str(home))
        cmd = [console_script("enclave"), "--config", str(path), "serve", "--no-engine"]
        with serve("enclave", cmd, port=port, health="/health", env=env, cpu=None, logs=logs,
                   timeout=60) as gateway:  # fmt: skip
            add_user(path, env)
            started = time.perf_counter()
            long_id = seeding.seed(home / "enclave.db", USER, MODEL, args.conversations,
                                   args.messages)  # fmt: skip
            print(f"seeded {args.conversations:,} conversations and one of {args.messages:,} "
                  f"messages in {time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
            yield Site(f"http://{HOST}:{gateway.port}", home, long_id)


def add_user(config: Path, env: dict[str, str]) -> None:
    cmd = [console_script("enclave"), "--config", str(config), "users", "add", USER,
           "--role", "user", "--password-stdin"]  # fmt: skip
    done = subprocess.run(cmd, input=PASSWORD + "\n", text=True, capture_output=True, env=env,
                          timeout=120, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"`enclave users add` failed: {done.stderr.strip()}")


def refresh_cookie(site: Site) -> dict[str, Any]:
    """A fresh session's refresh cookie, as the sign-in form would get it (one per page:
    a spent refresh cookie presented again revokes the session)."""
    reply = httpx.post(site.url + "/api/auth/login", json={"username": USER, "password": PASSWORD},
                       headers=CSRF, trust_env=False, timeout=30)  # fmt: skip
    reply.raise_for_status()
    value = reply.cookies.get("enclave_refresh")
    if not value:
        raise RuntimeError("the gateway set no enclave_refresh cookie")
    return {"name": "enclave_refresh", "value": value, "domain": HOST, "path": "/api/auth",
            "httpOnly": True, "sameSite": "Strict"}  # fmt: skip


# --- the browser -------------------------------------------------------------------------


@contextmanager
def fresh_page(browser: Any, site: Site) -> Iterator[Any]:
    """A new context (empty cache), signed in by its cookie, with the probe."""
    context = browser.new_context(viewport=VIEWPORT, service_workers="block", locale="en-US")
    try:
        context.set_default_timeout(30_000)
        context.add_cookies([refresh_cookie(site)])
        context.add_init_script(script=PROBE)
        yield context.new_page()
    finally:
        context.close()


def ready(page: Any, grace_ms: int = 3000) -> dict[str, Any]:
    """Wait for the composer (enabled, then focused or ``grace_ms`` later); the milestones."""
    page.wait_for_function(
        "g => { const b = window.__bench; return b.ready !== null && (b.focused !== null"
        " || performance.now() - b.ready > g); }",
        arg=grace_ms,
        polling=50,
    )
    found: dict[str, Any] = page.evaluate(
        "() => { const nav = performance.getEntriesByType('navigation')[0];"
        " const end = (part) => { const e = performance.getEntriesByType('resource')"
        ".filter((r) => r.name.includes(part)); return e.length ? e[0].responseEnd : null; };"
        " return {ready: __bench.ready, focused: __bench.focused, firstItem: __bench.firstItem,"
        " ttfb: nav.responseStart, dcl: nav.domContentLoadedEventEnd,"
        " scripts: Math.max(0, ...performance.getEntriesByType('resource')"
        ".filter((r) => /\\.(js|css)$/.test(r.name)).map((r) => r.responseEnd)),"
        " refresh: end('/api/auth/refresh'), me: end('/api/auth/me'), models: end('/v1/models'),"
        " list: end('/api/conversations')}; }"
    )
    return found


# --- 1 and 2: bytes and first load ---------------------------------------------------------


def measure_bytes(browser: Any, site: Site) -> dict[str, Any]:
    with fresh_page(browser, site) as page:
        page.goto(site.url + "/")
        ready(page)
        page.wait_for_load_state("networkidle")
        entries = page.evaluate(
            "() => performance.getEntriesByType('resource').filter((r) =>"
            " /\\.(js|css)$/.test(new URL(r.name).pathname)).map((r) =>"
            " ({url: r.name, encoded: r.encodedBodySize, decoded: r.decodedBodySize}))"
        )
    files = []
    with httpx.Client(trust_env=False, timeout=30) as http:
        for entry in entries:
            with http.stream("GET", entry["url"], headers={"Accept-Encoding": "gzip"}) as reply:
                raw = b"".join(reply.iter_raw())
            files.append(
                {**entry, "gzip": len(raw), "encoding": reply.headers.get("content-encoding")}
            )
    total = sum(f["gzip"] for f in files)
    return {
        "files": sorted(files, key=lambda f: -f["gzip"]),
        "gzip_bytes": total,
        "browser_encoded_bytes": sum(f["encoded"] for f in files),
        "decoded_bytes": sum(f["decoded"] for f in files),
        "kb": total / 1024,
    }


def measure_first_load(browser: Any, site: Site, runs: int) -> dict[str, Any]:
    samples = []
    for _ in range(runs):
        with fresh_page(browser, site) as page:
            page.goto(site.url + "/", wait_until="commit")
            samples.append(ready(page))
    ends = [s["focused"] if s["focused"] is not None else s["ready"] for s in samples]
    middle = sorted(range(runs), key=lambda i: ends[i])[runs // 2]
    return {
        "ms": summary(ends),
        "focused": all(s["focused"] is not None for s in samples),
        "first_item_ms": summary([s["firstItem"] for s in samples if s["firstItem"] is not None]),
        "median_run": samples[middle],
    }


# --- 3: streamed tokens ----------------------------------------------------------------------


def measure_stream(browser: Any, site: Site, streams: int) -> dict[str, Any]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    arrivals: list[float] = []
    dom: list[float] = []
    chunks = unmatched = 0
    with fresh_page(browser, site) as page:
        page.goto(site.url + "/")
        ready(page)
        for _ in range(streams):
            page.get_by_test_id("new-chat").click()
            page.evaluate("() => __bench.arm()")
            page.get_by_test_id("composer").fill("bench stream")
            page.get_by_test_id("send").click()
            page.wait_for_function(
                "() => __bench.chunks.length > 0 && !document.querySelector("
                "'[data-streaming=\"true\"]')",
                polling=100,
            )
            with suppress(PlaywrightTimeout):  # what never showed is counted below
                page.wait_for_function(
                    "() => __bench.chunks.every((c) => c.painted !== null)", timeout=5000
                )
            found = page.evaluate("() => { __bench.disarm(); return __bench.chunks; }")
            shown = [c for c in found if c["painted"] is not None]
            chunks += len(found)
            unmatched += len(found) - len(shown)
            arrivals += [c["painted"] - c["at"] for c in shown]
            dom += [c["dom"] - c["at"] for c in shown]
    return {"chunks": chunks, "never_seen": unmatched, "painted_ms": summary(arrivals),
            "dom_ms": summary(dom)}  # fmt: skip


# --- 4: a conversation of 1,000 messages -----------------------------------------------------


def open_thread(page: Any, title: str, words: str) -> float:
    """Click the sidebar item titled ``title``; ms until ``words`` are visible."""
    elapsed: float = page.evaluate(
        "([title, words]) => { const item = [...document.querySelectorAll("
        "'[data-testid=\"conversation-item\"]')].find((el) => el.textContent.includes(title));"
        " if (!item) throw new Error(`no conversation-item ${title}`);"
        " const button = item.matches('button') ? item : item.querySelector('button');"
        " const start = performance.now(); button.click();"
        " return __bench.visible('[data-testid=\"message-body\"]', words)"
        ".then((shown) => shown - start); }",
        [title, words],
    )
    return elapsed


def measure_long(browser: Any, site: Site, runs: int) -> dict[str, Any]:
    samples = []
    with fresh_page(browser, site) as page:
        page.goto(site.url + "/")
        ready(page)
        page.get_by_test_id("conversation-item").first.wait_for()
        for _ in range(runs):
            open_thread(page, seeding.SMALL_TITLE, "Question 1:")
            samples.append(open_thread(page, seeding.LONG_TITLE, seeding.LAST_WORDS))
        shown = page.evaluate("() => document.querySelectorAll('[data-testid=\"message\"]').length")
    return {"ms": summary(samples), "messages_in_dom": shown}


# --- 5: the list of 10,000 -------------------------------------------------------------------


def measure_list(browser: Any, site: Site, runs: int) -> dict[str, Any]:
    first, search, api_first, api_search, api_deep = [], [], [], [], []
    first_wire: list[float] = []  # request start -> response end, in the page
    search_wire: list[float] = []
    for _ in range(runs):
        with fresh_page(browser, site) as page:
            page.goto(site.url + "/", wait_until="commit")
            page.get_by_test_id("conversation-item").first.wait_for()
            total, wire = page.evaluate(
                "() => { const r = performance.getEntriesByType('resource')"
                ".find((e) => e.name.includes('/api/conversations'));"
                " return [__bench.firstItem - r.startTime, r.responseEnd - r.startTime]; }"
            )
            first.append(total)
            first_wire.append(wire)
            total, wire = page_search(page)
            search.append(total)
            search_wire.append(wire)
    login = {"username": USER, "password": PASSWORD}
    token = httpx.post(site.url + "/api/auth/login", json=login, trust_env=False, timeout=30)
    token = token.json()["access_token"]
    with httpx.Client(base_url=site.url, trust_env=False, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as http:  # fmt: skip
        cursor = None
        for n in range(max(runs, 20)):
            api_first.append(timed(http, {"limit": 50}))
            api_search.append(timed(http, {"limit": 50, "q": seeding.NEEDLE}))
            page = http.get("/api/conversations", params={"limit": 50, "cursor": cursor}).json()
            cursor = page["next_cursor"] if n < 150 else None
            api_deep.append(timed(http, {"limit": 50, "cursor": cursor}))
    return {
        "first_page_ms": summary(first), "search_ms": summary(search),
        "first_page_wire_ms": summary(first_wire), "search_wire_ms": summary(search_wire),
        "api_first_ms": summary(api_first), "api_search_ms": summary(api_search),
        "api_later_page_ms": summary(api_deep),
    }  # fmt: skip


def page_search(page: Any) -> tuple[float, float]:
    """Type the search word; ms from the search request's start to the matches shown, and
    to its response's end."""
    page.get_by_test_id("conversation-search").fill(seeding.NEEDLE)
    page.wait_for_function(
        "w => { const items = document.querySelectorAll('[data-testid=\"conversation-item\"]');"
        " return items.length > 0 && [...items].every((el) => el.textContent.includes(w))"
        " && (__bench.searched ??= performance.now()); }",
        arg=seeding.NEEDLE,
        polling="raf",
    )
    found: list[float] = page.evaluate(
        "w => { const r = performance.getEntriesByType('resource')"
        ".find((e) => e.name.includes('q=' + w));"
        " return [__bench.searched - r.startTime, r.responseEnd - r.startTime]; }",
        seeding.NEEDLE,
    )
    return found[0], found[1]


def timed(http: httpx.Client, params: dict[str, Any]) -> float:
    started = time.perf_counter()
    http.get("/api/conversations", params=params).raise_for_status()
    return (time.perf_counter() - started) * 1000


# --- the report ------------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "max": max(values)}  # fmt: skip


def attempt(name: str, results: dict[str, Any], run: Any) -> None:
    """One measurement; a page that lacks what it needs is reported, not fatal."""
    print(f"measuring {name} ...", flush=True)
    try:
        results[name] = run()
    except Exception as exc:  # Playwright's timeouts and page errors alike
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        results[name] = {"error": first[:300]}


def verdicts(r: dict[str, Any]) -> dict[str, bool | None]:
    def at(name: str, *keys: str) -> float | None:
        value: Any = r.get(name, {})
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value if isinstance(value, int | float) else None

    measured = {
        "bytes_kb": at("bytes", "kb"),
        "first_load_ms": at("first_load", "ms", "p50"),
        "token_p95_ms": at("stream", "painted_ms", "p95"),
        "long_open_ms": at("long", "ms", "p50"),
        "list_ms": max(
            (v for v in (at("list", "first_page_ms", "p50"), at("list", "search_ms", "p50"))
             if v is not None), default=None,
        ),
    }  # fmt: skip
    return {k: None if v is None else v <= TARGETS[k] for k, v in measured.items()}


def fmt(s: Any) -> str:
    if not isinstance(s, dict) or not s.get("n"):
        return "–"
    return f"p50 {s['p50']:.1f} · p95 {s['p95']:.1f} · max {s['max']:.1f} ms (n={s['n']})"


def sizes(b: dict[str, Any]) -> str:
    if "kb" not in b:
        return "–"
    raw = b["decoded_bytes"] / 1024
    return f"{b['kb']:.1f} KB ({raw:.0f} KB uncompressed, {len(b['files'])} files)"


def report(r: dict[str, Any], verdict: dict[str, bool | None]) -> None:
    def mark(key: str) -> str:
        return {True: "PASS", False: "FAIL", None: "n/a"}[verdict[key]]

    def err(name: str) -> str:
        return f"  ({r[name]['error']})" if "error" in r.get(name, {}) else ""

    b, fl, st, lg, ls = (r.get(k, {}) for k in ("bytes", "first_load", "stream", "long", "list"))
    print("\nweb console (chat page), Chromium headless")
    print(f"{'target':<48} {'measured':<58} verdict")
    rows = [
        ("1. JS+CSS, gzip as served  <= 150 KB", sizes(b), "bytes_kb"),
        ("2. cold load -> composer ready  p50 <= 300 ms", fmt(fl.get("ms")), "first_load_ms"),
        ("3. token on screen after arrival  p95 <= 16 ms", fmt(st.get("painted_ms")),
         "token_p95_ms"),
        ("4. 1,000 messages: click -> last visible <= 500", fmt(lg.get("ms")), "long_open_ms"),
        ("5. list of 10,000: first page shown <= 100 ms", fmt(ls.get("first_page_ms")), "list_ms"),
        ("   search shown after its request <= 100 ms", fmt(ls.get("search_ms")), "list_ms"),
    ]  # fmt: skip
    names = ["bytes", "first_load", "stream", "long", "list", "list"]
    for (label, value, key), name in zip(rows, names, strict=True):
        print(f"{label:<48} {value:<58} {mark(key)}{err(name)}")
    if "ms" in fl:
        marks = ", ".join(f"{k} {v:.0f}" for k, v in fl["median_run"].items() if v is not None)
        print(f"   composer focused: {fl['focused']}; the median run, ms from navigation: {marks}")
    if "dom_ms" in st:
        print(f"   stream: arrival -> in the DOM {fmt(st['dom_ms'])}; {st['chunks']} chunks, "
              f"{st['never_seen']} never seen in the message")  # fmt: skip
    if "messages_in_dom" in lg:
        print(f"   long conversation: {lg['messages_in_dom']} message elements in the DOM")
    if "first_page_wire_ms" in ls:
        print(f"   list: request start -> response end {fmt(ls['first_page_wire_ms'])}")
        print(f"   search: request start -> response end {fmt(ls['search_wire_ms'])}")
    if "api_first_ms" in ls:
        print(f"   API alone: first page {fmt(ls['api_first_ms'])}")
        print(f"              search {fmt(ls['api_search_ms'])}")
        print(f"              a later page {fmt(ls['api_later_page_ms'])}")
    for f in b.get("files", [])[:8]:
        print(f"   {f['gzip'] / 1024:7.1f} KB  {f['url'].split('/ui/', 1)[-1]}  ({f['encoding']})")


def measure(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with run_site(args, logs) as site, launch() as browser:
        print(f"gateway {site.url}, home {site.home}", flush=True)
        attempt("bytes", results, lambda: measure_bytes(browser, site))
        attempt("first_load", results, lambda: measure_first_load(browser, site, args.runs))
        attempt("stream", results, lambda: measure_stream(browser, site, args.streams))
        attempt("long", results, lambda: measure_long(browser, site, args.runs))
        attempt("list", results, lambda: measure_list(browser, site, args.runs))
    return results


def run(args: argparse.Namespace) -> int:
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return 2
    busy = warn_if_busy()
    logs = Path(tempfile.mkdtemp(prefix="enclave-console-"))
    try:
        results = measure(args, logs)
    finally:
        if args.keep_logs:
            print(f"logs kept in {logs}")
        else:
            shutil.rmtree(logs, ignore_errors=True)
    verdict = verdicts(results)
    report(results, verdict)
    if args.json:
        config = {**vars(args), "cpu_busy_before": busy, "python": platform.python_version(),
                  "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}  # fmt: skip
        payload = {"config": config, "results": results, "verdict": verdict}
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    if any(v is False for v in verdict.values()):
        return 1
    return 2 if any(v is None for v in verdict.values()) else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="cold loads, opens, list loads")
    parser.add_argument("--streams", type=int, default=3, help="streamed answers measured")
    parser.add_argument("--tokens", type=int, default=64, help="words per streamed answer")
    parser.add_argument("--itl-ms", type=int, default=30, help="the fake's gap between chunks")
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=1_000, help="of the long conversation")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    parser.add_argument("--json", metavar="FILE", help="write config, results and verdicts here")
    args = parser.parse_args(argv)
    if min(args.runs, args.streams, args.tokens, args.conversations) < 1 or args.messages < 2:
        parser.error("--runs, --streams, --tokens, --conversations must be positive")
    return args


def main() -> int:
    try:
        return run(parse_args())
    except (ProcessFailed, TimeoutError, RuntimeError, OSError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
