"""Configuration: the TOML file, the flags over it, and what makes it invalid."""

from __future__ import annotations

from pathlib import Path

import pytest

from assetd.config import DEFAULT_LISTEN, default_database_url, load_config
from assetd.exceptions import ConfigError


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "assetd.toml"
    path.write_text(text)
    return str(path)


def test_full_file_is_read(tmp_path: Path) -> None:
    """Every documented key is read into the frozen configuration."""
    models = tmp_path / "models"
    models.mkdir()
    path = write_toml(
        tmp_path,
        f"""
[daemon]
database = "sqlite:///{tmp_path}/c.db"
follow_symlinks = true

[[roots]]
name = "models"
path = "{models}"
exclude = ["**/.git/**", "*.part"]
watch = "polling"

[feed]
listen = "127.0.0.1:9999"
token_file = "/etc/assetd/token"
allowed_origins = ["http://localhost:3000"]
""",
    )
    config = load_config(config_file=path, env={})
    assert config.database == f"sqlite:///{tmp_path}/c.db"
    assert config.follow_symlinks is True
    (root,) = config.roots
    assert (root.name, root.path, root.watch) == ("models", str(models), "polling")
    assert root.exclude == ("**/.git/**", "*.part")
    assert root.prefix == str(models).encode() + b"/"
    assert config.feed.listen == "127.0.0.1:9999"
    assert config.feed.allowed_origins == ("http://localhost:3000",)


def test_flags_override_the_file(tmp_path: Path) -> None:
    """--db, --root and --listen replace what the file says; --root replaces all roots."""
    path = write_toml(tmp_path, f'[[roots]]\nname = "a"\npath = "{tmp_path}/a"\n')
    config = load_config(
        config_file=path,
        database="sqlite:////x.db",
        roots=[("b", str(tmp_path / "b"))],
        listen="127.0.0.1:1",
        env={},
    )
    assert config.database == "sqlite:////x.db"
    assert [r.name for r in config.roots] == ["b"]
    assert config.feed.listen == "127.0.0.1:1"


def test_node_name_is_the_hosts_unless_configured(tmp_path: Path) -> None:
    """[daemon] node names this daemon among those sharing a catalog; else the host name."""
    import socket

    assert load_config(env={}).node == socket.gethostname()
    path = write_toml(tmp_path, '[daemon]\nnode = "render-01.farm"\n')
    assert load_config(config_file=path, env={}).node == "render-01.farm"


def test_no_file_at_all_uses_defaults(tmp_path: Path) -> None:
    """With no file, flags and defaults are enough."""
    config = load_config(roots=[("pics", str(tmp_path))], env={"HOME": str(tmp_path)})
    assert config.database == f"sqlite:///{tmp_path}/.local/share/assetd/assetd.db"
    assert config.feed.listen == DEFAULT_LISTEN


def test_config_file_from_environment(tmp_path: Path) -> None:
    """$ASSETD_CONFIG names the file when --config does not."""
    path = write_toml(tmp_path, '[daemon]\ndatabase = "sqlite:////from-env.db"\n')
    config = load_config(env={"ASSETD_CONFIG": path})
    assert config.database == "sqlite:////from-env.db"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"STATE_DIRECTORY": "/var/lib/assetd"}, "sqlite:////var/lib/assetd/assetd.db"),
        ({"XDG_DATA_HOME": "/data", "HOME": "/home/u"}, "sqlite:////data/assetd/assetd.db"),
        ({"HOME": "/home/u"}, "sqlite:////home/u/.local/share/assetd/assetd.db"),
    ],
)
def test_default_database_location(env: dict[str, str], expected: str) -> None:
    """The default catalog follows systemd's state directory, else the XDG data home."""
    assert default_database_url(env) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[bogus]\n", "unknown section 'bogus'"),
        ("[daemon]\ncolour = 1\n", "unknown key 'colour'"),
        ('[[roots]]\nname = "a"\npath = "/a"\nfoo = 1\n', "unknown key 'foo'"),
        ('[[roots]]\nname = "A b"\npath = "/a"\n', "root name 'A b' is invalid"),
        ('[[roots]]\nname = "a"\npath = "rel/a"\n', "is not absolute"),
        (
            '[[roots]]\nname = "a"\npath = "/a"\n[[roots]]\nname = "a"\npath = "/b"\n',
            "duplicate root name",
        ),
        (
            '[[roots]]\nname = "a"\npath = "/x"\n[[roots]]\nname = "b"\npath = "/x/y"\n',
            "must not nest",
        ),
        (
            '[[roots]]\nname = "a"\npath = "/x"\n[[roots]]\nname = "b"\npath = "/x"\n',
            "must not nest",
        ),
        ('[[roots]]\nname = "a"\npath = "/x"\nwatch = "magic"\n', "watch must be one of"),
        ('[feed]\nlisten = "nowhere"\n', "must be HOST:PORT"),
        ('[daemon]\ndatabase = "mysql://x"\n', "unsupported database URL"),
        ('[daemon]\nfollow_symlinks = "yes"\n', "must be a bool"),
        ('[daemon]\nnode = "render 01"\n', "node name 'render 01' is invalid"),
        ("[daemon]\nnode = 7\n", "'node' must be a str"),
        ("roots = 3\n", "array of tables"),
        ("[daemon\n", "invalid TOML"),
        ("a = 1\na = 2\n", "invalid TOML"),
    ],
)
def test_invalid_configuration(tmp_path: Path, text: str, message: str) -> None:
    """Each kind of bad configuration is refused with a message naming the problem."""
    with pytest.raises(ConfigError, match=message):
        load_config(config_file=write_toml(tmp_path, text), env={})


def test_siblings_with_a_common_name_start_do_not_nest(tmp_path: Path) -> None:
    """/x/models and /x/models2 are siblings, not nested (prefixes end with a separator)."""
    config = load_config(roots=[("a", "/x/models"), ("b", "/x/models2")], env={})
    assert len(config.roots) == 2


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    """A --config that does not exist is a configuration error, not a silent default."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_file=str(tmp_path / "nope.toml"), env={})


def test_relative_root_flag_is_an_error() -> None:
    """--root with a relative path is refused like one in the file."""
    with pytest.raises(ConfigError, match="not absolute"):
        load_config(roots=[("a", "relative/path")], env={})
