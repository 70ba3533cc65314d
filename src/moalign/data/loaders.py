"""Read preference data from JSONL, JSON, Parquet, CSV or Hugging Face ``datasets`` (path or Hub name)."""

from __future__ import annotations

import csv
import gzip
import inspect
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from moalign.data.adapters import ADAPTERS
from moalign.data.schema import DataError, PreferenceDataset

logger = logging.getLogger(__name__)

FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".csv")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(row, line)`` of a UTF-8 file (``.gz`` decompressed, a leading byte-order mark dropped); a broken
    compressed stream or a non-UTF-8 byte is a :class:`DataError` naming the file and the row."""
    row = 0
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
            for row, raw in enumerate(fh):
                line = raw.decode("utf-8")
                yield row, line.removeprefix("\ufeff") if row == 0 else line
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at column {exc.start + 1}); "
                        "re-encode the file as UTF-8", source=str(path), row=row) from None
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read the file ({exc}); is it truncated, or not really gzip?", source=str(path),
                        row=row) from None


def _read_json_lines(path: Path, invalid: list[DataError] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records of a JSON-lines file; with ``invalid``, bad lines are collected there instead of raised."""
    for row, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise DataError(f"expected a JSON object, got {type(record).__name__}", source=str(path), row=row)
        except json.JSONDecodeError as exc:
            error = DataError(f"invalid JSON ({exc.msg} at column {exc.colno})", source=str(path), row=row)
        except DataError as exc:
            error = exc
        else:
            yield row, record
            continue
        if invalid is None:
            raise error
        invalid.append(error)


def _read_json_array(path: Path, invalid: list[DataError] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    text = "".join(line for _, line in _lines(path))
    if not text.lstrip().startswith("["):
        yield from _read_json_lines(path, invalid)
        return
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg} at line {exc.lineno})", source=str(path)) from None
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"expected a JSON object, got {type(record).__name__}", source=str(path), row=row)
        yield row, record


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    lines = (line for _, line in _lines(path))
    for row, record in enumerate(csv.DictReader(lines)):
        yield row, {k: (v if v != "" else None) for k, v in record.items()}


def _read_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid and OSError subclasses
        raise DataError(f"cannot read Parquet: {exc}", source=str(path)) from None
    yield from enumerate(table.to_pylist())


def _read_datasets(source: str, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
    import datasets

    if os.path.isdir(source):
        loaded = datasets.load_from_disk(source)
    else:
        try:
            loaded = datasets.load_dataset(source, split=split)
        except Exception as exc:  # offline, unknown name, no access: the Hub raises many kinds
            raise DataError(f"not a local file or folder, and not loadable from the Hugging Face Hub "
                            f"({type(exc).__name__}: {exc})", source=source) from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"no split {split!r}; splits are {list(loaded)}", source=source)
        loaded = loaded[split]
    yield from enumerate(loaded)


def read_records(source: str | os.PathLike[str], *, split: str = "train",
                 invalid: list[DataError] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(row_number, record)`` from a file, a saved ``datasets`` directory or a Hub dataset name.

    With ``invalid``, JSON lines that do not parse are appended there and skipped instead of raised.
    """
    path = Path(source)
    name = path.name.lower()
    if path.is_dir():
        if not any((path / marker).exists() for marker in ("dataset_info.json", "state.json", "dataset_dict.json")):
            raise DataError("directory is not a saved `datasets` dataset (no dataset_info.json)", source=str(path))
        yield from _read_datasets(str(path), split)
    elif path.is_file():
        if name.endswith((".jsonl", ".jsonl.gz")):
            yield from _read_json_lines(path, invalid)
        elif name.endswith((".json", ".json.gz")):
            yield from _read_json_array(path, invalid)
        elif name.endswith(".parquet"):
            yield from _read_parquet(path)
        elif name.endswith(".csv"):
            yield from _read_csv(path)
        else:
            raise DataError(f"unknown file type; expected one of {FILE_SUFFIXES}", source=str(path))
    elif name.endswith(FILE_SUFFIXES) or os.sep in str(source) and not _looks_like_hub_name(str(source)) \
            or Path(str(source).split("/")[0]).is_dir():
        raise DataError("file not found", source=str(source))  # a local path, never a Hub name
    else:
        yield from _read_datasets(str(source), split)


def _looks_like_hub_name(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~"))


def load_preference_data(
    source: str | os.PathLike[str],
    *,
    adapter: str = "native",
    objectives: Sequence[str] | None = None,
    drop_invalid: bool = False,
    split: str = "train",
    **adapter_options: Any,
) -> PreferenceDataset:
    """Load one source into a :class:`PreferenceDataset`.

    Args:
        source: a file (``.jsonl[.gz]``, ``.json[.gz]``, ``.parquet``, ``.csv``), a directory saved with
            ``datasets.save_to_disk``, or a Hub dataset name.
        adapter: the source's format: ``native``, ``hh_rlhf``, ``pku_saferlhf``, ``ultrafeedback``, ``helpsteer2``.
        objectives: the objective names, in order; defaults to those found in the data.
        drop_invalid: skip bad rows instead of raising; how many were skipped is logged and kept in
            ``dataset.dropped``.
        split: the split to read from ``datasets`` sources.
        adapter_options: passed to the adapter (e.g. ``objective="harmless"`` for HH-RLHF).
    """
    if adapter not in ADAPTERS:
        raise DataError(f"unknown adapter {adapter!r}; adapters are {sorted(ADAPTERS)}", source=str(source))
    known = sorted(set(inspect.signature(ADAPTERS[adapter]).parameters) - {"rows"})
    unknown = sorted(set(adapter_options) - set(known))
    if unknown:
        raise DataError(f"adapter {adapter!r} has no option(s) {unknown}; its options are {known}", source=str(source))
    pairs = []
    invalid: list[DataError] = []
    dropped = 0
    try:
        records = read_records(source, split=split, invalid=invalid if drop_invalid else None)
        for _, item in ADAPTERS[adapter](records, **adapter_options):
            if isinstance(item, DataError):
                if not drop_invalid:
                    raise item
                dropped += 1
                continue
            pairs.append(item)
    except DataError as exc:
        raise exc.located(str(source)) from None
    dropped += len(invalid)
    if dropped:
        logger.warning("%s: dropped %d invalid row(s) (--drop-invalid)", source, dropped)
    if not pairs:
        raise DataError("no valid preference pairs", source=str(source))
    return PreferenceDataset(pairs, tuple(objectives or ()), dropped=dropped, source=str(source))


def save_preference_data(dataset: PreferenceDataset, path: str | os.PathLike[str]) -> Path:
    """Write ``dataset`` as native JSONL (atomically); :func:`load_preference_data` reads it back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        for record in dataset.to_records():
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path
