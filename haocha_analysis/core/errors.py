"""Errors a user can act on: every one names the file, the column, the rows and the fix."""

from __future__ import annotations

from collections.abc import Iterable

EXIT_INPUT_ERROR = 2


class HaochaInputError(Exception):
    """Bad input. The CLI prints it in Chinese and exits with status 2, writing nothing."""

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        column: str | None = None,
        rows: Iterable[int] | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.column = column
        self.rows = list(rows)[:10] if rows is not None else []
        self.fix = fix
        super().__init__(self.message())

    def message(self) -> str:
        """Render the message a user reads."""
        parts = [f"输入错误：{self.problem}"]
        if self.file:
            parts.append(f"  文件：{self.file}")
        if self.column:
            parts.append(f"  列：{self.column}")
        if self.rows:
            parts.append("  行号（前10个）：" + ", ".join(str(r) for r in self.rows))
        if self.fix:
            parts.append(f"  修正方法：{self.fix}")
        return "\n".join(parts)
