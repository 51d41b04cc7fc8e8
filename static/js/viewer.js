/* Blinded case viewer: Cornerstone display, stack scrolling, window presets, answers with autosave.
 *
 * A forced-choice trial shows its images side by side ("panels", A from the left): they scroll
 * together (the same slice number in every panel), presets, invert, reset and fit act on all of
 * them, and each keeps its own window, zoom and pan when dragged.
 *
 * Everything it knows about a case comes from its #case-data JSON (built by
 * readerstudy/reading/blinded.py); answers go through AnswerOutbox.
 *
 * The page carries the next case inert in <template id="next-case">: Finish puts it in place of the
 * case just answered (openCase), so the next image shows at once from the prefetched files while the
 * answer is still on its way; should the server refuse that answer, the reader is taken back to it.
 */
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]').content;

  // ---- Cornerstone set-up (once per page; tools per element, as cases come and go) ---------
  cornerstoneWADOImageLoader.external.cornerstone = cornerstone;
  cornerstoneWADOImageLoader.external.dicomParser = dicomParser;
  cornerstoneTools.external.cornerstone = cornerstone;
  cornerstoneTools.external.cornerstoneMath = cornerstoneMath;
  cornerstoneTools.external.Hammer = Hammer;
  cornerstoneTools.init({ showSVGCursors: false });
  // Left drag: window/level; middle: pan; right: zoom (dragging up zooms in, as on most PACS workstations).
  var TOOLS = [
    { name: "Wwwc", tool: cornerstoneTools.WwwcTool, mode: { mouseButtonMask: 1, isTouchActive: true } },
    { name: "Pan", tool: cornerstoneTools.PanTool, mode: { mouseButtonMask: 4 } },
    { name: "Zoom", tool: cornerstoneTools.ZoomTool, props: { configuration: { invert: true } },
      mode: { mouseButtonMask: 2 } },
    { name: "ZoomTouchPinch", tool: cornerstoneTools.ZoomTouchPinchTool, mode: {} },
    { name: "PanMultiTouch", tool: cornerstoneTools.PanMultiTouchTool, mode: {} }
  ];
  function addTools(el) {
    TOOLS.forEach(function (t) {
      if (!cornerstoneTools.getToolForElement(el, t.name)) cornerstoneTools.addToolForElement(el, t.tool, t.props);
      cornerstoneTools.setToolActiveForElement(el, t.name, t.mode);
    });
    el.addEventListener("contextmenu", function (e) { e.preventDefault(); });
  }

  // The element of stack k: the case's image, or panel k of a forced-choice trial.
  function viewId(k) { return k ? "viewport-panel-" + k : "viewport"; }

  function isEnabled(el) {
    try { cornerstone.getEnabledElement(el); return true; } catch (e) { return false; }
  }

  // ---- Opening view -------------------------------------------------------------------
  var KEEP_KEY = "readerstudy.keep-view";
  function stored(key) { try { return JSON.parse(window.localStorage.getItem(key)); } catch (e) { return null; } }
  function store(key, value) { try { window.localStorage.setItem(key, JSON.stringify(value)); } catch (e) { /* private mode */ } }
  function viewKey(c) { return "readerstudy.view." + c.modality + (c.volume ? ".volume" : ""); }
  function percentilePreset(c) { return c.presets.filter(function (p) { return p.auto; })[0]; }
  function percentileWindow(image, range, viewport) {
    var pixels = Array.prototype.slice.call(image.getPixelData()).sort(function (a, b) { return a - b; });
    var lo = pixels[Math.floor((pixels.length - 1) * range[0] / 100)] * image.slope + image.intercept;
    var hi = pixels[Math.floor((pixels.length - 1) * range[1] / 100)] * image.slope + image.intercept;
    viewport.voi.windowWidth = Math.max(1, hi - lo);
    viewport.voi.windowCenter = (hi + lo) / 2;
  }
  // The opening view of case `c`'s image: CT in its DICOM window; X-ray and MR in the percentile
  // window (the full 12-bit window is flat); or, when the reader asked for it, the window and zoom of
  // their last case of this kind. Changes `viewport`; false where the image's own view stands.
  function openingViewport(c, image, viewport) {
    var kept = stored(KEEP_KEY) === true ? stored(viewKey(c)) : null;
    if (kept) {
      viewport.voi.windowWidth = kept.width;
      viewport.voi.windowCenter = kept.center;
      viewport.scale = kept.scale;
      viewport.translation = kept.translation;
      return true;
    }
    if (c.modality === "CT") return false;
    percentileWindow(image, percentilePreset(c).auto, viewport);
    return true;
  }

  // The case on screen; the page's listeners and the outbox's reports go to it.
  var current = null;
  var outbox = new AnswerOutbox(csrf, function (state, detail, token, body) {
    if (current) current.outboxStatus(state, detail, token, body);
  });
  document.addEventListener("keydown", function (e) { if (current) current.keydown(e); });
  document.addEventListener("visibilitychange", function () { if (current) current.visibility(); });
  window.addEventListener("resize", function () { if (current) current.resize(); });
  window.addEventListener("pagehide", function () { if (current) current.leave(); });
  // A case shown in place has its own address; going back or forward loads what the address names.
  window.addEventListener("popstate", function () { window.location.reload(); });
  var FLASH_KEY = "readerstudy.flash";

  function openCase() {
    var data = JSON.parse(document.getElementById("case-data").textContent);
    var c = data.case;
    var closed = false;  // replaced by the next case: late image arrivals and timers do nothing
    var element = document.getElementById("viewport");
    var statusEl = document.getElementById("save-status");
    var sliceLabel = document.getElementById("overlay-slice");
    var windowLabel = document.getElementById("overlay-window");
    var slider = document.getElementById("slice-slider");
    var form = document.getElementById("answer-form");
    var submitButton = document.getElementById("submit-case");
    var ANSWERS = c.panels ? ["choice", "confidence"] : ["label", "confidence", "realism", "anatomy", "slice_consistency"];

    // One stack per image on screen: the case, or each panel of a forced-choice trial.
    var stacks = (c.panels || [c]).map(function (images, k) {
      return { el: document.getElementById(viewId(k)), ids: images.image_ids,
               shown: false, lastVoi: null, programmatic: false };
    });
    stacks.forEach(function (st) {
      if (!isEnabled(st.el)) {
        cornerstone.enable(st.el);
      } else {  // drawn ahead (stageNext) at the size of the views then: redrawn if they have changed
        var canvas = st.el.querySelector("canvas");
        if (st.el.clientWidth !== canvas.width || st.el.clientHeight !== canvas.height) cornerstone.resize(st.el, true);
      }
      addTools(st.el);
    });

    // A/P/L/R markers at the edges of each view, where the study knows the orientation of every case
    // of this kind (real and synthetic alike; see imaging/orientation.py).
    function addMarkers(el, plane) {
      if (!c.markers || !c.markers[plane]) return;
      ["top", "bottom", "left", "right"].forEach(function (side) {
        var span = document.createElement("span");
        span.className = "orientation " + side;
        span.setAttribute("aria-hidden", "true");
        span.textContent = c.markers[plane][side];
        el.appendChild(span);
      });
    }
    stacks.forEach(function (st) { addMarkers(st.el, "axial"); });

    // ---- Telemetry ------------------------------------------------------------------
    var answer = data.answer;
    var visited = {};
    (answer.slices_visited || []).forEach(function (n) { visited[n] = true; });
    var windowChanges = answer.window_changes || 0;
    var priorMs = answer.duration_ms || 0;
    var activeSince = document.visibilityState === "visible" ? Date.now() : null;
    var activeMs = 0;
    function durationMs() {
      return priorMs + activeMs + (activeSince ? Date.now() - activeSince : 0);
    }
    function visibility() {
      if (document.visibilityState === "visible") { activeSince = Date.now(); return; }
      if (activeSince) { activeMs += Date.now() - activeSince; activeSince = null; }
      save(answer.submitted);
    }

    // ---- Stack ----------------------------------------------------------------------
    var index = 0;
    var shown = false;
    var lastVoiChange = 0;

    var keepView = document.getElementById("keep-view");
    var VIEW_KEY = viewKey(c);

    function openingView() {
      stacks.forEach(function (st) {
        var viewport = cornerstone.getViewport(st.el);
        if (!openingViewport(c, cornerstone.getImage(st.el), viewport)) return;
        st.programmatic = true;
        cornerstone.setViewport(st.el, viewport);
      });
    }

    // Loading: slices arrive outward from the one being viewed (re-centred whenever the reader moves),
    // a few at a time; a slice already here is drawn at once, and while a wanted one is on its way the
    // nearest one here stands in for it (the overlay says so), so no wheel step waits for the network.
    var PARALLEL = 4;
    var images = stacks.map(function () { return {}; });  // per stack: slice index -> loaded image
    var requested = {};
    var inFlight = 0;
    var placeholder = false;

    function here(i) { return stacks.every(function (st, k) { return images[k][i]; }); }
    function load(i) {
      requested[i] = true;
      return Promise.all(stacks.map(function (st, k) {
        return cornerstone.loadAndCacheImage(st.ids[i]).then(function (image) { images[k][i] = image; return image; });
      }));
    }
    function nearest(k, i) {
      for (var d = 1; d < c.slices; d++) {
        if (images[k][i - d]) return images[k][i - d];
        if (images[k][i + d]) return images[k][i + d];
      }
      return null;
    }
    function draw(i) {
      if (closed) return;
      placeholder = !here(i);
      stacks.forEach(function (st, k) {
        var image = images[k][i] || nearest(k, i);
        if (!image) return;
        cornerstone.displayImage(st.el, image, st.shown ? cornerstone.getViewport(st.el) : undefined);
        st.shown = true;
      });
      if (!shown && !placeholder) {
        shown = true;
        openingView();
        stacks.forEach(function (st) { st.el.setAttribute("data-loaded", "true"); });
      }
      if (slider) slider.value = i + 1;
    }
    function failed() {
      if (closed) return;
      statusEl.textContent = "The image could not be loaded; reload the page to try again.";
      statusEl.className = "save-status error";
    }
    function pump() {
      while (inFlight < PARALLEL) {
        var next = null;
        for (var d = 0; d < c.slices && next === null; d++) {
          if (index + d < c.slices && !requested[index + d]) next = index + d;
          else if (index - d >= 0 && !requested[index - d]) next = index - d;
        }
        if (next === null) return;
        fetchSlice(next);
      }
    }
    function fetchSlice(i) {
      inFlight++;
      load(i).then(arrived, function () { inFlight--; });
    }
    function arrived() {
      inFlight--;
      if (closed) return;
      if (placeholder && here(index)) draw(index);
      arrivedCheck();
      pump();
    }

    function show(i) {
      index = Math.max(0, Math.min(c.slices - 1, i));
      visited[index + 1] = true;
      if (here(index)) { draw(index); pump(); return Promise.resolve(); }
      if (nearest(0, index)) draw(index);
      if (!requested[index]) fetchSlice(index);  // the wanted slice goes first, beyond the parallel limit
      pump();
      var wanted = index;
      return Promise.all(stacks.map(function (st) { return cornerstone.loadAndCacheImage(st.ids[wanted]); }))
        .then(function () { if (wanted === index) draw(index); }).catch(failed);
    }
    function arrivedCheck() {  // the whole stack is here: mark it, and start on the next case
      if (Object.keys(requested).length === c.slices && inFlight === 0 && !element.hasAttribute("data-stack-loaded")) {
        element.setAttribute("data-stack-loaded", "true");
        prefetchNextCase();
      }
    }

    // While the reader answers, the next case's images come into the browser's cache, so it opens at once.
    function prefetchNextCase() {
      var ids = (data.navigation.prefetch || []).slice();
      if (ids.length) (window.requestIdleCallback || window.setTimeout)(stageNext);
      (function next() {
        var id = ids.shift();
        if (!id) return;
        cornerstone.loadAndCacheImage(id).then(next, next);
      })();
    }

    stacks.forEach(function (st) {
      st.el.addEventListener("cornerstoneimagerendered", function (event) {
        var voi = event.detail.viewport.voi;
        sliceLabel.textContent = "Slice " + (index + 1) + "/" + c.slices + (placeholder ? " (loading)" : "");
        windowLabel.textContent = "W " + Math.round(voi.windowWidth) + " L " + Math.round(voi.windowCenter);
        var key = Math.round(voi.windowWidth) + "/" + Math.round(voi.windowCenter);
        if (st.lastVoi !== null && key !== st.lastVoi && !st.programmatic) {
          // One drag is one window change: count a change only after a pause of 500 ms.
          if (Date.now() - lastVoiChange > 500) windowChanges++;
          lastVoiChange = Date.now();
        }
        st.programmatic = false;
        st.lastVoi = key;
        if (keepView && keepView.checked) storeView(event.detail.viewport);
      });
    });
    function storeView(vp) {
      if (!vp) return;
      store(VIEW_KEY, { width: vp.voi.windowWidth, center: vp.voi.windowCenter, scale: vp.scale,
                        translation: vp.translation });
    }

    function step(delta) { if (c.slices > 1) show(index + delta); }

    stacks.forEach(function (st) {
      st.el.addEventListener("wheel", function (e) {
        if (c.slices < 2) return;
        e.preventDefault();
        step(e.deltaY > 0 ? 1 : -1);
      }, { passive: false });
    });
    if (slider) slider.addEventListener("input", function () { show(parseInt(slider.value, 10) - 1); });

    // ---- Window presets, invert, reset, fit, cine ----------------------------------------
    // A preset on every image shown; a percentile window is each image's own.
    function applyPreset(p, counted) {
      if (!cornerstone.getViewport(element)) return;
      stacks.forEach(function (st) {
        var viewport = cornerstone.getViewport(st.el);
        if (!viewport) return;
        if (p.auto) {
          percentileWindow(cornerstone.getImage(st.el), p.auto, viewport);
        } else {
          viewport.voi.windowWidth = p.width;
          viewport.voi.windowCenter = p.center;
        }
        st.programmatic = true;
        cornerstone.setViewport(st.el, viewport);
      });
      if (counted !== false) windowChanges++;
      var viewport = cornerstone.getViewport(element);
      Object.keys(reformats).forEach(function (plane) {  // presets apply to every view
        var view = reformats[plane];
        if (!view.shown) return;
        var own = cornerstone.getViewport(view.el);
        own.voi.windowWidth = viewport.voi.windowWidth;
        own.voi.windowCenter = viewport.voi.windowCenter;
        cornerstone.setViewport(view.el, own);
      });
    }

    var cineTimer = null;
    function toggleCine() {
      var button = document.getElementById("cine");
      if (!button) return;
      if (cineTimer) { clearInterval(cineTimer); cineTimer = null; button.textContent = "Cine ▶"; return; }
      cineTimer = setInterval(function () { show((index + 1) % c.slices); }, 100);
      button.textContent = "Cine ❚❚";
    }

    // ---- Three views: axial (the main viewport), coronal and sagittal reformats, linked by lines --------
    var grid = document.getElementById("viewport-grid");
    var reformats = {};
    var threeViews = false;

    function showReformat(view, i) {
      view.index = Math.max(0, Math.min(view.ids.length - 1, i));
      var wanted = view.index;
      return cornerstone.loadAndCacheImage(view.ids[wanted]).then(function (image) {
        if (closed || wanted !== view.index) return;
        var vp = view.shown ? cornerstone.getViewport(view.el) : null;
        if (!view.shown) {
          cornerstone.displayImage(view.el, image);
          view.shown = true;
          var main = cornerstone.getViewport(element);
          var own = cornerstone.getViewport(view.el);
          own.voi.windowWidth = main.voi.windowWidth;
          own.voi.windowCenter = main.voi.windowCenter;
          cornerstone.setViewport(view.el, own);
          view.el.setAttribute("data-loaded", "true");
        } else {
          cornerstone.displayImage(view.el, image, vp);
        }
        view.label.textContent = view.name + " " + (view.index + 1) + "/" + view.ids.length;
      });
    }

    function line(svg, el, a, b) {
      var p = cornerstone.pixelToCanvas(el, a), q = cornerstone.pixelToCanvas(el, b);
      var l = document.createElementNS("http://www.w3.org/2000/svg", "line");
      l.setAttribute("x1", p.x); l.setAttribute("y1", p.y); l.setAttribute("x2", q.x); l.setAttribute("y2", q.y);
      svg.appendChild(l);
    }

    // ---- Marks: where the reader thinks the case looks synthetic (optional question) ---------------------
    var marksBox = document.getElementById("marks-box");
    var marks = (answer.marks || []).slice();
    var markMode = false;
    var markList = document.getElementById("mark-list");
    var commentEl = document.getElementById("mark-comment");
    if (commentEl) commentEl.value = answer.comment || "";

    function renderMarkList() {
      if (!markList) return;
      while (markList.firstChild) markList.removeChild(markList.firstChild);
      marks.forEach(function (m, k) {
        var li = document.createElement("li");
        li.textContent = "Spot " + (k + 1) + (c.slices > 1 ? " on slice " + m.slice : "") + " ";
        var remove = document.createElement("button");
        remove.type = "button";
        remove.className = "remove-mark";
        remove.textContent = "×";
        remove.setAttribute("aria-label", "Remove spot " + (k + 1));
        remove.addEventListener("click", function () { marks.splice(k, 1); marksChanged(); });
        li.appendChild(remove);
        markList.appendChild(li);
      });
    }
    function marksChanged() { renderMarkList(); drawLines(); onChange(); }
    function toggleMarkMode() {
      if (!marksBox) return;
      markMode = !markMode;
      var button = document.getElementById("mark-mode");
      button.textContent = markMode ? "Marking: click the image (M to stop)" : "Mark spots on the image";
      button.classList.toggle("active", markMode);
      element.classList.toggle("marking", markMode);
      element.focus();
    }
    if (marksBox) {
      document.getElementById("mark-mode").addEventListener("click", toggleMarkMode);
      commentEl.addEventListener("input", function () { clearTimeout(commentEl.timer); commentEl.timer = setTimeout(onChange, 600); });
      element.addEventListener("mousedown", function (e) {
        if (!markMode || e.button !== 0) return;
        e.stopImmediatePropagation();
        e.preventDefault();
        var rect = element.getBoundingClientRect();
        var p = cornerstone.canvasToPixel(element, { x: e.clientX - rect.left, y: e.clientY - rect.top });
        var x = p.x / c.cols, y = p.y / c.rows;
        if (x < 0 || x > 1 || y < 0 || y > 1 || marks.length >= 20) return;
        marks.push({ x: Math.round(x * 10000) / 10000, y: Math.round(y * 10000) / 10000, slice: index + 1 });
        marksChanged();
      }, true);
      renderMarkList();
    }

    function drawMarks(svg) {
      marks.forEach(function (m) {
        if (m.slice !== index + 1) return;
        var p = cornerstone.pixelToCanvas(element, { x: m.x * c.cols, y: m.y * c.rows });
        var dot = document.createElementNS("http://www.w3.org/2000/svg", "circle");
        dot.setAttribute("cx", p.x); dot.setAttribute("cy", p.y); dot.setAttribute("r", 9);
        dot.setAttribute("class", "mark");
        svg.appendChild(dot);
      });
    }

    // Where the other two planes cut each view: axial index a, coronal row k, sagittal column j.
    function drawLines() {
      var svgs = grid.querySelectorAll("svg.lines");
      svgs.forEach(function (svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); });
      if (shown) drawMarks(element.querySelector("svg.lines"));
      if (!threeViews || !reformats.coronal.shown || !reformats.sagittal.shown) return;
      var depth = c.slices, rows = c.rows, cols = c.cols;
      var k = reformats.coronal.index + 0.5, j = reformats.sagittal.index + 0.5, a = depth - 1 - index + 0.5;
      var axialSvg = element.querySelector("svg.lines");
      line(axialSvg, element, { x: 0, y: k }, { x: cols, y: k });
      line(axialSvg, element, { x: j, y: 0 }, { x: j, y: rows });
      var cor = reformats.coronal.el, sag = reformats.sagittal.el;
      line(cor.querySelector("svg.lines"), cor, { x: 0, y: a }, { x: cols, y: a });
      line(cor.querySelector("svg.lines"), cor, { x: j, y: 0 }, { x: j, y: depth });
      line(sag.querySelector("svg.lines"), sag, { x: 0, y: a }, { x: rows, y: a });
      line(sag.querySelector("svg.lines"), sag, { x: k, y: 0 }, { x: k, y: depth });
    }

    function setupReformats() {
      c.reformats && Object.keys(c.reformats).forEach(function (plane) {
        var el = document.getElementById("viewport-" + plane);
        var view = { name: plane.charAt(0).toUpperCase() + plane.slice(1), el: el, ids: c.reformats[plane],
                     index: Math.floor((c.reformats[plane].length - 1) / 2), shown: false,
                     label: el.querySelector(".view-label") };
        reformats[plane] = view;
        addMarkers(el, plane);
        el.addEventListener("wheel", function (e) {
          e.preventDefault();
          showReformat(view, view.index + (e.deltaY > 0 ? 1 : -1));
        }, { passive: false });
        el.addEventListener("cornerstoneimagerendered", drawLines);
        el.addEventListener("mousedown", function (e) { if (e.shiftKey) crosshair(view, e); }, true);
      });
    }

    // Shift+click in a reformat: the other planes move to that point.
    function crosshair(view, e) {
      e.stopImmediatePropagation();
      var rect = view.el.getBoundingClientRect();
      var p = cornerstone.canvasToPixel(view.el, { x: e.clientX - rect.left, y: e.clientY - rect.top });
      var axial = c.slices - 1 - Math.floor(p.y);
      if (view === reformats.coronal) showReformat(reformats.sagittal, Math.floor(p.x));
      else showReformat(reformats.coronal, Math.floor(p.x));
      show(axial);
    }
    element.addEventListener("mousedown", function (e) {
      if (!e.shiftKey || !threeViews) return;
      e.stopImmediatePropagation();
      var rect = element.getBoundingClientRect();
      var p = cornerstone.canvasToPixel(element, { x: e.clientX - rect.left, y: e.clientY - rect.top });
      showReformat(reformats.coronal, Math.floor(p.y));
      showReformat(reformats.sagittal, Math.floor(p.x));
    }, true);
    element.addEventListener("cornerstoneimagerendered", drawLines);

    function toggleLayout() {
      if (!c.reformats) return;
      threeViews = !threeViews;
      grid.classList.toggle("three", threeViews);
      Object.keys(reformats).forEach(function (plane) {
        var view = reformats[plane];
        view.el.hidden = !threeViews;
        if (threeViews && !view.enabled) { cornerstone.enable(view.el); addTools(view.el); view.enabled = true; }
      });
      document.getElementById("layout").textContent = threeViews ? "1 view" : "3 views";
      cornerstone.resize(element, true);
      if (threeViews) {
        Object.keys(reformats).forEach(function (plane) {
          cornerstone.resize(reformats[plane].el, true);
          showReformat(reformats[plane], reformats[plane].index);
        });
      }
      drawLines();
      element.focus();
    }
    setupReformats();

    function eachStack(f) { stacks.forEach(function (st) { if (st.shown) f(st.el); }); }
    var actions = {
      invert: function () {
        eachStack(function (el) { var vp = cornerstone.getViewport(el); vp.invert = !vp.invert; cornerstone.setViewport(el, vp); });
      },
      reset: function () {
        eachStack(function (el) { cornerstone.reset(el); });
        if (c.modality !== "CT") applyPreset(percentilePreset(c), false);
      },
      fit: function () { eachStack(function (el) { cornerstone.fitToWindow(el); }); },
      cine: toggleCine,
      layout: toggleLayout
    };
    document.querySelectorAll(".toolbar button").forEach(function (button) {
      button.addEventListener("click", function () {
        if (button.dataset.preset !== undefined) applyPreset(c.presets[+button.dataset.preset]);
        else actions[button.dataset.action]();
        element.focus();
      });
    });
    function resize() {
      stacks.forEach(function (st) { cornerstone.resize(st.el, true); });
      Object.keys(reformats).forEach(function (plane) { if (reformats[plane].enabled) cornerstone.resize(reformats[plane].el, true); });
    }
    if (keepView) {
      keepView.checked = stored(KEEP_KEY) === true;
      keepView.addEventListener("change", function () {
        store(KEEP_KEY, keepView.checked);
        if (keepView.checked) storeView(cornerstone.getViewport(element));
        element.focus();
      });
    }

    // ---- Answers --------------------------------------------------------------------
    function outboxStatus(state, detail, token, body) {
      if (state === "rejected" && token === c.token && body && body.answer) {
        // Changed in another tab or on another device meanwhile: show the newer answer, keep this view.
        answer = body.answer;
        fill(answer, true);
        refreshSubmit();
      }
      var text = {
        saving: "Saving…", saved: "All answers saved", offline: "Connection lost: your answers are kept on this device and will be sent",
        auth: "Not saved yet: your session ended. Log in again in another tab; your answers are kept on this device",
        rejected: "Not saved: " + detail
      }[state];
      statusEl.textContent = text;
      statusEl.className = "save-status " + state;
      // The outbox also sends what earlier pages left behind; only this case's replies change its state.
      if (state === "saved" && token === c.token) {
        if (detail.answer.submitted) answer.submitted = true;
        answer.revision = Math.max(answer.revision || 0, detail.answer.revision);
      }
    }

    function currentAnswers() {
      var out = {};
      ANSWERS.forEach(function (name) {
        var checked = form.querySelector('input[name="' + name + '"]:checked');
        if (!checked) { out[name] = null; return; }
        out[name] = name === "label" ? checked.value : parseInt(checked.value, 10);  // choice: the panel number
      });
      return out;
    }

    function fill(values, replace) {
      if (marksBox && values.marks) { marks = values.marks.slice(); renderMarkList(); }
      if (marksBox && typeof values.comment === "string") commentEl.value = values.comment;
      ANSWERS.forEach(function (name) {
        if (replace) form.querySelectorAll('input[name="' + name + '"]').forEach(function (i) { i.checked = false; });
        if (values[name] === null || values[name] === undefined) return;
        var input = form.querySelector('input[name="' + name + '"][value="' + values[name] + '"]');
        if (input) input.checked = true;
      });
    }

    function complete() {
      var values = currentAnswers();
      var names = {};
      form.querySelectorAll("input[type=radio]").forEach(function (input) { names[input.name] = true; });
      return Object.keys(names).every(function (name) { return values[name] !== null; });
    }

    var missingEl = document.getElementById("missing");
    var questionSets = Array.prototype.slice.call(form.querySelectorAll("fieldset[data-question]"));
    // The first question (real/synthetic, or which image is real) always takes its own keys.
    var primarySet = form.querySelector("fieldset[data-primary]");
    var keyedSets = questionSets.filter(function (fs) { return fs !== primarySet; });
    var activeSet = null;

    function answered(fs) { return !!fs.querySelector("input:checked"); }
    function setActive(fs) {
      activeSet = fs;
      questionSets.forEach(function (f) { f.classList.toggle("active", f === fs); });
      if (fs && fs.scrollIntoView) fs.scrollIntoView({ block: "nearest" });
    }
    function nextUnanswered(after) {
      var start = after ? keyedSets.indexOf(after) + 1 : 0;
      for (var k = 0; k < keyedSets.length; k++) {
        var fs = keyedSets[(start + k) % keyedSets.length];
        if (!answered(fs)) return fs;
      }
      return null;
    }
    function moveActive(delta) {
      if (!keyedSets.length) return;
      var k = activeSet ? keyedSets.indexOf(activeSet) : -1;
      setActive(keyedSets[(k + delta + keyedSets.length) % keyedSets.length]);
    }
    questionSets.forEach(function (fs) {
      if (fs !== primarySet) fs.addEventListener("click", function () { setActive(fs); });
    });

    function refreshSubmit() {
      var done = complete();
      submitButton.disabled = !done;
      var missing = questionSets.filter(function (fs) { return !answered(fs); })
        .map(function (fs) { return fs.dataset.title; });
      missingEl.textContent = done || (answer.submitted && !data.navigation.allow_back)
        ? "" : "Still to answer: " + missing.join(", ");
    }

    function payload(submit) {
      var p = currentAnswers();
      p.duration_ms = Math.round(durationMs());
      p.window_changes = windowChanges;
      p.slices_visited = Object.keys(visited).map(Number).sort(function (a, b) { return a - b; });
      if (marksBox) { p.marks = marks; p.comment = commentEl.value; }
      p.submit = submit;
      p.base_revision = answer.revision || 0;
      return p;
    }

    function save(submit) {
      if (answer.submitted && !data.navigation.allow_back) return;
      outbox.put(c.token, data.urls.answer, payload(submit));
    }

    function choose(input) {
      if (!input || input.disabled) return false;
      input.checked = true;
      var fs = input.closest("fieldset");
      onChange();
      // After an answer, the next unanswered question is the one the keys go to.
      if (fs === activeSet || fs === primarySet || !activeSet) setActive(nextUnanswered(fs) || activeSet);
      return true;
    }
    function optionFor(fs, key) {
      return fs ? fs.querySelector('input[data-key="' + key + '"]') : null;
    }

    function onChange() {
      refreshSubmit();
      save(answer.submitted);
    }

    form.addEventListener("change", function (e) {
      if (e.target && e.target.blur) e.target.blur();  // keep arrow keys for the stack
      onChange();
    });

    // Moving on: in place where the page carries that case, else by loading its page. `answered`: the
    // server has this case's answer, so the new case's own page may be asked what comes after it.
    function go(url, answered) {
      if (!url) return;
      var move = function () {
        if (!showInPlace(url)) window.location.assign(url);
        else if (answered) nextAfter(url);
      };
      if (data.navigation.blank_ms > 0) {
        document.getElementById("blank").hidden = false;
        setTimeout(move, data.navigation.blank_ms);
      } else {
        move();
      }
    }

    var finishing = false;
    function finish() {
      if (finishing || !complete()) return;
      finishing = true;
      submitButton.disabled = true;
      outbox.put(c.token, data.urls.answer, payload(true));
      var ahead = nextInPlace();
      if (ahead && !c.calibration) {
        // The answer is kept on this device until the server has it (answer-outbox.js), so the next
        // case need not wait for the reply; confirmMove takes the reader back should it be refused.
        confirmMove(c.token, window.location.pathname, ahead);
        go(ahead, false);
        return;
      }
      outbox.whenSaved(c.token).then(function (reply) {
        var body = reply && reply.body;
        if (!body) { finishing = false; refreshSubmit(); return; }
        var next = body.next || data.navigation.resume;
        if (body.feedback && c.panels) {
          var letter = function (p) { return p === null || p === undefined ? "none" : c.panels[p].letter; };
          document.getElementById("feedback-text").textContent =
            "In this calibration trial the real image is " + letter(body.feedback.real_panel) +
            ". You chose " + letter(body.feedback.your_choice) + ".";
          document.getElementById("feedback").hidden = false;
          document.getElementById("feedback-continue").onclick = function () { go(next, true); };
          document.getElementById("feedback-continue").focus();
        } else if (body.feedback) {
          // The same words as the buttons the reader pressed.
          var words = {};
          data.questions.label.forEach(function (o) { words[o.value] = o.text; });
          var truth = body.feedback.truth === "synthetic" ? words.fake || "Synthetic" : words.real || "Real";
          document.getElementById("feedback-text").textContent =
            "This calibration image is " + truth.toLowerCase() + ". You answered “" +
            (words[body.feedback.your_label] || body.feedback.your_label) + "”.";
          document.getElementById("feedback").hidden = false;
          document.getElementById("feedback-continue").onclick = function () { go(next, true); };
          document.getElementById("feedback-continue").focus();
        } else {
          go(next, true);
        }
      }, function () { finishing = false; refreshSubmit(); });
    }
    submitButton.addEventListener("click", finish);
    document.getElementById("previous-case").addEventListener("click", function () {
      save(answer.submitted);
      outbox.whenSaved(c.token).then(function () { go(data.navigation.previous, true); });
    });

    // ---- Keyboard -------------------------------------------------------------------
    function keydown(e) {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.target && e.target.tagName === "TEXTAREA") return;  // typing a comment
      if (!document.getElementById("feedback").hidden) {
        if (e.key === "Enter") { e.preventDefault(); document.getElementById("feedback-continue").click(); }
        return;
      }
      var key = e.key;
      var handled = true;
      if (key === "ArrowDown" || key === "ArrowRight" || key === "PageDown") step(1);
      else if (key === "ArrowUp" || key === "ArrowLeft" || key === "PageUp") step(-1);
      else if (key === "Home") show(0);
      else if (key === "End") show(c.slices - 1);
      else if (key === " ") toggleCine();
      else if (key === "Escape") actions.reset();
      else if (key === "i" || key === "I") actions.invert();
      else if (key === "Enter") finish();
      else if (key === "F2") actions.fit();
      else if ((key === "v" || key === "V") && c.reformats) toggleLayout();
      else if ((key === "m" || key === "M") && marksBox) toggleMarkMode();
      else if (key === "Tab") moveActive(e.shiftKey ? -1 : 1);
      else {
        var k = key.toLowerCase();
        // The first question's keys always answer it; other keys go to the highlighted question, and
        // digits that it has no use for to the confidence question.
        handled = choose(optionFor(primarySet, k)) || choose(optionFor(activeSet, k)) ||
          (/^[0-9]$/.test(k) && choose(optionFor(form.querySelector('fieldset[data-question="confidence"]'), k)));
      }
      if (handled) e.preventDefault();
    }

    // The case's own page, fetched once the answer before it is in: what may be prefetched now.
    function refreshed(fresh) {
      data.navigation = fresh.navigation;
      if (element.hasAttribute("data-stack-loaded")) prefetchNextCase();
    }

    function close() {
      closed = true;
      if (cineTimer) clearInterval(cineTimer);
      if (commentEl) clearTimeout(commentEl.timer);
      stacks.forEach(function (st) { cornerstone.disable(st.el); });
      Object.keys(reformats).forEach(function (plane) {
        if (reformats[plane].enabled) cornerstone.disable(reformats[plane].el);
      });
      // The page now lives on from case to case: this case's images leave the cache (a page load
      // used to drop them), so memory stays at about two cases' worth.
      var ids = [];
      stacks.forEach(function (st) { ids = ids.concat(st.ids); });
      Object.keys(reformats).forEach(function (plane) { ids = ids.concat(reformats[plane].ids); });
      ids.forEach(function (id) {  // those still on their way are left to the cache's own limit
        var entry = cornerstone.imageCache.imageCache[id];
        if (entry && entry.loaded) cornerstone.imageCache.removeImageLoadObject(id);
      });
    }

    // ---- Start ----------------------------------------------------------------------
    document.title = document.getElementById("viewer").dataset.title;
    fill(answer);
    var pending = outbox.pending(c.token);
    if (pending) fill(pending.payload);  // newer than the server's copy: not acknowledged yet
    refreshSubmit();
    setActive(nextUnanswered(null));
    if (answer.submitted && !data.navigation.allow_back) {
      form.querySelectorAll("input").forEach(function (input) { input.disabled = true; });
    }
    var flash = null;  // why the reader was brought back here (confirmMove); only on the page it names
    try {
      flash = JSON.parse(window.sessionStorage.getItem(FLASH_KEY));
      window.sessionStorage.removeItem(FLASH_KEY);
    } catch (e) { /* private mode */ }
    flash = flash && flash.path === window.location.pathname ? flash.text : null;
    statusEl.textContent = flash || (answer.revision ? "Answers restored" : "");
    if (flash) statusEl.className = "save-status rejected";
    outbox.flush();
    // Volumes open at their middle slice.
    var first = Math.floor((c.slices - 1) / 2);
    show(first);
    return { keydown: keydown, visibility: visibility, resize: resize, outboxStatus: outboxStatus,
             leave: function () { save(answer.submitted); }, refreshed: refreshed, close: close };
  }

  // ---- The next case, in place ------------------------------------------------------
  function nextInPlace() {
    var template = document.getElementById("next-case");
    return template ? template.dataset.url : null;
  }

  function showInPlace(url) {
    var template = document.getElementById("next-case");
    if (!template || template.dataset.url !== url) return false;
    if (!current) return true;  // already on the way back to a refused answer (confirmMove)
    current.close();
    document.getElementById("viewer").replaceWith(template.content.cloneNode(true));
    template.remove();
    adoptStaged(url);
    document.getElementById("feedback").hidden = true;
    document.getElementById("blank").hidden = true;
    window.history.pushState(null, "", url);
    current = openCase();
    return true;
  }

  // The next case's first image of every panel, drawn off screen ahead of time at the size of this
  // case's views; Finish moves those drawn elements into the views' places, so they are on screen in
  // the next frame (elements of another size are redrawn there).
  var staged = null;
  function stageNext() {
    var template = document.getElementById("next-case");
    if (!template || !current || (staged && staged.url === template.dataset.url)) return;
    unstage();
    var next = JSON.parse(template.content.getElementById("case-data").textContent).case;
    var middle = Math.floor((next.slices - 1) / 2);
    var holder = document.createElement("div");
    holder.className = "next-stage";
    holder.setAttribute("aria-hidden", "true");
    document.body.appendChild(holder);
    staged = { url: template.dataset.url, holder: holder, els: (next.panels || [next]).map(function (images, k) {
      var place = document.getElementById(viewId(k));
      if (!place) return null;
      var el = document.createElement("div");
      el.style.width = place.clientWidth + "px";
      el.style.height = place.clientHeight + "px";
      holder.appendChild(el);
      cornerstone.enable(el);
      cornerstone.loadAndCacheImage(images.image_ids[middle]).then(function (image) {
        if (!el.isConnected) return;
        cornerstone.displayImage(el, image);
        var viewport = cornerstone.getViewport(el);
        if (openingViewport(next, image, viewport)) cornerstone.setViewport(el, viewport);
      }, function () { /* drawn when the case opens */ });
      return el;
    }) };
  }
  function unstage() {
    if (!staged) return;
    staged.els.forEach(function (el) { if (el) cornerstone.disable(el); });
    staged.holder.remove();
    staged = null;
  }
  function adoptStaged(url) {
    if (!staged || staged.url !== url) { unstage(); return; }
    staged.els.forEach(function (el, k) {
      var place = document.getElementById(viewId(k));
      if (!el || !place || !cornerstone.getImage(el)) { if (el) cornerstone.disable(el); return; }
      el.removeAttribute("style");
      Array.prototype.forEach.call(place.attributes, function (a) { el.setAttribute(a.name, a.value); });
      while (place.firstChild) el.appendChild(place.firstChild);
      place.replaceWith(el);
    });
    staged.holder.remove();
    staged = null;
  }

  // The case on screen (at `url`), shown in place, asks its own page what may be prefetched now and
  // which case comes after it.
  function nextAfter(url) {
    fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok || response.redirected) throw new Error("not readable now");
      return response.text();
    }).then(function (html) {
      if (!current || window.location.pathname !== url) return;  // moved on meanwhile
      var page = new DOMParser().parseFromString(html, "text/html");
      var template = page.getElementById("next-case");
      if (template) document.querySelector("main").appendChild(document.importNode(template, true));
      current.refreshed(JSON.parse(page.getElementById("case-data").textContent));
    }).catch(function () { /* this case still reads; its Finish then loads the next page */ });
  }

  function leaveFor(url) {
    if (current) current.close();
    current = null;  // nothing more is saved from this page
    window.location.assign(url);
  }

  // After moving on in place before the reply: once the server has the answer, on as nextAfter; an
  // answer refused takes the reader back to it, with the reason.
  function confirmMove(token, from, to) {
    outbox.whenSaved(token).then(function (reply) {
      var next = reply && reply.body && reply.body.next;
      if (next !== to) leaveFor(next || from);
      else nextAfter(to);
    }, function (reply) {
      var error = reply && reply.body && reply.body.error;
      try {
        window.sessionStorage.setItem(FLASH_KEY, JSON.stringify(
          { path: from, text: "Your answer was not saved: " + (error || "refused by the server") }));
      } catch (e) { /* private mode */ }
      leaveFor(from);
    });
  }

  current = openCase();
})();
