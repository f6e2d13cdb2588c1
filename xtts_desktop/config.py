"""Where things live (platformdirs, overridable by XTTS_DESKTOP_* variables) and the user's settings."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

logger = logging.getLogger(__name__)

APP_NAME = "xtts-desktop"
APP_AUTHOR = "XTTS Desktop"


def _dir_from_env(variable: str, default: str) -> Path:
    value = os.environ.get(variable)
    return Path(value).expanduser() if value else Path(default)


def config_dir() -> Path:
    """Settings live here (XTTS_DESKTOP_CONFIG_DIR overrides)."""
    return _dir_from_env(
        "XTTS_DESKTOP_CONFIG_DIR", platformdirs.user_config_dir(APP_NAME, APP_AUTHOR)
    )


def data_dir() -> Path:
    """The voice library and other user data live here (XTTS_DESKTOP_DATA_DIR overrides)."""
    return _dir_from_env("XTTS_DESKTOP_DATA_DIR", platformdirs.user_data_dir(APP_NAME, APP_AUTHOR))


def cache_dir() -> Path:
    """Rebuildable things (random-weight test models) live here (XTTS_DESKTOP_CACHE_DIR overrides)."""
    return _dir_from_env(
        "XTTS_DESKTOP_CACHE_DIR", platformdirs.user_cache_dir(APP_NAME, APP_AUTHOR)
    )


def log_dir() -> Path:
    """The log file with tracebacks of unexpected errors (XTTS_DESKTOP_LOG_DIR overrides)."""
    return _dir_from_env("XTTS_DESKTOP_LOG_DIR", platformdirs.user_log_dir(APP_NAME, APP_AUTHOR))


def voices_dir() -> Path:
    return data_dir() / "voices"


def default_model_dir() -> Path:
    """Where the app looks for XTTS v2 when neither --model-dir nor XTTS_DESKTOP_MODEL_DIR is given."""
    return data_dir() / "models" / "xtts_v2"


def settings_path() -> Path:
    return config_dir() / "settings.json"


def atomic_write_text(path: Path, text: str) -> None:
    """Write a whole file or nothing: a temporary file beside it, flushed, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Settings:
    """What the window remembers between runs; clamped and type-checked when loaded."""

    voice: str = ""
    language: str = "en"
    speed: float = 1.0
    output_device: str = ""
    device: str = "auto"
    precision: str = "auto"
    model_dir: str = ""
    window_geometry: str = ""
    last_folder: str = ""
    engine: str = "local"
    server_url: str = ""
    server_api_key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Settings:
        defaults = cls()
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in raw:
                continue
            value = raw[f.name]
            default = getattr(defaults, f.name)
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                value = float(value) if ok else value
            else:
                ok = type(value) is type(default)
            if ok:
                values[f.name] = value
            else:
                logger.warning("setting %r has the wrong type; using the default", f.name)
        settings = cls(**values)
        return settings.replace(speed=min(2.0, max(0.5, settings.speed)))


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    # A sentence for the user when the file could not be used (moved aside, defaults used).
    problem: str | None = None


def load_settings(path: Path | None = None) -> LoadedSettings:
    """Read settings; a corrupt file is moved aside and the defaults are used."""
    path = Path(path) if path else settings_path()
    if not path.exists():
        return LoadedSettings(Settings())
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("the top level is not an object")
        return LoadedSettings(Settings.from_dict(raw))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.replace(path, aside)
        except OSError:
            aside = path
        logger.warning("settings file %s is unreadable (%s); moved to %s", path, error, aside)
        return LoadedSettings(
            Settings(),
            problem=f"The settings file was unreadable and was moved to {aside}; defaults are used.",
        )


def save_settings(settings: Settings, path: Path | None = None) -> None:
    path = Path(path) if path else settings_path()
    atomic_write_text(path, json.dumps(dataclasses.asdict(settings), indent=2, sort_keys=True))
