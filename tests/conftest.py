"""Shared fixtures: the project's reference cities and a tiny made-up city."""

from __future__ import annotations

from pathlib import Path

import pytest

from haocha_analysis.core.reference import CityReference, load_city

TESTS_DIR = Path(__file__).resolve().parent
TEST_DATA = TESTS_DIR / "data"
GOLDEN_DIR = TESTS_DIR / "golden"


@pytest.fixture(scope="session")
def zibo() -> CityReference:
    return load_city("zibo")


@pytest.fixture(scope="session")
def qinghe() -> CityReference:
    """青禾市: 2 districts, 3 city departments, a few district departments, towns and villages."""
    return load_city(TEST_DATA / "reference" / "qinghe")


@pytest.fixture(autouse=True)
def _salt(monkeypatch):
    monkeypatch.setenv("HAOCHA_SALT", "test-salt")
