"""Every example of docs/ingest.md runs as written: the export blocks ingest to the "期望" block.

An example starts with ``<!-- example: NAME -->`` and holds fenced blocks whose info string says
what they are: ``csv FILE [ENCODING]`` (an export file; ``FILE.xlsx#SHEET`` writes a worksheet),
``yaml FILE`` (the profile) and ``csv 期望 TABLE`` (the canonical columns expected, cell for cell).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import Workbook

from haocha_analysis.ingest.build import build_tables

DOC = Path(__file__).resolve().parents[2] / "docs" / "ingest.md"
EXAMPLE = re.compile(r"<!-- example: (\S+) -->\n(.*?)(?=<!-- example:|\n## |\Z)", re.S)
BLOCK = re.compile(r"```(\w+) ([^\n]+)\n(.*?)\n```", re.S)


def examples() -> dict[str, list[tuple[str, list[str], str]]]:
    found = {}
    for name, body in EXAMPLE.findall(DOC.read_text(encoding="utf-8")):
        found[name] = [(lang, info.split(), text + "\n") for lang, info, text in BLOCK.findall(body)]
    return found


def test_the_guide_has_its_examples():
    names = set(examples())
    assert {"zoned-times", "full-width-keys", "split-sheets", "quoted-newlines", "null-markers"} <= names
    assert {n for n in names if n.startswith("guide-")} == {
        "guide-columns",
        "guide-codes",
        "guide-formats",
        "guide-aliases",
    }


def _cell(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, pd.Timestamp):
        return "" if pd.isna(value) else value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@pytest.mark.parametrize("name", sorted(examples()))
def test_doc_example_runs_as_written(name, tmp_path, zibo):
    files: list[Path] = []
    books: dict[Path, Workbook] = {}
    profile = expected = table = None
    for lang, info, text in examples()[name]:
        if lang == "yaml":
            profile = tmp_path / info[0]
            profile.write_text(text, encoding="utf-8")
        elif info[0] == "期望":
            expected = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
            table = info[1]
        elif "#" in info[0]:
            file, sheet = info[0].split("#", 1)
            path = tmp_path / file
            if path not in books:
                books[path] = Workbook()
                books[path].remove(books[path].active)
                files.append(path)
            ws = books[path].create_sheet(sheet)
            for row in csv.reader(io.StringIO(text)):
                ws.append([c if c != "" else None for c in row])
        else:
            path = tmp_path / info[0]
            path.write_bytes(text.encode(info[1] if len(info) > 1 else "utf-8"))
            files.append(path)
    for path, book in books.items():
        book.save(path)
    assert profile is not None and expected is not None and files
    tables, _ = build_tables(profile, files, zibo, "2023Q2")
    got = tables[table][list(expected.columns)].astype(object).map(_cell).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
