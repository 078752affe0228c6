"""Output folders: which folder a run may write, and how it is replaced so that a crash loses nothing.

The one rule of every verb that writes (``ingest``, ``synth``, ``quality``, ``tables``, ``anomalies``,
``bulletin``, ``run``, ``bench``): **a run owns only the folder it creates.** ``--out`` must be

- absent (it is created), or empty, or
- a previous haocha output of the same kind, recognised by its marker file :data:`MARKER` (or, for
  folders written before markers existed, by the file that kind always writes, :data:`KINDS`).

Anything else is an input error (exit 2) naming the path and the fix, raised before any work: a
file, a non-empty folder haocha did not write, the ``--data`` folder or a folder inside it or holding
it (likewise every other input: the city's reference folder, the inbox, a template), the project
root or a folder holding it, the working directory, and a place that cannot be written.

Replacing is crash-safe (:func:`swap_in`): a journal beside the targets records the moves before
the first rename; a run that dies between two renames leaves the journal, and the next run that
touches the folder (:func:`recover`, called by :func:`check_out`) puts the old outputs back. After
recovery the folder holds either the old or the new complete set, never a mixture and never nothing.

Stale staging (:func:`clean_stale`): hidden folders and files a killed run left beside or inside an
output (``.<name>.tmp-<run>``, ``.<name>.failed-<run>``, ``.<name>.ingest-…``, half-written temporary
files) are removed when their owner process is gone, or, where no owner is recorded, when they are
older than :data:`STALE_AFTER`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psutil

from haocha_analysis.core import atomic
from haocha_analysis.core.config import DATA_DIR, PROJ_ROOT, REPORTS_DIR, local_path
from haocha_analysis.core.errors import HaochaInputError

MARKER = ".haocha-output.json"  # written into every output folder: {"kind": …}
OWNER = ".haocha-owner.json"  # written into a staging folder: the process that fills it
JOURNAL_PREFIX = ".haocha-swap-"  # .haocha-swap-<token>.json: an unfinished swap_in
# Staging left without an owner record (mkdtemp folders, temporary files) is stale when older than
# any run takes: a province-scale bulletin runs in minutes; six hours leaves a wide margin.
STALE_AFTER = timedelta(hours=6)


@dataclass(frozen=True)
class OutputKind:
    """One kind of output folder."""

    label: str  # how messages name it
    accepts: frozenset[str]  # kinds of existing folders a run of this kind may write into
    legacy_files: tuple[str, ...]  # a folder written before markers existed holds one of these


KINDS: dict[str, OutputKind] = {
    # A bulletin folder holds the tables' outputs too, so either may write into the other's folder.
    "bulletin": OutputKind("通报输出", frozenset({"bulletin", "tables"}), ("manifest.json",)),
    "tables": OutputKind("附件表格输出", frozenset({"tables", "bulletin"}), ("headline.json",)),
    "quality": OutputKind("质检输出", frozenset({"quality"}), ("quality_figures.json",)),
    "anomalies": OutputKind("异常清单输出", frozenset({"anomalies"}), ("anomalies.csv",)),
    # Canonical tables: written by ingest and synth, read by every other verb through --data.
    "data": OutputKind(
        "规范表目录",
        frozenset({"data"}),
        ("extractions.json", "ingest_log.json", "truth.json", "synth-stamp.json"),
    ),
    "bench": OutputKind("基准测试输出", frozenset({"bench"}), ("bench.md",)),
    "rectification": OutputKind("差评台账输出", frozenset({"rectification"}), ("rectification_ledger.csv",)),
    "units": OutputKind("单位报告输出", frozenset({"units"}), ("units.json",)),
}

_OUT_FIX = "给出一个不存在的目录或空目录（haocha 只写它自己创建的目录），或同类的上一次输出目录"


# --- recognising a folder ---------------------------------------------------------------------


def kind_of(folder: Path) -> str | None:
    """The kind of haocha output a folder holds, or None (not one, or not recognised)."""
    folder = Path(folder)
    marker = folder / MARKER
    if marker.is_file():
        try:
            kind = json.loads(marker.read_text(encoding="utf-8")).get("kind")
        except (OSError, ValueError, AttributeError):
            kind = None
        if kind in KINDS:
            return kind
    manifest = folder / "manifest.json"
    if manifest.is_file():  # a bulletin written before markers: its manifest names the run
        try:
            if {"run_id", "period"} <= set(json.loads(manifest.read_text(encoding="utf-8"))):
                return "bulletin"
        except (OSError, ValueError, TypeError):
            pass
    for kind, spec in KINDS.items():
        if kind != "bulletin" and any((folder / name).is_file() for name in spec.legacy_files):
            return kind
    if any((folder / "cases").glob("period=*")):  # canonical tables written by storage.write_tables
        return "data"
    return None


def _visible_entries(folder: Path) -> list[Path]:
    """Entries of a folder other than haocha's own bookkeeping (marker, journals, staging)."""
    return [p for p in folder.iterdir() if p.name not in (MARKER, OWNER) and not _is_staging(p)]


# Names of what haocha stages beside or inside an output: ``.<name>.tmp-<run>`` (a run's folder),
# ``.<name>.failed-<run>``, ``.<name>.ingest-<random>``, ``.<name>.old-<token>`` (a swap's old one),
# ``.haocha-swap-<token>.json`` (its journal) and ``.<stem>-<8 random>[.suffix]`` (tempfile's files and
# folders). A user's own hidden files (``.git``, ``.DS_Store``) match none of them.
_STAGING = re.compile(r"\..+\.(tmp|failed|ingest|old)-[^/]+|\.[^/]+-[a-z0-9_]{8}(\.[A-Za-z0-9]+)?")


def _is_staging(path: Path) -> bool:
    return path.name.startswith(JOURNAL_PREFIX) or _STAGING.fullmatch(path.name) is not None


# --- the rule ---------------------------------------------------------------------------------


def _inside(path: Path, other: Path) -> bool:
    return path == other or other in path.parents


def _refuse(out: Path, problem: str, fix: str = _OUT_FIX, option: str = "--out") -> HaochaInputError:
    return HaochaInputError(problem, file=str(out), column=option, fix=fix)


def check_out(
    out: str | Path,
    kind: str,
    inputs: Mapping[str, str | Path | None] | None = None,
    *,
    option: str = "--out",
) -> Path:
    """Check that a run of ``kind`` may write the folder ``out``; return its absolute path.

    Nothing is written, except that an interrupted swap in ``out`` or beside it is first recovered
    (:func:`recover`), so that the check sees complete folders.

    Args:
        out: the output folder (``--out``, or the default one).
        kind: the kind of output, a key of :data:`KINDS`.
        inputs: what the run reads, option → path (``{"--data": …, "--city": …}``); ``out`` may be
            none of them, lie inside none of them and hold none of them. None values are skipped.
        option: the option that named ``out``, for the messages.

    Raises:
        HaochaInputError: the rule is broken; the message names the path and the fix.
    """
    spec = KINDS[kind]
    given = Path(out)

    def refuse(problem: str, fix: str = _OUT_FIX) -> HaochaInputError:
        return _refuse(given, problem, fix, option)

    path = Path(os.path.abspath(given.expanduser()))
    real = path.resolve()
    if path.exists() and not path.is_dir():
        raise refuse(f"{option} 指向一个文件，而不是目录", "给出一个目录路径（不存在时会创建）")
    for ancestor in (path, *path.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise refuse(f"{option} 路径中的 {ancestor} 是文件，无法在其下建目录")
            break
    protected = {
        "项目根目录": PROJ_ROOT,
        "当前工作目录": Path.cwd(),
        "用户主目录": Path.home(),
    }
    for label, place in protected.items():
        if _inside(place.resolve(), real):
            raise refuse(f"{option} 是{label}或包含{label}（{place}），haocha 不会在那里写入或替换")
    for label, place in {"报告根目录": REPORTS_DIR, "数据根目录": DATA_DIR}.items():
        if real == place.resolve():
            raise refuse(f"{option} 是{label}本身（{place}）", f"写到它下面的子目录，如 {place}/<城市>/…")
    for source_option, value in (inputs or {}).items():
        if value is None or str(value) == "" or local_path(value) is None:
            continue  # a remote URL (s3://, memory://…) is never inside a local folder
        source = Path(os.path.abspath(local_path(value).expanduser())).resolve()
        if real == source:
            problem = f"{option} 与 {source_option} 给出的输入是同一位置（{value}）"
        elif _inside(real, source):
            problem = f"{option} 位于 {source_option} 给出的输入 {value} 之内"
        elif _inside(source, real):
            problem = f"{option} 包含 {source_option} 给出的输入 {value}"
        else:
            continue
        raise refuse(
            problem + "；输出与输入必须分开",
            f"{option} 给出 {source_option} 之外的目录",
        )
    recover(path.parent)
    if path.is_dir():
        recover(path)
        if _visible_entries(path):
            found = kind_of(path)
            if found is None:
                raise refuse(
                    f"{option} 指向的目录已有其他内容，不是 haocha 的{spec.label}",
                    "给出一个不存在的目录或空目录（haocha 只写它自己创建的目录），或先移走其中的文件",
                )
            if found not in spec.accepts:
                raise refuse(
                    f"{option} 指向的目录是 haocha 的{KINDS[found].label}，不是{spec.label}",
                    "每种输出用自己的目录（见 README 的命令示例）",
                )
    _check_writable(given, path, replaces=kind == "bulletin", option=option)
    return path


def _check_writable(given: Path, path: Path, *, replaces: bool, option: str) -> None:
    """The folder (or where it will be created) can be written; a replaced folder's parent too."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    places = [existing]
    if replaces and existing == path:
        places.append(path.parent)  # the staging folder beside it, and the swap
    for place in places:
        if not os.access(place, os.W_OK | os.X_OK):
            raise _refuse(
                given,
                f"{option} 所在位置不可写（{place} 只读或无写权限）",
                "给出一个可写的位置，或为该目录加写权限",
                option,
            )


def mark(folder: Path, kind: str) -> Path:
    """Write the marker that says ``folder`` is haocha output of ``kind`` (kept when it accepts it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    current = kind_of(folder) if (folder / MARKER).exists() else None
    if current is None or current not in KINDS[kind].accepts:
        atomic.write_json(folder / MARKER, {"kind": kind, "written_by": "haocha"})
    return folder / MARKER


@contextmanager
def claim(
    out: str | Path, kind: str, inputs: Mapping[str, str | Path | None] | None = None
) -> Iterator[Path]:
    """Check ``out`` (:func:`check_out`), clean its stale staging, create and mark it for the run.

    When the run fails, a folder the run created is removed again, and an empty one it marked is
    left empty: bad input writes nothing.

    Yields:
        The absolute output folder.

    Raises:
        HaochaInputError: ``out`` may not be written (see :func:`check_out`).
    """
    path = check_out(out, kind, inputs)
    created = next((p for p in reversed([path, *path.parents]) if not p.exists()), None)
    was_empty = path.is_dir() and not _visible_entries(path)
    had_marker = (path / MARKER).exists()
    clean_stale(path)
    try:
        mark(path, kind)
    except OSError as err:
        raise _refuse(
            Path(out), f"无法创建或写入 --out 目录（{err.strerror or type(err).__name__}）"
        ) from None
    try:
        yield path
    except BaseException:
        if created is not None:  # the topmost folder this run created, with all it holds
            shutil.rmtree(created, ignore_errors=True)
        elif was_empty and not had_marker:
            (path / MARKER).unlink(missing_ok=True)
        raise


# --- owners and stale staging -----------------------------------------------------------------


def _process_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _me() -> dict:
    return {"pid": os.getpid(), "started": _process_start(os.getpid()), "host": socket.gethostname()}


def owner_alive(owner: Mapping) -> bool | None:
    """Whether the process an owner record names still runs; None when it ran on another host."""
    if owner.get("host") != socket.gethostname():
        return None
    started = _process_start(int(owner.get("pid", -1)))
    return started is not None and abs(started - float(owner.get("started") or 0)) < 1.0


def _older_than_a_run(path: Path) -> bool:
    try:
        return time.time() - path.lstat().st_mtime > STALE_AFTER.total_seconds()
    except OSError:
        return False


def make_staging(folder: Path) -> Path:
    """Create a staging folder and record this process as its owner (see :func:`clean_stale`)."""
    folder = Path(folder)
    folder.mkdir()
    atomic.write_json(folder / OWNER, _me())
    return folder


def _stale(path: Path) -> bool:
    """Left by a run that no longer runs: its owner is gone, or (owner unknown) it is old."""
    owner_file = path / OWNER
    if path.is_dir() and owner_file.is_file():
        try:
            alive = owner_alive(json.loads(owner_file.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            alive = None
        if alive is not None:
            return not alive
    return _older_than_a_run(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink(missing_ok=True)


def clean_stale(out: Path) -> list[Path]:
    """Remove what killed runs left: staging beside ``out`` and hidden temporaries inside it.

    Beside ``out`` only entries named after it are touched (``.<name>.tmp-…``, ``.<name>.failed-…``,
    ``.<name>.ingest-…``, ``.<name>.old-…``); inside a folder haocha wrote, hidden entries other than its
    marker and journals, one level down as well (the canonical tables' ``<table>/.period=…`` staging).
    Failed runs' folders are kept until the next run of the same output starts.

    Returns:
        The removed paths.
    """
    out = Path(out)
    removed: list[Path] = []
    candidates: list[Path] = []
    if out.parent.is_dir():
        for p in out.parent.iterdir():
            if (
                p.name.startswith(f".{out.name}.")
                and _is_staging(p)
                and not p.name.startswith(JOURNAL_PREFIX)
            ):
                (removed if ".failed-" in p.name else candidates).append(p)  # a failed run: superseded
    if out.is_dir() and kind_of(out) is not None:
        for folder in [out, *(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))]:
            candidates += [
                p for p in folder.iterdir() if _is_staging(p) and not p.name.startswith(JOURNAL_PREFIX)
            ]
    removed += [p for p in candidates if _stale(p)]
    for p in removed:
        _remove(p)
    return removed


# --- crash-safe replacement -------------------------------------------------------------------


def _crash_point(step: str) -> None:
    """Called between the steps of :func:`swap_in`; tests replace it to kill the process there."""


def _write_journal(journal: Path, moves: list[dict], state: str) -> None:
    atomic.write_json(journal, {"owner": _me(), "state": state, "moves": moves})
    fd = os.open(journal.parent, os.O_RDONLY)
    try:  # the journal's rename is on disk before the first move
        os.fsync(fd)
    finally:
        os.close(fd)


def swap_in(
    moves: Sequence[tuple[Path, Path]], *, journal_dir: Path | None = None, keep_sources: bool = False
) -> None:
    """Move staged folders/files into place as one set: all of them, or none, even across a crash.

    Steps: write the journal (state ``moving``); for each move rename the old target aside, then the
    staged one in; set the journal to ``done``; delete the old ones and the journal. A failure in this
    process rolls back at once; a killed process is rolled back by :func:`recover` at the next start.

    Args:
        moves: (staged source, target) pairs; each target's folder must exist.
        journal_dir: where the journal goes (default: the targets' common folder); :func:`recover`
            must be called on this folder.
        keep_sources: on failure, leave the staged sources in place (the caller keeps them);
            otherwise they are deleted.
    """
    moves = [(Path(src), Path(target)) for src, target in moves]
    if not moves:
        return
    journal_dir = Path(journal_dir or os.path.commonpath([str(t.parent) for _, t in moves]))
    token = uuid.uuid4().hex[:10]
    plan = [
        {
            "src": str(src),
            "target": str(target),
            "aside": str(target.with_name(f".{target.name}.old-{token}")),
            "existed": os.path.lexists(target),
        }
        for src, target in moves
    ]
    journal = journal_dir / f"{JOURNAL_PREFIX}{token}.json"
    _write_journal(journal, plan, "moving")
    _crash_point("journal")
    try:
        for i, move in enumerate(plan):
            if move["existed"]:
                os.replace(move["target"], move["aside"])
                _crash_point(f"aside-{i}")
            os.replace(move["src"], move["target"])
            _crash_point(f"in-{i}")
    except BaseException:
        _roll_back(plan)
        if not keep_sources:
            for move in plan:
                _remove(Path(move["src"]))
        journal.unlink(missing_ok=True)
        raise
    _write_journal(journal, plan, "done")
    _crash_point("done")
    for move in plan:
        _remove(Path(move["aside"]))
        _crash_point("cleanup")
    journal.unlink(missing_ok=True)


def _roll_back(plan: list[dict]) -> None:
    """Undo the moves of an unfinished swap (idempotent: every step checks what is there)."""
    for move in reversed(plan):
        src, target, aside = Path(move["src"]), Path(move["target"]), Path(move["aside"])
        if os.path.lexists(aside):  # the old one was moved aside: the target holds the new one, or nothing
            if os.path.lexists(target):
                if os.path.lexists(src):
                    _remove(target)
                else:
                    os.replace(target, src)
            os.replace(aside, target)
        elif not move["existed"] and os.path.lexists(target) and not os.path.lexists(src):
            os.replace(target, src)  # a new target that had no predecessor: take it out again


def recover(folder: Path) -> list[Path]:
    """Finish or undo the swaps that a killed process left unfinished in ``folder``.

    A swap in state ``done`` had put every new target in place: its old ones are deleted. A swap in
    state ``moving`` is rolled back: the old targets return and the staged sources are deleted. Swaps
    whose process still runs are left alone.

    Returns:
        The journals resolved.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    resolved = []
    for journal in sorted(folder.glob(f"{JOURNAL_PREFIX}*.json")):
        try:
            record = json.loads(journal.read_text(encoding="utf-8"))
            plan, state, owner = record["moves"], record["state"], record["owner"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not one of ours
        alive = owner_alive(owner)
        if alive or (alive is None and not _older_than_a_run(journal)):
            continue  # still swapping (or, from another host, maybe)
        try:
            if state == "done":
                for move in plan:
                    _remove(Path(move["aside"]))
            else:
                _roll_back(plan)
                for move in plan:
                    _remove(Path(move["src"]))
            journal.unlink(missing_ok=True)
        except OSError:
            continue  # cannot be changed from here (read-only, permissions): left for a later run
        resolved.append(journal)
    return resolved
