"""An installed systemd unit's hardening, against the unit assetd ships: what is missing
or weaker. Pure: unit files in as text, differences out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["HARDENING_KEYS", "Gap", "gaps", "hardening", "service_settings"]

# The [Service] directives that confine the daemon, besides every Protect*, Private*
# and Restrict* one; the rest of the unit (ExecStart, User, ...) is the admin's to choose.
HARDENING_KEYS = frozenset({
    "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "DevicePolicy",
    "RemoveIPC", "LockPersonality", "MemoryDenyWriteExecute", "SystemCallArchitectures",
    "SystemCallFilter", "IPAddressAllow", "IPAddressDeny", "UMask",
})  # fmt: skip
_HARDENING_PREFIXES = ("Protect", "Private", "Restrict")

# Values from weakest to strongest, for the directives whose values are levels.
_LEVELS = {
    "ProtectSystem": ("no", "yes", "full", "strict"),
    "ProtectHome": ("no", "read-only", "tmpfs", "yes"),
    "ProtectProc": ("default", "ptraceable", "noaccess", "invisible"),
    "DevicePolicy": ("auto", "closed", "strict"),
}
# Directives whose value is a list of what is allowed: more words allow more.
_ALLOW_LISTS = frozenset(
    {"CapabilityBoundingSet", "AmbientCapabilities", "RestrictAddressFamilies", "IPAddressAllow"}
)
# Directives that may be given several times, each line adding to the others.
_REPEATED = frozenset({"SystemCallFilter", "IPAddressAllow", "IPAddressDeny"})
_BOOLEANS = {"yes": "yes", "true": "yes", "on": "yes", "1": "yes"} | {
    "no": "no", "false": "no", "off": "no", "0": "no",
}  # fmt: skip


class Gap(NamedTuple):
    """One hardening directive the installed unit lacks or weakens."""

    key: str
    installed: str | None  # None: not set at all
    packaged: str


def service_settings(texts: Iterable[str]) -> dict[str, list[str]]:
    """The ``[Service]`` directives of a unit file and its drop-ins, read in order: a
    later line replaces an earlier one, except for directives given several times, which
    add up until an empty assignment clears them (as systemd reads them)."""
    settings: dict[str, list[str]] = {}
    for text in texts:
        section = ""
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line
                continue
            key, sep, value = line.partition("=")
            if section != "[Service]" or not sep:
                continue
            key, value = key.strip(), value.strip()
            if key in _REPEATED and value:
                settings.setdefault(key, []).append(value)
            else:
                settings[key] = [value] if value or key not in _REPEATED else []
    return settings


def hardening(settings: dict[str, list[str]]) -> dict[str, list[str]]:
    return {
        key: values
        for key, values in settings.items()
        if key in HARDENING_KEYS or key.startswith(_HARDENING_PREFIXES)
    }


def gaps(packaged: dict[str, list[str]], installed: dict[str, list[str]]) -> list[Gap]:
    """Each hardening directive of ``packaged`` that ``installed`` does not have, or has
    weaker; a stricter value is no gap."""
    found = []
    for key, want in sorted(hardening(packaged).items()):
        have = installed.get(key)
        if have is None or (not have and want):
            found.append(Gap(key, None, " ".join(want)))
        elif _weaker(key, want, have):
            found.append(Gap(key, " ".join(have), " ".join(want)))
    return found


def _weaker(key: str, want: list[str], have: list[str]) -> bool:
    if key in _LEVELS:
        levels = _LEVELS[key]
        wanted, had = _normal(want[-1]), _normal(have[-1])
        if wanted in levels and had in levels:
            return levels.index(had) < levels.index(wanted)
        return had != wanted
    if key in _ALLOW_LISTS:
        return not set(_words(have)) <= set(_words(want))
    if key in _REPEATED:
        return not set(want) <= set(have)
    return _normal(have[-1]) != _normal(want[-1])


def _normal(value: str) -> str:
    """A level as the table names it: ``yes`` for any of systemd's ways to say true."""
    value = value.strip().lower()
    return _BOOLEANS.get(value, value)


def _words(values: list[str]) -> list[str]:
    return [word for value in values for word in value.split()]
