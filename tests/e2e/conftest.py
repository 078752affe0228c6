"""End-to-end tests reuse the bulletin tests' readers (test_render, docx_checks) when run on their own."""

import sys
from pathlib import Path

BULLETIN_TESTS = str(Path(__file__).resolve().parents[1] / "bulletin")
if BULLETIN_TESTS not in sys.path:
    sys.path.insert(0, BULLETIN_TESTS)
