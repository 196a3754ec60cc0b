"""DeepFinder object lists (``deepfinder-xml``) and SHREC'19 ground-truth text (``shrec-txt``).

Sources: ``shared/reference/formats.md`` §2, resting on deep-finder/cryoet-deepfinder
``deepfinder/utils/objl.py`` (``read_xml``/``write_xml``) and the SHREC'19 scripts shipped with
DeepFinder (``examples/analyze/evaluate.py``); fixtures ``fixtures/formats/deepfinder/``.

DeepFinder XML (``<objlist><object .../></objlist>``)
    Attributes: ``class_label`` (int, required), ``x y z`` (required), optional ``tomo_idx``,
    ``obj_id``, ``phi psi the`` and ``cluster_size``. ``x y z`` are named and stored as true
    x, y, z (``add_obj`` maps its ``(z, y, x)`` tuple back): **0-based voxel indices** of the
    volume that was segmented (MeanShift cluster centres, floats), converted to Å with
    ``ctx.voxels_to_angstrom`` (``--voxel-size``/``--binning``).
    Score = ``cluster_size`` (``score_field="cluster_size"``); our writer stores a non-integer
    score in an extra ``score`` attribute that DeepFinder ignores, read back as
    ``score_field="score"``.
    Classes: ``class_label`` is an integer (1-based; 0 is background). Names come from
    ``--option labels=1=apo-ferritin,2=ribosome`` (or a file: lines ``1 ribosome`` or JSON
    ``{"1": "ribosome"}``), else from a ``picks labels:`` comment our writer leaves in the
    file, else ``--particle`` when the file holds a single class, else the label itself
    (``"3"``). ``particle_field="class_label"``.
    Tomograms: ``--option tomograms=0=TS_01,1=TS_02`` maps ``tomo_idx`` to names (a ``picks
    tomograms:`` comment does the same for files we wrote). Without a map, a file whose objects
    share one ``tomo_idx`` (or have none) belongs to ``--tomogram`` or the file name; several
    ``tomo_idx`` without a map is an error.
    Angles (choice made here): ``phi psi the`` are kept **raw** in ``original`` (JSON of the
    attributes) and ``rot/tilt/psi`` stay NaN, with ``angle_convention="deepfinder-phi-psi-the"``.
    DeepFinder never applies these angles itself (it only carries SHREC's values through), the
    SHREC'19 scripts name the same three columns ``rot_X rot_Y rot_Z`` in one place and
    ``rot_1 rot_2 rot_3`` in another, and Scipion's DeepFinder plugin swaps ``phi`` and ``psi``
    (formats.md §2): no source fixes the rotation order and sense, and a wrong ZYZ conversion
    would look trustworthy. The writer puts raw angles back when a pick still carries them.
    Parsing uses expat with DTDs refused (no entity expansion); record = 0-based object index,
    errors name the XML line.

SHREC'19 ``particle_locations_model_N.txt`` (``shrec-txt``)
    ``pdb_id c2 c3 c4 a1 a2 a3`` per line. formats.md §2 lists the columns as ``x y z``, but the
    organisers' own scripts read them as **``Z Y X``** (``pdb_id, Z, Y, X, rot_1, rot_2, rot_3
    = line.split()`` and index the ``(z, y, x)`` mrcfile array as ``[Z, Y, X]``), and the fixture
    agrees: column 2 spans 5–194 (the 200-slice ground-truth volume) while columns 3–4 reach 511
    (512 × 512 in-plane), just as DeepFinder's own objl of SHREC'19 has z ≤ 192. So the default
    is ``--option order=zyx``; ``order=xyz`` reads later SHREC files written x-first. Values are
    0-based voxel indices of the ground-truth volume; the reconstructions have 512 slices with
    the ground truth starting at slice 156, so ``--option z_offset=156`` places picks in the
    reconstruction's frame (default 0). Class = ``pdb_id`` (``particle_field="pdb_id"``), no
    score; angles kept raw as above (``angle_convention="shrec-raw-euler"``). One file per
    tomogram (``--tomogram`` or the file name).

Not read: DeepFinder's ``objl.write_txt`` output (``label z y x``, whose own reader swaps
x and z, formats.md §2) and ``.xlsx`` object lists.

Writer (``deepfinder-xml``): one XML for all picks (``layout="file"``). ``class_label`` from
``--option labels`` where it names the class; an unnamed class read as ``"3"`` keeps 3; other
classes take the free numbers from 1 in sorted order (``_labels.assign_numbers``); the map is
written in an XML comment (``picks labels: 1=apo-ferritin 2=ribosome``), as is the ``tomo_idx``
map (tomograms in sorted order). Coordinates in voxels with 6 decimals (DeepFinder writes 3;
6 keep Å round trips below 1e-3 Å), ``cluster_size`` = score when it is integer-like,
``obj_id`` = running index, ``consensus_id`` as an extra attribute when present.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from xml.parsers import expat

import numpy as np
import pandas as pd

from picks.adapters import _labels
from picks.adapters._fields import (
    data_lines,
    fmt,
    head_rows,
    integer_text,
    is_integer,
    is_number,
    number,
    read_text,
)
from picks.adapters._options import option_choice, option_number
from picks.core import picks as canonical
from picks.plugins.adapter import Adapter, ReadContext, WriteContext, head

ANGLE_CONVENTION = "deepfinder-phi-psi-the"
SHREC_ANGLE_CONVENTION = "shrec-raw-euler"
_ANGLES = ("phi", "psi", "the")


class _Element:
    __slots__ = ("attrs", "line")

    def __init__(self, attrs: dict[str, str], line: int) -> None:
        self.attrs = attrs
        self.line = line


def _parse_objlist(data: bytes, ctx: ReadContext) -> tuple[list[_Element], list[str]]:
    """``<object>`` elements (attributes + line) and the comments of an objlist XML."""
    parser = expat.ParserCreate()
    objects: list[_Element] = []
    comments: list[str] = []
    depth = 0
    root: list[str] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        if depth == 1:
            root.append(name)
            if name != "objlist":
                raise ctx.error(
                    f"root element is <{name}>, expected <objlist>", line=parser.CurrentLineNumber
                )
        elif depth == 2:
            if name != "object":
                raise ctx.error(
                    f"unexpected <{name}> in <objlist>, expected <object>",
                    line=parser.CurrentLineNumber,
                )
            objects.append(_Element(dict(attrs), parser.CurrentLineNumber))

    def end(_name: str) -> None:
        nonlocal depth
        depth -= 1

    def doctype(*_args: object) -> None:
        raise ctx.error(
            "DOCTYPE declarations are not accepted in an object list", line=parser.CurrentLineNumber
        )

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CommentHandler = comments.append
    parser.StartDoctypeDeclHandler = doctype
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise ctx.error(
            f"not well-formed XML ({expat.ErrorString(exc.code)})", line=exc.lineno
        ) from None
    if not root:
        raise ctx.error("no <objlist> element", line=1)
    return objects, comments


class DeepFinderXmlAdapter(Adapter):
    name = "deepfinder-xml"
    picker = "DeepFinder"
    patterns = ("*.xml",)
    extension = ".xml"
    layout = "file"
    class_field = "optional"  # class_label is a number, invented for picks without one

    def sniff(self, path: Path) -> float:
        text = head(path)
        if "<objlist" in text:
            return 0.9
        return 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        data = path.read_bytes()
        if not data.strip():
            raise ctx.error(
                "empty file: no picks (expected <objlist><object .../></objlist>)", line=1
            )
        objects, comments = _parse_objlist(data, ctx)
        if not objects:
            raise ctx.error("the <objlist> holds no <object> elements", line=1)
        comment_text = "\n".join(comments)
        labels = _labels.class_map(ctx.options.get("labels")) or _labels.comment_map(
            comment_text, "labels"
        )
        tomo_map = _labels.parse_int_map(ctx.options.get("tomograms"), "tomograms") or (
            _labels.comment_map(comment_text, "tomograms") if not ctx.tomogram else {}
        )

        cols: dict[str, list] = {
            k: []
            for k in (
                "x",
                "y",
                "z",
                "score",
                "score_field",
                "angle_convention",
                "record",
                "original",
            )
        }
        label_of: list[int] = []
        tidx_of: list[int | None] = []
        for k, element in enumerate(objects):
            attrs = element.attrs

            def value(name: str, *, integral: bool = False, k=k, element=element) -> float:
                # The rules of picks.adapters._fields; the message quotes the XML attribute.
                token = element.attrs[name]
                if not (is_integer(token) if integral else is_number(token)):
                    kind = "an integer" if integral else "a number"
                    raise ctx.error(
                        f"<object> #{k}: {name}={token!r} is not {kind}", line=element.line
                    )
                return float(token)

            for required in ("class_label", "x", "y", "z"):
                if required not in attrs:
                    raise ctx.error(
                        f"<object> #{k} lacks the required attribute {required!r}",
                        line=element.line,
                    )
            label_of.append(int(value("class_label", integral=True)))
            has = {a for a, v in attrs.items() if v.strip() != ""}
            tidx_of.append(int(value("tomo_idx", integral=True)) if "tomo_idx" in has else None)
            for axis in "xyz":
                cols[axis].append(value(axis))
            if "cluster_size" in has:
                cols["score"].append(value("cluster_size"))
                cols["score_field"].append("cluster_size")
            elif "score" in has:
                cols["score"].append(value("score"))
                cols["score_field"].append("score")
            else:
                cols["score"].append(math.nan)
                cols["score_field"].append(None)
            angles = [value(a) for a in _ANGLES if a in has]
            cols["angle_convention"].append(ANGLE_CONVENTION if angles else None)
            cols["record"].append(k)
            cols["original"].append(json.dumps(attrs, sort_keys=True))

        single = ctx.particle if len(set(label_of)) == 1 else None
        cols["particle"] = [
            ctx.particle_name(_labels.name_for(lbl, labels, single)) for lbl in label_of
        ]
        cols["tomogram"] = self._tomograms(tidx_of, tomo_map, objects, ctx)
        frame = canonical.make(cols, particle_field="class_label")
        return ctx.voxels_to_angstrom(frame)

    @staticmethod
    def _tomograms(
        tidx: list[int | None], tomo_map: dict[int, str], objects: list[_Element], ctx: ReadContext
    ) -> list[str]:
        if tomo_map:
            resolved: dict[int, str] = {}
            out = []
            for k, t in enumerate(tidx):
                if t is None:
                    out.append(ctx.tomogram_from_path())
                    continue
                if t not in tomo_map:
                    raise ctx.error(
                        f"<object> #{k}: tomo_idx {t} is not in the tomogram map "
                        f"({', '.join(f'{i}={n}' for i, n in sorted(tomo_map.items()))})",
                        line=objects[k].line,
                    )
                if t not in resolved:
                    resolved[t] = ctx.resolve_tomogram(tomo_map[t])
                out.append(resolved[t])
            return out
        distinct = sorted({t for t in tidx if t is not None})
        if len(distinct) > 1:
            first = next(k for k, t in enumerate(tidx) if t == distinct[1])
            raise ctx.error(
                f"objects belong to {len(distinct)} tomograms (tomo_idx {', '.join(map(str, distinct[:10]))}) "
                "and no map names them: give `options` tomograms=0=NAME,1=NAME,...",
                line=objects[first].line,
            )
        name = ctx.tomogram_from_path()
        return [name] * len(tidx)

    def write(self, picks: pd.DataFrame, path: Path, ctx: WriteContext) -> None:
        given = _labels.class_map(ctx.options.get("labels"))
        numbers = _labels.assign_numbers(picks["particle"].tolist(), given)
        tomograms = sorted(picks["tomogram"].astype(str).unique())
        tomo_index = {name: i for i, name in enumerate(tomograms)}
        vox = ctx.angstrom_to_voxels(picks)
        label_map = {n: name for name, n in numbers.items()}
        out = [
            f"<!-- {_labels.format_comment_map('labels', label_map)} -->",
            f"<!-- {_labels.format_comment_map('tomograms', {i: n for n, i in tomo_index.items()})} -->",
            "<objlist>",
        ]
        n = len(picks)
        xyz = vox[["x", "y", "z"]].to_numpy(dtype=float)
        scores = picks["score"].to_numpy(dtype=float)
        particles = picks["particle"].to_numpy(dtype=object)
        names = picks["tomogram"].astype(str).to_numpy()
        conventions = (
            picks["angle_convention"].to_numpy(dtype=object)
            if "angle_convention" in picks
            else np.full(n, None)
        )
        originals = (
            picks["original"].to_numpy(dtype=object) if "original" in picks else np.full(n, "")
        )
        consensus = (
            picks["consensus_id"].to_numpy(dtype=object) if "consensus_id" in picks else None
        )
        for i in range(n):
            particle = particles[i]
            key = _labels.class_key(particle)
            attrs = {
                "tomo_idx": str(tomo_index[names[i]]),
                "obj_id": str(i),
                "class_label": str(numbers[key]),
                "x": fmt(xyz[i, 0]),
                "y": fmt(xyz[i, 1]),
                "z": fmt(xyz[i, 2]),
            }
            if conventions[i] == ANGLE_CONVENTION:
                attrs.update(_raw_angles(originals[i]))
            score = scores[i]
            if math.isfinite(score):
                if score == int(score) and abs(score) < 2**53:
                    attrs["cluster_size"] = str(int(score))
                else:
                    attrs["score"] = repr(float(score))
            if consensus is not None and pd.notna(consensus[i]):
                attrs["consensus_id"] = integer_text(consensus[i])
            body = " ".join(f'{k}="{_escape(v)}"' for k, v in attrs.items())
            out.append(f"  <object {body}/>")
        out.append("</objlist>")
        path.write_text("\n".join(out) + "\n", encoding="utf-8")


def _raw_angles(original: object) -> dict[str, str]:
    """The raw DeepFinder angles kept in a pick's ``original`` (JSON of the XML attributes)."""
    try:
        record = json.loads(str(original or "{}"))
    except ValueError:
        return {}
    if not isinstance(record, dict):
        return {}
    return {a: str(record[a]) for a in _ANGLES if a in record and is_number(str(record[a]))}


def _escape(value: str) -> str:
    return (
        value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


class ShrecTxtAdapter(Adapter):
    name = "shrec-txt"
    picker = "SHREC ground truth"
    patterns = ("*.txt",)
    layout = "per_tomogram"

    def sniff(self, path: Path) -> float:
        rows = head_rows(path)
        if not rows:
            return 0.0
        shaped = all(
            len(r) == 7 and not is_number(r[0]) and all(is_number(t) for t in r[1:]) for r in rows
        )
        if not shaped:
            return 0.0
        return 0.8 if path.name.lower().startswith("particle_locations") else 0.5

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        names = option_choice(
            ctx.options,
            "order",
            {"zyx": ("Z", "Y", "X"), "xyz": ("X", "Y", "Z")},
            "zyx",
            expected="'zyx' (SHREC'19, default) or 'xyz'",
        )
        z_offset = option_number(ctx.options, "z_offset", expected="a number of voxels") or 0.0
        lines = data_lines(read_text(path, ctx))
        if not lines:
            raise ctx.error("empty file: no picks (expected lines 'pdb_id Z Y X a1 a2 a3')", line=1)
        cols: dict[str, list] = {k: [] for k in ("particle", "x", "y", "z", "record", "original")}
        for line in lines:
            if len(line.fields) != 7:
                raise ctx.error(
                    f"expected 7 fields 'pdb_id Z Y X a1 a2 a3', found {len(line.fields)}",
                    line=line.number,
                )
            values = dict(
                zip(
                    names,
                    (
                        number(t, ctx, line.number, n)
                        for t, n in zip(line.fields[1:4], names, strict=True)
                    ),
                    strict=True,
                )
            )
            for k, token in enumerate(line.fields[4:], start=1):
                number(token, ctx, line.number, f"angle {k}")
            cols["particle"].append(ctx.particle_name(line.fields[0]))
            cols["x"].append(values["X"])
            cols["y"].append(values["Y"])
            cols["z"].append(values["Z"] + z_offset)
            cols["record"].append(line.number)
            cols["original"].append(line.text.strip())
        cols["tomogram"] = [ctx.tomogram_from_path()] * len(lines)
        frame = canonical.make(
            cols, particle_field="pdb_id", angle_convention=SHREC_ANGLE_CONVENTION
        )
        return ctx.voxels_to_angstrom(frame)
