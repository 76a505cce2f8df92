"""A frame's Arrow file: columns compressed where it pays, and columns an input file already
holds referenced instead of written again.

**Compressed where it pays.** A frame of :data:`SPLIT_FROM` bytes or more in Arrow writes
each column's middle 65,536 rows both ways first; a column whose sample zstd (level 1) shrinks
by less than :data:`MIN_SAVING` (random floats: 4%) is kept plain, to be read without
decompressing. The data file is then Arrow IPC files back to back ("parts"): the compressed
columns' first, the plain ones' second; the manifest gives each part's length.

**Referenced, not written again.** In a run of `jupyter mlops run`, a column the step
loaded from a sibling step's file and handed on unchanged is not written again but referenced
(:mod:`.arrowrefs`); the file is then "arrow-parts" even with one part of its own.

A manifest says the format ("arrow" for one Arrow file, "arrow-parts" for parts or
references) but is not hashed; a file read as "arrow" that refers to others, or lacks a
column its pandas metadata names, is refused rather than read in part. What restores the
frame's labels (:data:`.frames.RESTORE`) is in the same metadata, so the manifest's copy of it
is never what a reader uses.

The columns' order, the frame's index and its pandas types come from pandas' own metadata,
also in the first part.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import arrowrefs

__all__ = ["MIN_SAVING", "SPLIT_FROM", "check_whole", "note_loaded", "parsing_runs_no_code",
           "read_frame", "write_table"]

#: From this size in Arrow on, a frame's columns are compressed only where it pays, and may
#: be referenced.
SPLIT_FROM = 16 << 20
#: The share of its bytes zstd must save on a column's sample for the column to be compressed.
MIN_SAVING = 0.2
_SAMPLE_ROWS = 65_536


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
        {**(table.schema.metadata or {}), arrowrefs.KEY: json.dumps(own, allow_nan=False)})


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
            references, referenced = arrowrefs.references(table, folder)
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
    if references:  # for whoever reads the manifest, a file once; readers use the file's own
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for r in references:
            merged.setdefault((r["step"], r["name"]), {
                "step": r["step"], "name": r["name"], "sha256": r["sha256"], "columns": []}
            )["columns"] += r["columns"]
        extra["references"] = list(merged.values())


def parsing_runs_no_code() -> bool:
    """Whether this pyarrow reads any Arrow file without running code: 14.0.1 and later no
    longer unpickle extension types. Then a file may be parsed before its hash is known."""
    try:
        import pyarrow
    except ImportError:
        return False
    version = [int(part) for part in pyarrow.__version__.split(".")[:3] if part.isdigit()]
    return version >= [14, 0, 1]


def check_whole(table: Any) -> Any:
    """What restores the frame of the Arrow ``table`` read as one file (None if written
    before it was kept there); ValueError unless the table holds every column its pandas
    metadata names and refers to no other file: a manifest whose format was changed from
    "arrow-parts" would otherwise give the last part's columns alone."""
    metadata = table.schema.metadata or {}
    own = arrowrefs.own(metadata)
    if "references" in own:
        raise ValueError("it refers to other files, which its manifest's format does not say")
    named = [c.get("field_name", c.get("name")) for c in
             json.loads(metadata.get(b"pandas", b"{}")).get("columns", [])]
    if named and sorted(named, key=str) != sorted(table.column_names, key=str):
        raise ValueError("its columns are not those its pandas metadata names")
    return own.get("restore")


def read_frame(path: Path, parts: Any, source: str) -> tuple[Any, Any]:
    """The pandas frame of the "arrow-parts" file at ``path`` (read through the name
    ``source``, which may be its open descriptor's): its parts read into memory, with the
    columns it references, in the order pandas' metadata in the first part gives; and what
    restores its labels (None if written before it was kept there). A referenced file
    changed since is refused, also when the frame could not be made."""
    pending: list[list[Any]] = []
    try:
        table, restore, tables = _read_table(path, parts, source, pending)
        frame = to_frame(table)
        note_loaded(path, tables, frame)
        return frame, restore
    finally:
        arrowrefs.verify(pending)


def name_arrow_dtypes(table: Any, frame: Any) -> Any:
    """``table`` (``frame`` as pyarrow made it) with each ``ArrowDtype`` column and index
    level named ``...[pyarrow]`` in its pandas metadata: pandas calls a decimal one an
    object column there, and it came back as Python Decimals."""
    import pandas as pd

    levels = [frame.index.get_level_values(i).dtype for i in range(frame.index.nlevels)]
    if not any(isinstance(t, pd.ArrowDtype) for t in [*frame.dtypes, *levels]):
        return table  # most frames: the metadata is not parsed
    metadata = table.schema.metadata or {}
    described = json.loads(metadata[b"pandas"])
    columns = described.get("columns", [])
    # pandas lists the frame's columns in order, then its index levels stored as columns
    dtypes = {c.get("field_name"): t for c, t in zip(columns, frame.dtypes)}  # noqa: B905
    dtypes.update({f: t for f, t in zip(described.get("index_columns", []), levels)  # noqa: B905
                   if isinstance(f, str)})
    changed = False
    for column in columns:
        dtype = dtypes.get(column.get("field_name"))
        if isinstance(dtype, pd.ArrowDtype) and not str(column.get("numpy_type")).endswith(
                "[pyarrow]"):
            column["numpy_type"], changed = str(dtype), True
    if not changed:
        return table
    return table.replace_schema_metadata({**metadata, b"pandas": json.dumps(described).encode()})


def to_frame(table: Any) -> Any:
    """The pandas frame of an Arrow ``table`` read from an artifact file."""
    import pyarrow as pa

    unread = _unnamed_arrow_dtypes(table)
    read = table
    if unread is not None:  # read as empty objects (cheaply), then set to their Arrow columns
        read = table.replace_schema_metadata(unread[1])
        for field in unread[0]:
            at = read.schema.get_field_index(field)
            read = read.set_column(at, field, pa.nulls(len(table)))
    # integers with a null came from an object column (a nullable Int64 one is restored as
    # such from pandas' metadata): as Python ints, not floats that round above 2**53
    frame = read.to_pandas(integer_object_nulls=True)
    frame = frame if unread is None else _as_arrow(frame, table, unread[0], unread[2])
    return _objects_back(frame, table)


def _objects_back(frame: Any, table: Any) -> Any:
    """``frame`` with each column and index level pandas' metadata says had dtype object as
    one again: Arrow types an object column of numbers, booleans, datetimes or (pandas 3)
    strings, and the next step got int64 where the notebook had objects. Missing values
    come back as None (Arrow kept a null for each; those of a column that had NaN alone
    are made NaN again, :func:`.mixedcolumns.unmixed`, and a column with NA or NaT was
    written as text)."""
    import pandas as pd

    described = (table.schema.metadata or {}).get(b"pandas", b"")
    if b'"numpy_type": "object"' not in described:  # most frames: no metadata parsed
        return frame
    found = json.loads(described)
    fields = found.get("index_columns", [])
    objects = {c.get("field_name") for c in found.get("columns", [])
               if c.get("numpy_type") == "object"}

    def restored(values: Any, field: str) -> Any:
        nulls = table.column(field).is_null().to_numpy(zero_copy_only=False)
        return pd.Series(values).astype(object).mask(nulls, None).to_numpy()

    for column in found.get("columns", []):
        field, name = column.get("field_name"), column.get("name")
        if (field in objects and field not in fields and name in frame.columns
                and frame[name].dtype != object):
            frame[name] = pd.Series(restored(frame[name], field), index=frame.index,
                                    dtype=object)
    typed = [i for i, f in enumerate(fields) if isinstance(f, str) and f in objects
             and len(fields) == frame.index.nlevels
             and frame.index.get_level_values(i).dtype != object]
    if typed:
        # the level's own values: pandas made an integer level with a null floats
        arrays = [pd.Index(table.column(f).to_pylist(), dtype=object)
                  if i in typed else frame.index.get_level_values(i)
                  for i, f in enumerate(fields)]
        names = list(frame.index.names)
        frame.index = (pd.Index(arrays[0], name=names[0], dtype=object) if len(arrays) == 1
                       else pd.MultiIndex.from_arrays(arrays, names=names))
    return frame


def _unnamed_arrow_dtypes(table: Any) -> tuple[dict[str, Any], dict[bytes, bytes], list[Any]
                                                ] | None:
    """The columns of an ``ArrowDtype`` pandas cannot read back by its name (``list<item:
    int64>[pyarrow]``, a dictionary's, ``fixed_size_list<...>[2]``), and the index levels
    of any (pandas makes ``double[pyarrow]`` float64 there), as ``{field: its name in the
    frame, None for an index level}``; the table's metadata with those said to be objects;
    and the index levels' fields. None for the other frames."""
    import pandas as pd

    metadata = table.schema.metadata or {}
    typed = arrowrefs.arrow_dtyped(metadata)
    if not typed:
        return None
    described = json.loads(metadata[b"pandas"])
    levels = described.get("index_columns", [])
    found: dict[str, Any] = {}
    for column in described.get("columns", []):
        field = column.get("field_name", column.get("name"))
        if field not in typed or table.schema.get_field_index(field) < 0:
            continue
        index = field in levels
        try:
            readable = not index and pd.api.types.pandas_dtype(
                column["numpy_type"]) == pd.ArrowDtype(table.schema.field(field).type)
        except Exception:  # pandas says not understood, or not implemented, in its words
            readable = False
        if not readable:
            found[field] = None if index else column.get("name")
            column["numpy_type"] = column["pandas_type"] = "object"
    if not found:
        return None
    return found, {**metadata, b"pandas": json.dumps(described).encode()}, levels


def _as_arrow(frame: Any, table: Any, unread: dict[str, Any], levels: list[Any]) -> Any:
    """``frame`` with the columns and index levels ``unread`` (read as placeholders) set
    to their Arrow columns of ``table``; ``levels``: the fields of its index levels."""
    import pandas as pd

    def arrow(field: str) -> Any:
        return pd.arrays.ArrowExtensionArray(table.column(field))

    for field, name in unread.items():
        if name is not None:
            frame[name] = pd.Series(arrow(field), index=frame.index, name=name)
    if any(isinstance(f, str) and f in unread for f in levels):
        names = list(frame.index.names)
        arrays = [arrow(f) if isinstance(f, str) and f in unread
                  else frame.index.get_level_values(i) for i, f in enumerate(levels)]
        frame.index = (pd.Index(arrays[0], name=names[0]) if len(arrays) == 1
                       else pd.MultiIndex.from_arrays(arrays, names=names))
    return frame


def note_loaded(path: Path, tables: list[Any], frame: Any) -> None:
    """Keep the columns of the frame file at ``path``, read as the Arrow ``tables`` of its
    own parts and made into ``frame``, until its hash is checked, if it is big enough to be
    referenced (:func:`.arrowrefs.remember`)."""
    if sum(table.nbytes for table in tables) >= SPLIT_FROM:
        arrowrefs.note_read(path, tables, frame)


def _read_table(path: Path, parts: Any, source: str,
                pending: list[list[Any]]) -> tuple[Any, Any, list[Any]]:
    """The whole Arrow table of the file, what restores its labels, and its own parts."""
    import pyarrow as pa

    if not isinstance(parts, list) or not parts:
        raise ValueError(f"its manifest's parts {parts!r} do not divide the file")
    first = arrowrefs.open_part(source, parts, 0)  # its metadata is the whole file's
    metadata = first.schema.metadata or {}
    typed = arrowrefs.arrow_dtyped(metadata)
    tables = [first] + [arrowrefs.open_part(source, parts, i, arrow_typed=typed)
                        for i in range(1, len(parts))]
    referenced = arrowrefs.referenced(path, metadata, pending, parsing_runs_no_code(), typed)
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
    restore = arrowrefs.own(metadata).get("restore")
    metadata = {k: v for k, v in metadata.items() if k != arrowrefs.KEY}
    return pa.Table.from_arrays([columns[n] for n in order], schema=pa.schema(
        [fields[n] for n in order], metadata=metadata)), restore, tables
