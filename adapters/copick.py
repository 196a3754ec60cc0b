"""copick picks JSON, single files or whole copick project folders (no copick install needed).

Convention (``shared/reference/formats.md`` §5; copick/copick:src/copick/models.py,
src/copick/util/relion.py):

* one file per (run, user, session, object): ``pickable_object_name``, ``user_id``,
  ``session_id``, ``run_name`` (may be null), ``voxel_spacing``, ``unit`` (default
  ``"angstrom"``), ``trust_orientation`` and ``points[]`` with ``location {x, y, z}``,
  ``transformation_`` (4×4), ``instance_id`` and ``score``;
* ``location`` is in Å with the origin at the centre of voxel 0 (``Å = voxel index × spacing``,
  what copick's own importers and its Data-Portal backend do) — already the canonical frame;
* ``transformation_`` is the object-to-tomogram transform: its 3×3 block is
  ``Rotation.from_euler("ZYZ", (rot, tilt, psi)).inv()`` of RELION's angles (copick's
  ``relion_rows_to_poses``), read back here as RELION ZYZ angles with
  ``angle_convention = "copick-matrix"``; its last column is an extra shift in Å that copick
  *adds* to the location when it exports positions ("positions include the transforms'
  translations"), so the canonical position is ``location + transformation_[:3, 3]``. The
  bottom row must be ``[0, 0, 0, w]`` (divided by ``w``);
* ``trust_orientation: false`` -> angles are NaN (the rotation carries no information);
* units other than Å: ``nanometer`` (× 10) and ``pixel``/``voxel`` (converted with
  ``--voxel-size``, the registered tomogram, or the file's ``voxel_spacing``); anything else is
  an error;
* score = ``score`` (copick's default 1.0 when absent); class = ``pickable_object_name``
  (``particle_field``), falling back to the file name;
* tomogram = ``--tomogram``, else ``run_name``, else — for copick projects — the folder name in
  ``ExperimentRuns/<run>/Picks/<file>.json``, else the file name. When ``run_name`` and the
  folder disagree the file's ``run_name`` wins and a warning names both.

Project folders: ``picks import PROJECT`` expands to every ``*.json`` under it
(``ExperimentRuns/<run>/Picks/<user>_<session>_<object>.json`` and the Kaggle naming
``Picks/<object>.json``; files inside ``*.zarr`` stores are skipped by the importer).
``--option user=NAME`` / ``--option session=ID`` import only the files of that user/session
(other files import as empty sources, with a warning). OME-Zarr tomograms of a project
(``ExperimentRuns/<run>/VoxelSpacing<s>/<type>.zarr``) are registered with ``--tomograms
PROJECT`` and named after their run.

Writer (layout ``directory``): given a copick overlay root (or an empty folder) it writes
``ExperimentRuns/<tomogram>/Picks/<user>_<session>_<particle>.json`` per tomogram and class
with ``user_id = --option user`` (default ``picks``) and ``session_id = --option session``
(default ``consensus``), unit Å, ``transformation_`` from the angles (identity for a pick
without angles; ``trust_orientation`` is true only when every pick of the file has angles),
``score`` (1.0, copick's default, when a pick has none) and ``instance_id = consensus_id`` when
present (else 0). It also writes ``copick_config.json`` in the folder (copick's filesystem
config: ``overlay_root`` the folder, one pickable object per class with label, colour and
radius in Å), so ``copick.from_file`` opens the output as it is; an existing config there is
kept and only gains the classes it lacks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from picks.adapters._euler import is_rotation, relion_angles, relion_matrix
from picks.adapters._fields import json_number, parse_json, read_text
from picks.adapters._options import ANGSTROM_UNITS, VOXEL_UNITS
from picks.adapters._voxels import with_voxel_size
from picks.core import picks as canonical
from picks.core.errors import PicksError
from picks.core.files import atomic_path, safe_name
from picks.plugins.adapter import Adapter, ReadContext, WriteContext, head

CONFIG_FILE = "copick_config.json"
# Colours of new pickable objects, by label (matplotlib's tab10, RGBA): stable across runs.
PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)

UNIT_FACTORS = {**dict.fromkeys(ANGSTROM_UNITS, 1.0), "nanometer": 10.0, "nm": 10.0}


def run_from_path(path: Path) -> str | None:
    """``…/ExperimentRuns/<run>/Picks/<file>.json`` -> ``<run>`` (None outside that layout)."""
    parent = path.parent
    if (
        parent.name == "Picks"
        and parent.parent.name
        and parent.parent.parent.name == "ExperimentRuns"
    ):
        return parent.parent.name
    return None


class CopickAdapter(Adapter):
    name = "copick"
    picker = "copick"
    patterns = ("*.json",)
    extension = ".json"
    layout = "directory"
    class_field = "required"  # a picks file is per object: no class, no file name

    def sniff(self, path: Path) -> float:
        text = head(path)
        if '"pickable_object_name"' in text and '"points"' in text:
            return 0.95
        if '"pickable_object_name"' in text:
            return 0.8
        return 0.0

    # -- reading -----------------------------------------------------------------------------

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        text = read_text(path, ctx)
        if not text.strip():
            raise ctx.error("empty file; expected a copick picks JSON object", line=1)
        doc = parse_json(text, ctx)
        if not isinstance(doc, dict) or not isinstance(doc.get("points", []), list):
            raise ctx.error(
                "expected a JSON object with a 'points' list (copick picks file)", line=1
            )
        if "pickable_object_name" not in doc and "points" not in doc:
            raise ctx.error(
                "no 'pickable_object_name' or 'points': not a copick picks file", line=1
            )
        if not self._selected(doc, ctx):
            return canonical.empty()
        tomogram = self._tomogram(doc, path, ctx)
        particle_raw = doc.get("pickable_object_name") or self._object_from_name(path)
        particle = ctx.particle_name(particle_raw)
        points = doc.get("points") or []
        trust = doc.get("trust_orientation", True) is not False
        coords = np.zeros((len(points), 3))
        rotations = np.tile(np.eye(3), (len(points), 1, 1))
        scores = np.ones(len(points))
        originals = []
        for i, point in enumerate(points):
            coords[i], rotations[i], scores[i] = self._point(point, i, ctx)
            originals.append(json.dumps(point, separators=(",", ":")))
        nan = np.full(len(points), np.nan)
        rot, tilt, psi = relion_angles(rotations) if trust else (nan, nan, nan)
        frame = canonical.make(
            {
                "tomogram": [tomogram] * len(points),
                "particle": [particle] * len(points),
                "x": coords[:, 0],
                "y": coords[:, 1],
                "z": coords[:, 2],
                "score": scores,
                "rot": rot,
                "tilt": tilt,
                "psi": psi,
                "record": np.arange(len(points)),
                "original": originals,
            },
            particle_field="pickable_object_name",
            score_field="score",
            angle_convention="copick-matrix" if trust else None,
        )
        return self._to_angstrom(frame, doc, ctx)

    def _selected(self, doc: dict, ctx: ReadContext) -> bool:
        for key, field in (("user", "user_id"), ("session", "session_id")):
            wanted = ctx.options.get(key)
            if wanted is not None and str(doc.get(field)) != wanted:
                ctx.warn(
                    f"skipped: {field} is {doc.get(field)!r}, not {wanted!r} (`options` {key}={wanted})"
                )
                return False
        return True

    @staticmethod
    def _object_from_name(path: Path) -> str:
        # copick: <user>_<session>_<object>.json; Kaggle: <object>.json
        parts = path.stem.split("_", 2)
        return parts[2] if len(parts) == 3 else path.stem

    @staticmethod
    def _tomogram(doc: dict, path: Path, ctx: ReadContext) -> str:
        if ctx.tomogram:
            return ctx.resolve_tomogram(ctx.tomogram)
        run_name = doc.get("run_name")
        folder = run_from_path(path)
        if run_name not in (None, ""):
            if folder and folder != str(run_name):
                ctx.warn(
                    f"run_name {run_name!r} in the file differs from its run folder {folder!r}; using {run_name!r}"
                )
            return ctx.resolve_tomogram(str(run_name))
        if folder:
            return ctx.resolve_tomogram(folder)
        return ctx.tomogram_from_path()

    @staticmethod
    def _point(point: object, i: int, ctx: ReadContext) -> tuple[np.ndarray, np.ndarray, float]:
        where = f"points[{i}]"
        if not isinstance(point, dict) or not isinstance(point.get("location"), dict):
            raise ctx.error("expected an object with a 'location' {x, y, z}", record=where)
        location = [
            json_number(point["location"].get(axis), ctx, f"location.{axis}", record=where)
            for axis in ("x", "y", "z")
        ]
        transform = point.get("transformation_")
        shift = np.zeros(3)
        rotation = np.eye(3)
        if transform is not None:
            try:
                matrix = np.array(transform, dtype=float)
            except (TypeError, ValueError, OverflowError):
                matrix = np.empty(0)
            if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
                raise ctx.error("transformation_ must be a 4×4 list of numbers", record=where)
            if np.abs(matrix[3, :3]).max() > 1e-6 or abs(matrix[3, 3]) < 1e-8:
                raise ctx.error(
                    f"transformation_ bottom row must be [0, 0, 0, w], found {matrix[3].tolist()}",
                    record=where,
                )
            matrix = matrix / matrix[3, 3]
            if not is_rotation(matrix[:3, :3]):
                raise ctx.error("transformation_[:3, :3] is not a rotation matrix", record=where)
            rotation, shift = matrix[:3, :3], matrix[:3, 3]
        score = json_number(point.get("score", 1.0), ctx, "score", record=where, allow_missing=True)
        return np.asarray(location) + shift, rotation, score

    @staticmethod
    def _to_angstrom(frame: pd.DataFrame, doc: dict, ctx: ReadContext) -> pd.DataFrame:
        unit = str(doc.get("unit") or "angstrom").strip().lower()
        if unit in UNIT_FACTORS:
            factor = UNIT_FACTORS[unit]
            if factor != 1.0:
                frame[canonical.COORDS] = frame[canonical.COORDS] * factor
            return frame
        if unit in VOXEL_UNITS:
            spacing = doc.get("voxel_spacing")
            spacing = (
                float(spacing)
                if isinstance(spacing, int | float) and 0 < spacing < 1e6  # no 400-digit ints
                else None
            )
            names = sorted(frame["tomogram"].unique())
            return with_voxel_size(
                ctx, names, spacing, "the file's voxel_spacing"
            ).voxels_to_angstrom(frame)
        raise ctx.error(
            f"unit {doc.get('unit')!r} is not supported; expected angstrom, nanometer or voxel",
            record="field 'unit'",
        )

    # -- writing -----------------------------------------------------------------------------

    def write(self, picks: pd.DataFrame, path: Path, ctx: WriteContext) -> None:
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise PicksError(f"{root} is a file; the copick writer needs a copick project folder")
        user = str(ctx.options.get("user", "picks"))
        session = str(ctx.options.get("session", "consensus"))
        force = bool(ctx.options.get("force", False))
        groups = {}
        keyed = picks.assign(_particle=picks["particle"].fillna("particle").astype(str))
        for (tomogram, particle), group in keyed.groupby(["tomogram", "_particle"], sort=True):
            name = f"{safe_name(user)}_{safe_name(session)}_{safe_name(particle)}.json"
            target = root / "ExperimentRuns" / safe_name(str(tomogram)) / "Picks" / name
            if target in groups:  # checked before anything is written
                seen = groups[target]
                raise PicksError(
                    f"two outputs would be written to one file {target}: tomogram/class "
                    f"{seen[0]!r}/{seen[1]!r} and {str(tomogram)!r}/{particle!r} (names are "
                    "made file-safe: characters outside A-Za-z0-9._+- become '_')",
                    hint="Rename one of the classes or tomograms so their file names differ.",
                )
            groups[target] = (str(tomogram), particle, group)
        clashes = [str(p) for p in groups if p.exists()]
        if clashes and not force:
            raise PicksError(
                f"{', '.join(clashes[:5])} exist(s)", hint="Use `force=True` to replace."
            )
        config_path = self.companions(root, ctx.options)[0]
        config = project_config(
            config_path,
            root,
            sorted({particle for _, particle, _ in groups.values()}),
            ctx.options.get("radii") or {},
            user,
            session,
        )
        written = []
        for target, (tomogram, particle, group) in groups.items():
            document = self._document(group, tomogram, particle, user, session)
            with atomic_path(target, force=force) as tmp:
                tmp.write_text(json.dumps(document, indent=2), encoding="utf-8")
            written.append(target)
        existed = config_path.exists()
        # an existing project config is updated in place, with or without --force: it may be
        # the user's own project, which only gains the classes it lacks
        with atomic_path(config_path, force=True) as tmp:
            tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        ctx.options["written"] = written  # the picks files (each reads back as picks)
        ctx.options["project_files"] = [config_path]
        # a config that was there before is the user's unless picks wrote it (the caller
        # knows): it must not be removed as an unfinished run's file
        ctx.options["updated"] = [config_path] if existed else []

    def companions(self, target: Path, options: dict) -> list[Path]:
        return [Path(target) / CONFIG_FILE]

    @staticmethod
    def _document(
        group: pd.DataFrame, tomogram: str, particle: str, user: str, session: str
    ) -> dict:
        angles = group[canonical.ANGLES].to_numpy(dtype=float)
        has_angles = np.isfinite(angles).all(axis=1)
        rotations = np.tile(np.eye(3), (len(group), 1, 1))
        if has_angles.any():
            rotations[has_angles] = relion_matrix(*angles[has_angles].T)
        coords = group[canonical.COORDS].to_numpy(dtype=float)
        scores = group["score"].to_numpy(dtype=float)
        ids = group["consensus_id"].to_numpy() if "consensus_id" in group else np.zeros(len(group))
        points = []
        for i in range(len(group)):
            transform = np.eye(4)
            transform[:3, :3] = rotations[i]
            instance = ids[i]
            points.append(
                {
                    "location": {
                        "x": float(coords[i, 0]),
                        "y": float(coords[i, 1]),
                        "z": float(coords[i, 2]),
                    },
                    "transformation_": transform.tolist(),
                    "instance_id": int(instance) if pd.notna(instance) else 0,
                    "score": float(scores[i]) if np.isfinite(scores[i]) else 1.0,
                }
            )
        return {
            "pickable_object_name": particle,
            "user_id": user,
            "session_id": session,
            "run_name": tomogram,
            "voxel_spacing": None,
            "unit": "angstrom",
            "points": points,
            "trust_orientation": bool(has_angles.all()) if len(group) else True,
        }


def project_config(
    path: Path,
    root: Path,
    classes: list[str],
    radii: dict,
    user: str,
    session: str,
) -> dict:
    """The copick project config (copick's ``CopickConfigFSSpec``) that opens ``root`` with
    ``copick.from_file``: ``config_type`` filesystem, ``overlay_root`` ``local://<root>``
    (absolute: copick resolves it from the working folder, not from the config's) and a
    pickable object per class. An existing config at ``path`` is kept and only gains the
    classes it lacks: new labels continue after its largest (labels are 1.. in sorted class
    order for a new config), radius from ``radii`` (Å) or picks' particle catalog."""
    from picks.core.particles import Catalog

    if path.exists():
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PicksError(
                f"{path}: not a readable copick config ({exc})",
                hint="Fix or remove it; picks adds its classes to a valid one.",
            ) from None
        if not isinstance(config, dict) or not isinstance(config.get("pickable_objects", []), list):
            raise PicksError(f"{path}: not a copick config (no pickable_objects list)")
    else:
        config = {
            "config_type": "filesystem",
            "name": "picks consensus",
            "description": "Consensus picks written by picks",
            "version": "0.2.0",
            "user_id": user,
            "session_id": session,
            "overlay_root": f"local://{Path(root).resolve()}",
            "overlay_fs_args": {"auto_mkdir": True},
            "pickable_objects": [],
        }
    objects = config.setdefault("pickable_objects", [])
    known = {str(o.get("name")) for o in objects if isinstance(o, dict)}
    labels = [o.get("label") for o in objects if isinstance(o, dict)]
    label = max([int(v) for v in labels if isinstance(v, int)], default=0)
    catalog = Catalog().with_radii({str(k): float(v) for k, v in radii.items() if v})
    for name in classes:
        if name in known:
            continue
        label += 1
        objects.append(
            {
                "name": name,
                "is_particle": True,
                "label": label,
                "color": [*PALETTE[(label - 1) % len(PALETTE)], 255],
                "radius": catalog.radius(name) if name in catalog else None,
            }
        )
    return config
