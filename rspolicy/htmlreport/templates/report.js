(function () {
  "use strict";
  // Every row's details, their strings sent once: {"s": [strings], "r": [details holding indices into s]}.
  var data = JSON.parse(document.getElementById("rspolicy-rows").textContent);
  var rows = data.r;
  function str(i) { return (i === undefined || i === null) ? "" : data.s[i]; }
  function strs(list) { return (list || []).map(str); }
  var table = document.getElementById("decisions-table");
  var body = table.tBodies[0];
  var filter = document.getElementById("filter");
  var outcome = document.getElementById("outcome-filter");
  var shown = document.getElementById("shown-count");
  var items = Array.prototype.slice.call(body.querySelectorAll("tr.row"));
  var texts = items.map(function (tr) { return tr.textContent.toLowerCase(); });

  function el(tag, text) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function list(parent, heading, values) {
    if (!values || !values.length) { return; }
    parent.appendChild(el("h4", heading));
    var ul = el("ul");
    values.forEach(function (v) { ul.appendChild(el("li", v)); });
    parent.appendChild(ul);
  }

  function grid(parent, heading, header, values) {
    if (!values || !values.length) { return; }
    parent.appendChild(el("h4", heading));
    var t = el("table");
    var head = el("tr");
    header.forEach(function (h) { head.appendChild(el("th", h)); });
    t.appendChild(head);
    values.forEach(function (cells) {
      var tr = el("tr");
      cells.forEach(function (c) { tr.appendChild(el("td", c === null ? "" : c)); });
      t.appendChild(tr);
    });
    parent.appendChild(t);
  }

  function files(list) {
    return (list || []).map(function (f) { return [str(f[0]), f[1], str(f[2])]; });
  }

  function details(d) {
    var box = el("div");
    box.className = "detail";
    var facts = [["recorded", str(d.t)], ["seq", d.s], ["command", str(d.c)], ["action", str(d.a)],
                 ["sensor", str(d.sen)], ["output gsd (m)", d.og], ["policy", str(d.p)],
                 ["rule", strs(d.u).join(", ")], ["zones", strs(d.z).join(", ")]]
      .filter(function (f) { return f[1] !== "" && f[1] !== null && f[1] !== undefined; });
    grid(box, "Decision", ["", ""], facts);
    list(box, "Reasons", strs(d.r));
    list(box, "Warnings", strs(d.w));
    list(box, "Notes", strs(d.n));
    grid(box, "Evidence", ["fact", "value", "source", "field"], (d.e || []).map(strs));
    grid(box, "Input files", ["path", "bytes", "sha256"], files(d["in"]));
    grid(box, "Output files", ["path", "bytes", "sha256"], files(d.out));
    return box;
  }

  function toggle(tr, open) {
    var next = tr.nextElementSibling;
    var isOpen = next && next.classList.contains("detail");
    if (open === undefined) { open = !isOpen; }
    if (isOpen && !open) { next.remove(); tr.classList.remove("open"); }
    if (!isOpen && open) {
      var detail = el("tr");
      detail.className = "detail";
      var td = el("td");
      td.colSpan = tr.cells.length;
      td.appendChild(details(rows[Number(tr.dataset.i)]));
      detail.appendChild(td);
      tr.after(detail);
      tr.classList.add("open");
    }
  }

  function apply() {
    var q = filter.value.trim().toLowerCase();
    var o = outcome.value;
    var n = 0;
    items.forEach(function (tr, i) {
      var show = (!o || tr.dataset.outcome === o) && (!q || texts[i].indexOf(q) !== -1);
      tr.hidden = !show;
      if (!show) { toggle(tr, false); }
      if (show) { n += 1; }
    });
    shown.textContent = String(n);
  }

  function key(tr, col, numeric) {
    var cell = tr.cells[col];
    if (!numeric) { return cell.textContent.toLowerCase(); }
    var v = parseFloat(cell.dataset.k);
    return isNaN(v) ? Infinity : v;
  }

  function sort(th) {
    var col = Number(th.dataset.col);
    var numeric = th.dataset.type === "num";
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    items.forEach(function (tr) { toggle(tr, false); });
    var order = items.map(function (tr, i) { return [key(tr, col, numeric), i]; });
    order.sort(function (a, b) {
      if (a[0] < b[0]) { return -dir; }
      if (a[0] > b[0]) { return dir; }
      return a[1] - b[1];
    });
    var frag = document.createDocumentFragment();
    order.forEach(function (p) { frag.appendChild(items[p[1]]); });
    body.appendChild(frag);
  }

  filter.addEventListener("input", apply);
  outcome.addEventListener("change", apply);
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    th.addEventListener("click", function () { sort(th); });
  });
  body.addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr.row");
    if (tr) { toggle(tr); }
  });
  body.addEventListener("keydown", function (ev) {
    var tr = ev.target.closest("tr.row");
    if (tr && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); toggle(tr); }
  });
  Array.prototype.forEach.call(document.querySelectorAll("g.fp"), function (g) {
    g.addEventListener("click", function () {
      var tr = document.getElementById("row-" + Number(g.dataset.i));
      if (!tr) { return; }
      if (tr.hidden) { filter.value = ""; outcome.value = ""; apply(); }
      toggle(tr, true);
      tr.scrollIntoView({ block: "center" });
      tr.focus();
    });
  });
}());
