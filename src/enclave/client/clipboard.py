"""What ``ask --clip`` takes from the clipboard: an image, else text.

Which clipboard is read:

- Linux/BSD with ``WAYLAND_DISPLAY`` set and ``wl-paste`` installed: Wayland
  (``wl-paste --list-types``, then ``wl-paste --type TYPE``);
- else with ``DISPLAY`` set and ``xclip`` installed: X11 (``xclip -selection clipboard
  -t TARGETS -o``, then ``-t image/png -o`` or the text target);
- macOS and Windows: ``PIL.ImageGrab.grabclipboard()`` for an image, ``pbpaste`` /
  PowerShell ``Get-Clipboard`` for text.

Every failure is a :class:`~enclave.errors.ClipboardError` whose ``str()`` is the one
line ``ask`` prints.
Standard library only at import; Pillow loads only on macOS and Windows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from enclave.errors import ClipboardError

TIMEOUT_S = 5.0
NO_TOOL = "--clip needs xclip (apt install xclip) or wl-clipboard (apt install wl-clipboard)"
NO_DISPLAY = "--clip needs a display: neither DISPLAY nor WAYLAND_DISPLAY is set"
EMPTY = "the clipboard holds no image or text"
_TEXT_TYPES = ("UTF8_STRING", "text/plain;charset=utf-8", "text/plain", "STRING", "TEXT")


@dataclass(frozen=True, slots=True)
class Clip:
    """Exactly one of ``image`` (encoded bytes, any format Pillow reads) and ``text``."""

    image: bytes | None = None
    text: str | None = None


def read(env: Mapping[str, str] | None = None, platform: str | None = None) -> Clip:
    """The clipboard's image if it holds one, else its text; :class:`ClipboardError`."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if platform == "darwin" or platform.startswith("win"):
        return _read_pillow(platform)
    wayland, x11 = env.get("WAYLAND_DISPLAY"), env.get("DISPLAY")
    if not wayland and not x11:
        raise ClipboardError(NO_DISPLAY)
    if wayland and shutil.which("wl-paste"):
        return _read_tool(["wl-paste", "--list-types"], ["wl-paste", "--no-newline", "--type"])
    if x11 and shutil.which("xclip"):
        base = ["xclip", "-selection", "clipboard"]
        return _read_tool([*base, "-t", "TARGETS", "-o"], [*base, "-o", "-t"])
    raise ClipboardError(NO_TOOL)


def _read_tool(list_cmd: Sequence[str], get_cmd: Sequence[str]) -> Clip:
    listed = _run(list_cmd)
    if listed.returncode != 0:  # xclip: "target TARGETS not available"; wl-paste: "No selection"
        raise ClipboardError(EMPTY)
    types = [line.strip() for line in listed.stdout.decode(errors="replace").splitlines()]
    image_type = pick_image_type(types)
    if image_type is not None:
        got = _run([*get_cmd, image_type])
        if got.returncode == 0 and got.stdout:
            return Clip(image=got.stdout)
    text_type = next((t for t in _TEXT_TYPES if t in types), None)
    if text_type is not None:
        got = _run([*get_cmd, text_type])
        text = got.stdout.decode("utf-8", errors="replace") if got.returncode == 0 else ""
        if text.strip():
            return Clip(text=text)
    raise ClipboardError(EMPTY)


def pick_image_type(types: Sequence[str]) -> str | None:
    """``image/png`` if offered, else the first other ``image/*`` type."""
    if "image/png" in types:
        return "image/png"
    return next((t for t in types if t.startswith("image/")), None)


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        done = subprocess.run(
            list(cmd), capture_output=True, timeout=TIMEOUT_S, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise ClipboardError(f"the clipboard did not answer within {TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise ClipboardError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None
    err = done.stderr.decode(errors="replace")
    if "open display" in err.lower() or "failed to connect to a wayland" in err.lower():
        first = err.strip().splitlines()[0]
        raise ClipboardError(f"--clip cannot reach the display: {first}")
    return done


def _read_pillow(platform: str) -> Clip:
    import io
    from pathlib import Path

    from PIL import Image, ImageGrab

    try:
        grabbed = ImageGrab.grabclipboard()
    except (OSError, NotImplementedError) as exc:
        raise ClipboardError(f"cannot read the clipboard: {exc}") from None
    if isinstance(grabbed, Image.Image):
        out = io.BytesIO()
        grabbed.save(out, "PNG")
        return Clip(image=out.getvalue())
    if isinstance(grabbed, list):  # copied files: the first one that is readable
        for name in grabbed:
            try:
                return Clip(image=Path(name).read_bytes())
            except OSError:
                continue
    cmd = (
        ["pbpaste"]
        if platform == "darwin"
        else ["powershell", "-NoProfile", "-Command", "Get-Clipboard"]
    )
    if shutil.which(cmd[0]):
        got = _run(cmd)
        text = got.stdout.decode("utf-8", errors="replace") if got.returncode == 0 else ""
        if text.strip():
            return Clip(text=text)
    raise ClipboardError(EMPTY)
