// Polls a job's state and updates the progress bar; reloads once the job finishes
// so the page shows the final per-file results.
(function () {
  const box = document.getElementById("job");
  if (!box) return;
  const url = box.dataset.stateUrl;
  async function poll() {
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.ok) {
        const s = await response.json();
        document.getElementById("job-progress").value = s.percent;
        document.getElementById("job-status").textContent = s.status_display;
        document.getElementById("job-count").textContent = s.done + "/" + s.total;
        document.getElementById("job-message").textContent = s.message;
        if (s.finished) { window.location.reload(); return; }
      }
    } catch (e) { /* network hiccup: try again */ }
    setTimeout(poll, 1000);
  }
  setTimeout(poll, 500);
})();
