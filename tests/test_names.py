"""Tomogram names that do not line up across pickers are reported, with the likely match."""

from __future__ import annotations

from picks.core.names import mismatch_warning, name_mismatches


def test_decorated_names_are_reported_with_their_match():
    names = {
        "cryolo": {"TS_01_1__ribosome", "TS_02__ribosome"},
        "deepfinder": {"TS_01_1_objl", "TS_02_objl"},
        "yolo": {"TS_01_1", "TS_02"},
    }
    found = {(m.picker, m.name): m for m in name_mismatches(names)}
    assert set(found) == {
        ("cryolo", "TS_01_1__ribosome"),
        ("cryolo", "TS_02__ribosome"),
        ("deepfinder", "TS_01_1_objl"),
        ("deepfinder", "TS_02_objl"),
        # no two pickers share a name here: the plain names are alone too
        ("yolo", "TS_01_1"),
        ("yolo", "TS_02"),
    }
    assert found[("deepfinder", "TS_01_1_objl")].matches == ("TS_01_1",)
    assert found[("deepfinder", "TS_01_1_objl")].others == ("yolo",)
    assert found[("yolo", "TS_02")].matches == ("TS_02__ribosome", "TS_02_objl")
    assert "looks like several" in found[("yolo", "TS_02")].describe()
    text = mismatch_warning(list(found.values()))
    assert "do not line up" in text and "tomogram=NAME" in text and "'TS_01_1'" in text


def test_a_tomogram_only_one_picker_found_anything_in_is_normal():
    names = {"a": {"TS_1", "TS_2", "TS_3"}, "b": {"TS_1", "TS_2"}}
    assert name_mismatches(names) == []
    assert mismatch_warning([]) is None


def test_a_picker_sharing_no_name_at_all_is_reported_even_without_a_match():
    names = {"a": {"TS_1", "TS_2"}, "b": {"TS_1", "TS_2"}, "c": {"run7", "run8"}}
    found = name_mismatches(names)
    assert [(m.picker, m.name, m.matches) for m in found] == [
        ("c", "run7", ()),
        ("c", "run8", ()),
    ]
    assert "used by no other picker" in found[0].describe()


def test_one_picker_has_nothing_to_compare_with():
    assert name_mismatches({"a": {"x"}}) == []


def test_aggregate_warns_when_a_picker_decorates_tomogram_names(tmp_path):
    from picks.core.store import Store
    from picks.workflows.aggregate import aggregate

    rows = [(100.0 * i, 200.0, 300.0) for i in range(1, 6)]
    plain = tmp_path / "a.csv"
    plain.write_text(
        "id,experiment,particle_type,x,y,z\n"
        + "".join(f"{i},TS_01,ribosome,{x},{y},{z}\n" for i, (x, y, z) in enumerate(rows))
    )
    decorated = tmp_path / "b.csv"
    decorated.write_text(
        "id,experiment,particle_type,x,y,z\n"
        + "".join(f"{i},TS_01_objl,ribosome,{x},{y},{z}\n" for i, (x, y, z) in enumerate(rows))
    )
    with Store(tmp_path / "p.db") as store:
        result = aggregate(
            store, [f"a={plain}", f"b={decorated}"], out=tmp_path / "o", formats=["csv"]
        )
    said = [w for w in result.warnings if "do not line up" in w]
    assert said and "b: tomogram 'TS_01_objl'" in said[0] and "'TS_01'" in said[0]
