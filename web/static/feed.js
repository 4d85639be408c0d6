// Live receptions: progressive enhancement (every page works without it).
// - a list with id="feed" shows each new reception: JST time, clinic, method and result;
// - an element with data-live-refresh is fetched again (debounced) when its clinics receive patients,
//   as a passive request: it neither restarts the idle timeout nor writes another audit entry.
(function () {
  var list = document.getElementById("feed");
  var live = document.querySelector("[data-live-refresh]");
  if ((!list && !live) || !window.EventSource || !window.fetch) return;
  var labels = {};
  try { labels = JSON.parse((list || live).getAttribute("data-labels") || "{}"); } catch (e) { labels = {}; }
  var jst = new Intl.DateTimeFormat("ja-JP", { timeZone: "Asia/Tokyo", hour: "2-digit", minute: "2-digit" });
  function clinicName(id) {
    var el = document.querySelector('[data-clinic="' + id + '"]');
    if (!el) return null;
    return el.getAttribute("data-clinic-name") || (el.querySelector("th a") || el).textContent;
  }
  function label(group, key) {
    return (labels[group] && labels[group][key]) || key;
  }
  var pending = null;
  function refresh() {
    pending = null;
    fetch(window.location.href, { headers: { "X-Onshi-Passive": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-live-refresh]");
        if (fresh) live.innerHTML = fresh.innerHTML;
      })
      .catch(function () {});
  }
  var source = new EventSource("/feed");
  source.addEventListener("reception", function (e) {
    var note = JSON.parse(e.data);
    var name = clinicName(note.clinic);
    if (live && name !== null && !pending) pending = setTimeout(refresh, 2000);
    if (!list) return;
    if (list.getAttribute("data-empty") !== null) { list.innerHTML = ""; list.removeAttribute("data-empty"); }
    var items = (note.receptions || []).slice().reverse();
    if (items.length === 0) items = [{ at: new Date().toISOString(), count: note.visits }];
    items.forEach(function (r) {
      var li = document.createElement("li");
      var parts = [jst.format(new Date(r.at)), name || note.clinic];
      if (r.method) parts.push(label("methods", r.method));
      if (r.result) parts.push(label("results", r.result));
      if (r.count) parts.push(label("words", "visits") + " " + r.count);
      li.textContent = parts.join(" · ");
      if (r.result && r.result !== "valid") li.className = "warn";
      list.insertBefore(li, list.firstChild);
    });
    while (list.children.length > 20) list.removeChild(list.lastChild);
  });
})();
