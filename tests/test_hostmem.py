import sys

import pytest

from colorjax.training import hostmem


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_release_freed_memory_trims_on_glibc():
    assert hostmem.release_freed_memory() is True


def test_release_after_first_call_trims_once_and_passes_results(monkeypatch):
    releases = []
    monkeypatch.setattr(hostmem, "release_freed_memory", lambda: releases.append(1))
    double = hostmem.release_after_first_call(lambda x, *, factor=2: x * factor)
    assert double(3) == 6
    assert double(4, factor=3) == 12
    assert len(releases) == 1


def test_release_freed_memory_reports_missing_allocator(monkeypatch):
    monkeypatch.setattr(hostmem, "_malloc_trim", lambda: None)
    assert hostmem.release_freed_memory() is False
