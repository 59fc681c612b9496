"""The configuration: one frozen object, built once from the TOML file and the flags."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assetd.drivers import sqlite_file
from assetd.exceptions import ConfigError

if TYPE_CHECKING:
    from assetd.comfyui.install import ComfyInstall

__all__ = [
    "DEFAULT_LISTEN",
    "ComfyConfig",
    "Config",
    "FeedConfig",
    "RootConfig",
    "default_database_url",
    "find_config_file",
    "load_config",
    "parse_root_flag",
    "runtime_file",
    "state_directory",
]

DEFAULT_LISTEN = "127.0.0.1:8765"
SYSTEM_CONFIG = "/etc/assetd/assetd.toml"
WATCH_MODES = ("auto", "inotify", "polling")
_ROOT_NAME = re.compile(r"[a-z0-9_.-]+")

_DAEMON_KEYS = {"database", "follow_symlinks", "node"}
_NODE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_ROOT_KEYS = {"name", "path", "exclude", "watch"}
_COMFYUI_KEYS = {"path", "extra_model_paths", "listen"}
_FEED_KEYS = {
    "listen",
    "token_file",
    "allowed_origins",
    "keep_changes",
    "keep_days",
    "client_queue",
    "thumb_cache_mb",
}


@dataclass(frozen=True)
class RootConfig:
    """A named folder tree that assetd owns."""

    name: str
    path: str  # absolute and resolved; may not exist (the root is then offline)
    exclude: tuple[str, ...] = ()
    watch: str = "auto"

    @property
    def prefix(self) -> bytes:
        """The root's resolved path plus a separator, as the catalog stores paths."""
        raw = os.fsencode(self.path)
        return raw if raw.endswith(b"/") else raw + b"/"


@dataclass(frozen=True)
class FeedConfig:
    """Where the WebSocket feed listens and who may use it."""

    listen: str = DEFAULT_LISTEN
    token_file: str = ""
    allowed_origins: tuple[str, ...] = ()
    # The change log keeps at most the newest ``keep_changes`` changes, none older than
    # ``keep_days``: a client that reconnects with an older ``since`` must list afresh.
    keep_changes: int = 1_000_000
    keep_days: float = 30.0
    client_queue: int = 10_000  # messages queued for one client before it counts as too slow
    thumb_cache_mb: int = 256  # the thumbnail cache's bound on disk

    def token(self) -> str | None:
        """The token clients must present, read from ``token_file``; None when unset."""
        if not self.token_file:
            return None
        try:
            with open(self.token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read token_file {self.token_file}: {exc.strerror}") from exc
        if not token:
            raise ConfigError(f"token_file {self.token_file} is empty")
        return token


@dataclass(frozen=True)
class ComfyConfig:
    """A ComfyUI install whose folders are roots, and where its asset API listens."""

    path: str = ""  # the folder with main.py; "" = none
    extra_model_paths: tuple[str, ...] = ()  # more extra_model_paths.yaml files
    listen: str = ""  # "HOST:PORT" for ComfyUI's asset API; "" = off


@dataclass(frozen=True)
class Config:
    """Everything a command needs to know, fixed before anything runs."""

    database: str
    roots: tuple[RootConfig, ...] = ()
    follow_symlinks: bool = False
    feed: FeedConfig = field(default_factory=FeedConfig)
    source: str | None = None  # the file it was read from, if any
    # This daemon's name among the nodes sharing a catalog (PostgreSQL): the owner of its
    # roots. The host's name unless configured.
    node: str = field(default_factory=socket.gethostname)
    comfyui: ComfyConfig = field(default_factory=ComfyConfig)
    # The install as read (its roots are among ``roots``, its categories tag files).
    install: ComfyInstall | None = field(default=None, compare=False, repr=False)

    def root(self, name: str) -> RootConfig:
        for root in self.roots:
            if root.name == name:
                return root
        raise ConfigError(f"no root named {name!r} is configured")


def default_database_url(env: Mapping[str, str]) -> str:
    """The embedded SQLite catalog: under systemd's state directory, else XDG data home."""
    return "sqlite:///" + str((_default_state(env) / "assetd.db").absolute())


def state_directory(database_url: str, env: Mapping[str, str]) -> Path:
    """Where the daemon keeps what it makes besides the catalog (thumbnails): the folder
    of a SQLite catalog, else systemd's state directory, else XDG data home."""
    path = sqlite_file(database_url)
    if path is not None:
        return Path(path).absolute().parent
    return _default_state(env).absolute()


def _default_state(env: Mapping[str, str]) -> Path:
    state = env.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state)
    data_home = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME") or "~", ".local/share")
    return Path(os.path.expanduser(data_home)) / "assetd"


def runtime_file(database_url: str) -> str | None:
    """The daemon's runtime file beside a SQLite catalog (pid and feed address)."""
    path = sqlite_file(database_url)
    return path + ".daemon" if path is not None else None


def find_config_file(flag: str | None, env: Mapping[str, str]) -> str | None:
    """``--config``, else ``$ASSETD_CONFIG``, else the system file when it exists."""
    if flag:
        return flag
    if env.get("ASSETD_CONFIG"):
        return env["ASSETD_CONFIG"]
    return SYSTEM_CONFIG if os.path.exists(SYSTEM_CONFIG) else None


def parse_root_flag(text: str) -> tuple[str, str]:
    """Split a ``--root NAME=PATH`` flag."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ConfigError(f"--root takes NAME=PATH, got {text!r}")
    return name, path


def load_config(
    *,
    config_file: str | None = None,
    database: str | None = None,
    roots: Sequence[tuple[str, str]] | None = None,
    listen: str | None = None,
    comfyui: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Read the file (if any), apply the flags over it, add a ComfyUI install's roots,
    and validate the result."""
    env = os.environ if env is None else env
    path = find_config_file(config_file, env)
    doc = _read_toml(path) if path else {}
    config = _from_document(doc, env, source=path)
    if database:
        config = replace(config, database=database)
    if roots is not None:
        built = [
            _root({"name": name, "path": root_path}, f"--root {name}") for name, root_path in roots
        ]
        config = replace(config, roots=tuple(built))
    if listen:
        config = replace(config, feed=replace(config.feed, listen=listen))
    if comfyui:
        config = replace(config, comfyui=replace(config.comfyui, path=comfyui))
    if config.comfyui.path:
        config = _with_install(config, env)
    _validate(config)
    return config


def _with_install(config: Config, env: Mapping[str, str]) -> Config:
    """The install's roots joined to the configured ones. A folder of the install inside
    (or at) a configured root is that root's already."""
    from assetd.comfyui.install import load_install  # only with an install configured

    comfy = config.comfyui
    if not os.path.isfile(os.path.join(comfy.path, "main.py")):
        raise ConfigError(
            f"{comfy.path} is not a ComfyUI install (no main.py there): give the folder that "
            "holds ComfyUI's main.py to --comfyui or [comfyui] path"
        )
    install = load_install(comfy.path, extra_model_paths=comfy.extra_model_paths, env=env)
    given = config.roots
    added = tuple(
        root
        for root in (RootConfig(name=name, path=path) for name, path in install.roots)
        if not any(root.prefix.startswith(other.prefix) for other in given)
    )
    return replace(config, roots=given + added, install=install)


def _read_toml(path: str) -> dict[str, Any]:
    import tomllib  # here: a command run with flags only never needs it

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def _from_document(doc: dict[str, Any], env: Mapping[str, str], source: str | None) -> Config:
    where = source or "configuration"
    unknown = set(doc) - {"daemon", "roots", "feed", "comfyui"}
    if unknown:
        raise ConfigError(f"{where}: unknown section {sorted(unknown)[0]!r}")
    daemon = _table(doc.get("daemon", {}), "daemon", _DAEMON_KEYS, where)
    feed = _table(doc.get("feed", {}), "feed", _FEED_KEYS, where)
    comfy = _table(doc.get("comfyui", {}), "comfyui", _COMFYUI_KEYS, where)
    raw_roots = doc.get("roots", [])
    if not isinstance(raw_roots, list):
        raise ConfigError(f"{where}: 'roots' must be an array of tables ([[roots]])")
    roots = []
    for index, entry in enumerate(raw_roots):
        label = f"{where}: roots[{index}]"
        _table(entry, f"roots[{index}]", _ROOT_KEYS, where)
        roots.append(_root(entry, label))
    node = _typed(daemon, "node", str, where)
    if node is not None and not _NODE_NAME.fullmatch(node):
        raise ConfigError(f"{where}: node name {node!r} is invalid (use [A-Za-z0-9_.-]+)")
    return Config(
        node=node or socket.gethostname(),
        database=_typed(daemon, "database", str, where) or default_database_url(env),
        follow_symlinks=_typed(daemon, "follow_symlinks", bool, where) or False,
        roots=tuple(roots),
        feed=FeedConfig(
            listen=_typed(feed, "listen", str, where) or DEFAULT_LISTEN,
            token_file=_typed(feed, "token_file", str, where) or "",
            allowed_origins=tuple(_string_list(feed, "allowed_origins", where)),
            keep_changes=_positive(feed, "keep_changes", 1_000_000, where),
            keep_days=float(_positive(feed, "keep_days", 30, where)),
            client_queue=int(_positive(feed, "client_queue", 10_000, where)),
            thumb_cache_mb=max(1, int(_positive(feed, "thumb_cache_mb", 256, where))),
        ),
        comfyui=_comfy(comfy, where),
        source=source,
    )


def _comfy(table: dict[str, Any], where: str) -> ComfyConfig:
    def absolute(path: str, key: str) -> str:
        expanded = os.path.expanduser(path)
        if not os.path.isabs(expanded):
            raise ConfigError(f"{where}: [comfyui] {key} {path!r} is not absolute")
        return expanded

    path = _typed(table, "path", str, where) or ""
    extra = _string_list(table, "extra_model_paths", where)
    listen = _typed(table, "listen", str, where) or ""
    if listen:
        _parse_listen(listen)
    return ComfyConfig(
        path=absolute(path, "path") if path else "",
        extra_model_paths=tuple(absolute(p, "extra_model_paths") for p in extra),
        listen=listen,
    )


def _table(value: Any, name: str, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    unknown = set(value) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} in [{name}]")
    return value


def _typed(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if value is not None and not isinstance(value, kind):
        raise ConfigError(f"{where}: {key!r} must be a {kind.__name__}")
    return value


def _positive(table: dict[str, Any], key: str, default: float, where: str) -> Any:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: {key!r} must be a positive number")
    return value


def _string_list(table: dict[str, Any], key: str, where: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: {key!r} must be a list of strings")
    return value


def _root(entry: dict[str, Any], label: str) -> RootConfig:
    name, path = entry.get("name"), entry.get("path")
    if not isinstance(name, str) or not _ROOT_NAME.fullmatch(name):
        raise ConfigError(f"{label}: root name {name!r} is invalid (use [a-z0-9_.-]+)")
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{label}: root {name!r} needs a path")
    if not os.path.isabs(path):
        raise ConfigError(f"{label}: root {name!r} path {path!r} is not absolute")
    watch = entry.get("watch", "auto")
    if watch not in WATCH_MODES:
        raise ConfigError(f"{label}: root {name!r} watch must be one of {', '.join(WATCH_MODES)}")
    exclude = _string_list(entry, "exclude", label)
    return RootConfig(name=name, path=os.path.realpath(path), exclude=tuple(exclude), watch=watch)


def _validate(config: Config) -> None:
    names: set[str] = set()
    for root in config.roots:
        if root.name in names:
            raise ConfigError(f"duplicate root name {root.name!r}")
        names.add(root.name)
    for a in config.roots:
        for b in config.roots:
            if a is not b and b.prefix.startswith(a.prefix):
                raise ConfigError(
                    f"root {b.name!r} ({b.path}) is inside root {a.name!r} ({a.path}); "
                    "roots must not nest"
                )
    _parse_listen(config.feed.listen)
    if not config.database.startswith(("sqlite:", "postgres:", "postgresql:")):
        raise ConfigError(
            f"unsupported database URL {config.database!r} (sqlite:/// or postgresql://)"
        )


def _parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen address {listen!r} must be HOST:PORT")
    return host.strip("[]"), int(port)
