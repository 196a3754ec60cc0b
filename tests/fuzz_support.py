"""Seeded mutation fuzzing of the readers (``picks import``) and ``picks convert``.

Used by ``tests/test_fuzz.py`` (a small sample) and ``benchmarks/bench_fuzz.py`` (≥ 1,000
mutated inputs per reader). Each case takes a real fixture file from
``shared/fixtures/formats/``, mutates its bytes with one of :data:`MUTATIONS` (seeded), and
runs it through the library import path (a store shared by the cases of one reader) or
:func:`picks.workflows.convert.convert`. The rule checked (:func:`run_case`): every outcome is
either a :class:`~picks.core.errors.PicksError` (what the CLI prints as one ``Error:`` line
with exit 1/2/3) that leaves the store unchanged, or a result whose coordinates are finite.
Anything else – another exception, non-finite coordinates, a changed store after an error –
is a failure, recorded with the mutation so it can be replayed.
"""

from __future__ import annotations

import json
import random
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# fixture file -> (adapter name, import options that make the original file readable)
T = {"tomogram": "TS_fuzz"}
READERS: dict[str, tuple[str, dict]] = {
    "copick/portal_copick.json": ("copick", T),
    "cryoet_portal_inputs/points_with_header.csv": ("points-csv", {"voxel_size": 10.0, **T}),
    "cryoet_portal_inputs/tardis.csv": ("tardis-csv", T),
    "cryolo/3d_particle.cbox": ("cryolo-cbox", {"voxel_size": 10.0, **T}),
    "czii_kaggle_submission/submission_voxel_grid_not_angstrom.csv": ("czii-csv", T),
    "deepfinder/object_list_tomo0.xml": ("deepfinder-xml", {"voxel_size": 10.0, **T}),
    "dynamo/t_double.tbl": (
        "dynamo-tbl",
        {"voxel_size": 10.0, "options": {"tomograms": "1=TS_a,2=TS_b"}},
    ),
    "eman2_box/2d_center.box": ("eman-box", {"voxel_size": 10.0, "options": {"z": "10"}, **T}),
    "imod/multiple_objects_example.mod": ("imod-mod", {"voxel_size": 10.0, **T}),
    "relion3_4/relion_4.0.star": ("relion4", {"voxel_size": 10.0, **T}),
    "relion5/R5_tutorial_run_data_excerpt.star": (
        "relion5",
        {"voxel_size": 10.0, "options": {"tomograms_star": "TOMOGRAMS_STAR"}, **T},
    ),
    "stopgap/portal_stopgap_star.star": ("stopgap", {"voxel_size": 10.0, **T}),
    "tomotwin/valid.tloc": ("tomotwin-tloc", {"voxel_size": 10.0, **T}),
    "warp2/warp2_particles_matching.star": ("warp2", {"voxel_size": 10.0, **T}),
}
# Larger text fixtures are cut to their first lines (headers included), so a case takes
# milliseconds, not seconds (the CZII submission has 31,103 rows).
MAX_LINES = 300
HUGE = ["9" * 400, "1e999", "-1e999", "nan", "NaN", "inf", "-inf", "1e308", "-0", "0x1p3"]
NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True) or [data]


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if out:
            out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def duplicate_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    i = rng.randrange(len(lines))
    return b"".join(lines[: i + 1] + [lines[i]] * rng.randint(1, 3) + lines[i + 1 :])


def drop_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    del lines[rng.randrange(len(lines))]
    return b"".join(lines)


def swap_lines(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return b"".join(lines)


def huge_number(data: bytes, rng: random.Random) -> bytes:
    found = list(NUMBER.finditer(data))
    if not found:
        return data + HUGE[0].encode()
    for match in rng.sample(found, min(len(found), rng.randint(1, 3))):
        token = rng.choice(HUGE).encode()
        data = data[: match.start()] + token + data[match.end() :]
        break  # offsets move after the first replacement
    return data


def bom(data: bytes, rng: random.Random) -> bytes:
    return b"\xef\xbb\xbf" + data


def cr_only(data: bytes, rng: random.Random) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", rng.choice([b"\r", b"\r\n"]))


def wide_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    width = rng.choice([1_000, 50_000, 250_000])
    sep = rng.choice([b" ", b",", b"\t"])
    wide = sep.join([b"1.5"] * width) + b"\n"
    i = rng.randrange(len(lines) + 1)
    return b"".join([*lines[:i], wide, *lines[i:]])


def long_field(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    i = rng.randrange(len(lines))
    return b"".join([*lines[:i], b"x" * 140000 + lines[i], *lines[i + 1 :]])


def deep_json(data: bytes, rng: random.Random) -> bytes:
    depth = rng.choice([1_000, 100_000])
    nested = b"[" * depth + b"1" + b"]" * depth
    if data.lstrip().startswith(b"{"):
        text = data.rstrip()
        if text.endswith(b"}"):
            return text[:-1] + b', "deep": ' + nested + b"}"
    return nested + b"\n" + data


def garbage_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 80))) + b"\n"
    i = rng.randrange(len(lines) + 1)
    return b"".join([*lines[:i], junk, *lines[i:]])


def nul_bytes(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + b"\x00" * rng.randint(1, 16) + data[i:]


def json_big_int(data: bytes, rng: random.Random) -> bytes:
    found = list(NUMBER.finditer(data))
    if not found:
        return data
    match = rng.choice(found)
    return data[: match.start()] + b"1" + b"0" * 400 + data[match.end() :]


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "flip": flip_bytes,
    "truncate": truncate,
    "dup-line": duplicate_line,
    "drop-line": drop_line,
    "swap-lines": swap_lines,
    "huge-number": huge_number,
    "bom": bom,
    "cr-endings": cr_only,
    "wide-line": wide_line,
    "long-field": long_field,
    "deep-json": deep_json,
    "garbage-line": garbage_line,
    "nul": nul_bytes,
    "big-int": json_big_int,
}


def seed_bytes(fixture: Path) -> bytes:
    """The fixture's bytes; a text file over :data:`MAX_LINES` lines is cut to them."""
    data = fixture.read_bytes()
    if b"\x00" in data[:4096] or data[:1] == b"\x80":
        return data  # binary (IMOD model, pickle): whole
    lines = data.splitlines(keepends=True)
    if len(lines) <= MAX_LINES:
        return data
    # XML keeps its closing line (</objlist>), so the cut file is still well-formed
    tail = lines[-1:] if fixture.suffix == ".xml" else []
    return b"".join(lines[:MAX_LINES] + tail)


def mutate(data: bytes, seed: int) -> tuple[str, bytes]:
    """One or two seeded mutations of ``data``: (names, bytes)."""
    rng = random.Random(seed)
    names = [rng.choice(sorted(MUTATIONS)) for _ in range(rng.choice([1, 1, 1, 2]))]
    for name in names:
        data = MUTATIONS[name](data, rng)
    return "+".join(names), data


@dataclass
class Tally:
    """Outcomes per reader: imported (finite coordinates), clean errors, failures."""

    cases: int = 0
    imported: int = 0
    errors: int = 0
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    by_mutation: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "cases": self.cases,
            "imported": self.imported,
            "clean_errors": self.errors,
            "failures": len(self.failures),
            "seconds": round(self.seconds, 1),
        }


def _store_counts(store) -> tuple[int, int]:
    return store.count("sources"), store.count("picks")


def run_case(kind: str, fixture: Path, relative: str, seed: int, work: Path, store, registry):
    """Mutate ``fixture`` with ``seed`` and run it through ``kind`` (import | convert).
    Returns (mutation, outcome, detail) with outcome imported | error | failure."""
    from picks.core.errors import PicksError
    from picks.workflows.convert import convert
    from picks.workflows.importing import import_file

    adapter, options = READERS[relative]
    if options.get("options", {}).get("tomograms_star") == "TOMOGRAMS_STAR":
        # the RELION 5 companion, unmutated, from next to the real file
        companion = str(next(fixture.parent.glob("*_tomograms.star")))
        options = {**options, "options": {"tomograms_star": companion}}
    mutation, data = mutate(seed_bytes(fixture), seed)
    case = work / f"case{seed}{fixture.suffix}"
    case.write_bytes(data)
    # half the cases name the adapter, half let detection choose (sniffers are fuzzed too)
    chosen = adapter if seed % 2 else "auto"
    try:
        if kind == "import":
            before = _store_counts(store)
            try:
                result = import_file(store, case, registry, adapter=chosen, **options)
            except PicksError as exc:
                if _store_counts(store) != before:
                    return mutation, "failure", f"store changed after an error: {exc}"
                return mutation, "error", str(exc)
            picks = store.picks(source_ids=[result.source_id], columns=["x", "y", "z"])
            coords = picks[["x", "y", "z"]].to_numpy(dtype=float)
            if not np.isfinite(coords).all():
                return mutation, "failure", "non-finite coordinates imported"
            return mutation, "imported", ""
        target = work / f"out{seed}.csv"
        try:
            convert(
                case,
                target,
                "czii-csv",
                registry,
                adapter=chosen,
                force=True,
                **options,
            )
        except PicksError as exc:
            return mutation, "error", str(exc)
        text = target.read_text()
        written = [line.split(",")[3:6] for line in text.splitlines()[1:] if line.strip()]
        values = np.array(written, dtype=float).reshape(-1, 3)
        if not np.isfinite(values).all():
            return mutation, "failure", "non-finite coordinates written"
        return mutation, "imported", ""
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return (
            mutation,
            "failure",
            f"{detail[:300]} ({traceback.extract_tb(exc.__traceback__)[-1]})",
        )
    finally:
        case.unlink(missing_ok=True)


def fuzz_reader(
    kind: str, formats_dir: Path, relative: str, seeds: range, work: Path, registry
) -> Tally:
    """Run ``seeds`` cases of one reader; one store (fresh per reader) holds the imports."""
    from picks.core.store import Store

    tally = Tally()
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with Store(work / f"fuzz-{kind}.db") as store:
        for seed in seeds:
            mutation, outcome, detail = run_case(
                kind, formats_dir / relative, relative, seed, work, store, registry
            )
            tally.cases += 1
            tally.by_mutation[mutation] = tally.by_mutation.get(mutation, 0) + 1
            if outcome == "imported":
                tally.imported += 1
            elif outcome == "error":
                tally.errors += 1
            else:
                tally.failures.append(
                    {"reader": relative, "seed": seed, "mutation": mutation, "detail": detail}
                )
    tally.seconds = time.perf_counter() - start
    return tally


def summary(tallies: dict[str, Tally]) -> str:
    return json.dumps({k: t.as_dict() for k, t in tallies.items()}, indent=2)
