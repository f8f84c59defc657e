"""``camlens serve`` as people run it, in its own process on a loopback port: bad input of every
kind gets a 4xx with a JSON message and the server goes on; fifty concurrent requests all succeed
and leave its memory where the first one left it."""

from __future__ import annotations

import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from support import SAMPLE_IMAGES


def huge_png(side: int = 30_000) -> bytes:
    """A valid black-and-white PNG of ``side``×``side`` pixels (112 MB of rows, 0.1 MB of file)."""
    row = b"\0" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row * min(1000, side - start)) for start in range(0, side, 1000)) + packer.flush()
    chunk = lambda kind, body: (struct.pack(">I", len(body)) + kind + body
                                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def test_the_huge_png_is_a_real_png():
    """The 30,000-pixel test photo is an image a browser would try to decode, not a bare header."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS, limit = None, Image.MAX_IMAGE_PIXELS
    try:
        import io

        with Image.open(io.BytesIO(huge_png(3000))) as image:
            image.load()
            assert image.size == (3000, 3000) and image.getextrema() == (0, 0)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


@pytest.fixture(scope="module")
def server(start_server):
    return start_server("--max-upload-mb", "20")


def _explain(server, **parts) -> httpx.Response:
    return httpx.post(f"{server.url}/api/explain", timeout=120, **parts)


@pytest.mark.parametrize("name, request_, status", [
    ("a truncated JPEG", {"files": {"file": ("owl.jpg", (SAMPLE_IMAGES / "owl.jpg").read_bytes()[:30000])}}, 422),
    ("a 30,000×30,000 PNG", {"files": {"file": ("big.png", huge_png())}}, 413),
    ("a text file named .jpg", {"files": {"file": ("photo.jpg", b"Dear diary,\n" * 100)}}, 415),
    ("an empty body", {"content": b"", "headers": {"content-type": "multipart/form-data; boundary=x"}}, 422),
    ("no body and no type", {}, 422),
    ("an unknown model", {"data": {"sample": "owl.jpg", "model": "torchvision:resnet50"}}, 422),
    ("a layer not in the list", {"data": {"sample": "owl.jpg", "layer": "_conv_stem.weight"}}, 422),
    ("a photo over 20 MB", {"files": {"file": ("big.jpg", b"\xff\xd8" + b"\0" * (21 * 2 ** 20))}}, 413),
    ("a chunked photo over 20 MB",
     {"content": iter([b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n"]
                      + [b"\0" * 2 ** 20] * 21), "headers": {"content-type": "multipart/form-data; boundary=x"}}, 413),
])
def test_bad_input_is_a_4xx_with_a_json_message_and_the_server_goes_on(server, name, request_, status):
    response = _explain(server, **request_)
    assert response.status_code == status, (name, response.text)
    assert isinstance(response.json()["detail"], str) and response.json()["detail"], name
    assert server.alive(), name
    good = _explain(server, data={"sample": "owl.jpg"})
    assert good.status_code == 200, good.text


def test_fifty_concurrent_requests_all_succeed_and_memory_stays_where_the_first_left_it(start_server):
    server = start_server()
    photo = (SAMPLE_IMAGES / "owl.jpg").read_bytes()

    def explain_one(_: int) -> int:
        return _explain(server, files={"file": ("owl.jpg", photo)}, data={"methods": "gradcam,layercam"}).status_code

    assert explain_one(0) == 200
    after_first = server.rss()
    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(explain_one, range(50)))
    after = server.rss()
    assert statuses == [200] * 50
    measured = f"{after_first / 2 ** 20:.0f} MB after the first request, {after / 2 ** 20:.0f} MB after 50 more"
    print(f"server memory: {measured}")
    assert after <= 1.10 * after_first, measured
    assert server.alive()


def test_the_server_binds_loopback_by_default(server):
    import socket

    outside = next((address for *_, (address, *_) in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
                    if not address.startswith("127.")), None)
    if outside is None:
        pytest.skip("this machine has no address besides loopback to try")
    with pytest.raises(httpx.TransportError):  # not on the machine's other addresses
        httpx.get(server.url.replace("127.0.0.1", outside) + "/api/models", timeout=5)
