"""A tiny Chrome DevTools Protocol client (stdlib only: a websocket over a socket) and a headless Chromium, for
testing pages in a real browser. Chromium is Debian's (``./scripts/test`` installs it when missing)."""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required", "--remote-debugging-address=127.0.0.1"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One browser tab over CDP: ``call`` a method, ``evaluate`` JavaScript, ``errors`` seen in the console."""

    def __init__(self, ws_url: str) -> None:
        u = urlparse(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        self.next_id, self.events = 0, []

    def _send(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the browser closed the connection")
            buf += chunk
        return buf

    def _receive(self) -> dict:
        message = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            n = struct.unpack(">H", self._exact(2))[0] if n == 126 else struct.unpack(">Q", self._exact(8))[0] \
                if n == 127 else n
            message += self._exact(n)
            if b0 & 0x80:
                return json.loads(message)

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = self._receive()
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            self.events.append(msg)

    def evaluate(self, expression: str, timeout: float = 20.0):
        """The value of a JavaScript expression (a promise is awaited)."""
        r = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True,
                      userGesture=True, timeout=timeout * 1000)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:60]}...: {r['exceptionDetails']}")
        return r["result"].get("value")

    def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def errors(self) -> list[str]:
        found = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                found.append(str(p.get("exceptionDetails")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                found.append(p["entry"].get("text", ""))
        return found


class Browser:
    """Headless Chromium with a fresh, empty profile, killed (with its profile removed) on exit."""

    def __enter__(self) -> Page:
        self.profile = tempfile.mkdtemp(prefix="vidcam-chromium-")
        self.proc = subprocess.Popen([chromium(), *FLAGS, "--remote-debugging-port=0",
                                      f"--user-data-dir={self.profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        found: list[str] = []

        def read() -> None:  # keep draining stderr so the browser never blocks on it
            for line in self.proc.stderr:
                if "DevTools listening on " in line and not found:
                    found.append(line.split("DevTools listening on ", 1)[1].strip())

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 60
        while not found and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        if not found:
            self.__exit__()
            raise RuntimeError("headless chromium did not start its DevTools endpoint")
        port = urlparse(found[0]).port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = [t for t in json.load(r) if t.get("type") == "page"]
        self.page = Page(targets[0]["webSocketDebuggerUrl"])
        for domain in ("Runtime", "Log", "Page"):
            self.page.call(f"{domain}.enable")
        return self.page

    def __exit__(self, *exc) -> None:
        if getattr(self, "page", None) is not None:
            self.page.sock.close()
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.reader.join(timeout=10)
        self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def timeline_data(page) -> dict:
    """The timeline data a vidcam report page embeds (its ``timeline-data`` JSON script)."""
    text = page.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script type="application/json" id="timeline-data">(.*?)</script>', text,
                                re.S).group(1))


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """http.server with byte ranges (``Range: bytes=a-b``): without them Chrome cannot seek in a video."""

    def log_message(self, *args) -> None:
        pass

    def send_head(self):
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if m is None or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        start, end = int(m.group(1)), min(int(m.group(2) or size - 1), size - 1)
        f = open(path, "rb")  # noqa: SIM115 - closed by copyfile's caller, as in the base class
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return io.BufferedReader(_Limited(f, end - start + 1))


class _Limited(io.RawIOBase):
    """The next ``n`` bytes of a file, then its end."""

    def __init__(self, f, n: int) -> None:
        self.f, self.left = f, n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.f.read(min(len(b), self.left))
        self.left -= len(data)
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.f.close()
        super().close()


@contextlib.contextmanager
def serve(folder: Path):
    """``folder`` served on 127.0.0.1 (a free port, byte ranges) from a thread; yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=folder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
