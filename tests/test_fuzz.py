"""Fuzzing the readers and ``picks convert`` with seeded mutations of the real fixture files.

Every outcome must be a clean :class:`~picks.core.errors.PicksError` (one ``Error:`` line,
exit 1/2/3) that leaves the store unchanged, or an import whose coordinates are finite:
never a traceback. ``benchmarks/bench_fuzz.py`` runs the same cases at ≥ 1,000 per reader.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzz_support import MUTATIONS, READERS, fuzz_reader, mutate

SHARED_FORMATS = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "formats"
SEEDS = 30  # per reader and path: 14 readers × 2 paths × 30 = 840 cases, ~20 s


@pytest.fixture(scope="module")
def formats() -> Path:
    if not SHARED_FORMATS.is_dir():
        pytest.skip(f"{SHARED_FORMATS} is absent: the fuzz cases mutate its real files")
    return SHARED_FORMATS


def test_mutations_are_seeded_and_change_the_bytes():
    data = b"a 1 2 3\nb 4 5 6\n"
    assert mutate(data, 7) == mutate(data, 7)
    changed = sum(mutate(data, seed)[1] != data for seed in range(200))
    assert changed > 150
    assert {name for seed in range(400) for name in mutate(data, seed)[0].split("+")} == set(
        MUTATIONS
    )


@pytest.mark.parametrize("kind", ["import", "convert"])
@pytest.mark.parametrize("relative", sorted(READERS))
def test_fuzzed_fixture_never_gives_a_traceback(formats, tmp_path, registry, kind, relative):
    tally = fuzz_reader(kind, formats, relative, range(SEEDS), tmp_path, registry)
    assert tally.failures == []
    assert tally.imported + tally.errors == SEEDS
