/* haocha: sortable annex tables and chart values on hover. Inlined into the page: no network, no library.
   The PDF and the Word document stay static (WeasyPrint runs no script). */
(function () {
  "use strict";

  function cellValue(cell) {
    var text = (cell ? cell.textContent : "").trim().replace(/,/g, "");
    if (text === "" || text === "/") return null;
    return /^-?\d+(\.\d+)?%?$/.test(text) ? parseFloat(text) : text;
  }

  function compare(a, b, direction) {
    if (a === null || b === null) return a === b ? 0 : (a === null ? 1 : -1); /* undefined cells last */
    if (typeof a === "number" && typeof b === "number") return direction * (a - b);
    return direction * String(a).localeCompare(String(b), "zh-CN");
  }

  /* Each single-column header cell and the column it heads (two-row headers: rowspan/colspan). */
  function headerColumns(table) {
    var rows = table.tHead ? table.tHead.rows : [];
    var taken = [], found = [];
    for (var r = 0; r < rows.length; r++) {
      taken[r] = taken[r] || [];
      var col = 0;
      for (var k = 0; k < rows[r].cells.length; k++) {
        var cell = rows[r].cells[k];
        while (taken[r][col]) col++;
        for (var i = 0; i < (cell.rowSpan || 1); i++) {
          taken[r + i] = taken[r + i] || [];
          for (var j = 0; j < (cell.colSpan || 1); j++) taken[r + i][col + j] = true;
        }
        if ((cell.colSpan || 1) === 1) found.push([cell, col]);
        col += cell.colSpan || 1;
      }
    }
    return found;
  }

  function sortTable(table, column, header, headers) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var direction = header.getAttribute("aria-sort") === "descending" ? 1 : -1; /* first click: largest first */
    var totals = rows.filter(function (row) { return row.classList.contains("total"); });
    var others = rows.filter(function (row) { return !row.classList.contains("total"); });
    others.sort(function (a, b) {
      return compare(cellValue(a.cells[column]), cellValue(b.cells[column]), direction) ||
        (a.getAttribute("data-order") - b.getAttribute("data-order"));
    });
    others.concat(totals).forEach(function (row) { body.appendChild(row); }); /* 汇总/总数 stay last */
    headers.forEach(function (pair) { pair[0].removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", direction === -1 ? "descending" : "ascending");
  }

  function makeSortable(table) {
    if (!table.tBodies.length || table.tBodies[0].rows.length < 2) return;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row, i) { row.setAttribute("data-order", i); });
    var headers = headerColumns(table);
    headers.forEach(function (pair) {
      var header = pair[0], column = pair[1];
      header.classList.add("sortable");
      header.setAttribute("tabindex", "0");
      header.title = "点击排序";
      var go = function () { sortTable(table, column, header, headers); };
      header.addEventListener("click", go);
      header.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); } });
    });
  }

  function addTips(figure) {
    var regions;
    try { regions = JSON.parse(figure.getAttribute("data-tips")); } catch (e) { return; }
    var image = figure.querySelector("img");
    if (!image || !regions.length) return;
    var tip = document.createElement("div");
    tip.className = "chart-tip";
    tip.setAttribute("role", "status");
    figure.style.position = "relative";
    figure.appendChild(tip);
    image.addEventListener("mousemove", function (e) {
      var box = image.getBoundingClientRect();
      var x = (e.clientX - box.left) / box.width, y = (e.clientY - box.top) / box.height;
      var hit = null;
      for (var i = regions.length - 1; i >= 0 && !hit; i--) {
        var r = regions[i];
        if (x >= r.x0 && x <= r.x1 && y >= r.y0 && y <= r.y1) hit = r;
      }
      if (!hit) { tip.style.display = "none"; return; }
      tip.textContent = hit.text;
      tip.style.display = "block";
      tip.style.left = (e.clientX - figure.getBoundingClientRect().left + 12) + "px";
      tip.style.top = (e.clientY - figure.getBoundingClientRect().top + 12) + "px";
    });
    image.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("table.annex"), makeSortable);
    Array.prototype.forEach.call(document.querySelectorAll("figure.chart[data-tips]"), addTips);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
