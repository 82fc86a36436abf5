"""`vidcam video --report`: the page and its timeline PNG, from a real run on a clip with a real cut; then the page
in a real browser (Debian's headless Chromium over the DevTools protocol), served from a local http.server."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from cdp import Browser, chromium, serve, timeline_data
from clips import save_tiny_keras
from conftest import classifier_for
from test_temporal import CUT_AT, make_cut_clip, shot
from typer.testing import CliRunner

from vidcam import VideoOptions
from vidcam.errors import UsageError
from vidcam.jobs.report import MAX_THUMBS, TimelineRecorder
from vidcam.jobs.video import process_video

NAMES = ["Kätzchen", "café", "bird </script>"]  # Unicode, and a name that must not close the page's script


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_cut_clip(tmp_path_factory.mktemp("clip") / "cut.mp4", shot("testsrc2"), shot("smptebars"))


@pytest.fixture(scope="module")
def made(clip, tiny_flat, tmp_path_factory):
    """A run with a report in another folder than the video (the page refers to it by a relative path)."""
    from vidcam.cam.engine import CamEngine

    d = tmp_path_factory.mktemp("made")
    engine = CamEngine(classifier_for(tiny_flat, NAMES))
    s = process_video(clip, d / "video" / "cut.mp4", model=engine, options=VideoOptions(smooth=0.5),
                      report=d / "pages" / "report.html")
    return s, d / "pages" / "report.html", d / "video" / "cut.mp4"


def test_the_report_is_one_self_contained_page_and_a_png(made):
    s, page, video = made
    assert s.report == str(page) and s.as_dict()["report"] == str(page)
    text = page.read_text(encoding="utf-8")
    assert 'src="../video/cut.mp4"' in text  # relative to the page's folder
    # No network: nothing is fetched from elsewhere (the SVG namespace is a name, not a fetch).
    assert not re.search(r'(src|href)="(https?:)?//', text) and "<link rel=\"stylesheet\"" not in text
    assert "<script src" not in text
    d = timeline_data(page)
    assert len(d["t"]) == len(d["p"]) == len(d["shown"]) == len(d["stability"]) == s.frames == 50
    assert d["cuts"] == [CUT_AT] and d["stability"][0] is None and d["changes"][0] == 0
    assert d["t"] == sorted(d["t"]) and d["t"][CUT_AT] == pytest.approx(1.0)
    assert {c["name"] for c in d["classes"]} <= set(NAMES)
    thumbs = re.findall(r'<figure data-frame="(\d+)"[^>]*><img src="([^"]+)"', text)
    assert 1 <= len(thumbs) <= MAX_THUMBS and thumbs[0][0] == "0"
    assert all(src.startswith("data:image/jpeg;base64,") for _, src in thumbs)
    png = cv2.imread(str(page.with_suffix(".png")))
    assert png is not None and png.shape[1] >= 1000 and png.std() > 10
    assert not list(page.parent.glob(".*part*"))  # nothing left of the atomic writes


def test_thumbnails_stay_capped_and_spread_over_the_video():
    rec = TimelineRecorder(["a", "b"], top_k=2, max_thumbs=8)
    picture = np.zeros((90, 160, 3), np.uint8)
    for k in range(1000):  # the label changes on every frame
        shown = k % 2
        if rec.add(k, k / 25, (shown, 0.9), (np.array([shown, 1 - shown]), np.array([0.9, 0.1])), 1.0, False):
            rec.thumbnail(k, k / 25, picture)
    frames = [t["frame"] for t in rec.thumbs]
    assert 4 <= len(frames) <= 8 and frames[0] == 0 and frames[-1] > 500 and len(rec.changes) == 1000


def test_report_needs_an_html_name_and_is_refused_over_a_file(clip, tiny_flat, tmp_path):
    from vidcam.cam.engine import CamEngine

    engine = CamEngine(classifier_for(tiny_flat, NAMES))
    with pytest.raises(UsageError, match=r"\.html"):
        process_video(clip, tmp_path / "o.mp4", model=engine, report=tmp_path / "r.txt")
    (tmp_path / "r.png").write_bytes(b"mine")
    from vidcam.errors import OutputError

    with pytest.raises(OutputError):
        process_video(clip, tmp_path / "o.mp4", model=engine, report=tmp_path / "r.html")
    assert (tmp_path / "r.png").read_bytes() == b"mine" and not (tmp_path / "o.mp4").exists()


def test_cli_report(clip, tiny_flat, tmp_path):
    from vidcam.cli import app

    model = save_tiny_keras(tiny_flat, tmp_path / "tiny.keras", NAMES)
    r = CliRunner().invoke(app, ["video", str(clip), "-o", str(tmp_path / "o.mp4"), "-m", str(model),
                                 "--report", str(tmp_path / "out" / "report.html")])
    assert r.exit_code == 0, r.output
    assert f"report -> {tmp_path / 'out' / 'report.html'}" in r.stdout and "over time: " in r.stdout
    assert "1 cut: frame 25 (1.000 s)" in r.stdout
    assert (tmp_path / "out" / "report.png").is_file()
    r = CliRunner().invoke(app, ["video", str(clip), str(clip), "-o", str(tmp_path / "many"), "-m", str(model),
                                 "--report", str(tmp_path / "x.html")])
    assert r.exit_code == 2 and "--report is for one video" in r.stderr


# -- in a real browser -----------------------------------------------------------------------------------------


@pytest.fixture
def served(made):
    """The run's folder served on 127.0.0.1 (a free port) from a thread."""
    _, page, _ = made
    with serve(page.parent.parent) as base:
        yield f"{base}/pages/report.html"


def _ffprobe_duration(path: Path) -> float:
    out = subprocess.run(["/usr/bin/ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                          str(path)], capture_output=True, text=True, check=True, timeout=60).stdout
    return float(out)


@pytest.mark.skipif(chromium() is None, reason="no chromium: ./scripts/test installs Debian's chromium when missing "
                    "(apt-get install chromium)")
@pytest.mark.skipif(not Path("/usr/bin/ffprobe").exists(), reason="no /usr/bin/ffprobe (Debian's ffmpeg)")
def test_the_report_in_a_real_browser(made, served):
    s, page_path, video = made
    d = timeline_data(page_path)
    thumbs = page_path.read_text(encoding="utf-8").count("<figure data-frame=")
    with Browser() as page:
        page.call("Page.navigate", url=served)
        page.evaluate("new Promise(r => { const f = () => document.body && document.body.dataset.ready === '1' ?"
                      " r(1) : setTimeout(f, 50); f(); })")
        duration = page.evaluate("""new Promise((ok, bad) => { const v = document.getElementById('video');
            if (v.readyState >= 1) ok(v.duration);
            v.addEventListener('loadedmetadata', () => ok(v.duration));
            v.addEventListener('error', () => bad('video error ' + (v.error && v.error.code))); })""")
        assert duration == pytest.approx(_ffprobe_duration(video), abs=1e-3)
        assert page.evaluate("document.querySelectorAll('#timeline circle.pt').length") == s.frames
        assert page.evaluate("document.querySelectorAll('#timeline line.cut').length") == 1
        assert page.evaluate("document.querySelectorAll('.thumbs img').length") == thumbs
        # A click on frame j's point seeks the video into frame j.
        j = 37
        x, y = page.evaluate(f"""(() => {{ const c = document.querySelectorAll('#timeline circle.pt')[{j}];
            c.scrollIntoView({{block: 'center'}}); const r = c.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
        page.click(x, y)
        now = page.evaluate("""new Promise(r => { const v = document.getElementById('video');
            const f = () => v.seeking ? setTimeout(f, 20) : r(v.currentTime); setTimeout(f, 50); })""")
        assert d["t"][j] <= now < d["t"][j + 1]
        # Playing moves the cursor.
        before = page.evaluate("+document.getElementById('cursor').getAttribute('x1')")
        page.evaluate("""(async () => { const v = document.getElementById('video'); v.muted = true;
            v.currentTime = 0; await v.play(); await new Promise(r => setTimeout(r, 600)); v.pause(); })()""")
        after = page.evaluate("+document.getElementById('cursor').getAttribute('x1')")
        assert after != before
        assert page.errors() == []
