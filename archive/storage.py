"""Where an archive job writes: a local folder, or any pyarrow file system by URI (``s3://bucket/prefix``,
``gs://…``, ``hdfs://…``, ``file:///…``), the file systems Ray Data itself reads and writes through. Every
node opens the same location, so outputs and rows land in one place whichever node wrote them."""

from __future__ import annotations

import os
from pathlib import Path


class Storage:
    def __init__(self, where: str | os.PathLike):
        text = str(where)
        self.fs = None
        if "://" in text:
            from pyarrow import fs

            self.fs, base = fs.FileSystem.from_uri(text)
            self.base = base.rstrip("/")
            self.uri = text
        else:
            self.base = str(Path(text).resolve())
            self.uri = self.base

    def __reduce__(self):  # shipped to Ray tasks by its URI; each process opens its own file system
        return (Storage, (self.uri,))

    def __str__(self) -> str:
        return self.uri

    def _full(self, rel: str) -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def display(self, rel: str) -> str:
        return f"{self.uri.rstrip('/')}/{rel}"

    def mkdir(self, rel: str = "") -> None:
        if self.fs is None:
            Path(self._full(rel)).mkdir(parents=True, exist_ok=True)
        else:
            self.fs.create_dir(self._full(rel), recursive=True)

    def exists(self, rel: str) -> bool:
        if self.fs is None:
            return Path(self._full(rel)).is_file()
        from pyarrow import fs

        return self.fs.get_file_info(self._full(rel)).type == fs.FileType.File

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Whole or not at all: a local file goes through a temporary name; object stores publish on close."""
        if self.fs is None:
            p = Path(self._full(rel))
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
            try:
                tmp.write_bytes(data)
                os.replace(tmp, p)
            finally:
                tmp.unlink(missing_ok=True)  # after a failed write: the old file stays, no debris beside it
            return
        parent = self._full(rel).rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        with self.fs.open_output_stream(self._full(rel)) as fh:
            fh.write(data)

    def delete(self, rel: str) -> None:
        """Remove a file; one already gone is fine."""
        if self.fs is None:
            Path(self._full(rel)).unlink(missing_ok=True)
            return
        try:
            self.fs.delete_file(self._full(rel))
        except FileNotFoundError:
            pass

    def read_bytes(self, rel: str) -> bytes | None:
        try:
            if self.fs is None:
                return Path(self._full(rel)).read_bytes()
            with self.fs.open_input_stream(self._full(rel)) as fh:
                return fh.read()
        except (OSError, FileNotFoundError):
            return None

    def list(self, rel_dir: str, suffix: str) -> list[str]:
        """Names (relative to this storage) of the files in ``rel_dir`` ending in ``suffix``."""
        if self.fs is None:
            d = Path(self._full(rel_dir))
            return (
                sorted(f"{rel_dir}/{p.name}" for p in d.glob(f"*{suffix}") if p.is_file())
                if d.is_dir()
                else []
            )
        from pyarrow import fs

        sel = fs.FileSelector(self._full(rel_dir), allow_not_found=True)
        return sorted(
            f"{rel_dir}/{i.base_name}"
            for i in self.fs.get_file_info(sel)
            if i.type == fs.FileType.File and i.base_name.endswith(suffix)
        )
