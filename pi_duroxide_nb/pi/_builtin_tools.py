"""Python versions of pi's built-in tools: read, bash, edit, write, ls, grep, find.

Arguments follow pi's schemas (``oldText``, ``ignoreCase``...); results are pi's
``{content: [{type: "text", text}], details}``. ``bash`` also carries ``exitCode``, ``stdout``
and ``stderr`` at the top level (pi-duroxide's examples test ``result.exitCode``) and returns
normally for a non-zero exit; a failure of the tool itself (missing file, no match, timeout)
raises ``ToolError``.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ._errors import ToolDeniedError, ToolError
from ._tools import TextContent, ToolResult

__all__ = ["BUILTIN_TOOLS", "BuiltinTool", "ToolEnv"]

_ARGS = ConfigDict(extra="forbid", frozen=True)
_MAX_LINES = 2000
_MAX_BYTES = 50 * 1024
_SKIP_DIRS = {".git", "node_modules", "__pycache__", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


@dataclass(frozen=True)
class ToolEnv:
    """Where and how the built-in tools run."""

    cwd: Path
    """Relative paths resolve against it; bash runs in it."""
    confine_to_cwd: bool = False
    """Refuse paths outside ``cwd`` (symlinks resolved). ``bash`` commands are not confined."""
    bash_timeout: float = 180.0
    """Seconds a bash command may run when its call gives no ``timeout``."""

    def inside(self, path: Path) -> bool:
        """Whether ``path``, symlinks resolved, is in the working directory."""
        return path.resolve().is_relative_to(self.cwd.resolve())

    def resolve(self, path: str, tool: str) -> Path:
        """An absolute path for ``path``, checked against the confinement."""
        p = Path(os.path.expanduser(path))
        full = (p if p.is_absolute() else self.cwd / p).resolve()
        if self.confine_to_cwd and not self.inside(full):
            msg = (
                f"{tool}: the path {path!r} is outside the working directory {str(self.cwd)!r}, and this host "
                "confines tools to it (ToolPolicy(confine_to_cwd=True)). Use a path inside it."
            )
            raise ToolDeniedError(msg, tool=tool)
        return full


def _text(text: str, details: Any = None, **extra: Any) -> dict[str, Any]:
    result = ToolResult(content=[TextContent(text=text)], details=details).to_pi()
    result.pop("isError", None)
    result.update(extra)
    return result


def _truncated(text: str, details: dict[str, Any], note: str) -> str:
    """Mark a listing as cut short and tell the model how to see the rest."""
    details["truncated"] = True
    return f"{text}\n\n[{note}]"


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


# --- read ----------------------------------------------------------------------------------------


class ReadArgs(BaseModel):
    model_config = _ARGS
    path: str = Field(description="Path to the file to read (relative or absolute)")
    offset: int | None = Field(default=None, ge=1, description="Line number to start reading from (1-indexed)")
    limit: int | None = Field(default=None, ge=1, description="Maximum number of lines to read")


def _read(args: ReadArgs, env: ToolEnv) -> dict[str, Any]:
    path = env.resolve(args.path, "read")
    if not path.is_file():
        what = "a directory (use ls)" if path.is_dir() else "not found"
        raise ToolError(f"read: {args.path} is {what}.", tool="read")
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    total = len(lines)
    start = (args.offset or 1) - 1
    if start >= max(total, 1) and not (start == 0 and total == 0):
        raise ToolError(f"read: offset {args.offset} is beyond the end of {args.path} ({total} lines).", tool="read")
    end = min(total, start + (args.limit or _MAX_LINES), start + _MAX_LINES)
    chosen: list[str] = []
    size = 0
    for line in lines[start:end]:
        if size + len(line) + 1 > _MAX_BYTES and chosen:
            break
        chosen.append(line)
        size += len(line) + 1
    shown_end = start + len(chosen)
    out = "\n".join(chosen)
    details: dict[str, Any] = {"path": str(path), "totalLines": total, "startLine": start + 1, "endLine": shown_end}
    if shown_end < total:
        details["truncated"] = True
        out += f"\n\n[Showing lines {start + 1}-{shown_end} of {total}. Use offset={shown_end + 1} to continue.]"
    return _text(out, details)


# --- bash ------------------------------------------------------------------------------------------


class BashArgs(BaseModel):
    model_config = _ARGS
    command: str = Field(description="Bash command to execute")
    # gt=0: a timeout of 0 would let a command run forever.
    timeout: float | None = Field(
        default=None, gt=0, description="Timeout in seconds (optional; the host's default limit applies otherwise)"
    )


def _tail(text: str) -> tuple[str, bool]:
    lines = text.split("\n")
    truncated = False
    if len(lines) > _MAX_LINES:
        lines, truncated = lines[-_MAX_LINES:], True
    out = "\n".join(lines)
    if len(out.encode()) > _MAX_BYTES:
        out, truncated = out.encode()[-_MAX_BYTES:].decode("utf-8", errors="ignore"), True
    return out, truncated


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _bash(args: BashArgs, env: ToolEnv) -> dict[str, Any]:
    if not env.cwd.is_dir():
        raise ToolError(f"bash: the working directory {str(env.cwd)!r} does not exist.", tool="bash")
    shell = shutil.which("bash") or "/bin/sh"
    timeout = env.bash_timeout if args.timeout is None else args.timeout
    # A new session makes the command the leader of its own process group, so a timeout
    # kills everything it started (pipelines, background jobs), not just the shell.
    proc = subprocess.Popen(
        [shell, "-c", args.command],
        cwd=env.cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout or None)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a descendant left the group and holds the pipes
            out, err = b"", b""
        partial, _ = _tail((out + err).decode("utf-8", errors="replace"))
        msg = f"bash: command timed out after {timeout:g} seconds; it and its child processes were killed."
        if partial.strip():
            msg += f" Output so far:\n{partial[-2000:]}"
        raise ToolError(msg, tool="bash") from None
    finally:
        if proc.poll() is None:  # pragma: no cover - interrupted while waiting
            _kill_tree(proc)
    stdout = out.decode("utf-8", errors="replace")
    stderr = err.decode("utf-8", errors="replace")
    combined, truncated = _tail(stdout + stderr)
    code = proc.returncode
    text = combined if combined else "(no output)"
    if code != 0:
        text = f"{text.rstrip(chr(10))}\n\nCommand exited with code {code}"
    details = {"exitCode": code, "truncated": truncated}
    return {**_text(text, details), "isError": code != 0, "exitCode": code, "stdout": stdout, "stderr": stderr}


# --- edit ------------------------------------------------------------------------------------------


class Replacement(BaseModel):
    model_config = _ARGS
    oldText: str = Field(description="Exact text to find; must occur exactly once in the file")
    newText: str = Field(description="Text to replace it with")


class EditArgs(BaseModel):
    model_config = _ARGS
    path: str = Field(description="Path to the file to edit (relative or absolute)")
    edits: list[Replacement] = Field(min_length=1, description="Replacements, each matched against the original file")


def _edit(args: EditArgs, env: ToolEnv) -> dict[str, Any]:
    path = env.resolve(args.path, "edit")
    if not path.is_file():
        raise ToolError(f"edit: file not found: {args.path}.", tool="edit")
    raw = path.read_bytes().decode("utf-8")
    crlf = "\r\n" in raw
    original = raw.replace("\r\n", "\n")
    spans: list[tuple[int, int, str]] = []
    for i, e in enumerate(args.edits):
        old = e.oldText.replace("\r\n", "\n")
        count = original.count(old) if old else 0
        if count == 0:
            msg = (
                f"edit: edits[{i}].oldText was not found in {args.path}. It must match exactly, "
                "including whitespace and newlines; read the file first."
            )
            raise ToolError(msg, tool="edit")
        if count > 1:
            msg = f"edit: edits[{i}].oldText occurs {count} times in {args.path}; add context so it is unique."
            raise ToolError(msg, tool="edit")
        start = original.index(old)
        spans.append((start, start + len(old), e.newText.replace("\r\n", "\n")))
    spans.sort()
    for (_, end, _), (start, _, _) in zip(spans, spans[1:], strict=False):
        if start < end:
            raise ToolError(f"edit: two edits overlap in {args.path}; merge them into one.", tool="edit")
    pieces, last = [], 0
    for start, end, new in spans:
        pieces += [original[last:start], new]
        last = end
    updated = "".join(pieces) + original[last:]
    if updated == original:
        raise ToolError(f"edit: the edits leave {args.path} unchanged (newText equals oldText).", tool="edit")
    path.write_bytes((updated.replace("\n", "\r\n") if crlf else updated).encode("utf-8"))
    diff = "".join(
        difflib.unified_diff(
            original.splitlines(keepends=True), updated.splitlines(keepends=True), args.path, args.path, n=3
        )
    )
    pairs = zip(original.split("\n"), updated.split("\n"), strict=False)
    first = next((i + 1 for i, (a, b) in enumerate(pairs) if a != b), None)
    n = len(args.edits)
    return _text(
        f"Successfully replaced {n} block{'s' if n != 1 else ''} in {args.path}.",
        {"diff": diff, "firstChangedLine": first},
    )


# --- write -----------------------------------------------------------------------------------------


class WriteArgs(BaseModel):
    model_config = _ARGS
    path: str = Field(description="Path to the file to write (relative or absolute)")
    content: str = Field(description="Content to write to the file")


def _write(args: WriteArgs, env: ToolEnv) -> dict[str, Any]:
    path = env.resolve(args.path, "write")
    if path.is_dir():
        raise ToolError(f"write: {args.path} is a directory.", tool="write")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = args.content.encode("utf-8")
    path.write_bytes(data)
    return _text(f"Successfully wrote {len(data)} bytes to {args.path}", {"path": str(path), "bytes": len(data)})


# --- ls ----------------------------------------------------------------------------------------------


class LsArgs(BaseModel):
    model_config = _ARGS
    path: str | None = Field(default=None, description="Directory to list (default: current directory)")
    limit: int | None = Field(default=None, ge=1, description="Maximum number of entries to return (default: 500)")


def _ls(args: LsArgs, env: ToolEnv) -> dict[str, Any]:
    path = env.resolve(args.path or ".", "ls")
    if not path.is_dir():
        raise ToolError(f"ls: {args.path or '.'} is not a directory.", tool="ls")
    entries = sorted(path.iterdir(), key=lambda p: p.name.lower())
    limit = args.limit or 500
    names = [e.name + ("/" if e.is_dir() else "") for e in entries[:limit]]
    text = "\n".join(names) if names else "(empty directory)"
    details: dict[str, Any] = {"path": str(path), "count": len(entries)}
    if len(entries) > limit:
        text = _truncated(text, details, f"{limit} of {len(entries)} entries shown. Use limit={len(entries)} for all.")
    return _text(text, details)


# --- grep ----------------------------------------------------------------------------------------------


class GrepArgs(BaseModel):
    model_config = _ARGS
    pattern: str = Field(description="Search pattern (regex or literal string)")
    path: str | None = Field(default=None, description="Directory or file to search (default: current directory)")
    glob: str | None = Field(default=None, description="Filter files by glob pattern, e.g. '*.ts' or '**/*.spec.ts'")
    ignoreCase: bool | None = Field(default=None, description="Case-insensitive search (default: false)")
    literal: bool | None = Field(default=None, description="Treat pattern as literal string instead of regex")
    context: int | None = Field(default=None, ge=0, description="Lines before and after each match (default: 0)")
    limit: int | None = Field(default=None, ge=1, description="Maximum number of matches to return (default: 100)")


def _walk(root: Path, *, with_dirs: bool = False) -> Iterator[Path]:
    """The files under ``root`` (and directories, ``with_dirs``), sorted, skipping VCS and cache directories.

    Symlinked directories are not followed (``os.walk``'s default), so a walk stays inside ``root``.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in (dirnames if with_dirs else []) + sorted(filenames):
            yield Path(dirpath) / name


def _glob_match(rel: str, pattern: str) -> bool:
    if "/" not in pattern:
        return fnmatch.fnmatch(rel.rsplit("/", 1)[-1], pattern)
    regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
    regex = regex.replace(r"\?", "[^/]")
    return re.fullmatch(regex, rel) is not None


def _grep(args: GrepArgs, env: ToolEnv) -> dict[str, Any]:
    root = env.resolve(args.path or ".", "grep")
    if not root.exists():
        raise ToolError(f"grep: {args.path} does not exist.", tool="grep")
    flags = re.IGNORECASE if args.ignoreCase else 0
    try:
        regex = re.compile(re.escape(args.pattern) if args.literal else args.pattern, flags)
    except re.error as exc:
        msg = f"grep: {args.pattern!r} is not a valid regular expression ({exc}); pass literal=true to search text."
        raise ToolError(msg, tool="grep") from exc
    limit, ctx = args.limit or 100, args.context or 0
    files = [root] if root.is_file() else _walk(root)
    base = root.parent if root.is_file() else root
    out: list[str] = []
    matches = 0
    for file in files:
        rel = _relative(file, base).replace(os.sep, "/")
        if args.glob and not _glob_match(rel, args.glob):
            continue
        if env.confine_to_cwd and not env.inside(file):
            continue  # a symlink out of the working directory: its contents must not leak
        try:
            data = file.read_bytes()
        except OSError:
            continue
        if b"\0" in data[:8192]:
            continue  # binary
        lines = data.decode("utf-8", errors="replace").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        shown: set[int] = set()
        for i, line in enumerate(lines):
            if not regex.search(line):
                continue
            matches += 1
            if matches > limit:
                break
            for j in range(max(0, i - ctx), min(len(lines), i + ctx + 1)):
                if j not in shown:
                    shown.add(j)
                    sep = ":" if j == i or regex.search(lines[j]) else "-"
                    out.append(f"{rel}{sep}{j + 1}{sep} {lines[j]}")
        if matches > limit:
            break
    details: dict[str, Any] = {"matches": min(matches, limit)}
    text = "\n".join(out) if out else "No matches found"
    if matches > limit:
        note = f"{limit} matches limit reached. Use limit={limit * 2} for more, or refine the pattern."
        text = _truncated(text, details, note)
    return _text(text, details)


# --- find ----------------------------------------------------------------------------------------------


class FindArgs(BaseModel):
    model_config = _ARGS
    pattern: str = Field(description="Glob pattern to match files, e.g. '*.ts', '**/*.json', or 'src/**/*.spec.ts'")
    path: str | None = Field(default=None, description="Directory to search in (default: current directory)")
    limit: int | None = Field(default=None, ge=1, description="Maximum number of results (default: 1000)")


def _find(args: FindArgs, env: ToolEnv) -> dict[str, Any]:
    root = env.resolve(args.path or ".", "find")
    if not root.is_dir():
        raise ToolError(f"find: {args.path} is not a directory.", tool="find")
    limit = args.limit or 1000
    found: list[str] = []
    total = 0
    for full in _walk(root, with_dirs=True):
        rel = _relative(full, root).replace(os.sep, "/")
        if _glob_match(rel, args.pattern):
            total += 1
            if len(found) < limit:
                found.append(rel + ("/" if full.is_dir() else ""))
    found.sort()
    text = "\n".join(found) if found else "No files found matching pattern"
    details: dict[str, Any] = {"count": total}
    if total > limit:
        text = _truncated(
            text, details, f"{limit} of {total} results shown. Use limit={total} for all, or refine the pattern."
        )
    return _text(text, details)


# --- the table ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltinTool:
    """One of pi's built-in tools."""

    name: str
    description: str
    args_model: type[BaseModel]
    run: Callable[[Any, ToolEnv], dict[str, Any]]
    touches_paths: bool = True


BUILTIN_TOOLS: dict[str, BuiltinTool] = {
    t.name: t
    for t in (
        BuiltinTool(
            "read",
            "Read the contents of a file. Output is truncated to 2000 lines or 50KB; use offset/limit for large files.",
            ReadArgs,
            _read,
        ),
        BuiltinTool(
            "bash",
            "Execute a bash command in the current working directory. Returns stdout and stderr, and the exit code. "
            "Output is truncated to the last 2000 lines or 50KB. Optionally provide a timeout in seconds.",
            BashArgs,
            _bash,
            touches_paths=False,
        ),
        BuiltinTool(
            "edit",
            "Edit a file by replacing exact text. Each oldText must match exactly once (including whitespace). "
            "Use this for precise, surgical edits.",
            EditArgs,
            _edit,
        ),
        BuiltinTool(
            "write",
            "Write content to a file. Creates the file if it doesn't exist, overwrites if it does. Creates parent "
            "directories.",
            WriteArgs,
            _write,
        ),
        BuiltinTool(
            "ls",
            "List directory contents, sorted alphabetically, '/' suffix for directories, dotfiles included.",
            LsArgs,
            _ls,
        ),
        BuiltinTool(
            "grep",
            "Search file contents for a pattern. Returns matching lines with file paths and line numbers. "
            "Respects glob filters; skips binary files.",
            GrepArgs,
            _grep,
        ),
        BuiltinTool(
            "find",
            "Search for files by glob pattern. Returns matching file paths relative to the search directory.",
            FindArgs,
            _find,
        ),
    )
}
"""pi's seven built-in tools by name."""
