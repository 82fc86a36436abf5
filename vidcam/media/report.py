"""A report page: one self-contained HTML file (no network: its script and styles are inline, the thumbnails are
``data:`` URIs) that plays the heatmap video, referenced by a path relative to the page, above its timeline,
drawn in the page as SVG from the timeline data embedded as JSON. For a folder of frames (``vidcam frames``) the
player is a picture viewer instead: it shows the result picture of the frame chosen on the timeline.

The timeline data (a plain dict, also what :func:`vidcam.media.charts.timeline_chart` draws):

- ``title``, ``video`` (the heatmap video's path relative to the page, or None), ``duration`` (seconds), ``summary``
  (a line);
- for frame folders: ``frames`` (each frame's result picture, by its path relative to the page) and ``unit``
  ``"frame"`` (``t`` is then the frame's position, 0, 1, 2, ..., and ``duration`` the number of frames);
- per frame, in order: ``t`` (its presentation time in seconds), ``shown`` (the class id drawn in the video's
  banner), ``p`` (that class's probability), ``stability`` (the map's rank correlation with the previous frame's,
  None on the first frame);
- ``classes``: the top classes, ``{"id", "name", "colour"}``; ``series``: for each of them (by ``str(id)``), its
  probability per frame, None where it was not among that frame's top k; ``names``: every shown class id's name;
- ``changes`` and ``cuts``: frame indices where the shown class changes and where a new shot starts;
- ``thumbs``: ``{"frame", "time", "label", "src"}`` pictures of the rendered frames at label changes (and
  ``href``, the full picture's relative path, for frame folders).

In the page: one ``circle.pt`` per frame (at its time and its shown probability, coloured by class); the shown
class as a band (``rect.band``); ``line.cut`` and ``path.change`` marks; the stability curve below
(``polyline.stability``); a cursor (``line#cursor``) that follows the video. A click on the timeline or a
thumbnail seeks the video to that frame (or shows that frame's picture, ``img#frame``).
"""

from __future__ import annotations

import base64
import html
import json

import numpy as np

__all__ = ["report_html", "thumbnail_uri"]


def thumbnail_uri(picture: np.ndarray, width: int = 192, quality: int = 80) -> str:
    """An RGB frame, shrunk to ``width`` pixels wide, as a ``data:image/jpeg;base64,...`` URI."""
    import cv2

    h, w = picture.shape[:2]
    if w > width:
        picture = cv2.resize(picture, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(picture[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB as JPEG
        raise ValueError("cannot encode a thumbnail")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px auto; max-width: 1100px; color: #222; padding: 0 12px; }
h1 { font-size: 18px; margin: 0 0 4px; word-break: break-all; }
.summary { color: #555; margin: 0 0 10px; }
video, #frame { width: 100%; max-height: 62vh; background: #000; display: block; object-fit: contain; }
.frame-name { color: #555; font-size: 12px; margin: 2px 0 0; }
#timeline { width: 100%; height: auto; display: block; margin-top: 8px; cursor: crosshair; user-select: none; }
#timeline text { font-size: 11px; fill: #555; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 6px 0; }
.legend span::before { content: ""; display: inline-block; width: 10px; height: 10px; margin-right: 5px;
  background: var(--c); border-radius: 2px; }
.thumbs { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 10px; }
.thumbs figure { margin: 0; width: 192px; cursor: pointer; }
.thumbs img { width: 100%; display: block; border: 2px solid var(--c); }
.thumbs figcaption { font-size: 12px; color: #444; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.help { color: #777; font-size: 12px; }
"""

# The timeline, drawn from the embedded data. Plain DOM and SVG, no library.
_SCRIPT = r"""
"use strict";
const D = JSON.parse(document.getElementById("timeline-data").textContent);
const video = document.getElementById("video"), svg = document.getElementById("timeline");
const picture = document.getElementById("frame"), frameName = document.getElementById("frame-name");
const FRAMES = D.unit === "frame", UNIT = FRAMES ? "" : " s";
const hasStability = D.stability.some(v => v !== null);
const BAND = [6, 20], PROB = [28, 200], STAB = [222, 280], BOTTOM = hasStability ? STAB[1] : PROB[1];
const NS = "http://www.w3.org/2000/svg", W = 1000, H = BOTTOM + 20, L = 46, R = 8;
svg.setAttribute("viewBox", `0 0 ${W} ${H}`);  // a frame folder has no stability panel: a shorter timeline
const colour = {}; D.classes.forEach(c => { colour[c.id] = c.colour; });
const col = id => colour[id] || "#9a9a9a";
const n = D.t.length, end = Math.max(D.duration, n ? D.t[n - 1] : 0) || 1;
const x = t => L + (W - L - R) * t / end;
const ends = D.t.map((t, i) => i + 1 < n ? D.t[i + 1] : end);
function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  (parent || svg).appendChild(e);
  return e;
}
const yProb = p => PROB[1] - (PROB[1] - PROB[0]) * p;
const sMin = Math.min(0, ...D.stability.filter(v => v !== null));
const yStab = v => STAB[1] - (STAB[1] - STAB[0]) * (v - sMin) / (1 - sMin);
function axes() {
  const panels = [[PROB, "probability", [0, 0.5, 1], yProb]];
  if (hasStability) panels.push([STAB, "stability", [sMin, 1], yStab]);
  panels.forEach(([r, name, ticks, y]) => {
    el("rect", {x: L, y: r[0], width: W - L - R, height: r[1] - r[0], fill: "none", stroke: "#ccc"});
    ticks.forEach(v => { el("text", {x: L - 4, y: y(v) + 4, "text-anchor": "end"}).textContent = +v.toFixed(2); });
    el("text", {x: L + 4, y: r[0] + 12}).textContent = name;
  });
  const steps = FRAMES ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
                       : [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800];
  const step = steps.find(s => s >= end / 10) || steps[steps.length - 1] * 2;
  for (let t = 0; FRAMES ? t < end - 1e-9 : t <= end + 1e-9; t += step) {
    // A frame folder's ticks name the frame whose point is there (frame 1 at position 0).
    el("text", {x: x(t), y: H - 4, "text-anchor": "middle"}).textContent = FRAMES ? t + 1 : +t.toFixed(3) + UNIT;
  }
}
function band() {
  for (let i = 0, s = 0; i <= n; i++) {
    if (i === n || D.shown[i] !== D.shown[s]) {
      const r = el("rect", {class: "band", x: x(D.t[s]), y: BAND[0], width: Math.max(0.5, x(ends[i - 1]) - x(D.t[s])),
                            height: BAND[1] - BAND[0], fill: col(D.shown[s])});
      el("title", {}, r).textContent = D.names[D.shown[s]];
      s = i;
    }
  }
}
function curves() {
  D.classes.forEach(c => {
    let d = "", pen = false;
    D.series[String(c.id)].forEach((p, i) => {
      if (p === null) { pen = false; return; }
      d += (pen ? "L" : "M") + x(D.t[i]).toFixed(2) + " " + yProb(p).toFixed(2);
      pen = true;
    });
    el("path", {class: "series", d: d, fill: "none", stroke: c.colour, "stroke-width": 1.2, opacity: 0.75});
  });
  const g = el("g", {id: "points"});
  D.t.forEach((t, i) => {
    el("circle", {class: "pt", cx: x(t), cy: yProb(D.p[i]), r: 2.2, fill: col(D.shown[i]), "data-frame": i}, g);
  });
  const pts = [];
  D.stability.forEach((v, i) => { if (v !== null) pts.push(x(D.t[i]).toFixed(2) + "," + yStab(v).toFixed(2)); });
  el("polyline", {class: "stability", points: pts.join(" "), fill: "none", stroke: "#444", "stroke-width": 1});
}
function marks() {
  D.cuts.forEach(k => el("line", {class: "cut", x1: x(D.t[k]), x2: x(D.t[k]), y1: BAND[0], y2: BOTTOM,
                                  stroke: "#000", "stroke-dasharray": "4 3"}));
  D.changes.forEach(k => {
    const cx = x(D.t[k]);
    el("path", {class: "change", d: `M${cx - 4} ${BAND[1] + 7} L${cx + 4} ${BAND[1] + 7} L${cx} ${BAND[1] + 1} Z`,
                fill: col(D.shown[k])});
  });
}
const cursor = el("line", {id: "cursor", x1: L, x2: L, y1: 0, y2: BOTTOM, stroke: "#e00", "stroke-width": 1.5});
function frameAt(t) {  // the last frame starting at or before t
  let lo = 0, hi = n - 1;
  while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (D.t[mid] <= t + 1e-9) lo = mid; else hi = mid - 1; }
  return lo;
}
function showFrame(k) {  // a frame folder's viewer: that frame's picture, and the cursor on it
  picture.src = D.frames[k];
  const label = `${D.names[D.shown[k]]} ${(D.p[k] * 100).toFixed(1)}%`;
  frameName.textContent = `frame ${k + 1} of ${n}: ${D.frames[k]} (${label})`;
  const cx = x(D.t[k]);
  cursor.setAttribute("x1", cx); cursor.setAttribute("x2", cx);
}
function seekFrame(k) {  // the middle of the frame: shows it
  if (video) video.currentTime = (D.t[k] + ends[k]) / 2; else showFrame(k);
}
svg.addEventListener("click", ev => {
  const p = svg.createSVGPoint(); p.x = ev.clientX; p.y = ev.clientY;
  const u = p.matrixTransform(svg.getScreenCTM().inverse());
  const t = Math.max(0, (u.x - L) / (W - L - R) * end), k = frameAt(t);  // the frame whose point is nearest
  seekFrame(k + 1 < n && D.t[k + 1] - t < t - D.t[k] ? k + 1 : k);
});
document.querySelectorAll(".thumbs figure").forEach(f => {
  f.addEventListener("click", () => seekFrame(+f.dataset.frame));
});
function follow() {
  const cx = x(Math.min(video.currentTime, end));
  cursor.setAttribute("x1", cx); cursor.setAttribute("x2", cx);
  if (!video.paused) requestAnimationFrame(follow);
}
if (video) {
  video.addEventListener("timeupdate", follow);
  video.addEventListener("seeked", follow);
  video.addEventListener("play", () => requestAnimationFrame(follow));
}
axes(); band(); curves(); marks();
svg.appendChild(cursor);
if (!video && n) showFrame(0);
document.body.dataset.ready = "1";
"""


def _legend(timeline: dict) -> str:
    items = "".join(f'<span style="--c:{c["colour"]}">{html.escape(c["name"])}</span>' for c in timeline["classes"])
    return f'<div class="legend">{items}<span style="--c:#9a9a9a">other</span></div>'


def _thumbs(timeline: dict) -> str:
    colour = {c["id"]: c["colour"] for c in timeline["classes"]}
    unit = " s" if timeline.get("unit") != "frame" else ""
    figs = []
    for th in timeline["thumbs"]:
        c = colour.get(timeline["shown"][th["frame"]], "#9a9a9a")
        when = f'{th["time"]:.2f} s' if unit else f'frame {th["frame"] + 1}'
        caption = html.escape(f'{when}: {th["label"]}')
        link = (f' <a href="{html.escape(th["href"])}" title="{html.escape(th["href"])}">picture</a>'
                if th.get("href") else "")
        figs.append(f'<figure data-frame="{th["frame"]}" style="--c:{c}"><img src="{th["src"]}" alt="{caption}">'
                    f'<figcaption title="{caption}">{caption}{link}</figcaption></figure>')
    return f'<div class="thumbs">{"".join(figs)}</div>'


def _player(timeline: dict) -> str:
    """The heatmap video in a player, or for a frame folder the viewer of one result picture at a time."""
    if timeline.get("video"):
        return f'<video id="video" controls preload="auto" src="{html.escape(timeline["video"])}"></video>'
    return '<img id="frame" alt="the frame chosen on the timeline"><p class="frame-name" id="frame-name"></p>'


def _help(timeline: dict) -> str:
    if timeline.get("unit") == "frame":
        return ("""<p class="help">Band: each frame's top-1 class. Dots: its probability, one per frame, in the
folder's order. Lines: the top classes' probabilities (gaps: not among the frame's top classes). Triangles: label
changes. Click the timeline or a picture to show that frame's result picture above (its name links to it).</p>""")
    return """<p class="help">Band: the class shown in the video. Dots: its probability, one per frame. Lines: the
top classes' probabilities (gaps: not among the frame's top classes). Triangles: label changes. Dashed lines: cuts
between shots. Bottom: map stability, how alike each frame's heatmap is to the previous one (1: the same ranking).
Click the timeline or a picture to jump there.</p>"""


def report_html(timeline: dict) -> str:
    """The report page for ``timeline`` (see the module's docstring), as one HTML string."""
    data = json.dumps({k: v for k, v in timeline.items() if k != "thumbs"}, separators=(",", ":"))
    data = data.replace("</", "<\\/")  # nothing in the data can close its <script> element
    title = html.escape(timeline["title"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>{_STYLE}</style></head>
<body>
<h1>{title}</h1>
<p class="summary">{html.escape(timeline["summary"])}</p>
{_player(timeline)}
<svg id="timeline" viewBox="0 0 1000 300" role="img"
  aria-label="top-1 band, class probabilities per frame, cuts and map stability over time"></svg>
{_legend(timeline)}
{_help(timeline)}
{_thumbs(timeline)}
<script type="application/json" id="timeline-data">{data}</script>
<script>{_SCRIPT}</script>
</body></html>
"""
