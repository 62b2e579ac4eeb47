"""Threads in one place (runtime/threads.py): this process's count and a child process's environment."""

from __future__ import annotations

import pytest
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.threads import THREADS_ENV, apply_threads, threads_env


def test_apply_threads_sets_this_process_s_count(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    apply_threads(3)
    import os

    assert os.environ[THREADS_ENV] == "3"
    apply_threads(None)  # not given: left as it is
    assert os.environ[THREADS_ENV] == "3"


def test_threads_env_is_what_a_child_merges():
    assert threads_env(4) == {"OMP_NUM_THREADS": "4"}
    assert threads_env(None) == {}


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_a_count_that_is_not_a_positive_whole_number_is_one_line(bad, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    with pytest.raises(InputError, match=r"^threads .*: must be a whole number of 1 or more$"):
        apply_threads(bad)
    import os

    assert os.environ[THREADS_ENV] == "1"
