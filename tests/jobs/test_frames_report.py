"""`vidcam frames --report`: the video report's page and PNG over a folder's frames (the same code, a picture
viewer instead of a player), from a real run; then the page in a real browser (Debian's headless Chromium)."""

from __future__ import annotations

import csv
import functools
import http.server
import re
import threading
from urllib.parse import unquote

import cv2
import pytest
from cdp import Browser, chromium, timeline_data
from clips import save_tiny_keras
from conftest import classifier_for
from test_frames import extract
from typer.testing import CliRunner

from vidcam import FramesOptions
from vidcam.errors import UsageError
from vidcam.jobs.frames import label_frames
from vidcam.jobs.report import MAX_THUMBS

NAMES = ["Kätzchen", "café", "bird </script>"]
N = 30


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Frames of two different pictures (testsrc2, then smptebars), so that the labels can change between them."""
    import subprocess

    import imageio_ffmpeg

    tmp = tmp_path_factory.mktemp("frames")
    d = extract(tmp, N // 2)
    for i in range(N // 2 + 1, N + 1):
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                        f"smptebars=size=160x120:rate=25,hue=h={i * 9}", "-frames:v", "1", str(d / f"frame{i}.jpg")],
                       check=True, timeout=60)
    return d


@pytest.fixture(scope="module")
def made(folder, tiny_flat, tmp_path_factory):
    """A run whose report page is in another folder than the results (the page links them by relative paths)."""
    from vidcam.cam.engine import CamEngine

    d = tmp_path_factory.mktemp("made")
    engine = CamEngine(classifier_for(tiny_flat, NAMES))
    s = label_frames(folder, d / "results", model=engine, options=FramesOptions(report=d / "pages" / "frames.html"))
    return s, d / "pages" / "frames.html", d / "results"


def test_the_frames_report_is_one_self_contained_page_and_a_png(made):
    s, page, results = made
    assert s.report == str(page) and s.as_dict()["report"] == str(page)
    text = page.read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(https?:)?//', text) and "<script src" not in text
    assert "<video" not in text and 'id="frame"' in text
    d = timeline_data(page)
    assert d["unit"] == "frame" and d["video"] is None and d["t"] == list(range(N)) and d["duration"] == N
    assert d["stability"] == [None] * N and d["cuts"] == []
    # One point per frame: each frame's top-1 from the labels file, and its result picture by a relative path.
    with open(results / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["class_id"]) for r in rows] == d["shown"]
    assert [float(r["probability"]) for r in rows] == pytest.approx(d["p"], abs=1e-4)
    assert d["frames"] == [f"../results/{r['result']}" for r in rows]
    assert all((page.parent / unquote(f)).is_file() for f in d["frames"])
    changes = [k for k in range(N) if k == 0 or d["shown"][k] != d["shown"][k - 1]]
    assert d["changes"] == changes
    thumbs = re.findall(r'<figure data-frame="(\d+)"[^>]*><img src="([^"]+)".*?<a href="([^"]+)"', text)
    assert 1 <= len(thumbs) <= MAX_THUMBS and [int(k) for k, _, _ in thumbs] == changes[: len(thumbs)]
    assert all(src.startswith("data:image/jpeg;base64,") and (page.parent / href).is_file()
               for _, src, href in thumbs)
    png = cv2.imread(str(page.with_suffix(".png")))
    assert png is not None and png.shape[1] >= 1000 and png.std() > 10


def test_a_second_run_rewrites_its_report_and_others_are_not_replaced(made, folder, tiny_flat, tmp_path):
    from vidcam.cam.engine import CamEngine
    from vidcam.errors import OutputError

    s, page, results = made
    engine = CamEngine(classifier_for(tiny_flat, NAMES))
    again = label_frames(folder, results, model=engine, options=FramesOptions(report=page))  # a resume
    assert again.reused == N and again.report == str(page) and len(timeline_data(page)["t"]) == N
    (tmp_path / "mine.png").write_bytes(b"mine")
    with pytest.raises(OutputError, match="mine.png"):
        label_frames(folder, results, model=engine, options=FramesOptions(report=tmp_path / "mine.html"))
    assert (tmp_path / "mine.png").read_bytes() == b"mine" and not (tmp_path / "mine.html").exists()
    with pytest.raises(UsageError, match=r"\.html"):
        FramesOptions(report=tmp_path / "r.txt")


def test_cli_frames_report(folder, tiny_flat, tmp_path):
    from vidcam.cli import app

    model = save_tiny_keras(tiny_flat, tmp_path / "tiny.keras", NAMES)
    r = CliRunner().invoke(app, ["frames", str(folder), "-o", str(tmp_path / "out"), "-m", str(model), "--quiet",
                                 "--report", str(tmp_path / "out" / "frames.html")])
    assert r.exit_code == 0, r.output
    assert f"report -> {tmp_path / 'out' / 'frames.html'}" in r.stdout
    assert len(timeline_data(tmp_path / "out" / "frames.html")["frames"]) == N
    assert timeline_data(tmp_path / "out" / "frames.html")["frames"][0] == "result_0001.jpg"
    r = CliRunner().invoke(app, ["frames", str(folder), "-o", str(tmp_path / "o2"), "-m", str(model),
                                 "--report", str(tmp_path / "x.txt")])
    assert r.exit_code == 2 and ".html" in r.stderr and "Traceback" not in r.output


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.mark.skipif(chromium() is None, reason="no chromium: ./scripts/test installs Debian's chromium when missing "
                    "(apt-get install chromium)")
def test_the_frames_report_in_a_real_browser(made):
    _, page_path, _ = made
    d = timeline_data(page_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        _Quiet, directory=page_path.parent.parent))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Browser() as page:
            page.call("Page.navigate", url=f"http://127.0.0.1:{server.server_address[1]}/pages/frames.html")
            page.evaluate("new Promise(r => { const f = () => document.body && document.body.dataset.ready === '1' ?"
                          " r(1) : setTimeout(f, 50); f(); })")
            assert page.evaluate("document.querySelectorAll('#timeline circle.pt').length") == N
            # No map stability for a frame folder (no maps are kept): its panel is left out.
            assert not page.evaluate("[...document.querySelectorAll('#timeline text')]"
                                     ".some(t => t.textContent === 'stability')")
            loaded = """new Promise(r => { const i = document.getElementById('frame');
                const f = () => i.complete && i.naturalWidth ? r([i.getAttribute('src'), i.naturalWidth]) :
                setTimeout(f, 30); f(); })"""
            assert page.evaluate(loaded) == [d["frames"][0], 160]  # the first frame's picture, loaded
            # A click on frame j's point shows frame j's result picture, and moves the cursor there.
            j = 21
            x, y = page.evaluate(f"""(() => {{ const c = document.querySelectorAll('#timeline circle.pt')[{j}];
                c.scrollIntoView({{block: 'center'}}); const r = c.getBoundingClientRect();
                return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
            page.click(x, y)
            assert page.evaluate(loaded)[0] == d["frames"][j]
            assert f"frame {j + 1} of {N}" in page.evaluate("document.getElementById('frame-name').textContent")
            cx = page.evaluate(f"+document.querySelectorAll('#timeline circle.pt')[{j}].getAttribute('cx')")
            assert page.evaluate("+document.getElementById('cursor').getAttribute('x1')") == pytest.approx(cx)
            figures = page_path.read_text(encoding="utf-8").count("<figure data-frame=")
            assert page.evaluate("document.querySelectorAll('.thumbs img').length") == figures >= 1
            assert page.errors() == []
    finally:
        server.shutdown()
        server.server_close()
