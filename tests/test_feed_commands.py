"""The feed's commands, sans I/O: validation and results against a fake service."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from assetd.exceptions import (
    AlreadyRunningError,
    AssetdError,
    CatalogError,
    CatalogUnavailableError,
    ConfigError,
    InvalidRequestError,
    NotFoundError,
    ScanError,
    SeederBusyError,
    UnknownCommandError,
    VerifyBusyError,
)
from assetd.feed import commands


class FakeService:
    """Records each call and answers what the test set."""

    def __init__(self, **answers: Any) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.answers = answers

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, (*args, *sorted(kwargs.items()))))
            answer = self.answers.get(name)
            if isinstance(answer, BaseException):
                raise answer
            return answer

        return call


def run(service: FakeService, cmd: str, **args: Any) -> dict[str, Any]:
    return commands.run(service, {"id": 1, "cmd": cmd, **args})  # type: ignore[arg-type]


def refused(cmd: str, **args: Any) -> str:
    """The message of the InvalidRequestError a request gets; the service is not called."""
    service = FakeService()
    with pytest.raises(InvalidRequestError) as caught:
        run(service, cmd, **args)
    assert service.calls == []
    return str(caught.value)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (UnknownCommandError("x"), "unknown_command"),
        (InvalidRequestError("x"), "bad_request"),
        (ConfigError("x"), "bad_request"),
        (NotFoundError("x"), "not_found"),
        (SeederBusyError("x"), "scan_running"),
        (AlreadyRunningError("x"), "already_running"),
        (VerifyBusyError("x"), "already_running"),
        (ScanError("x"), "failed"),
        (CatalogUnavailableError("x"), "failed"),
        (AssetdError("x"), "failed"),
        (ValueError("x"), "internal_error"),
        (KeyError("x"), "internal_error"),
    ],
)
def test_every_exception_has_one_error_code(exc: BaseException, code: str) -> None:
    """The exception tree maps to the protocol's codes; what is outside it is a bug."""
    assert commands.error_code(exc) == code


def test_an_error_reply_carries_the_code_and_the_message() -> None:
    """A reply to a failed request says its code and the exception's message."""
    reply = commands.error_reply("r", NotFoundError("/x is not in the catalog"))
    assert reply == {
        "type": "result",
        "id": "r",
        "ok": False,
        "error": {"code": "not_found", "message": "/x is not in the catalog"},
    }


def test_an_internal_error_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """A bug gets a generic message; the daemon's log has the traceback."""
    try:
        raise RuntimeError("secret detail")
    except RuntimeError as exc:
        with caplog.at_level(logging.ERROR):
            reply = commands.error_reply(3, exc)
    assert reply["error"]["code"] == "internal_error"
    assert "secret detail" not in reply["error"]["message"]
    assert caplog.records[-1].exc_info is not None
    assert "secret detail" in caplog.text


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (b'{"cmd": "status"}', "binary"),
        ("{not json", "not JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested"),
    ],
)
def test_frames_that_are_not_json_text_are_bad_requests(frame: str | bytes, words: str) -> None:
    """Binary frames, broken JSON and JSON nested too deeply are refused as bad requests."""
    with pytest.raises(InvalidRequestError, match=words):
        commands.decode(frame)


@pytest.mark.parametrize("message", [[], "status", {"id": 1}, {"cmd": 5}, {"cmd": None}])
def test_a_request_is_an_object_with_a_string_cmd(message: Any) -> None:
    """Anything else is a bad request, not an unknown command."""
    with pytest.raises(InvalidRequestError) as caught:
        commands.command_name(message)
    assert commands.error_code(caught.value) == "bad_request"


def test_unknown_commands_are_refused_by_name() -> None:
    """A command there is not is ``unknown_command``, its name cut short."""
    with pytest.raises(UnknownCommandError, match="frobnicate"):
        commands.run(FakeService(), {"cmd": "frobnicate"})  # type: ignore[arg-type]
    assert commands.command_name({"cmd": "subscribe"}) == "subscribe"


def test_the_reply_id_is_the_request_id_whatever_its_type() -> None:
    """Any JSON value is an id; a request that is not an object has none."""
    assert commands.request_id({"id": [1, {"a": None}]}) == [1, {"a": None}]
    assert commands.request_id([1, 2]) is None


def test_subscribe_arguments() -> None:
    """``since`` is a seq >= 0, ``roots`` a list of names; both optional."""
    assert commands.subscribe_args({}) == (None, None)
    assert commands.subscribe_args({"since": 4, "roots": ["a", "b"]}) == (4, {"a", "b"})
    for bad in ({"since": -1}, {"since": True}, {"since": "3"}, {"roots": "a"}, {"roots": [1]}):
        with pytest.raises(InvalidRequestError):
            commands.subscribe_args(bad)


def test_status_is_the_services() -> None:
    """``status`` answers the service's status object as it is."""
    status = {"state": "IDLE", "seq": 3}
    assert run(FakeService(status=status), "status") == status


def test_seed_starts_a_pass_and_can_wait_for_it() -> None:
    """``seed`` passes its arguments on; with ``wait`` it answers the pass's progress."""
    service = FakeService(seed=True, seed_wait={"scanned": 2})
    assert run(service, "seed", roots=["a"], prune_first=True, hash=False) == {"status": "started"}
    assert service.calls == [("seed", (["a"], True, False))]
    assert run(service, "seed", wait=True) == {"status": "completed", "progress": {"scanned": 2}}
    assert service.calls[1:] == [("seed", (None, False, True)), ("seed_wait", ())]


def test_seed_while_a_pass_runs_is_already_running() -> None:
    """A pass that cannot start is ``already_running``."""
    with pytest.raises(AlreadyRunningError) as caught:
        run(FakeService(seed=False), "seed")
    assert commands.error_code(caught.value) == "already_running"


def test_seed_arguments_are_checked() -> None:
    """Roots are names; the flags are booleans."""
    assert "root names" in refused("seed", roots=[1])
    assert "bool" in refused("seed", wait="yes")
    assert "bool" in refused("seed", prune_first=1)


def test_cancel_and_prune() -> None:
    """``cancel`` says whether a pass was stopped; ``prune`` how many were marked."""
    assert run(FakeService(cancel=True), "cancel") == {"status": "cancelling"}
    assert run(FakeService(cancel=False), "cancel") == {"status": "idle"}
    assert run(FakeService(prune=7), "prune") == {"status": "completed", "marked": 7}
    with pytest.raises(SeederBusyError):
        run(FakeService(prune=SeederBusyError("busy")), "prune")


def test_cleanup_takes_days_and_passes_seconds() -> None:
    """``missing_older_than_days`` becomes an age in seconds; absent, no age."""
    service = FakeService(cleanup=2)
    assert run(service, "cleanup", dry_run=True, missing_older_than_days=1.5) == {"deleted": 2}
    assert run(service, "cleanup") == {"deleted": 2}
    assert service.calls == [("cleanup", (True, 1.5 * 86400)), ("cleanup", (False, None))]
    assert ">= 0" in refused("cleanup", missing_older_than_days=-1)
    assert ">= 0" in refused("cleanup", missing_older_than_days=True)
    assert "bool" in refused("cleanup", dry_run="no")


def test_verify_arguments() -> None:
    """A sample is a positive count; a rate in MB/s, 0 for no limit, 50 by default."""
    service = FakeService(verify={"checked": 1})
    assert run(service, "verify") == {"checked": 1}
    run(service, "verify", roots=["a"], sample=3, rate_mb_s=0)
    assert service.calls == [("verify", (None, None, 50_000_000)), ("verify", (["a"], 3, None))]
    assert "positive" in refused("verify", sample=0)
    assert ">= 0" in refused("verify", rate_mb_s=-1)
    assert ">= 0" in refused("verify", rate_mb_s=False)
    assert "root names" in refused("verify", roots=[None])


def test_restore_takes_absolute_paths_normalised() -> None:
    """Paths are strings or raw bytes in base64; each is normalised, relative ones refused."""
    service = FakeService(restore=2)
    raw = base64.b64encode(b"/r/\xff").decode()
    assert run(service, "restore", paths=["/r/a/../b", {"path_bytes_b64": raw}]) == {"restored": 2}
    assert service.calls == [("restore", ([b"/r/b", b"/r/\xff"],))]
    assert "required" in refused("restore")
    assert "absolute" in refused("restore", paths=["r/a"])
    assert "absolute" in refused("restore", paths=["/r/\0a"])
    assert "base64" in refused("restore", paths=[{"path_bytes_b64": "!!"}])
    assert "a path is a string" in refused("restore", paths=[3])


def test_list_pages_with_a_cursor() -> None:
    """``list`` answers items and a cursor that the next ``list`` takes back as ``after``."""
    service = FakeService(list_locations=([{"path": "/r/a"}], b"/r/a"))
    page = run(service, "list", root="r", tag="t", limit=1)
    assert page == {"items": [{"path": "/r/a"}], "next": commands.encode_cursor(b"/r/a")}
    run(service, "list", after=page["next"], include_missing=True)
    first, second = (dict(args) for _, args in service.calls)
    assert first == {
        "after": None, "include_missing": False, "limit": 1, "missing_only": False,
        "root": "r", "tag": "t", "q": None, "sort": "path", "order": "asc",
    }  # fmt: skip
    assert second["after"] == b"/r/a" and second["limit"] == commands.LIST_DEFAULT
    assert run(FakeService(list_locations=([], None)), "list")["next"] is None


def test_list_arguments_are_checked() -> None:
    """The limit is bounded, the cursor must be one this feed made."""
    assert "between" in refused("list", limit=0)
    assert "between" in refused("list", limit=commands.LIST_MAX + 1)
    assert "int" in refused("list", limit=True)
    assert "cursor" in refused("list", after=5)
    assert "cursor" in refused("list", after="not base64!")
    assert "str" in refused("list", root=["r"])


def test_tag_and_meta() -> None:
    """``tag`` and ``meta`` pass the path and their lists on and answer the new state."""
    service = FakeService(tag=["a", "b"], meta={"k": "v"})
    assert run(service, "tag", path="/r/x", add=["a"], remove=["c"]) == {"tags": ["a", "b"]}
    assert run(service, "meta", path="/r/x", set={"k": "v"}, unset=["o"]) == {
        "metadata": {"k": "v"}
    }
    raw = base64.b64encode(b"/r/\xfe").decode()
    run(service, "tag", path_bytes_b64=raw)
    assert service.calls == [
        ("tag", (b"/r/x", ["a"], ["c"])),
        ("meta", (b"/r/x", {"k": "v"}, ["o"])),
        ("tag", (b"/r/\xfe", [], [])),
    ]


def test_tag_and_meta_arguments_are_checked() -> None:
    """A path is required; tags and keys are lists of strings; ``set`` an object."""
    assert "'path' is required" in refused("tag", add=["a"])
    assert "list of strings" in refused("tag", path="/r/x", add=[1])
    assert "list" in refused("tag", path="/r/x", remove="a")
    assert "dict" in refused("meta", path="/r/x", set=[1])
    assert "list of strings" in refused("meta", path="/r/x", unset=[None])


@pytest.mark.parametrize(
    ("cmd", "exc"),
    [("tag", NotFoundError("gone")), ("list", CatalogError("down")), ("verify", VerifyBusyError())],
)
def test_service_errors_pass_through_unchanged(cmd: str, exc: AssetdError) -> None:
    """Commands raise the service's exceptions as they are; the table maps them later."""
    service = FakeService(tag=exc, list_locations=exc, verify=exc)
    with pytest.raises(type(exc)):
        run(service, cmd, path="/r/x")
