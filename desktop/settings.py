"""Typed access to the app's QSettings: window state, last folders, training options and recent items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

RECENT_KINDS = ("dataset", "run", "model")
MAX_RECENT = 8


class AppSettings:
    """Values are stored as JSON strings, which round-trip the same way in every QSettings backend."""

    def __init__(self, settings: QSettings | None = None) -> None:
        self.qsettings = settings if settings is not None else QSettings("transfer-studio", "Transfer Studio")

    def get(self, key: str, default: Any = None) -> Any:
        raw = self.qsettings.value(key)
        if not isinstance(raw, str):
            return default
        try:
            return json.loads(raw)
        except ValueError:
            return default

    def set(self, key: str, value: Any) -> None:
        self.qsettings.setValue(key, json.dumps(value))

    def last_folder(self, kind: str) -> str:
        folder = self.get(f"folders/{kind}", "")
        return folder if isinstance(folder, str) and Path(folder).is_dir() else str(Path.home())

    def remember_folder(self, kind: str, path: Path) -> None:
        self.set(f"folders/{kind}", str(path if path.is_dir() else path.parent))

    def recent(self) -> list[tuple[str, str]]:
        """(kind, path) pairs, newest first."""
        items = self.get("recent", [])
        if not isinstance(items, list):
            return []
        return [(kind, path) for kind, path in (tuple(i) for i in items if isinstance(i, list) and len(i) == 2)
                if kind in RECENT_KINDS and isinstance(path, str)]

    def add_recent(self, kind: str, path: Path) -> None:
        entry = (kind, str(path))
        self.set("recent", [list(entry)] + [list(e) for e in self.recent() if e != entry][:MAX_RECENT - 1])

    def clear_recent(self) -> None:
        self.set("recent", [])

    def geometry(self, key: str) -> QByteArray | None:
        value = self.qsettings.value(f"window/{key}")
        return value if isinstance(value, QByteArray) else None

    def set_geometry(self, key: str, value: QByteArray) -> None:
        self.qsettings.setValue(f"window/{key}", value)
