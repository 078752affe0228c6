"""Build hook: ship the reference data, source profiles and notebooks inside the wheel.

pyproject.toml holds all metadata. In a checkout these folders are read where they are; an installed
wheel reads the copies under ``haocha_analysis/_bundled`` (see ``haocha_analysis.core.config``).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLE = {"data/reference": "reference", "data/profiles": "profiles", "notebooks": "notebooks"}


class BuildWithResources(build_py):
    """build_py that also copies the checkout's resources into the built package."""

    def run(self) -> None:  # noqa: D102
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout itself
        root = Path(__file__).resolve().parent
        target = Path(self.build_lib) / "haocha_analysis" / "_bundled"
        for source, name in BUNDLE.items():
            shutil.copytree(
                root / source,
                target / name,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
            )


setup(cmdclass={"build_py": BuildWithResources})
