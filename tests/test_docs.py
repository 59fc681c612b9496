"""The documentation keeps up with the code: every command and flag is described."""

from __future__ import annotations

import argparse
import re

import pytest

from assetd.cli import COMMANDS, build_parser
from tests.conftest import REPO

CLI_DOC = (REPO / "docs" / "cli.md").read_text()
COMMON = {"--config", "--db", "--root", "--listen", "--comfyui", "-h", "--help"}


def subparsers(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    """The parser's commands (the whole parser's by default)."""
    parser = parser or build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def section(name: str) -> str:
    match = re.search(rf"^### `assetd {name}`\n(.*?)(?=^### |\Z)", CLI_DOC, re.M | re.S)
    assert match, f"docs/cli.md has no section for `assetd {name}`"
    return match.group(1)


def test_every_command_is_in_the_parser_and_the_docs() -> None:
    """COMMANDS, the parser's subcommands and docs/cli.md's sections agree."""
    assert set(subparsers()) == set(COMMANDS)
    for name in COMMANDS:
        section(name)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_flag_is_documented(name: str) -> None:
    """Each command's own flags appear in its section of docs/cli.md."""
    text = section(name)
    for action in subparsers()[name]._actions:
        for flag in action.option_strings:
            if flag not in COMMON:
                assert flag in text, f"{flag} of `assetd {name}` is not in docs/cli.md"


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """The README's second quick-start command is the one .ci/run runs."""
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    assert len(blocks) >= 2
    assert blocks[1].strip() in (REPO / ".ci" / "run").read_text()


def test_every_feed_command_is_in_the_protocol_docs() -> None:
    """Each command the feed answers has its row in docs/protocol.md's command table."""
    from assetd.feed.commands import COMMANDS as FEED_COMMANDS

    text = (REPO / "docs" / "protocol.md").read_text()
    for name in [*FEED_COMMANDS, "subscribe"]:
        assert f"| `{name}` |" in text, f"feed command {name} is not in docs/protocol.md"
