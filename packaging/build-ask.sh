#!/usr/bin/env bash
# Build the standalone `ask` for machines without network (README, "ask" section):
#
#   dist/ask-<version>-py<XY>-<platform>.pyz   one file: `python3 ask.pyz "question"`
#   dist/enclave-ask_<version>_<arch>.deb      /usr/bin/ask + /usr/lib/enclave-ask/ask.pyz
#
# The .pyz is a shiv zipapp of enclave's base install (the dependencies listed in
# pyproject.toml's [project] dependencies; never the server or engine extras). Some of
# those dependencies have compiled parts (pydantic-core, Pillow), so the .pyz runs only on
# the platform and Python minor version it was built with: both are in its name. Build
# with another interpreter to target another version: ASK_PYTHON=python3.12 ./task package
#
# The build machine needs PyPI (or a pip mirror); the target machine needs nothing but
# python3. Tools (shiv) are cached in build/ask-tools; set DEB_MAINTAINER to sign off.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${ASK_PYTHON:-python3}"
SHIV_VERSION="1.0.8"
TOOLS="build/ask-tools"
DIST="dist"
MAINTAINER="${DEB_MAINTAINER:-enclave maintainers <enclave@localhost>}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' src/enclave/__init__.py)
[ -n "$version" ] || { echo "cannot read __version__ from src/enclave/__init__.py" >&2; exit 1; }

# The build tools: a venv of the target interpreter with shiv and setuptools.
want="$("$PYTHON" -c 'import sys; print(sys.version.split()[0])') shiv==$SHIV_VERSION"
if [ "$(cat "$TOOLS/.stamp" 2>/dev/null)" != "$want" ]; then
  say "preparing $TOOLS (shiv $SHIV_VERSION, $("$PYTHON" --version))"
  rm -rf "$TOOLS"
  "$PYTHON" -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check \
    "shiv==$SHIV_VERSION" "setuptools>=77" wheel
  echo "$want" > "$TOOLS/.stamp"
fi
TPY="$TOOLS/bin/python"

read -r pytag platform minor < <("$TPY" -c '
import sys, sysconfig
v = sys.version_info
plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
print(f"py{v.major}{v.minor}", plat, f"{v.major}.{v.minor}")')
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) arch=$(dpkg --print-architecture) ;;
esac
next_minor="${minor%.*}.$((${minor#*.} + 1))"

work=$(mktemp -d "${TMPDIR:-/tmp}/enclave-ask-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$DIST"

# 1. enclave and its base dependencies into one site-packages. The project is copied
#    first so that setuptools' build/ leftovers can never put stale modules in the wheel.
say "installing enclave $version (base dependencies only) for $pytag $platform"
mkdir -p "$work/project"
cp -r pyproject.toml README.md src "$work/project/"
find "$work/project" -name __pycache__ -prune -exec rm -rf {} +
"$TPY" -m pip install -q --disable-pip-version-check --no-compile --no-build-isolation \
  --prefer-binary --target "$work/site-packages" "$work/project"
rm -rf "$work/site-packages/bin"  # console scripts with the build machine's shebang
rm -f "$work"/site-packages/*.dist-info/direct_url.json  # the temporary path: not reproducible

# 2. The zipapp.
pyz="$DIST/ask-$version-$pytag-$platform.pyz"
say "building $pyz"
rm -f "$pyz"
"$TOOLS/bin/shiv" --site-packages "$work/site-packages" -e enclave.cli.ask:main \
  -p "/usr/bin/env python3" --compressed --reproducible -o "$pyz"
chmod 0755 "$pyz"

# 3. The .deb: a plain user-owned tree, root:root inside the package (--root-owner-group).
deb="$DIST/enclave-ask_${version}_${arch}.deb"
say "building $deb"
root="$work/deb"
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/enclave-ask" \
  "$root/usr/share/doc/enclave-ask"
install -m 0755 "$pyz" "$root/usr/lib/enclave-ask/ask.pyz"
cat > "$root/usr/bin/ask" <<'LAUNCHER'
#!/bin/sh
# enclave's `ask`: the zipapp unpacks its libraries into ~/.shiv (or $SHIV_ROOT) on first run.
exec /usr/bin/python3 /usr/lib/enclave-ask/ask.pyz "$@"
LAUNCHER
chmod 0755 "$root/usr/bin/ask"
cat > "$root/usr/share/doc/enclave-ask/README" <<DOC
enclave-ask $version: \`ask\`, the terminal assistant of enclave
==================================================================

    ask "how do I list listening ports on linux"
    cat error.log | ask "why did this fail?"
    ask -i screenshot.png "what does this error mean?"
    ask config          # the effective settings and where they come from
    ask --help

Point it at your enclave gateway with ENCLAVE_URL (default http://127.0.0.1:8000),
ENCLAVE_API_KEY and ENCLAVE_MODEL, or in ~/.config/enclave/ask.toml (ASK_CONFIG names
another file). Flags win over the environment, the environment over the file.

Files: /usr/bin/ask runs /usr/lib/enclave-ask/ask.pyz with /usr/bin/python3. The .pyz
carries its libraries (httpx, pydantic, ...; built for Python $minor on $platform) and
unpacks them once per user and version into ~/.shiv; set SHIV_ROOT to use another
directory (for example when HOME is read-only). Delete old ~/.shiv/ask-* directories
after an upgrade to reclaim the space.

Nothing here opens a connection except to the gateway you configure.
DOC
cat > "$root/usr/share/doc/enclave-ask/copyright" <<'DOC'
enclave: Apache-2.0. The bundled libraries keep their own licenses, recorded in the
*.dist-info directories inside /usr/lib/enclave-ask/ask.pyz.
DOC
chmod 0644 "$root/usr/share/doc/enclave-ask/"*
size_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: enclave-ask
Version: $version
Architecture: $arch
Maintainer: $MAINTAINER
Installed-Size: $size_kb
Depends: python3 (>= $minor), python3 (<< $next_minor)
Section: utils
Priority: optional
Description: enclave's terminal assistant, ask
 Asks an enclave gateway (a private, OpenAI-compatible AI service on your own
 network) a question and streams the answer: piped logs, attached files and
 screenshots. A single self-contained zipapp; needs no network to install.
CONTROL
chmod 0644 "$root/DEBIAN/control"
find "$root" -type d -exec chmod 0755 {} +
rm -f "$deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null

say "done"
ls -l "$pyz" "$deb" >&2
