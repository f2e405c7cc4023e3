"""The console's files: the manifest is current and names every file with its digest, and
the server hands out only listed files whose bytes match, under a self-only policy."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

from enclave.web import CSP, STATIC, Assets

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_manifest_is_current() -> None:
    done = subprocess.run(
        [sys.executable, "tools/web_assets.py", "check"], cwd=ROOT, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_vendored_file_names_its_package_and_version() -> None:
    listed = json.loads((STATIC / "manifest.json").read_text())["files"]
    vendored = {name: about for name, about in listed.items() if name.startswith("vendor/")}
    assert {"vendor/preact.js", "vendor/marked.js", "vendor/purify.js"} <= vendored.keys()
    for name, about in vendored.items():
        assert about["package"] != "enclave", name
        assert about["version"], name
        assert about["license"], name
        assert about["from"].startswith(f"npm:{about['package']}@{about['version']}/"), name


def test_no_page_or_script_names_another_origin() -> None:
    """Our own files name no other origin; stylesheets import nothing from one. (Vendored
    scripts hold namespace strings such as the SVG one; the browser tests' guard shows
    that no page requests anything off its origin.)"""
    for path in STATIC.rglob("*"):
        if not path.is_file() or path.name == "manifest.json":
            continue
        text = path.read_text(errors="replace")
        if path.parent.name != "vendor":  # an SVG names its XML namespace, no more
            links = re.findall(r"https?://[^\s\"')]+", text)
            assert set(links) <= {"http://www.w3.org/2000/svg"}, path
        if path.suffix == ".css":
            assert "@import" not in text, path
            assert "url(http" not in text.replace(" ", ""), path


def test_served_files_match_their_digest_and_are_compressed() -> None:
    assets = Assets()
    reply = assets.response("core/api.js", "gzip, br", None)
    assert reply.headers["content-encoding"] == "gzip"
    assert reply.headers["content-security-policy"] == CSP
    body = gzip.decompress(bytes(reply.body))
    assert (
        hashlib.sha256(body).hexdigest()
        == hashlib.sha256((STATIC / "core" / "api.js").read_bytes()).hexdigest()
    )
    again = assets.response("core/api.js", "gzip", reply.headers["etag"])
    assert again.status_code == 304
    plain = assets.response("core/api.js", "", None)
    assert "content-encoding" not in plain.headers
    assert plain.headers["content-type"].startswith("text/javascript")


def test_unlisted_and_traversing_names_are_not_found() -> None:
    assets = Assets()
    for name in ("manifest.json", "../__init__.py", "core/../../__init__.py", "nope.js", ""):
        assert assets.response(name, "", None).status_code == 404, name


def test_a_file_that_differs_from_its_manifest_is_not_served(tmp_path: Path) -> None:
    copy = tmp_path / "static"
    shutil.copytree(STATIC, copy)
    (copy / "core" / "api.js").write_text("alert('changed after the build');\n")
    assets = Assets(copy)
    assert assets.response("core/api.js", "", None).status_code == 404
    assert assets.response("core/i18n.js", "", None).status_code == 200


IMPORT = re.compile(r"""^\s*import\s+(?:[^"']*?from\s+)?["'](\.{1,2}/[^"']+)["']""", re.M)


def static_imports(entry: str) -> list[str]:
    """Every module ``entry`` imports at start, transitively (``import()`` calls, which
    load later, are not followed)."""
    found: list[str] = []
    todo = [entry]
    while todo:
        name = todo.pop(0)
        if name in found:
            continue
        found.append(name)
        folder = PurePosixPath(name).parent
        for target in IMPORT.findall((STATIC / name).read_text()):
            parts: list[str] = []
            for part in (folder / target).parts:
                if part == "..":
                    parts.pop()
                elif part != ".":
                    parts.append(part)
            todo.append("/".join(parts))
    return found


def test_each_page_preloads_every_module_it_imports_at_start() -> None:
    """A module found only when its importer has run costs a round trip per level: the
    page names them all, so the browser fetches them at once."""
    for page, entry in (("chat.html", "chat/main.js"), ("admin.html", "admin/main.js")):
        html = (STATIC / page).read_text()
        preloaded = set(re.findall(r'<link rel="modulepreload" href="/ui/([^"]+)">', html))
        assert f'<script type="module" src="/ui/{entry}">' in html
        assert preloaded == set(static_imports(entry)) - {entry}, page
