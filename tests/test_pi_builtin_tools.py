"""pi's built-in tools, user tools and the tool policy, called through PiHost.tool (what ctx.pi.tool calls)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

import pi_duroxide_nb as pdn
from tests.conftest import wait_until


@pytest.fixture
def work(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "notes.md").write_text("line one\nline two\nline three\n", encoding="utf-8")
    (root / "src" / "app.py").write_text("import os\n\ndef main():\n    return os.getcwd()\n", encoding="utf-8")
    (root / "src" / "pkg" / "util.py").write_text("def helper():\n    return 'Main'\n", encoding="utf-8")
    (root / "src" / "data.json").write_text('{"k": 1}\n', encoding="utf-8")
    (root / ".hidden").write_text("x", encoding="utf-8")
    return root


@pytest.fixture
def host(work: Path) -> pdn.PiHost:
    return pdn.PiHost(model=pdn.ScriptedModel([]), cwd=work)


def text(result: dict) -> str:
    return "".join(block["text"] for block in result["content"])


def test_host_has_all_seven_tools_by_default(host: pdn.PiHost) -> None:
    assert host.tools == ["read", "bash", "edit", "write", "ls", "grep", "find"]


def test_read_with_offset_and_limit(host: pdn.PiHost) -> None:
    whole = host.tool("read", {"path": "notes.md"})
    assert text(whole) == "line one\nline two\nline three"
    assert whole["details"]["totalLines"] == 3
    part = host.tool("read", {"path": "notes.md", "offset": 2, "limit": 1})
    assert text(part).startswith("line two\n\n[Showing lines 2-2 of 3. Use offset=3 to continue.]")
    with pytest.raises(pdn.ToolError, match="not found"):
        host.tool("read", {"path": "missing.md"})
    with pytest.raises(pdn.ToolError, match="beyond the end"):
        host.tool("read", {"path": "notes.md", "offset": 10})


def test_bash_reports_exit_code_and_output(host: pdn.PiHost, work: Path) -> None:
    ok = host.tool("bash", {"command": "echo out; echo err >&2; pwd"})
    assert ok["exitCode"] == 0 and ok["isError"] is False
    assert ok["stdout"] == f"out\n{work}\n" and ok["stderr"] == "err\n"
    assert "out" in text(ok) and "err" in text(ok)
    assert ok["details"]["exitCode"] == 0
    failed = host.tool("bash", {"command": "echo nope; exit 3"})
    assert failed["exitCode"] == 3 and failed["isError"] is True
    assert text(failed).endswith("Command exited with code 3")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie reparented to init counts as dead
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] == "Z"


def test_bash_timeout_kills_the_process_tree(host: pdn.PiHost, work: Path) -> None:
    # bash -> a nested shell (child) -> sleep (grandchild): a timeout must take all of them down.
    command = "bash -c 'sleep 60 & echo $! > grandchild.pid; echo $$ > child.pid; wait' & echo started; wait"
    started = time.monotonic()
    with pytest.raises(pdn.ToolError, match="timed out after 1 seconds") as info:
        host.tool("bash", {"command": command, "timeout": 1})
    assert time.monotonic() - started < 10
    assert "started" in str(info.value) and "child processes were killed" in str(info.value)
    child = int((work / "child.pid").read_text())
    grandchild = int((work / "grandchild.pid").read_text())
    assert grandchild != child
    wait_until(lambda: _gone(child) and _gone(grandchild), timeout=5)


def test_edit_replaces_each_block_once_and_reports_a_diff(host: pdn.PiHost, work: Path) -> None:
    result = host.tool(
        "edit",
        {
            "path": "src/app.py",
            "edits": [
                {"oldText": "import os", "newText": "import os\nimport sys"},
                {"oldText": "return os.getcwd()", "newText": "return sys.argv"},
            ],
        },
    )
    assert text(result) == "Successfully replaced 2 blocks in src/app.py."
    assert (work / "src" / "app.py").read_text() == "import os\nimport sys\n\ndef main():\n    return sys.argv\n"
    assert "+import sys" in result["details"]["diff"] and result["details"]["firstChangedLine"] == 2
    with pytest.raises(pdn.ToolError, match=r"edits\[0\].oldText was not found"):
        host.tool("edit", {"path": "src/app.py", "edits": [{"oldText": "nope", "newText": "x"}]})
    (work / "dup.txt").write_text("a a", encoding="utf-8")
    with pytest.raises(pdn.ToolError, match="occurs 2 times"):
        host.tool("edit", {"path": "dup.txt", "edits": [{"oldText": "a", "newText": "b"}]})
    assert (work / "dup.txt").read_text() == "a a"


def test_write_creates_parents(host: pdn.PiHost, work: Path) -> None:
    result = host.tool("write", {"path": "out/deep/file.txt", "content": "héllo"})
    assert (work / "out" / "deep" / "file.txt").read_text(encoding="utf-8") == "héllo"
    assert text(result) == "Successfully wrote 6 bytes to out/deep/file.txt"


def test_ls_lists_sorted_with_dir_suffix(host: pdn.PiHost) -> None:
    assert text(host.tool("ls", {})) == ".hidden\nnotes.md\nsrc/"
    limited = host.tool("ls", {"path": "src", "limit": 1})
    assert text(limited).startswith("app.py\n\n[1 of 3 entries shown.")


def test_grep_pattern_glob_case_literal_context(host: pdn.PiHost) -> None:
    assert (
        text(host.tool("grep", {"pattern": "def \\w+"}))
        == "src/app.py:3: def main():\nsrc/pkg/util.py:1: def helper():"
    )
    assert text(host.tool("grep", {"pattern": "main", "ignoreCase": True, "glob": "util.py"})) == (
        "src/pkg/util.py:2:     return 'Main'"
    )
    assert text(host.tool("grep", {"pattern": "os.getcwd()", "literal": True, "context": 1})) == (
        "src/app.py-3- def main():\nsrc/app.py:4:     return os.getcwd()"
    )
    assert text(host.tool("grep", {"pattern": "zzz"})) == "No matches found"
    limited = host.tool("grep", {"pattern": "e", "limit": 1})
    assert limited["details"]["truncated"] is True
    with pytest.raises(pdn.ToolError, match="not a valid regular expression"):
        host.tool("grep", {"pattern": "("})


def test_find_by_glob(host: pdn.PiHost) -> None:
    assert text(host.tool("find", {"pattern": "*.py"})) == "src/app.py\nsrc/pkg/util.py"
    assert text(host.tool("find", {"pattern": "src/*.json"})) == "src/data.json"
    assert text(host.tool("find", {"pattern": "**/util.py", "path": "src"})) == "pkg/util.py"
    assert text(host.tool("find", {"pattern": "*.rs"})) == "No files found matching pattern"


def test_unknown_tool_and_bad_arguments_are_clear_errors(host: pdn.PiHost) -> None:
    with pytest.raises(pdn.ToolError, match="Unknown tool 'reed'. This host's tools are: read, bash") as info:
        host.tool("reed", {"path": "x"})
    assert info.value.tool == "reed"
    with pytest.raises(pdn.ToolError, match="invalid arguments: path: Field required") as bad:
        host.tool("read", {"file": "notes.md"})
    assert "file: Extra inputs are not permitted" in str(bad.value)
    with pytest.raises(pdn.ToolError, match="limit: Input should be greater than or equal to 1"):
        host.tool("ls", {"limit": 0})
    with pytest.raises(pdn.ToolError, match="timeout: Input should be greater than 0"):
        host.tool("bash", {"command": "sleep 1000", "timeout": 0})  # 0 would mean no limit at all


class Weather(BaseModel):
    city: str = Field(description="City name")
    days: int = Field(default=1, ge=1, le=7)


def test_user_tools_get_a_validated_model_and_a_generated_schema(work: Path) -> None:
    host = pdn.PiHost(model=pdn.ScriptedModel([]), cwd=work, tools=["read"])

    @host.register_tool
    def weather(args: Weather) -> dict:
        """The forecast for a city.

        Longer text that the model does not need.
        """
        return {"city": args.city, "days": args.days, "sky": "clear"}

    def shout(args):
        return args.text.upper()

    class ShoutArgs(BaseModel):
        text: str

    host.register_tool(shout, args_model=ShoutArgs, description="Upper-case text")

    assert host.tools == ["read", "weather", "shout"]
    result = host.tool("weather", {"city": "Oslo", "days": 2})
    assert result["details"] == {"city": "Oslo", "days": 2, "sky": "clear"}
    assert host.tool("shout", {"text": "hi"})["content"] == [{"type": "text", "text": "HI"}]
    with pytest.raises(pdn.ToolError, match="days: Input should be less than or equal to 7"):
        host.tool("weather", {"city": "Oslo", "days": 9})
    with pytest.raises(TypeError, match="needs a pydantic model"):
        host.register_tool(lambda args: args, name="nomodel")

    # The model is offered the generated schema and the docstring's first paragraph.
    specs = {s.name: s for s in host._box.specs()}
    assert specs["weather"].description == "The forecast for a city."
    assert specs["weather"].parameters["properties"]["city"]["description"] == "City name"
    assert specs["weather"].parameters["required"] == ["city"]


def test_tool_schemas_are_self_contained(host: pdn.PiHost) -> None:
    specs = {s.name: s.parameters for s in host._box.specs()}
    edit = specs["edit"]
    assert "$defs" not in str(edit) and "$ref" not in str(edit)
    item = edit["properties"]["edits"]["items"]
    assert item["required"] == ["oldText", "newText"] and item["type"] == "object"
    assert specs["read"]["required"] == ["path"] and set(specs["read"]["properties"]) == {"path", "offset", "limit"}
    assert set(specs["grep"]["properties"]) == {"pattern", "path", "glob", "ignoreCase", "literal", "context", "limit"}


class NoArgs(BaseModel):
    pass


def test_user_tool_exceptions_become_tool_errors(work: Path) -> None:
    host = pdn.PiHost(model=pdn.ScriptedModel([]), cwd=work, tools=[])

    @host.register_tool
    def explode(args: NoArgs) -> str:
        raise ValueError("kaboom")

    with pytest.raises(pdn.ToolError, match="Tool 'explode' failed: ValueError: kaboom") as info:
        host.tool("explode", {})
    assert isinstance(info.value.__cause__, ValueError)


def test_policy_allow_list_confinement_and_approval(work: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("s3cret", encoding="utf-8")
    asked: list[tuple[str, dict]] = []

    def approve(name: str, args: dict) -> bool:
        asked.append((name, args))
        return name != "write"

    policy = pdn.ToolPolicy(allow=["read", "write", "ls"], confine_to_cwd=True, approve=approve)
    host = pdn.PiHost(model=pdn.ScriptedModel([]), cwd=work, policy=policy)
    assert host.tools == ["read", "write", "ls"]

    with pytest.raises(pdn.ToolDeniedError, match="not allowed by the host's policy"):
        host.tool("bash", {"command": "echo hi"})
    with pytest.raises(pdn.ToolDeniedError, match="outside the working directory"):
        host.tool("read", {"path": "../secret.txt"})
    with pytest.raises(pdn.ToolDeniedError, match="outside the working directory"):
        host.tool("read", {"path": str(tmp_path / "secret.txt")})
    os.symlink(tmp_path / "secret.txt", work / "link.txt")
    with pytest.raises(pdn.ToolDeniedError, match="outside the working directory"):
        host.tool("read", {"path": "link.txt"})
    assert text(host.tool("read", {"path": "notes.md"})).startswith("line one")
    with pytest.raises(pdn.ToolDeniedError, match="was not approved"):
        host.tool("write", {"path": "x.txt", "content": "x"})
    assert not (work / "x.txt").exists()
    assert ("write", {"path": "x.txt", "content": "x"}) in asked
    with pytest.raises(TypeError, match="list of tool names"):
        pdn.ToolPolicy(allow="read")  # type: ignore[arg-type]


def test_confined_grep_does_not_follow_symlinks_out_of_cwd(work: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("password=hunter2\n", encoding="utf-8")
    os.symlink(tmp_path / "secret.txt", work / "src" / "innocent.txt")
    confined = pdn.PiHost(model=pdn.ScriptedModel([]), cwd=work, policy=pdn.ToolPolicy(confine_to_cwd=True))
    assert text(confined.tool("grep", {"pattern": "password"})) == "No matches found"
    free = pdn.PiHost(model=pdn.ScriptedModel([]), cwd=work)
    assert text(free.tool("grep", {"pattern": "password"})) == "src/innocent.txt:1: password=hunter2"


def test_an_approval_callback_that_raises_refuses_the_call(work: Path) -> None:
    def broken(name: str, args: dict) -> bool:
        raise RuntimeError("no person to ask")

    host = pdn.PiHost(model=pdn.ScriptedModel([]), cwd=work, policy=pdn.ToolPolicy(approve=broken))
    with pytest.raises(pdn.ToolDeniedError, match="approval callback raised RuntimeError: no person to ask") as info:
        host.tool("write", {"path": "x.txt", "content": "x"})
    assert isinstance(info.value.__cause__, RuntimeError)
    assert not (work / "x.txt").exists()


def test_unconfined_host_reads_outside_cwd(work: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("ok", encoding="utf-8")
    host = pdn.PiHost(model=pdn.ScriptedModel([]), cwd=work, tools=["read"])
    assert text(host.tool("read", {"path": "../outside.txt"})) == "ok"


def test_bad_host_configuration_is_reported_at_once(work: Path) -> None:
    with pytest.raises(pdn.ToolError, match="not one of pi's built-in tools"):
        pdn.PiHost(model=pdn.ScriptedModel([]), cwd=work, tools=["rm"])
    with pytest.raises(TypeError, match="takes a pdn.ChatModel"):
        pdn.PiHost(model="gpt-4o", cwd=work)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not a directory"):
        pdn.PiHost(model=pdn.ScriptedModel([]), cwd=work / "nope")
    with pytest.raises(TypeError, match="list of tool names"):
        pdn.PiHost(model=pdn.ScriptedModel([]), cwd=work, tools="read")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"PiHost\(max_steps=...\) must be a positive integer"):
        pdn.PiHost(model=pdn.ScriptedModel([]), cwd=work, max_steps=0)
