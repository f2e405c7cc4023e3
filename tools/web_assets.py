"""The web console's assets: vendor the JavaScript libraries, write the manifest.

    python tools/web_assets.py vendor     fetch the pinned npm packages, minify, write vendor/
    python tools/web_assets.py manifest   write static/manifest.json (every file, its SHA-256)
    python tools/web_assets.py check      exit 1 when the manifest is not current

``vendor`` runs at build time only, with npm (``npm pack`` checks each tarball against
the registry's integrity hash) and esbuild (from npm) to minify and bundle; the results
are committed, so nothing is fetched when enclave runs or is installed. Every file the
gateway serves is listed in the manifest with its package, version and SHA-256; the
gateway serves no other file and refuses one whose digest differs (enclave/web).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "src" / "enclave" / "web" / "static"
MANIFEST = STATIC / "manifest.json"
ESBUILD = "esbuild@0.25.12"

HIGHLIGHT_LANGUAGES = [
    "bash", "c", "cpp", "csharp", "css", "diff", "dockerfile", "go", "ini", "java",
    "javascript", "json", "kotlin", "makefile", "markdown", "nginx", "php", "plaintext",
    "powershell", "python", "rust", "shell", "sql", "typescript", "xml", "yaml",
]  # fmt: skip


@dataclass(frozen=True)
class Vendored:
    package: str  # npm name
    version: str
    files: dict[str, str]  # our file under vendor/ -> the file in the package (or "<bundle>")
    license: str


PACKAGES = (
    Vendored("htm", "3.1.1", {"preact.js": "package/preact/standalone.module.js"}, "Apache-2.0"),
    Vendored("marked", "18.3.0", {"marked.js": "package/lib/marked.esm.js"}, "MIT"),
    Vendored(
        "dompurify", "3.5.0", {"purify.js": "package/dist/purify.es.mjs"}, "MPL-2.0 OR Apache-2.0"
    ),
    Vendored(
        "@highlightjs/cdn-assets",
        "11.11.1",
        {
            "highlight.js": "<bundle>",
            "highlight-light.css": "package/styles/github.min.css",
            "highlight-dark.css": "package/styles/github-dark.min.css",
        },
        "BSD-3-Clause",
    ),
    Vendored("katex", "0.19.1", {"katex.js": "package/dist/katex.mjs"}, "MIT"),
    Vendored(
        "uplot",
        "1.6.32",
        {"uplot.js": "package/dist/uPlot.esm.js", "uplot.css": "package/dist/uPlot.min.css"},
        "MIT",
    ),
)


def _run(*argv: str, cwd: Path) -> None:
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def _unpack(spec: Vendored, work: Path) -> Path:
    _run("npm", "pack", "-q", f"{spec.package}@{spec.version}", cwd=work)
    tarball = next(work.glob(f"{spec.package.lstrip('@').replace('/', '-')}-{spec.version}.tgz"))
    target = work / tarball.stem
    with tarfile.open(tarball) as archive:
        archive.extractall(target, filter="data")
    return target


def _highlight_entry(package: Path) -> Path:
    lines = ['import hljs from "./package/es/core.min.js";']
    for name in HIGHLIGHT_LANGUAGES:
        ident = "l_" + name
        lines.append(f'import {ident} from "./package/es/languages/{name}.min.js";')
        lines.append(f'hljs.registerLanguage("{name}", {ident});')
    lines.append("export default hljs;")
    entry = package / "entry.js"
    entry.write_text("\n".join(lines) + "\n")
    return entry


def _minify(source: Path, target: Path, work: Path, *, bundle: bool = False) -> None:
    args = ["npx", "-y", ESBUILD, str(source), "--minify", f"--outfile={target}"]
    if target.suffix == ".js":
        args += ["--format=esm", "--legal-comments=inline"]
    if bundle:
        args.append("--bundle")
    _run(*args, cwd=work)


def vendor() -> dict[str, dict[str, str]]:
    out = STATIC / "vendor"
    out.mkdir(parents=True, exist_ok=True)
    origin: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for spec in PACKAGES:
            package = _unpack(spec, work)
            for name, inner in spec.files.items():
                bundle = inner == "<bundle>"
                source = _highlight_entry(package) if bundle else package / inner
                _minify(source, out / name, work, bundle=bundle)
                where = (
                    f"{'+'.join(HIGHLIGHT_LANGUAGES)}" if bundle else inner.removeprefix("package/")
                )
                origin[f"vendor/{name}"] = {
                    "package": spec.package, "version": spec.version, "license": spec.license,
                    "from": f"npm:{spec.package}@{spec.version}/{where}, minified by {ESBUILD}",
                }  # fmt: skip
    return origin


def _entries(origin: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    from enclave import __version__

    files: dict[str, dict[str, str]] = {}
    for path in sorted(STATIC.rglob("*")):
        if not path.is_file() or path == MANIFEST:
            continue
        name = path.relative_to(STATIC).as_posix()
        about = origin.get(name) or {"package": "enclave", "version": __version__}
        files[name] = about | {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return files


def _origins() -> dict[str, dict[str, str]]:
    if not MANIFEST.exists():
        return {}
    old = json.loads(MANIFEST.read_text())["files"]
    return {
        name: {k: v for k, v in about.items() if k != "sha256"}
        for name, about in old.items()
        if about.get("package") != "enclave"
    }


def manifest_text(origin: dict[str, dict[str, str]]) -> str:
    return json.dumps({"files": _entries(origin)}, indent=1, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "vendor":
        MANIFEST.write_text(manifest_text(_origins() | vendor()))
    elif command == "manifest":
        MANIFEST.write_text(manifest_text(_origins()))
    elif command == "check":
        if not MANIFEST.exists() or MANIFEST.read_text() != manifest_text(_origins()):
            print("static/manifest.json is stale: run python tools/web_assets.py manifest")
            return 1
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
