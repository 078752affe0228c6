"""How a haocha process takes memory from the system and gives it back.

Imported by ``haocha_analysis/__init__.py`` before numpy: this module imports nothing heavy.
"""

from __future__ import annotations

import os


def configure() -> None:
    """Set this process's memory policy (called once, on import of the package).

    NumPy asks the kernel for transparent huge pages on every array of 4 MB or more (madvise), read
    once when numpy is imported. On the 2-core VMs we measure on a huge-page fault costs far more than
    the TLB misses it saves: the linkage of a quarter took 1.3-1.6 s with the advice and 0.75-0.85 s
    without (system time 1.2 s → 0.25 s), on a fresh machine or not (docs/performance.md). Off for this
    process and every process it starts (notebook kernels, Dask workers, the bench's stages) unless the
    user set ``NUMPY_MADVISE_HUGEPAGE``; no effect when numpy was imported before haocha_analysis.
    """
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")


def release_unused() -> None:
    """Hand the memory Arrow's pool keeps for reuse back to the system.

    Arrow's allocator (mimalloc) keeps freed pages mapped: after the loading window and the linkage
    (hundreds of MB of temporary strings and hashes) a run's process kept ~300 MB more resident through
    every later stage, counted in the run's peak beside the notebook kernel.
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
