"""Errors shown to users as one ``Error: ...`` line (and a ``Hint: ...`` line where there is one).

Every message names the thing, the cause and, where there is one, the next step.
"""

from __future__ import annotations


class PicksError(Exception):
    """Base class: a problem the user can fix (bad input, missing option...)."""

    exit_code = 1
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class InputFormatError(PicksError):
    """A picker file does not match its format. Names the file and the line/record."""

    exit_code = 2

    def __init__(
        self,
        path: object,
        message: str,
        *,
        line: int | None = None,
        record: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = str(path)
        if line is not None:
            where += f", line {line}"
        elif record is not None:
            where += f", {record}"
        super().__init__(f"{where}: {message}", hint=hint)
        self.path = path
        self.line = line


class UnknownAdapter(PicksError):
    """No adapter by that name, or none recognised the file."""

    exit_code = 2


class AdapterConflict(PicksError):
    """Two plugins registered an adapter with the same name."""


class MissingVoxelSize(PicksError):
    """Coordinates are in voxels but no voxel size is known for the tomogram."""

    exit_code = 2
    hint = "Give `voxel_size` ÅNGSTROM, or register the tomogram with `tomograms` PATH."


class TomogramNameError(PicksError):
    """A tomogram name in a picker file matches no registered tomogram (or several)."""

    exit_code = 2


class OutOfExtent(PicksError):
    """Picks fall outside the tomogram: usually a unit, binning or voxel-size mistake."""

    exit_code = 2


class NotFound(PicksError):
    """An id (pick, consensus pick, run, source) the store does not hold, or a missing file."""

    exit_code = 3


class SchemaTooNew(PicksError):
    """The database was written by a newer picks with migrations this one does not know."""


class StoreBusy(PicksError):
    """Another picks command held the store's write lock for longer than we wait."""

    hint = (
        "Wait for the other picks command to finish, or raise $PICKS_BUSY_TIMEOUT (seconds); "
        "'picks runs' lists what is running."
    )
