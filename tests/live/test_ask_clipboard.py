"""``ask --clip`` under a real Xvfb with the real xclip, and ``ask -v -i`` downscaling a
big image: the real executable against the real fake upstream, checking what it sent.

Xvfb and xclip are installed by ``./task test`` (``need_x11``); when they are missing the
tests install them if they can (root with apt-get) and are skipped only if they cannot.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.fakes.procs import FakeUpstream
from tests.helpers import assert_one_line_error, run_ask

pytestmark = pytest.mark.fake_upstream(vision=True)
ASK = Path(sys.executable).parent / "ask"
PNG = Path(__file__).resolve().parents[1] / "data" / "ocr_chinese.png"
MODEL = "fake-model"
NO_TOOL = "ask: --clip needs xclip (apt install xclip) or wl-clipboard (apt install wl-clipboard)"


def have_x11_tools() -> bool:
    if shutil.which("Xvfb") and shutil.which("xclip"):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):  # the same as ./task's need_x11
        subprocess.run(
            "apt-get update -qq && apt-get install -y -qq xvfb xclip",
            shell=True,
            check=False,
            capture_output=True,
            timeout=600,
        )
    return bool(shutil.which("Xvfb") and shutil.which("xclip"))


needs_x11 = pytest.mark.skipif(
    not have_x11_tools(), reason="Xvfb and xclip are not installed and cannot be"
)


def sent_images(fake: FakeUpstream) -> list[Image.Image]:
    content = fake.stats()["last_request"]["messages"][-1]["content"]
    images: list[Image.Image] = []
    for part in content:
        if part["type"] == "image_url":
            data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
            image = Image.open(io.BytesIO(data))
            image.load()
            images.append(image)
    return images


def big_photo(path: Path, size: tuple[int, int] = (4000, 3000)) -> Path:
    """A noisy image (compresses like a photo) saved as PNG: about 20 MB."""
    noise = Image.effect_noise((size[0] // 8, size[1] // 8), 60).convert("RGB")
    noise.resize(size, Image.Resampling.BICUBIC).save(path)
    return path


@pytest.fixture
def display() -> Iterator[str]:
    """A fresh Xvfb (so an empty clipboard), on a display number it picks itself."""
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        assert number, "Xvfb did not report its display"
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def copy(display: str, *, path: Path | None = None, text: str | None = None) -> None:
    """Put a PNG file or text on the CLIPBOARD selection (xclip stays as its owner)."""
    cmd = ["xclip", "-selection", "clipboard"]
    cmd += ["-t", "image/png", "-i", str(path)] if path is not None else ["-i"]
    subprocess.run(
        cmd,
        input=(text or "").encode(),
        env={**os.environ, "DISPLAY": display},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=10,
    )


@needs_x11
def test_clip_image(url: str, fake: FakeUpstream, display: str) -> None:
    copy(display, path=PNG)
    result = run_ask("--clip", "what is this", url=url, DISPLAY=display)
    assert result.returncode == 0, result.stderr
    assert "images=1 texts=1" in result.stdout
    text, image = fake.stats()["last_request"]["messages"][0]["content"]
    assert text == {"type": "text", "text": "what is this"}
    assert image["image_url"]["url"] == (
        "data:image/png;base64," + base64.b64encode(PNG.read_bytes()).decode()
    )  # small enough: sent as is


@needs_x11
def test_clip_big_image_is_downscaled(
    url: str, fake: FakeUpstream, display: str, tmp_path: Path
) -> None:
    copy(display, path=big_photo(tmp_path / "big.png"))
    result = run_ask("-v", "--clip", "what is this", url=url, DISPLAY=display)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("image clipboard: 4000x3000 ")
    assert " → 1568x1176 " in result.stderr
    assert [image.size for image in sent_images(fake)] == [(1568, 1176)]


@needs_x11
def test_clip_text_is_a_fenced_block(url: str, fake: FakeUpstream, display: str) -> None:
    copy(display, text="Traceback (most recent call last):\n  KeyError: 'x'\n")
    result = run_ask("--clip", "why", url=url, DISPLAY=display)
    assert result.returncode == 0, result.stderr
    assert "images=0 texts=1" in result.stdout
    assert fake.stats()["last_request"]["messages"] == [
        {
            "role": "user",
            "content": "why\n\nclipboard:\n```\n"
            "Traceback (most recent call last):\n  KeyError: 'x'\n```",
        }
    ]


@needs_x11
def test_empty_clipboard(url: str, fake: FakeUpstream, display: str) -> None:
    result = run_ask("--clip", "what is this", url=url, DISPLAY=display)
    assert_one_line_error(result, "ask: the clipboard holds no image or text")
    assert fake.stats()["last_request"] is None


@needs_x11
def test_display_that_cannot_be_opened(url: str) -> None:
    result = run_ask("--clip", "hi", url=url, DISPLAY=":1999")
    assert_one_line_error(
        result, "ask: --clip cannot reach the display: Error: Can't open display: :1999"
    )


def test_no_display(url: str) -> None:
    result = run_ask("--clip", "hi", url=url)
    message = "ask: --clip needs a display: neither DISPLAY nor WAYLAND_DISPLAY is set"
    assert_one_line_error(result, message)


def test_no_clipboard_tool(url: str, tmp_path: Path) -> None:
    result = run_ask("--clip", "hi", url=url, DISPLAY=":0", PATH=str(tmp_path))
    assert_one_line_error(result, NO_TOOL)


def test_verbose_big_image_is_downscaled(url: str, fake: FakeUpstream, tmp_path: Path) -> None:
    big = big_photo(tmp_path / "big.png", (3840, 2160))
    result = run_ask("-v", "-i", str(big), "what", "is", "this", url=url)
    assert result.returncode == 0, result.stderr
    assert "images=1 texts=1" in result.stdout
    line = result.stderr.strip()
    assert line.startswith(f"image {big}: 3840x2160 ")
    assert " MB → 1568x882 " in line
    assert line.endswith(" kB")
    (image,) = sent_images(fake)
    assert image.size == (1568, 882)
    assert image.format == "JPEG"
    url_text = fake.stats()["last_request"]["messages"][0]["content"][1]["image_url"]["url"]
    assert len(url_text) * 10 < big.stat().st_size


def test_max_image_side_flag(url: str, fake: FakeUpstream) -> None:
    result = run_ask("--max-image-side", "100", "-i", str(PNG), "hi", url=url)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (image,) = sent_images(fake)
    assert max(image.size) == 100


def test_corrupt_image(url: str, tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    path.write_bytes(PNG.read_bytes()[:300])
    result = run_ask("-i", str(path), "hi", url=url)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"ask: {path} is a corrupt or truncated image")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


@needs_x11
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_repl_clip_stages_the_clipboard_image(
    url: str, fake: FakeUpstream, display: str, tmp_path: Path
) -> None:
    from tests.terminal import Terminal

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
        "LANG": "C.UTF-8", "DISPLAY": display, "ENCLAVE_URL": url, "ENCLAVE_MODEL": MODEL,
        "ASK_CONFIG": "/nonexistent/ask.toml", "ASK_HISTORY": str(tmp_path / "ask.db"),
    }  # fmt: skip
    terminal = Terminal([str(ASK)], env, tmp_path)
    try:
        terminal.wait_for(r"User >$")
        terminal.type(":clip")
        terminal.keys("Enter")
        terminal.wait_for(r"ask: the clipboard holds no image or text\nUser >$")
        copy(display, path=PNG)
        terminal.type(":clip")
        terminal.keys("Enter")
        terminal.wait_for(r"staged image clipboard: 520x140.*\nUser \(1 image\) >$")
        terminal.type("what is this?")
        terminal.keys("Enter")
        terminal.wait_for(r"echo: what is this\? images=1 texts=1")
        (image,) = sent_images(fake)
        assert image.size == (520, 140)
    finally:
        terminal.close()
