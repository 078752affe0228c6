"""Two output folders hold the same documents, file for file, whatever engine made them.

CSV and JSON byte for byte (bar the run's own record: ``manifest.json`` without its times and ids,
``units.json`` without its seconds), XLSX cell by cell, HTML, notebooks, Word and PDF compared as
text with what differs between any two runs masked: run ids, clock times, SVG element ids. Logs
(times only) are not compared.
"""

from __future__ import annotations

import base64
import json
import re
import zipfile
from pathlib import Path

# What differs between two runs of the same command: not the data's.
MASKS = (
    (re.compile(r"\d{8}T\d{6}-[0-9a-f]{6}"), "<run-id>"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "<run-id>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"D:\d{14}"), "<time>"),
    (re.compile(r'\b(id|href|xlink:href|clip-path)="[^"]*"'), r'\1="<id>"'),
    (re.compile(r"url\(#[^)]*\)"), "url(#<id>)"),
    (re.compile(r"\d+(\.\d+)? ?秒"), "<seconds>"),
)
SKIPPED = {".log"}
MANIFEST_RUN_KEYS = {
    "run_id",
    "started_at",
    "stages",
    "total_seconds",
    "peak_rss_mb",
    "notebook_cells",
    "engine",
    "outputs",
}


# Where the records came from: a folder's path and hashes, or a URL's files and stamps (compared
# apart by the tests that read the same records from a folder and from a URL).
MANIFEST_DATA_KEYS = {"data_dir", "inputs"}


SVG_DATA = re.compile(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)")


def masked(text: str) -> str:
    """The text with run ids, clock times and element ids replaced by placeholders.

    A chart embedded as a base64 SVG is decoded first, so that its element ids can be masked.
    """
    text = SVG_DATA.sub(lambda m: "data:image/svg+xml," + base64.b64decode(m[1]).decode("utf-8"), text)
    for pattern, placeholder in MASKS:
        text = pattern.sub(placeholder, text)
    return text


def _xlsx_cells(path: Path) -> dict:
    from openpyxl import load_workbook

    book = load_workbook(path)
    return {
        sheet.title: [[cell.value for cell in row] for row in sheet.iter_rows()] for sheet in book.worksheets
    }


def _notebook_outputs(path: Path) -> list:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    out = []
    for cell in cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            texts = [output.get("text", "")] + [data.get(k, "") for k in ("text/plain", "text/html")]
            out.append(masked("".join("".join(t) if isinstance(t, list) else t for t in texts)))
    return out


def _zip_texts(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return {
            name: masked(archive.read(name).decode("utf-8", "replace"))
            for name in archive.namelist()
            if name != "docProps/core.xml"
        }


def _pdf_pages(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [masked(page.extract_text()) for page in PdfReader(path).pages]


def _json(path: Path, same_data: bool = True) -> object:
    data = json.loads(path.read_text(encoding="utf-8"))
    if path.name == "manifest.json":
        outputs = sorted(data.get("outputs", {}))
        dropped = MANIFEST_RUN_KEYS if same_data else MANIFEST_RUN_KEYS | MANIFEST_DATA_KEYS
        data = {k: v for k, v in data.items() if k not in dropped}
        data["outputs"] = outputs
        data["parameters"] = {
            k: v for k, v in data["parameters"].items() if k != "run_id" and (same_data or k != "data_dir")
        }
    elif path.name == "units.json":
        data = {k: v for k, v in data.items() if k not in {"run_id", "seconds", "workers"}}
        data["units"] = [{k: v for k, v in u.items() if k != "seconds"} for u in data["units"]]
    return data


def compared_form(path: Path, same_data: bool = True) -> object:
    """What of a file two engines must agree on (``same_data`` False: not where the records came from)."""
    suffix = path.suffix
    if path.name in {"manifest.json", "units.json"}:
        return _json(path, same_data)
    if suffix == ".xlsx":
        return _xlsx_cells(path)
    if suffix == ".ipynb":
        return _notebook_outputs(path)
    if suffix == ".docx":
        return _zip_texts(path)
    if suffix == ".pdf":
        return _pdf_pages(path)
    if suffix in {".html", ".svg", ".md", ".txt"}:
        return masked(path.read_text(encoding="utf-8"))
    return path.read_bytes()  # CSV, JSON, PNG: exactly


def assert_same_outputs(left: Path, right: Path, same_data: bool = True) -> list[str]:
    """Every file of ``left`` is in ``right`` and the same (module docstring); the files compared.

    ``same_data`` False: the two read the same records from different places (a folder and a URL);
    the manifests' record of the inputs is then left to the caller.
    """
    names = sorted(str(p.relative_to(left)) for p in left.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(right)) for p in right.rglob("*") if p.is_file())
    compared = []
    for name in names:
        if Path(name).suffix in SKIPPED:
            continue
        assert compared_form(left / name, same_data) == compared_form(right / name, same_data), name
        compared.append(name)
    return compared
