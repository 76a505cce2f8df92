"""Columns a frame's Arrow file takes from the files its step loaded, instead of writing them
again (:mod:`.arrowfile` writes and reads the files).

A step that loads a big frame, adds two columns and hands it on would write the whole frame
again. In a run of `jupyter mlops run`, whose step folders stay side by side in the run's
``artifacts`` folder (:func:`may_refer`), a frame saved into a step folder is compared with
the frames this process loaded from its siblings, column by column of the same name and type:

- a column of the loaded file's plain part (kept uncompressed) byte for
  byte with that part, read again through the descriptor that was hashed; only fixed-width
  columns without nulls (numbers, datetimes), so -0.0 is not 0.0 and NaNs differ by bits;
- a column of its compressed part with the column as loaded (decompressed, its hash
  checked), kept only where the loaded frame holds those very Arrow buffers (pandas 3 keeps
  a string column's Arrow array as it was loaded, and hands it back when the frame is
  saved), and only as long as it holds them, so keeping it costs no memory; a column
  pandas copied (numbers, category codes of more than one chunk, strings under pandas 2)
  is written again. The saved column is the loaded one when it is those same buffers;
  else fixed-width columns are compared byte for byte as above, and strings, binaries,
  booleans and categories of strings or integers by Arrow's ``equals``: the same values,
  nulls in the same places, categories in the same order (the bytes under a null are not
  compared: no reader sees them).

An identical column is not written but referenced: step, artifact, the file's sha256, the
part and the column names. The references are in the first part's schema metadata, inside
the hashed bytes, so the run store's hash of this file binds the hash of every file it refers
to; a reader checks each referenced file's sha256 (once a file, whatever the number of its
parts referenced) before it uses a column of it. A reference names the file that holds the
bytes, never another reference: only the file's own parts are compared.

Every file is hashed and read through one descriptor (:func:`._files.open_once`), and a
loaded file is compared through the descriptor it was hashed through: a name renamed over
meanwhile never lets one file be checked and another read.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ._files import hash_thread, open_once, sha256_fd, through

__all__ = ["KEY", "RUN_FILE", "arrow_dtyped", "may_refer", "note_read", "open_part", "own",
           "referenced", "references", "remember", "same_bytes", "verify"]

#: The key of jupyter-mlops' own entry in an Arrow file's schema metadata.
KEY = b"jupyter_mlops"
#: The file beside the artifacts folder of a run of `jupyter mlops run` (the local runner and
#: its Dask executor), where every step's outputs stay side by side: only there may a frame
#: refer to another step's file. A task of Airflow or Kubeflow sees its producers' folders
#: only, so nothing is referenced there.
RUN_FILE = "run.json"
_STEP = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")  # a step's name, the spec's own rule
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Frame files this process loaded, their hashes checked: path -> what a reference needs,
#: with a descriptor of the very file that was hashed (a name renamed over since would
#: compare a frame with another file than the one the reference vouches for) and the
#: columns of its compressed parts as loaded.
_LOADED: dict[Path, dict[str, Any]] = {}
#: The columns of the file being loaded, by part, until its hash is checked (:func:`remember`)
_READ: dict[Path, dict[int, dict[str, Any]]] = {}


def _absolute(path: Path) -> Path:
    """``path`` made absolute and normal, symbolic links kept: a reference names the step
    folder as the run has it."""
    return Path(os.path.abspath(path))


def may_refer(folder: Path) -> bool:
    """Whether a frame saved into the step folder ``folder`` may reference its siblings: it
    is in the ``artifacts`` folder of a run folder (its run.json beside)."""
    return folder.parent.name == "artifacts" and (folder.parent.parent / RUN_FILE).is_file()


def own(metadata: dict[bytes, bytes]) -> dict[str, Any]:
    """What jupyter-mlops keeps in an Arrow file's metadata (empty for a file written
    before); ValueError if it is not a JSON object."""
    if KEY not in metadata:
        return {}
    found = json.loads(metadata[KEY])
    if not isinstance(found, dict):
        raise ValueError("its jupyter-mlops metadata is not an object")
    return found


def open_part(path: Path | str, parts: Any, index: int, *, mapped: bool = False,
              arrow_typed: set[str] | None = None) -> Any:
    """Part ``index`` of the file at ``path`` as an Arrow table, read into this process's
    own memory (``mapped``: memory-mapped, for a table only compared with, never handed to
    a frame); ValueError when ``parts`` (lengths, or None for one Arrow file) does not
    divide the file. ``arrow_typed``: the columns the frame being loaded has as an
    ``ArrowDtype`` (:func:`arrow_dtyped`), when that is another file (a part not the first,
    a sibling's columns it takes); else the part's own metadata says."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    # a frame's columns are never read from a map: they would change with the file, written
    # in place after its hash was checked (by whoever can write the artifacts folder)
    with (pa.memory_map if mapped else pa.OSFile)(str(path)) as source:
        size = source.size()
        if parts is None:
            parts = [size]
        if (not isinstance(parts, list) or not parts or sum(parts) != size
                or not all(type(n) is int and n > 0 for n in parts)
                or type(index) is not int or not 0 <= index < len(parts)):
            raise ValueError(f"its parts {parts!r} do not divide the file's {size} bytes")
        source.seek(sum(parts[:index]))
        part = source.read_buffer(parts[index])
    if part.size != parts[index]:
        raise ValueError(f"it ended within part {index} ({part.size} of {parts[index]} bytes)")
    table = ipc.open_file(part).read_all()
    if mapped:
        return table
    if arrow_typed is None:
        arrow_typed = arrow_dtyped(table.schema.metadata)
    return _own_columns(table, part, arrow_typed)


def _own_columns(table: Any, part: Any, arrow_typed: set[str]) -> Any:
    """``table`` with each column pandas keeps as Arrow memory that points into ``part``
    (kept plain) copied out of it: strings and bytes, and the columns ``arrow_typed`` (of an
    ``ArrowDtype``). Each would keep the whole part alive, numbers pandas copied included."""
    import pyarrow as pa

    start, end = part.address, part.address + part.size
    columns, copied = [], False
    for name, column in zip(table.column_names, table.columns):  # noqa: B905 (3.9)
        if not (_stringlike(column.type) or name in arrow_typed) or not column.num_chunks:
            pass
        elif _has_dictionary(column.type):  # its values are no buffer of the chunks': copied
            column, copied = _deep_copy(column), True
        elif any(start <= b.address < end for chunk in column.chunks
                 for b in chunk.buffers() if b is not None):
            column = pa.chunked_array([pa.concat_arrays(column.chunks)], type=column.type)
            copied = True
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=table.schema) if copied else table


def _has_dictionary(kind: Any) -> bool:
    """Whether an Arrow type is, or holds, a dictionary (whose values ``concat_arrays``
    leaves where they are)."""
    import pyarrow as pa

    return pa.types.is_dictionary(kind) or any(
        _has_dictionary(kind.field(i).type) for i in range(kind.num_fields))


def _deep_copy(column: Any) -> Any:
    """``column`` with every buffer its own, dictionaries' included: written as an Arrow
    stream into memory and read back from there."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    sink = pa.BufferOutputStream()
    alone = pa.table({"c": column})
    with ipc.new_stream(sink, alone.schema) as writer:
        writer.write_table(alone)
    return ipc.open_stream(sink.getvalue()).read_all().column(0)


def arrow_dtyped(metadata: dict[bytes, bytes] | None) -> set[str]:
    """The columns and index levels a frame loaded from an Arrow file with ``metadata`` has
    as an ``ArrowDtype``: those its pandas metadata names ``...[pyarrow]``."""
    described = (metadata or {}).get(b"pandas", b"")
    if b"[pyarrow]" not in described:  # most frames: the metadata is not parsed again
        return set()
    try:
        found = json.loads(described)
        return {c.get("field_name", c.get("name")) for c in found.get("columns", [])
                if isinstance(c, dict) and str(c.get("numpy_type", "")).endswith("[pyarrow]")}
    except (ValueError, TypeError, AttributeError):  # metadata not pandas': no such column
        return set()


def note_read(path: Path, tables: list[Any], frame: Any) -> None:
    """Keep the columns of the frame file at ``path``, part by part as read (``tables``), that
    the pandas ``frame`` made of them holds as they are, until its hash is checked:
    :func:`remember` then keeps those of its compressed parts. Each is let go when pandas
    lets go of it (the frame filtered, dropped or the column replaced): kept no longer than
    the frame holds it, it costs no memory."""
    import weakref

    key = _absolute(path)
    kept: dict[int, dict[str, Any]] = {}
    for index, table in enumerate(tables):
        kept[index] = {}
        for name, column in zip(table.column_names, table.columns):  # noqa: B905 (3.9)
            if not _held(frame, name, column):
                continue
            try:
                watch = weakref.finalize(frame[name].array, _release, key, name, column)
            except TypeError:  # an array that cannot be watched is not kept
                continue
            watch.atexit = False  # nothing to let go of when the kernel ends
            kept[index][name] = column
    _READ[key] = kept


def _release(key: Path, name: str, column: Any) -> None:
    """Let go of the loaded ``column`` of the file ``key``: the frame no longer holds it.
    The dicts are replaced, not changed: a save may be going through them (a collection
    runs this in any thread)."""
    read = _READ.get(key)
    if read is not None:
        _READ[key] = {index: {n: c for n, c in columns.items() if c is not column}
                      for index, columns in read.items()}
    entry = _LOADED.get(key)
    if entry is not None and name in entry["packed"]:
        entry["packed"] = {n: kept for n, kept in entry["packed"].items()
                           if kept[1] is not column}


def _held(frame: Any, name: str, column: Any) -> bool:
    """Whether ``frame``'s column ``name`` is the Arrow ``column``'s memory (not a copy):
    saved, it gives those buffers back."""
    import numpy as np
    import pyarrow as pa

    try:
        series = frame[name] if name in frame.columns else None
        # numpy's own types (numbers, datetimes, strings as objects) are pandas' copies: only
        # its extension types (Arrow-backed, categories, ...) may hold Arrow's memory
        if series is None or isinstance(series.dtype, np.dtype):
            return False
        # the column itself: pandas 2 copies a selection of columns
        mine = pa.Table.from_pandas(series.to_frame(), preserve_index=False).column(0)
        return _buffers(mine) == _buffers(column)
    except Exception:  # a type Arrow cannot take back: written again, the load goes on
        return False


def remember(path: Path, manifest: dict[str, Any], fd: int | None) -> None:
    """Note that the frame file at ``path`` (open as ``fd``) was loaded and its hash checked:
    a frame saved later into a sibling folder may reference its columns. ``fd`` None: the
    load failed, and what was kept of the file is dropped."""
    read = _READ.pop(_absolute(path), None)
    if fd is None or manifest.get("format") not in ("arrow", "arrow-parts"):
        return
    parts = manifest.get("parts")
    count = len(parts) if isinstance(parts, list) and parts else 1
    plain = count - 1 if manifest.get("uncompressed") else None  # written last
    packed = {name: (index, column) for index, columns in (read or {}).items()
              if index != plain for name, column in columns.items()}
    if plain is None and not packed:
        return
    old = _LOADED.pop(_absolute(path), None)
    if old is not None:
        os.close(old["fd"])
    _LOADED[_absolute(path)] = {"sha256": manifest["sha256"], "parts": parts, "part": plain,
                                "packed": packed, "fd": os.dup(fd)}


def _chunk_bytes(chunks: Any, width: int) -> list[Any]:
    """Each chunk's values as a flat uint8 view of its data buffer."""
    import numpy as np

    return [np.frombuffer(chunk.buffers()[1], dtype=np.uint8)[
        chunk.offset * width:(chunk.offset + len(chunk)) * width] for chunk in chunks]


def _fixed_width(kind: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind)


def same_bytes(new: Any, old: Any) -> bool:
    """Whether two columns of fixed-width values without nulls (numbers, datetimes) hold the
    same bytes: -0.0 is not 0.0, and NaNs are told apart by their bits."""
    import numpy as np

    kind = new.type
    if (kind != old.type or len(new) != len(old) or new.null_count or old.null_count
            or not _fixed_width(kind)):
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


def _buffers(column: Any) -> list[Any]:
    """Where each chunk's buffers are (a dictionary's values left out: its codes only), with
    its offset and length."""
    return [(chunk.offset, len(chunk), [None if b is None else (b.address, b.size)
                                        for b in chunk.buffers()]) for chunk in column.chunks]


def _flat(kind: Any) -> bool:
    """Numbers, datetimes, strings, binaries, booleans: types whose values ``buffers()``
    holds whole (not a dictionary's, nor a nested type's children)."""
    import pyarrow as pa

    return _fixed_width(kind) or _stringlike(kind) or pa.types.is_boolean(kind)


def _stringlike(kind: Any) -> bool:
    import pyarrow as pa

    return (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or pa.types.is_binary(kind) or pa.types.is_large_binary(kind))


def _same_column(new: Any, old: Any) -> bool:
    """Whether the column ``new`` of a frame being saved holds what the loaded column ``old``
    held, value for value (and bit for bit where a reader sees bits)."""
    import pyarrow as pa

    kind = new.type
    if kind != old.type or len(new) != len(old):
        return False
    if pa.types.is_dictionary(kind):  # categories: their codes and their values, in order
        values = kind.value_type
        return ((_stringlike(values) or pa.types.is_integer(values))
                and pa.types.is_integer(kind.index_type) and new.equals(old))
    if not _flat(kind):
        return False
    if _buffers(new) == _buffers(old):  # the very buffers that were loaded (Arrow's are
        return True  # not written in place)
    if _fixed_width(kind):
        return same_bytes(new, old)
    return bool(new.equals(old))


def references(table: Any, folder: Path) -> tuple[list[dict[str, Any]], set[str]]:
    """The columns of ``table`` that a loaded sibling file holds, as references (one per part
    of a file), and their names."""
    found: list[dict[str, Any]] = []
    taken: set[str] = set()
    root = _absolute(folder)
    for path, source in list(_LOADED.items()):
        if path.parent.parent != root.parent or path.parent == root:
            continue
        by_part: dict[int, list[str]] = {}
        if source["part"] is not None:
            try:  # the file that was hashed, whatever its name leads to now
                # compared only: mapped (a reader checks the file's hash again)
                old = open_part(through(source["fd"], path), source["parts"],
                                source["part"], mapped=True)
            except (OSError, ValueError):
                old = None  # unreadable now: its columns are written instead
            if old is not None:
                by_part[source["part"]] = [
                    name for name in old.column_names
                    if name not in taken and name in table.column_names
                    and same_bytes(table.column(name), old.column(name))]
        for name, (index, column) in list(source["packed"].items()):
            if (name not in taken and name in table.column_names
                    and _same_column(table.column(name), column)):
                by_part.setdefault(index, []).append(name)
        for index, same in sorted(by_part.items()):
            if same:
                taken.update(same)
                found.append({"step": path.parent.name, "name": path.stem,
                              "sha256": source["sha256"], "parts": source["parts"],
                              "part": index, "columns": same})
    return found, taken


def _references_in(metadata: dict[bytes, bytes]) -> list[dict[str, Any]]:
    """The references a first part's metadata holds, each naming a step and an artifact as
    a pipeline could (ValueError otherwise: never a path of its own making)."""
    found = own(metadata).get("references", [])
    if not isinstance(found, list) or not all(isinstance(r, dict) for r in found):
        raise ValueError("its references are not a list of objects")
    for ref in found:
        step, name = ref.get("step"), ref.get("name")
        if not (isinstance(step, str) and _STEP.fullmatch(step)
                and isinstance(name, str) and _NAME.fullmatch(name)):
            raise ValueError(f"it refers to a frame named {step!r}/{name!r}, which no step "
                             "makes")
    return found


def referenced(path: Path, metadata: dict[bytes, bytes], pending: list[list[Any]],
               beside: bool, arrow_typed: set[str] | None = None
               ) -> dict[str, tuple[Any, Any]]:
    """The columns the file at ``path`` takes from sibling files: ``{name: (field,
    column)}``. Each file is opened once, hashed once and read through that one descriptor;
    it is hashed before it is parsed, or, where parsing runs no code (``beside``),
    meanwhile: ``pending`` gets ``[hash's future, expected, message, descriptor]`` for
    :func:`verify`. ``arrow_typed``: the columns the frame being loaded has as an
    ``ArrowDtype`` (a sibling's metadata may say otherwise of the same values)."""
    columns: dict[str, tuple[Any, Any]] = {}
    refs = _references_in(metadata)
    if refs and not may_refer(path.parent):  # a copy from a URL, a folder moved
        raise ValueError("it takes columns from other steps' files, which only its run's "
                         f"folder holds, and {path.parent} is in none")
    opened: dict[Path, list[Any]] = {}
    for ref in refs:
        step, name = ref["step"], ref["name"]
        source = path.parent.parent / step / f"{name}.arrow"
        if _absolute(source) == _absolute(path):
            raise ValueError("it refers to itself")
        entry = opened.get(_absolute(source))
        if entry is None:
            entry = opened[_absolute(source)] = _open_hashed(source, step, name, ref, pending)
            if not beside:
                _wait(entry)
        elif entry[1] != ref.get("sha256"):
            raise ValueError(f"it refers to step `{step}`'s `{name}` by two hashes")
        table = open_part(through(entry[3], source), ref.get("parts"), ref.get("part"),
                          arrow_typed=arrow_dtyped(metadata) if arrow_typed is None
                          else arrow_typed)
        for column in ref.get("columns") or []:
            if column not in table.column_names or column in columns:
                raise ValueError(f"step `{step}`'s `{name}` has no column {column!r} to give")
            columns[column] = (table.schema.field(column), table.column(column))
    return columns


def _open_hashed(source: Path, step: str, name: str, ref: dict[str, Any],
                 pending: list[list[Any]]) -> list[Any]:
    """The referenced file at ``source`` opened, its hashing begun and noted in ``pending``."""
    try:
        fd = open_once(source)
    except FileNotFoundError:
        raise ValueError(f"it takes columns from step `{step}`'s `{name}`, whose file "
                         f"{source} is missing") from None
    entry = [hash_thread().submit(sha256_fd, fd), ref.get("sha256"),
             f"it takes columns from step `{step}`'s `{name}`, whose file {source} was "
             "changed after it was written", fd]
    pending.append(entry)
    return entry


def _wait(entry: list[Any]) -> None:
    """ValueError with the entry's message unless its file's hash is the one expected; its
    descriptor is left open, to read through (:func:`verify` closes it)."""
    if entry[0].result() != entry[1]:
        raise ValueError(entry[2])


def verify(pending: list[list[Any]]) -> None:
    """ValueError with the first message whose file's hash is not the one expected; every
    descriptor closed."""
    failed: BaseException | None = None
    while pending:
        future, expected, message, fd = pending.pop(0)
        try:
            if future.result() != expected and failed is None:
                failed = ValueError(message)
        except Exception as exc:  # unreadable: the others are still closed
            failed = failed or exc
        finally:
            os.close(fd)
    if failed is not None:
        raise failed
