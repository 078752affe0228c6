"""Fail when a committed notebook carries outputs, defines functions/classes or lacks one parameters cell."""

import json
import re
import sys
from pathlib import Path


def problems(path: Path) -> list[str]:
    """Return the rule violations of one notebook."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    found = []
    if any(c.get("outputs") or c.get("execution_count") for c in code):
        found.append("code cells carry outputs (run: nbstripout or make format)")
    if any(re.search(r"^\s*(def|class)\s", "".join(c.get("source", "")), re.M) for c in code):
        found.append("defines functions or classes (move them into haocha_analysis/)")
    tagged = sum("parameters" in c.get("metadata", {}).get("tags", []) for c in code)
    if tagged != 1:
        found.append(f"{tagged} cells tagged 'parameters' (papermill needs exactly one)")
    return found


def main(argv: list[str]) -> int:
    """Check every notebook below the given folders."""
    bad = 0
    for root in argv or ["notebooks"]:
        for path in sorted(Path(root).rglob("*.ipynb")):
            if ".ipynb_checkpoints" in path.parts:
                continue
            for msg in problems(path):
                print(f"{path}: {msg}")
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
