"""The one place a thread count becomes the process's: ``apply_threads`` for this process, ``threads_env`` for
a child process (a bench cell, a server under load, a Ray worker).

Why an environment variable at all: Paddle Inference and oneDNN (inside Paddle and OpenVINO) size their
OpenMP pools from ``OMP_NUM_THREADS`` when they first start, so the count must be set before they are
imported; each engine also takes ``threads`` as its own option (``EngineOptions.threads``), which the
Predictor passes.
"""

from __future__ import annotations

import os

from .errors import InputError

THREADS_ENV = "OMP_NUM_THREADS"


def _count(n: int) -> str:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"threads {n!r}: must be a whole number of 1 or more")
    return str(n)


def threads_env(n: int | None) -> dict[str, str]:
    """The environment variables that give a child process ``n`` threads ({} for None: the child inherits
    this process's); merge them into the child's environment."""
    return {} if n is None else {THREADS_ENV: _count(n)}


def apply_threads(n: int | None) -> None:
    """Give this process ``n`` threads from now on: call it before an engine or Paddle is imported (they
    read the count once, when they start). None leaves the count as it is."""
    os.environ.update(threads_env(n))
