"""The reading viewer in Chromium beside a bare page that uses the same vendored Cornerstone on the same files.

Run by hand (not in CI), from the repository root:

    .venv/bin/python bench/viewer_bench.py [--size 512] [--depth 120] [--steps 50] [--runs 3]
                                           [--write docs/benchmarks.md]

gunicorn (4 sync workers) serves a study of two CT volumes (size x size x depth) to one reader.
Debian's chromium (Playwright) opens the first case, each measurement in a fresh browser context
(cold cache), for both pages:

- cold scroll: as soon as the first image is drawn, `steps` wheel steps 16 ms apart (60 Hz) while the
  stack is still loading; per step, the time until a frame shows that step's slice (p50, p95), and
  the share of steps never shown because a later one was shown first ("dropped");
- whole stack: from navigation start until every slice of the case has arrived;
- warm scroll: the same steps once every slice is here;
- next case (viewer only): once the next case's files were fetched while the reader "answers", the
  time from pressing Enter (the keydown event) to the first frame in which the main view shows the next
  case's image, in the page's own clock.

Two bare pages anchor it: "bare, all at once" draws the middle slice, then requests every slice at
once (the fastest whole stack); "bare, on demand" fetches only the slice each wheel step asks for (the
shortest wait per step on a cold stack, but it never loads the stack ahead). Both show slice i when it
arrives, with no answers, navigation or placeholder.
"""

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from load_bench import manage, start_server  # noqa: E402
from report import cpu_name, publish  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
KINDS = ("viewer", "bare, all at once", "bare, on demand")
PASSWORD = "bench-password-1"

SETUP = """
from tests.studies import make_pool, open_study_for, readers
make_pool(real={("CT", "3d"): 1}, synthetic={("CT", "3d"): 1}, size=%(size)d, depth=%(depth)d)
group = readers(1 + %(next_runs)d, prefix="bench")
for reader in group:
    reader.set_password("%(password)s"); reader.save()
open_study_for(group, {("CT", "3d"): 2}, name="Viewer bench", questions={"confidence": False, "template": "none"})
"""

# Every drawn frame, with the slice and case it shows (a capture listener sees Cornerstone's non-bubbling
# events). From Enter on, the time of the first frame in which the main view shows another case's image:
# the animation frame in which it is there already drawn (drawn ahead, off screen), or the moment it is
# drawn there, whichever comes first.
RECORDER = """
performance.setResourceTimingBufferSize(100000);  // two cases' slices are more than the default 250
window.__renders = [];
var drawnOn = new WeakMap();
document.addEventListener("cornerstoneimagerendered", function (e) {
  var id = e.detail && e.detail.image && e.detail.image.imageId || "";
  var m = id.match(/case\\/([^/]+)\\/slices\\/(\\d+)$/);
  if (!m) return;
  var t = performance.now();
  window.__renders.push([t, parseInt(m[2], 10), m[1]]);
  drawnOn.set(e.target, { token: m[1], t: t });
}, true);
document.addEventListener("keydown", function (e) {
  if (e.key !== "Enter") return;
  var enter = performance.now(), view = document.getElementById("viewport");
  var from = view && drawnOn.get(view) && drawnOn.get(view).token;
  window.__enter = enter;
  window.__nextShown = null;
  (function poll() {
    var now = performance.now();  // not the frame's time stamp, which may precede the task before it
    var el = document.getElementById("viewport"), drawn = el && drawnOn.get(el);
    if (drawn && drawn.token !== from) { window.__nextShown = drawn.t > enter ? Math.min(drawn.t, now) : now; return; }
    requestAnimationFrame(poll);
  })();
}, true);
"""

BARE = """<!doctype html><html><head><meta charset="utf-8"><title>bare</title>
<style>html,body{margin:0;background:#000}#v{width:100vw;height:100vh}</style></head><body><div id="v"></div>
<script src="/static/vendor/cornerstone-core/cornerstone.min.js"></script>
<script src="/static/vendor/dicom-parser/dicomParser.min.js"></script>
<script src="/static/vendor/cornerstone-wado-image-loader/cornerstoneWADOImageLoaderNoWebWorkers.bundle.min.js"></script>
<script>
cornerstoneWADOImageLoader.external.cornerstone = cornerstone;
cornerstoneWADOImageLoader.external.dicomParser = dicomParser;
var ids = %(ids)s, el = document.getElementById("v"), index = Math.floor((ids.length - 1) / 2);
cornerstone.enable(el);
function show(i) {
  index = Math.max(0, Math.min(ids.length - 1, i));
  var wanted = index;
  cornerstone.loadAndCacheImage(ids[wanted]).then(function (image) {
    if (wanted === index) cornerstone.displayImage(el, image);
  });
}
el.addEventListener("wheel", function (e) { e.preventDefault(); show(index + (e.deltaY > 0 ? 1 : -1)); },
                    { passive: false });
cornerstone.loadAndCacheImage(ids[index]).then(function (image) {
  cornerstone.displayImage(el, image);
  el.setAttribute("data-loaded", "true");
  if (%(all_at_once)s) ids.forEach(function (id) { cornerstone.loadAndCacheImage(id); });
});
</script></body></html>"""

# Wheel steps 16 ms apart on the viewport; returns when the last step's slice is drawn (or after 10 s).
SCROLL = """async ([selector, steps]) => {
  const el = document.querySelector(selector);
  const last = window.__renders[window.__renders.length - 1][1];
  const sent = [];
  for (let k = 1; k <= steps; k++) {
    sent.push([performance.now(), last + k]);
    el.dispatchEvent(new WheelEvent("wheel", {deltaY: 100, bubbles: true, cancelable: true}));
    await new Promise(r => setTimeout(r, 16));
  }
  const until = performance.now() + 10000;
  while (performance.now() < until && !window.__renders.some(([t, s]) => s === last + steps)) {
    await new Promise(r => setTimeout(r, 10));
  }
  return {sent, renders: window.__renders};
}"""


def scroll_stats(result) -> dict:
    """Per wheel step: ms until a frame shows its slice; dropped when a later step's slice came first."""
    renders, latencies, dropped = result["renders"], [], 0
    for k, (t, wanted) in enumerate(result["sent"]):
        shown = next((r for r in renders if r[0] >= t and r[1] == wanted), None)
        later = next((r for r in renders if r[0] >= t and r[1] > wanted), None)
        if shown is None or (later is not None and later[0] < shown[0]):
            dropped += 1
        else:
            latencies.append(shown[0] - t)
    q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else [float("nan")] * 19
    sent = result["sent"]
    return {"p50": statistics.median(latencies) if latencies else float("nan"), "p95": q[18],
            "dropped": dropped / len(sent), "span": sent[-1][0] - sent[0][0]}


def stack_ms(page, token, depth) -> float:
    page.wait_for_function(
        "([t, n]) => performance.getEntriesByType('resource').filter(e => e.name.includes(t + '/slices/')"
        " && e.responseEnd > 0).length >= n", arg=[token, depth], timeout=120_000)
    return page.evaluate("(t) => Math.max(...performance.getEntriesByType('resource')"
                         ".filter(e => e.name.includes(t + '/slices/')).map(e => e.responseEnd))", token)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--depth", type=int, default=120)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--next-runs", type=int, default=5, help="next-case measurements, one reader each")
    parser.add_argument("--write")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    data = Path(tempfile.mkdtemp(prefix="viewer-bench-"))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "readerstudy.settings", "READERSTUDY_DATA_DIR": str(data),
           "DJANGO_SECURE_COOKIES": "0", "READERSTUDY_TASKS_BACKEND": "immediate",
           "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost", "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    manage(env, "migrate", "--noinput")
    manage(env, "shell", script=SETUP % {"size": args.size, "depth": args.depth, "password": PASSWORD,
                                         "next_runs": args.next_runs})
    setup_s = time.perf_counter() - started
    process, url = start_server(env, 4)
    results = {kind: {"cold": [], "warm": [], "stack": [], "next": []} for kind in KINDS}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            case = first_case(browser, url)
            for run in range(args.runs):
                for kind in KINDS:  # side by side in every run
                    for mode in ("cold", "stack"):
                        measure(browser, url, case, kind, mode, args, results)
            for k in range(args.next_runs):  # answering moves a reader on: one reader per measurement
                results["viewer"]["next"].append(next_case_ms(browser, url, f"bench{k + 2}"))
            browser.close()
    finally:
        process.terminate()
        process.wait()
        shutil.rmtree(data, ignore_errors=True)
    report(results, args, setup_s)


def open_logged_in(browser, url, username="bench1"):
    """A fresh browser context (cold cache) logged in as a bench reader, recording every drawn frame."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.add_init_script(RECORDER)
    page.goto(url + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(lambda u: "/accounts/login/" not in u)
    return context, page


def first_case(browser, url) -> dict:
    """The first case's token and viewer data (read once; the measured runs open it cold)."""
    context, page = open_logged_in(browser, url)
    page.goto(url + "/read/viewer-bench/")
    token = page.url.rstrip("/").split("/")[-1]
    state = page.evaluate("(u) => fetch(u).then(r => r.json())", url + f"/read/case/{token}/state")
    context.close()
    return {"token": token, "state": state}


def measure(browser, url, case, kind, mode, args, results):
    context, page = open_logged_in(browser, url)
    token, state = case["token"], case["state"]
    if kind.startswith("bare"):
        html = BARE % {"ids": json.dumps(state["case"]["image_ids"]),
                       "all_at_once": "true" if kind == "bare, all at once" else "false"}
        page.route(url + "/bench-bare/", lambda route: route.fulfill(body=html, content_type="text/html"))
        page.goto(url + "/bench-bare/")
        selector = "#v"
    else:
        page.goto(url + f"/read/case/{token}/")
        selector = "#viewport"
    page.wait_for_function("() => window.__renders.length > 0", timeout=60_000)
    depth = len(state["case"]["image_ids"])
    steps = min(args.steps, depth - 1 - (depth - 1) // 2)  # forward from the middle slice
    if mode == "cold":
        results[kind]["cold"].append(scroll_stats(page.evaluate(SCROLL, [selector, steps])))
    else:
        if kind != "bare, on demand":  # it never loads the whole stack
            results[kind]["stack"].append(stack_ms(page, token, depth))
        page.wait_for_timeout(300)
        page.evaluate("() => { window.__renders = window.__renders.slice(-1); }")
        results[kind]["warm"].append(scroll_stats(page.evaluate(SCROLL, [selector, steps])))
    context.close()


def next_case_ms(browser, url, username) -> float:
    """A reader's first case: once its stack and the next case's files are here, answer and press Enter."""
    context, page = open_logged_in(browser, url, username)
    page.goto(url + "/read/viewer-bench/")
    token = page.url.rstrip("/").split("/")[-1]
    page.wait_for_selector("#viewport[data-stack-loaded=true]", timeout=120_000)
    state = page.evaluate("(u) => fetch(u).then(r => r.json())", url + f"/read/case/{token}/state")
    following = len(state["navigation"]["prefetch"])
    page.wait_for_function(
        "([t, n]) => performance.getEntriesByType('resource').filter(e => e.name.includes('/slices/')"
        " && !e.name.includes(t) && e.responseEnd > 0).length >= n", arg=[token, following], timeout=120_000)
    page.wait_for_timeout(300)  # the next case's first image drawn ahead (requestIdleCallback)
    page.keyboard.press("r")
    page.wait_for_selector("#save-status:text('All answers saved')")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda u: token not in u)
    page.wait_for_function("() => window.__nextShown !== null", timeout=60_000)
    shown = page.evaluate("() => window.__nextShown - window.__enter")
    context.close()
    return shown


def report(results, args, setup_s):
    def med(values):
        values = [v for v in values if v == v]  # without NaN (a run with under two shown steps)
        return statistics.median(values) if values else float("nan")

    def row(kind, what):
        runs = results[kind][what]
        return (f"{med([r['p50'] for r in runs]):.0f} / {med([r['p95'] for r in runs]):.0f}",
                f"{100 * med([r['dropped'] for r in runs]):.0f} %", f"{med([r['span'] for r in runs]):.0f}")

    lines = [
        f"## Viewer beside a bare Cornerstone page — {datetime.date.today()}",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs (Chromium, gunicorn with 4 workers and the database share "
        f"them). Command: `.venv/bin/python bench/viewer_bench.py --size {args.size} --depth {args.depth} "
        f"--steps {args.steps} --runs {args.runs} --next-runs {args.next_runs}`. A {args.size}x{args.size}x{args.depth} CT volume "
        f"(pool and study built in {setup_s:.0f} s); medians of {args.runs} runs, each in a fresh browser context; "
        f"{args.steps} wheel steps 16 ms apart (setTimeout: later where the page is busy, see 'sent over'); "
        "p95 '–' or nan where fewer than two steps were shown.",
        "",
        "| page | cold scroll p50 / p95 ms | cold steps dropped | cold steps sent over ms | whole stack ms | "
        "warm scroll p50 / p95 ms | warm steps dropped |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        cold, cold_drop, cold_span = row(kind, "cold")
        warm, warm_drop, _ = row(kind, "warm")
        stack = f"{med(results[kind]['stack']):.0f}" if results[kind]["stack"] else "–"
        lines.append(f"| {kind} | {cold} | {cold_drop} | {cold_span} | {stack} | {warm} | {warm_drop} |")
    nexts = results["viewer"]["next"]
    lines += ["", f"Next case after Finish, its files fetched while the reader answered ({len(nexts)} readers, "
                  f"`--next-runs`): from Enter to the first frame in which the view shows it, median "
                  f"{med(nexts):.0f} ms, max {max(nexts):.0f} ms (each: " + ", ".join(f"{v:.0f}" for v in nexts) +
                  " ms; one frame is 17 ms).", ""]
    publish(lines, args.write)


if __name__ == "__main__":
    main()
