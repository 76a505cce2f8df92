"""A frame's Arrow file: columns compressed where it pays, and columns an input file already
holds referenced instead of written again.

**Compressed where it pays.** A frame of :data:`SPLIT_FROM` bytes or more in Arrow writes
each column's middle 65,536 rows both ways first; a column whose sample zstd (level 1) shrinks
by less than :data:`MIN_SAVING` (random floats: 4%) is kept plain, to be read memory-mapped
without decompressing (pandas still copies it into its own blocks). The data file is then
Arrow IPC files back to back ("parts"): the compressed columns' first, the plain ones'
second; the manifest gives each part's length.

**Referenced, not written again.** A step that loads a big frame, adds two columns and hands
it on used to write the whole frame again. In a run of `jupyter mlops run`, whose step
folders stay side by side in the run's ``artifacts`` folder (:func:`may_refer`), a frame saved
into a step folder is compared with the frames this process loaded from its siblings: each
fixed-width column without nulls (numbers, datetimes) byte for byte with the loaded file's
plain part. An identical column is not written but referenced: step, artifact, the file's
sha256, the part and the column names. The reference is in the first part's schema
metadata, inside the hashed bytes, so the run store's hash of this file binds the hash of
every file it refers to; a reader checks each referenced file's sha256 before it uses a
column of it. Only plain parts are referenced (a column of a compressed part costs little to
write again and would have to be decompressed to compare), and only files the step itself
loaded: a reference names the file that holds the bytes, never another reference.

Every file is hashed and read through one descriptor (:func:`._files.open_once`), and a
loaded file is compared through the descriptor it was hashed through: a name renamed over
meanwhile never lets one file be checked and another read. A manifest says the format
("arrow" for one Arrow file, "arrow-parts" for parts or references) but is not hashed; a
file read as "arrow" that refers to others, or lacks a column its pandas metadata names, is
refused rather than read in part. What restores the frame's labels (:data:`.frames.RESTORE`)
is in the same metadata, so the manifest's copy of it is never what a reader uses.

The columns' order, the frame's index and its pandas types come from pandas' own metadata,
also in the first part.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ._files import hash_thread, open_once, sha256_fd, through

__all__ = ["MIN_SAVING", "RUN_FILE", "SPLIT_FROM", "check_whole", "may_refer",
           "parsing_runs_no_code", "read_frame", "remember", "write_table"]

#: From this size in Arrow on, a frame's columns are compressed only where it pays, and may
#: be referenced.
SPLIT_FROM = 16 << 20
#: The share of its bytes zstd must save on a column's sample for the column to be compressed.
MIN_SAVING = 0.2
_SAMPLE_ROWS = 65_536
_KEY = b"jupyter_mlops"
_STEP = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")  # a step's name, the spec's own rule
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Frame files this process loaded, their hashes checked: path -> what a reference to their
#: plain part needs, with a descriptor of the very file that was hashed (a name renamed over
#: since would compare a frame with another file than the one the reference vouches for).
_LOADED: dict[Path, dict[str, Any]] = {}
#: The file beside the artifacts folder of a run of `jupyter mlops run` (the local runner and
#: its Dask executor), where every step's outputs stay side by side: only there may a frame
#: refer to another step's file. A task of Airflow or Kubeflow sees its producers' folders
#: only, so nothing is referenced there.
RUN_FILE = "run.json"


def _absolute(path: Path) -> Path:
    """``path`` made absolute and normal, symbolic links kept: a reference names the step
    folder as the run has it."""
    return Path(os.path.abspath(path))


def may_refer(folder: Path) -> bool:
    """Whether a frame saved into the step folder ``folder`` may reference its siblings: it
    is in the ``artifacts`` folder of a run folder (its run.json beside)."""
    return folder.parent.name == "artifacts" and (folder.parent.parent / RUN_FILE).is_file()


def remember(path: Path, manifest: dict[str, Any], fd: int) -> None:
    """Note that the frame file at ``path`` (open as ``fd``) was loaded and its hash checked:
    a frame saved later into a sibling folder may reference its plain columns."""
    plain = manifest.get("uncompressed")
    if manifest.get("format") not in ("arrow", "arrow-parts") or not plain:
        return
    parts = manifest.get("parts")
    part = len(parts) - 1 if isinstance(parts, list) and parts else 0
    old = _LOADED.pop(_absolute(path), None)
    if old is not None:
        os.close(old["fd"])
    _LOADED[_absolute(path)] = {"sha256": manifest["sha256"], "parts": parts, "part": part,
                                "fd": os.dup(fd)}


def _saving(table: Any, name: str) -> float:
    """The share of the bytes zstd at level 1 saves on a sample of column ``name``: its
    middle rows, where a sorted or padded start would not mislead."""
    import pyarrow as pa
    import pyarrow.feather as feather

    start = max(0, (table.num_rows - _SAMPLE_ROWS) // 2)
    sample = table.select([name]).slice(start, _SAMPLE_ROWS)
    sizes = []
    for codec in ("uncompressed", "zstd"):
        sink = pa.BufferOutputStream()
        feather.write_feather(sample, sink, compression=codec,
                              **({"compression_level": 1} if codec == "zstd" else {}))
        sizes.append(sink.getvalue().size)
    return 1 - sizes[1] / max(sizes[0], 1)


def _open_part(path: Path | str, parts: Any, index: int) -> Any:
    """Part ``index`` of the file at ``path`` as an Arrow table, memory-mapped; ValueError
    when ``parts`` (lengths, or None for one Arrow file) does not divide the file."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    source = pa.memory_map(str(path))
    size = source.size()
    if parts is None:
        parts = [size]
    if (not isinstance(parts, list) or not parts or sum(parts) != size
            or not all(type(n) is int and n > 0 for n in parts)
            or type(index) is not int or not 0 <= index < len(parts)):
        raise ValueError(f"its parts {parts!r} do not divide the file's {size} bytes")
    whole = source.read_buffer(size)
    return ipc.open_file(whole.slice(sum(parts[:index]), parts[index])).read_all()


def _chunk_bytes(chunks: Any, width: int) -> list[Any]:
    """Each chunk's values as a flat uint8 view of its data buffer."""
    import numpy as np

    return [np.frombuffer(chunk.buffers()[1], dtype=np.uint8)[
        chunk.offset * width:(chunk.offset + len(chunk)) * width] for chunk in chunks]


def _same_bytes(new: Any, old: Any) -> bool:
    """Whether two columns of fixed-width values without nulls (numbers, datetimes) hold the
    same bytes: -0.0 is not 0.0, and NaNs are told apart by their bits."""
    import numpy as np
    import pyarrow as pa

    kind = new.type
    if (kind != old.type or len(new) != len(old) or new.null_count or old.null_count
            or not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                    or pa.types.is_temporal(kind))):
        return False
    width = kind.bit_width // 8
    mine = _chunk_bytes(new.chunks, width)
    flat = mine[0] if len(mine) == 1 else np.concatenate(mine) if mine else None
    start = 0
    for piece in _chunk_bytes(old.chunks, width):
        end = start + len(piece)
        ours = flat[start:end] if flat is not None else piece[:0]
        if len(piece) % 8 == 0 and len(ours) == len(piece):  # fewer, wider comparisons
            ours, piece = ours.view(np.uint64), piece.view(np.uint64)
        if not np.array_equal(ours, piece):
            return False
        start = end
    return True


def _references(table: Any, folder: Path) -> tuple[list[dict[str, Any]], set[str]]:
    """The columns of ``table`` that a loaded sibling file's plain part holds byte for byte,
    as references, and their names."""
    found: list[dict[str, Any]] = []
    taken: set[str] = set()
    root = _absolute(folder)
    for path, source in list(_LOADED.items()):
        if path.parent.parent != root.parent or path.parent == root:
            continue
        try:  # the file that was hashed, whatever its name leads to now
            old = _open_part(through(source["fd"], path), source["parts"], source["part"])
        except (OSError, ValueError):
            continue  # unreadable now: its columns are written instead
        same = [name for name in old.column_names
                if name not in taken and name in table.column_names
                and _same_bytes(table.column(name), old.column(name))]
        if same:
            taken.update(same)
            found.append({"step": path.parent.name, "name": path.stem,
                          "sha256": source["sha256"], "parts": source["parts"],
                          "part": source["part"], "columns": same})
    return found, taken


class _Part:
    """The rest of a file, as a file of its own: an Arrow IPC file's footer gives its blocks'
    offsets from where its writer began, so each part must count from its own start."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self.written = 0

    def write(self, data: Any) -> int:
        count = self._handle.write(data)
        self.written += count
        return count

    def tell(self) -> int:
        return self.written

    def close(self) -> None:  # the file is closed by its owner, once every part is in
        pass

    @property
    def closed(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:  # flush, writable, ...
        return getattr(self._handle, name)


def _with_own(table: Any, own: dict[str, Any]) -> Any:
    """``table`` with ``own`` (what restores the frame, its references) in its metadata."""
    return table.replace_schema_metadata(
        {**(table.schema.metadata or {}), _KEY: json.dumps(own, allow_nan=False)})


def write_table(table: Any, handle: Any, folder: Path | None, extra: dict[str, Any],
                restore: dict[str, Any]) -> None:
    """Write the Arrow ``table`` of a frame to ``handle``, with ``restore`` (what restores
    its labels) in its metadata; record in ``extra`` its format, its parts' lengths, the
    columns kept plain and those referenced. ``folder`` is where the file goes, None where
    nothing may be referenced (a folder copied to a URL after)."""
    import pyarrow as pa
    import pyarrow.feather as feather

    if not pa.Codec.is_available("zstd"):
        feather.write_feather(_with_own(table, {"restore": restore}),
                              pa.PythonFile(handle, mode="w"), compression="uncompressed")
        return
    references: list[dict[str, Any]] = []
    referenced: set[str] = set()
    plain: list[str] = []
    if table.nbytes >= SPLIT_FROM:
        if folder is not None:
            references, referenced = _references(table, folder)
        plain = [n for n in table.column_names
                 if n not in referenced and _saving(table, n) < MIN_SAVING]
    # in the first part's metadata, so the file's hash covers them
    own: dict[str, Any] = {"restore": restore}
    if references:
        own["references"] = references
    table = _with_own(table, own)
    packed = [n for n in table.column_names if n not in plain and n not in referenced]
    lengths = []
    # select() keeps pandas' metadata of the whole frame in each part: the reader orders
    # the columns by it
    for names, codec in ((packed, "zstd"), (plain, "uncompressed")):
        if names or (codec == "zstd" and not plain):  # a first part, if only to hold metadata
            part = _Part(handle)
            feather.write_feather(table.select(names) if len(names) < table.num_columns
                                  else table, pa.PythonFile(part, mode="w"), compression=codec,
                                  **({"compression_level": 1} if codec == "zstd" else {}))
            lengths.append(part.written)
    if len(lengths) > 1 or references:
        extra["format"] = "arrow-parts"
        extra["parts"] = lengths
    if plain:
        extra["uncompressed"] = [str(n) for n in plain]
    if references:  # for whoever reads the manifest; readers use the file's own
        extra["references"] = [{"step": r["step"], "name": r["name"], "sha256": r["sha256"],
                                "columns": r["columns"]} for r in references]


def _references_in(metadata: dict[bytes, bytes]) -> list[dict[str, Any]]:
    """The references a first part's metadata holds, each naming a step and an artifact as
    a pipeline could (ValueError otherwise: never a path of its own making)."""
    references = _own(metadata).get("references", [])
    if not isinstance(references, list) or not all(isinstance(r, dict) for r in references):
        raise ValueError("its references are not a list of objects")
    for ref in references:
        step, name = ref.get("step"), ref.get("name")
        if not (isinstance(step, str) and _STEP.fullmatch(step)
                and isinstance(name, str) and _NAME.fullmatch(name)):
            raise ValueError(f"it refers to a frame named {step!r}/{name!r}, which no step "
                             "makes")
    return references


def _own(metadata: dict[bytes, bytes]) -> dict[str, Any]:
    """What jupyter-mlops keeps in an Arrow file's metadata (empty for a file written
    before); ValueError if it is not a JSON object."""
    if _KEY not in metadata:
        return {}
    own = json.loads(metadata[_KEY])
    if not isinstance(own, dict):
        raise ValueError("its jupyter-mlops metadata is not an object")
    return own


def parsing_runs_no_code() -> bool:
    """Whether this pyarrow reads any Arrow file without running code: 14.0.1 and later no
    longer unpickle extension types. Then a file may be parsed before its hash is known."""
    try:
        import pyarrow
    except ImportError:
        return False
    version = [int(part) for part in pyarrow.__version__.split(".")[:3] if part.isdigit()]
    return version >= [14, 0, 1]


def _referenced(path: Path, metadata: dict[bytes, bytes],
                pending: list[tuple[Any, str, str, int]]) -> dict[str, tuple[Any, Any]]:
    """The columns the file at ``path`` takes from sibling files: ``{name: (field,
    column)}``. Each file is opened once, hashed and read through that one descriptor; it is
    hashed before it is parsed, or, where parsing runs no code, meanwhile: ``pending`` gets
    ``(hash's future, expected, message, descriptor)``."""
    beside = parsing_runs_no_code()
    columns: dict[str, tuple[Any, Any]] = {}
    references = _references_in(metadata)
    if references and not may_refer(path.parent):  # a copy from a URL, a folder moved
        raise ValueError("it takes columns from other steps' files, which only its run's "
                         f"folder holds, and {path.parent} is in none")
    for ref in references:
        step, name = ref["step"], ref["name"]
        source = path.parent.parent / step / f"{name}.arrow"
        if _absolute(source) == _absolute(path):
            raise ValueError("it refers to itself")
        try:
            fd = open_once(source)
        except FileNotFoundError:
            raise ValueError(f"it takes columns from step `{step}`'s `{name}`, whose file "
                             f"{source} is missing") from None
        pending.append((hash_thread().submit(sha256_fd, fd), ref.get("sha256"),
                        f"it takes columns from step `{step}`'s `{name}`, whose file "
                        f"{source} was changed after it was written", fd))
        if not beside:
            _verify(pending)
        table = _open_part(through(fd, source), ref.get("parts"), ref.get("part"))
        for column in ref.get("columns") or []:
            if column not in table.column_names or column in columns:
                raise ValueError(f"step `{step}`'s `{name}` has no column {column!r} to give")
            columns[column] = (table.schema.field(column), table.column(column))
    return columns


def _verify(pending: list[tuple[Any, str, str, int]]) -> None:
    """ValueError with the first message whose file's hash is not the one expected; every
    descriptor closed."""
    failed = None
    while pending:
        future, expected, message, fd = pending.pop(0)
        try:
            if future.result() != expected and failed is None:
                failed = message
        finally:
            os.close(fd)
    if failed is not None:
        raise ValueError(failed)


def check_whole(table: Any) -> Any:
    """What restores the frame of the Arrow ``table`` read as one file (None if written
    before it was kept there); ValueError unless the table holds every column its pandas
    metadata names and refers to no other file: a manifest whose format was changed from
    "arrow-parts" would otherwise give the last part's columns alone."""
    metadata = table.schema.metadata or {}
    own = _own(metadata)
    if "references" in own:
        raise ValueError("it refers to other files, which its manifest's format does not say")
    named = [c.get("field_name", c.get("name")) for c in
             json.loads(metadata.get(b"pandas", b"{}")).get("columns", [])]
    if named and sorted(named, key=str) != sorted(table.column_names, key=str):
        raise ValueError("its columns are not those its pandas metadata names")
    return own.get("restore")


def read_frame(path: Path, parts: Any, source: str) -> tuple[Any, Any]:
    """The pandas frame of the "arrow-parts" file at ``path`` (read through the name
    ``source``, which may be its open descriptor's): its parts memory-mapped, with the
    columns it references, in the order pandas' metadata in the first part gives; and what
    restores its labels (None if written before it was kept there). A referenced file
    changed since is refused, also when the frame could not be made."""
    pending: list[tuple[Any, str, str, int]] = []
    try:
        table, restore = _read_table(path, parts, source, pending)
        return table.to_pandas(), restore
    finally:
        _verify(pending)


def _read_table(path: Path, parts: Any, source: str,
                pending: list[tuple[Any, str, str, int]]) -> tuple[Any, Any]:
    import pyarrow as pa

    if not isinstance(parts, list) or not parts:
        raise ValueError(f"its manifest's parts {parts!r} do not divide the file")
    tables = [_open_part(source, parts, i) for i in range(len(parts))]
    metadata = tables[0].schema.metadata or {}
    referenced = _referenced(path, metadata, pending)
    fields = {name: field for name, (field, _) in referenced.items()}
    columns = {name: column for name, (_, column) in referenced.items()}
    for table in tables:
        for index, field in enumerate(table.schema):
            if field.name in fields:
                raise ValueError(f"column {field.name!r} is in two of its parts")
            fields[field.name], columns[field.name] = field, table.column(index)
    order = [c.get("field_name", c.get("name")) for c in
             json.loads(metadata.get(b"pandas", b"{}")).get("columns", [])]
    if sorted(order, key=str) != sorted(fields, key=str):
        raise ValueError("its parts' columns are not those its pandas metadata names")
    rows = {len(columns[n]) for n in order}
    if len(rows) > 1:
        raise ValueError(f"its columns have different lengths ({sorted(rows)})")
    restore = _own(metadata).get("restore")
    metadata = {k: v for k, v in metadata.items() if k != _KEY}
    return pa.Table.from_arrays([columns[n] for n in order], schema=pa.schema(
        [fields[n] for n in order], metadata=metadata)), restore
