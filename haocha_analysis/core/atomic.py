"""Atomic writes: a reader sees the old file or the new one, never half of one.

Every output is written to a temporary file in the target's folder and moved over the target with
``os.replace`` (atomic on one file system). A set of files (:func:`publish_files`) is written
completely before any target is replaced.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

PUBLISHED_MODE = 0o644  # mkstemp creates 0600; published outputs are for every reader


def temp_path(folder: Path, name: str) -> Path:
    """A new, empty temporary file in ``folder`` named after ``name`` (hidden, same suffix)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{Path(name).stem}-", suffix=Path(name).suffix, dir=folder)
    os.close(fd)
    return Path(tmp)


def publish_files(folder: Path, writers: Mapping[str, Callable[[Path], None]]) -> list[Path]:
    """Write every file of a set to a temporary path, then move them all into ``folder``.

    Args:
        folder: the output folder (created when missing).
        writers: file name → a function that writes the file to the path it is given.

    Returns:
        The published paths, in the order of ``writers``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, writer in writers.items():
            tmp = temp_path(folder, name)
            staged.append((tmp, folder / name))
            writer(tmp)
            tmp.chmod(PUBLISHED_MODE)
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return [target for _, target in staged]


def write_text(path: Path, text: str, mode: int = PUBLISHED_MODE) -> Path:
    """Write a text file (UTF-8) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path.parent, path.name)
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: Path, value: object, *, sort_keys: bool = False) -> Path:
    """Write a JSON file (UTF-8, not ASCII-escaped, indented) atomically."""
    return write_text(path, json.dumps(value, ensure_ascii=False, indent=1, sort_keys=sort_keys) + "\n")
