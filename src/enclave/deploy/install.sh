#!/usr/bin/env bash
# Install enclave @VERSION@ from this offline bundle (@TARGET@). Uses no network at all.
#
#   ./install.sh [--prefix DIR] [--bin DIR] [--no-start]
#
#   --prefix DIR  where the virtual environment goes (root: /opt/enclave,
#                 others: ~/.local/opt/enclave)
#   --bin DIR     where `enclave` and `ask` are linked (root: /usr/local/bin,
#                 others: ~/.local/bin)
#   --no-start    install only; otherwise `enclave serve` starts at the end
#
# It checks SHA256SUMS, needs python3 @PYTHON@ (or PYTHON=/path/to/python@PYTHON@),
# installs every wheel pinned by hash in requirements.lock, imports the GGUF files in
# models/ into enclave's model store (ENCLAVE_HOME), links the commands and starts it.
set -euo pipefail

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*" >&2; }

if [ "$(id -u)" = 0 ]; then
  prefix=/opt/enclave bin=/usr/local/bin
else
  prefix="$HOME/.local/opt/enclave" bin="$HOME/.local/bin"
fi
start=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
    --bin) [ $# -ge 2 ] || die "--bin needs a directory"; bin=$2; shift 2 ;;
    --no-start) start=0; shift ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

command -v sha256sum >/dev/null || die "sha256sum is missing (it is part of coreutils)"
[ -f SHA256SUMS ] || die "SHA256SUMS is missing: the bundle is incomplete; copy it again"
if ! failed=$(sha256sum -c --quiet --strict SHA256SUMS 2>/dev/null); then
  bad=$(printf '%s\n' "$failed" | sed -n 's/: FAILED.*$//p' | head -n 3 | paste -sd ' ' -)
  die "checksum mismatch: ${bad:-SHA256SUMS is malformed}: the bundle is damaged; copy it again"
fi

[ "$(uname -m)" = "@ARCH@" ] || die "this bundle is for @ARCH@, this machine is $(uname -m)"
python=${PYTHON:-python3}
command -v "$python" >/dev/null || die "$python not found; install Python @PYTHON@ or set PYTHON"
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
  || die "$python does not run"
[ "$version" = "@PYTHON@" ] \
  || die "this bundle needs Python @PYTHON@ but $python is $version; set PYTHON=/path/to/python@PYTHON@"

# No ensurepip (Debian leaves it out of python3): the venv gets pip from the bundle.
say "creating the environment in $prefix/venv"
mkdir -p "$prefix"
"$python" -m venv --without-pip "$prefix/venv" || die "cannot create a virtual environment in $prefix/venv"
venv_python="$prefix/venv/bin/python"
pip_wheel=
for wheel in wheels/pip-*.whl; do [ -f "$wheel" ] && pip_wheel=$wheel; done
[ -n "$pip_wheel" ] || die "no pip wheel in wheels/: the bundle is incomplete"

say "installing enclave @VERSION@ (every wheel checked against requirements.lock)"
"$venv_python" "$pip_wheel/pip" install --isolated --no-index --find-links wheels \
  --require-hashes --no-warn-script-location --disable-pip-version-check -q \
  -r requirements.lock || die "pip could not install the bundle's wheels (see above)"

for model in models/*.gguf; do
  [ -e "$model" ] || continue
  name=$(basename "$model" .gguf)
  say "importing model $name"
  "$prefix/venv/bin/enclave" models import "$model" --name "$name" >/dev/null \
    || die "could not import model $name (see above)"
done

mkdir -p "$bin"
ln -sf "$prefix/venv/bin/enclave" "$bin/enclave"
ln -sf "$prefix/venv/bin/ask" "$bin/ask"
say "installed: $bin/enclave and $bin/ask"

if [ "$start" = 1 ]; then
  say "starting enclave serve"
  exec "$prefix/venv/bin/enclave" serve
fi
