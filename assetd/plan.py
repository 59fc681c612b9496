"""What one batch of hints asks for: the pure planner of the live path.

Hints arrive in any order, duplicated, some about paths outside every root or
excluded. :func:`plan` coalesces them by path into the folders to move in the catalog,
which single paths to look at (and whether each is complete: closed after writing, or
renamed into place), and which folders to survey. No I/O here: the reconciler carries a
plan out. A renamed file is two looks: the file seen at its new path is paired with
the location it left by its identity (:mod:`assetd.moves`), however the rename was
reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from assetd.config import RootConfig
from assetd.hints import Hint, HintKind
from assetd.paths import ExcludeMatcher

__all__ = ["Plan", "RootIndex", "inside_any", "outermost", "plan"]


class RootIndex:
    """The roots a path may belong to, exclusions applied."""

    def __init__(self, roots: Sequence[RootConfig]) -> None:
        self.roots = tuple(roots)
        self._excludes = {r.name: ExcludeMatcher(r.exclude) for r in self.roots}
        self._by_name = {r.name: r for r in self.roots}
        # Asked of every hint: the prefixes made once (a root's is made on each use).
        self._prefixes = [(r.prefix, r, self._excludes[r.name] or None) for r in self.roots]

    def named(self, name: str) -> RootConfig:
        """The root called ``name``."""
        return self._by_name[name]

    def of(self, path: bytes, *, is_dir: bool = False) -> RootConfig | None:
        """The root that owns the file (or folder) at ``path``; None outside every root,
        or excluded."""
        for prefix, root, exclude in self._prefixes:
            if path.startswith(prefix):
                if exclude is not None and exclude.excludes(path[len(prefix) :], is_dir=is_dir):
                    return None
                return root
        return None


@dataclass
class Plan:
    """What one batch of hints asks for, coalesced by path."""

    look: dict[bytes, bool] = field(default_factory=dict)  # path -> complete
    tree_moves: list[tuple[bytes, bytes, str]] = field(default_factory=list)
    trees: set[bytes] = field(default_factory=set)  # folders to survey
    arrived: set[bytes] = field(default_factory=set)  # folders renamed in: files complete

    def complete(self, path: bytes) -> bool:
        """Whether the file at ``path`` is known complete: closed after writing, or
        renamed into place (alone, or in a folder)."""
        return self.look.get(path, False) or inside_any(path, self.arrived)

    def surveys(self) -> list[bytes]:
        """The folders to survey, in order: :attr:`trees` without those inside another."""
        return sorted(outermost(self.trees))

    def singles(self) -> dict[bytes, bool]:
        """The paths to look at one by one: those no survey of :attr:`trees` covers."""
        if not self.trees:
            return dict(self.look)
        trees = outermost(self.trees)
        covered: dict[bytes, bool] = {}  # by folder: a burst's paths share a few
        out: dict[bytes, bool] = {}
        for path, complete in self.look.items():
            folder = path.rpartition(b"/")[0]
            inside = covered.get(folder)
            if inside is None:
                inside = covered[folder] = folder in trees or inside_any(folder, trees)
            if not inside:
                out[path] = complete
        return out


def plan(hints: Iterable[Hint], roots: RootIndex) -> Plan:
    """Coalesce ``hints`` into a :class:`Plan` over ``roots``."""
    out = Plan()
    for hint in hints:
        is_dir = hint.kind in (HintKind.DIR_CHANGED, HintKind.DIR_ARRIVED, HintKind.DIR_MOVED)
        src_root = roots.of(hint.path, is_dir=is_dir)
        if hint.kind in (HintKind.CHANGED, HintKind.CLOSED):
            if src_root is not None:
                closed = hint.kind is HintKind.CLOSED
                out.look[hint.path] = out.look.get(hint.path, False) or closed
            continue
        if hint.kind in (HintKind.DIR_CHANGED, HintKind.DIR_ARRIVED):
            if src_root is not None:
                out.trees.add(hint.path)
                if hint.kind is HintKind.DIR_ARRIVED:
                    out.arrived.add(hint.path)
            continue
        assert hint.dest is not None
        dst_root = roots.of(hint.dest, is_dir=is_dir)
        if hint.kind is HintKind.MOVED:
            if src_root is not None:
                out.look.setdefault(hint.path, False)
            if dst_root is not None:
                out.look[hint.dest] = True  # a rename is how writers publish a finished file
        else:
            if src_root is not None and dst_root is not None:
                out.tree_moves.append((hint.path, hint.dest, dst_root.name))
            if src_root is not None:
                out.trees.add(hint.path)
            if dst_root is not None:
                out.trees.add(hint.dest)
    return out


def inside_any(path: bytes, folders: set[bytes]) -> bool:
    return any(path.startswith(folder + b"/") for folder in folders)


def outermost(folders: set[bytes]) -> set[bytes]:
    """Drop folders that lie inside another folder of the set."""
    keep: set[bytes] = set()
    for folder in sorted(folders):
        if not any(folder.startswith(k + b"/") for k in keep):
            keep.add(folder)
    return keep
