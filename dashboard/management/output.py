"""Where an export command writes: a file `--output` names, or standard output.

export_run and export_reviews stream the same way; each turns `OutputError` into its own one-line
failure with exit status 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from django.core.management.base import OutputWrapper


class OutputError(Exception):
    """The output file cannot be opened for writing; the message says which and why."""


def chunks_write(chunks: Iterator[str], *, output: str, stdout: OutputWrapper) -> Path | None:
    """Write every chunk to the file `output` names, or to `stdout` when it is empty; the file's path, if any."""
    if not output:
        _write(chunks, stdout)
        return None
    path = Path(output)
    try:
        handle = path.open("w", encoding="utf-8", newline="")
    except OSError as error:
        raise OutputError(f"{path}: cannot write there ({error.strerror or error}).") from error
    with handle:
        _write(chunks, handle)
    return path


def _write(chunks: Iterator[str], stream: OutputWrapper | TextIO) -> None:
    for chunk in chunks:
        if isinstance(stream, OutputWrapper):
            # OutputWrapper adds a newline to every write unless told otherwise.
            stream.write(chunk, ending="")
        else:
            stream.write(chunk)
    stream.flush()
