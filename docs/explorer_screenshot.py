"""Take README's picture of the explorer: ``camlens serve`` on a free loopback port, the pets
sample explained by Grad-CAM, LayerCAM and Guided Grad-CAM for its top two classes, in headless
Chromium. Run from the checkout: ``.venv/bin/python docs/explorer_screenshot.py``."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from PIL import Image
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
OUT = HERE / "images" / "explorer.jpg"


def main() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "camlens", "serve", "--port", str(port), "--device", "cpu",
                               "--log-level", "warning"], cwd=HERE.parent)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/api/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1360, "height": 860})
            page.goto(url)
            page.select_option("#sample", "pets.jpg")
            for method in ("layercam", "guided_gradcam"):
                page.check(f"#methods input[value={method}]")
            page.fill("#top", "2")
            page.click("#explain")
            page.wait_for_function("document.querySelector('#status').textContent.startsWith('Done')", timeout=120_000)
            page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
            picture = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
            browser.close()
        picture.save(OUT, quality=85, optimize=True)
        print(f"wrote {OUT.relative_to(HERE.parent)} ({picture.width}×{picture.height})")
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
