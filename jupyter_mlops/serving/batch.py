"""``jupyter mlops predict``: a file of records scored by a run's model, in chunks.

Records are read in chunks (CSV and JSON lines by pandas, Parquet by its row groups), so
memory stays flat whatever the file's size. A pipeline with prepare cells takes raw records,
shaped like the data its notebook loaded, and prepares them as ``serve`` does (the run must
pass the skew check); otherwise the file holds the model's input columns. The output has the
record's number in the input (from 0), the prediction and, for a classifier with
``predict_proba``, one probability per class; a record the preparation dropped keeps its
line with no prediction. The output is written to a temporary file and renamed at the end,
so a failure never leaves half a file under its name.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MlopsError, shown
from .model import RunModel, load_run_model, open_store

__all__ = ["BatchResult", "predict_file", "CHUNK_ROWS"]

#: Records scored at once: big enough for vectorised prediction, small enough for flat memory.
CHUNK_ROWS = 50_000
_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
            ".ndjson": "jsonl"}


@dataclass
class BatchResult:
    """What ``predict`` did: where, how many, with which run."""

    output: Path
    rows: int
    predicted: int
    dropped: int
    run_id: str
    model: str
    seconds: float
    prepared: bool


def _format(path: Path, what: str) -> str:
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise MlopsError(f"{what} {path} is not .csv, .parquet or .jsonl; name the file with "
                         "one of those extensions")
    return kind


def _chunks(path: Path, kind: str, dtypes: dict[str, str], rows: int) -> Iterator[Any]:
    """The file's records, ``rows`` at a time; MlopsError naming the file if unreadable."""
    reading = _read(path, kind, dtypes, rows)
    while True:
        try:
            chunk = next(reading)
        except StopIteration:
            return
        except Exception as err:  # pandas' and pyarrow's parsers raise many types
            reason = (str(err).splitlines() or [type(err).__name__])[0]
            raise MlopsError(f"cannot read {path} as {kind} ({reason}); give a .csv, .parquet "
                             "or .jsonl file of records") from None
        yield chunk


def _read(path: Path, kind: str, dtypes: dict[str, str], rows: int) -> Iterator[Any]:
    import pandas as pd

    if kind == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield batch.to_pandas()
    elif kind == "jsonl":
        yield from pd.read_json(path, lines=True, chunksize=rows, dtype=dtypes)
    else:
        yield from pd.read_csv(path, chunksize=rows, dtype=dtypes)


def _total(path: Path, kind: str) -> int | None:
    """Records in the file, for the progress bar (None: not worth counting)."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    if path.stat().st_size < 50 << 20:
        return None
    with open(path, "rb") as handle:
        lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    return lines - (kind == "csv")


class _Writer:
    """Rows appended chunk by chunk to a temporary file, renamed into place at the end."""

    def __init__(self, path: Path) -> None:
        self.path, self.kind = path, _format(path, "output")
        self.temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.parquet: Any = None
        self.first = True

    def write(self, frame: Any) -> None:
        if self.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self.temporary, table.schema)
            self.parquet.write_table(table.cast(self.parquet.schema))
        elif self.kind == "jsonl":
            with open(self.temporary, "a" if not self.first else "w", encoding="utf-8") as out:
                frame.to_json(out, orient="records", lines=True)
        else:
            frame.to_csv(self.temporary, mode="w" if self.first else "a", header=self.first,
                         index=False)
        self.first = False

    def finish(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        os.replace(self.temporary, self.path)

    def abandon(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        self.temporary.unlink(missing_ok=True)


def _score(served: RunModel, chunk: Any, first: int) -> tuple[Any, int]:
    """The output rows of one chunk, and how many records the preparation dropped."""
    import pandas as pd

    frame, dropped = chunk, []
    needed = served.preparation.required if served.preparation else served.features
    absent = [c for c in needed if c not in chunk.columns]
    if absent:
        what = "the preparation and the model need" if served.preparation else \
            "the model takes"
        raise MlopsError(f"the records have no column `{shown(absent[0])}`, which {what} "
                         f"({', '.join(needed)})")
    if served.preparation is not None:
        from .preparation import PrepareError

        try:
            frame, dropped = served.preparation.apply(chunk)
        except PrepareError as err:
            where = f" on record {first + err.record}" if err.record is not None else \
                f" on records {first}-{first + len(chunk) - 1}"
            raise MlopsError(f"{err}{where}; fix those records or the prepare cell") from None
    missing = [f for f in served.features if f not in frame.columns]
    if missing:
        raise MlopsError(f"records {first}-{first + len(chunk) - 1} have no column "
                         f"{shown(missing[0])}, which the model takes; the model takes "
                         f"{', '.join(served.features)}")
    gone = set(dropped)  # once: a set made per record cost records x dropped
    kept = [i for i in range(len(chunk)) if i not in gone]
    out = pd.DataFrame({"record": range(first, first + len(chunk))})
    out["prediction"] = pd.Series([None] * len(chunk), dtype=object)
    if kept:
        rows = frame[served.features]
        out.loc[kept, "prediction"] = list(served.model.predict(rows))
        if served.classes is not None and hasattr(served.model, "predict_proba"):
            probabilities = served.model.predict_proba(rows)
            for index, label in enumerate(served.classes):
                out[f"proba_{label}"] = float("nan")
                out.loc[kept, f"proba_{label}"] = probabilities[:, index]
    return out, len(dropped)


def predict_file(pipeline_dir: str | Path, data: str | Path, *, output: str | Path | None = None,
                 run_id: str | None = None, store: str | Path | None = None,
                 progress: Callable[[int, int | None], None] | None = None,
                 chunk_rows: int = CHUNK_ROWS) -> BatchResult:
    """Score the records in ``data`` with the served run (or ``run_id``) of the pipeline in
    ``pipeline_dir``; ``progress(done, total)`` hears after every chunk."""
    source = Path(data)
    if not source.is_file():
        raise MlopsError(f"no data file {data}; give --data a .csv, .parquet or .jsonl file")
    kind = _format(source, "data")
    target = Path(output) if output else source.with_name(f"{source.stem}.predictions.csv")
    _format(target, "output")
    run_store = open_store(pipeline_dir, store)
    try:
        run_id = run_id or run_store.served_run(None)
        if run_id is None:
            raise MlopsError(f"no succeeded run of {pipeline_dir} to predict with; run the "
                             "pipeline first")
        served = load_run_model(run_store, run_id, pipeline_dir=pipeline_dir)
    finally:
        run_store.close()
    columns = served.preparation.columns if served.preparation else served.columns
    # strings stay strings whatever a chunk holds (a chunk of empty cells reads as floats)
    dtypes = {c["name"]: "object" for c in columns if c.get("kind") == "categorical"}
    started, total, done, dropped = time.perf_counter(), _total(source, kind), 0, 0
    writer = _Writer(target)
    try:
        for chunk in _chunks(source, kind, dtypes, chunk_rows):
            scored, lost = _score(served, chunk, done)
            writer.write(scored)
            done, dropped = done + len(chunk), dropped + lost
            if progress is not None:
                progress(done, total)
        if done == 0:
            raise MlopsError(f"{source} has no records; there is nothing to predict")
        writer.finish()
    except BaseException:
        writer.abandon()
        raise
    return BatchResult(target, done, done - dropped, dropped, served.run_id, served.name,
                       time.perf_counter() - started, served.preparation is not None)
