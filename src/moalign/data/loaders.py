"""Read preference data from JSONL, JSON, Parquet, CSV or Hugging Face ``datasets`` (path or Hub name)."""

from __future__ import annotations

import csv
import gzip
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


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _read_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open_text(path) as fh:
        for row, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON ({exc.msg} at column {exc.colno})", source=str(path), row=row) from None
            if not isinstance(record, dict):
                raise DataError(f"expected a JSON object, got {type(record).__name__}", source=str(path), row=row)
            yield row, record


def _read_json_array(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open_text(path) as fh:
        text = fh.read()
    if not text.lstrip().startswith("["):
        yield from _read_json_lines(path)
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
    with open(path, newline="", encoding="utf-8") as fh:
        for row, record in enumerate(csv.DictReader(fh)):
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
        loaded = datasets.load_dataset(source, split=split)
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"no split {split!r}; splits are {list(loaded)}", source=source)
        loaded = loaded[split]
    yield from enumerate(loaded)


def read_records(source: str | os.PathLike[str], *, split: str = "train") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(row_number, record)`` from a file, a saved ``datasets`` directory or a Hub dataset name."""
    path = Path(source)
    name = path.name.lower()
    if path.is_dir():
        if not any((path / marker).exists() for marker in ("dataset_info.json", "state.json", "dataset_dict.json")):
            raise DataError("directory is not a saved `datasets` dataset (no dataset_info.json)", source=str(path))
        yield from _read_datasets(str(path), split)
    elif path.is_file():
        if name.endswith((".jsonl", ".jsonl.gz")):
            yield from _read_json_lines(path)
        elif name.endswith((".json", ".json.gz")):
            yield from _read_json_array(path)
        elif name.endswith(".parquet"):
            yield from _read_parquet(path)
        elif name.endswith(".csv"):
            yield from _read_csv(path)
        else:
            raise DataError(f"unknown file type; expected one of {FILE_SUFFIXES}", source=str(path))
    elif name.endswith(FILE_SUFFIXES) or os.sep in str(source) and not _looks_like_hub_name(str(source)):
        raise DataError("file not found", source=str(source))
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
    pairs = []
    dropped = 0
    try:
        for _, item in ADAPTERS[adapter](read_records(source, split=split), **adapter_options):
            if isinstance(item, DataError):
                if not drop_invalid:
                    raise item
                dropped += 1
                continue
            pairs.append(item)
    except DataError as exc:
        raise exc.located(str(source)) from None
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
