// Live reception feed: progressive enhancement of the dashboard (the page works without it).
(function () {
  var list = document.getElementById("feed");
  if (!list || !window.EventSource) return;
  var source = new EventSource(list.getAttribute("data-feed"));
  source.addEventListener("reception", function (e) {
    var note = JSON.parse(e.data);
    var row = document.querySelector('tr[data-clinic="' + note.clinic + '"] th a');
    var item = document.createElement("li");
    item.textContent = new Date().toLocaleTimeString() + " " + (row ? row.textContent : note.clinic) + ": " + note.visits;
    list.insertBefore(item, list.firstChild);
    while (list.children.length > 20) list.removeChild(list.lastChild);
  });
})();
