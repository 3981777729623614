"""Skills, found where pi looks for them: markdown instructions a model follows for one kind of task."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import SkillNotFoundError

__all__ = ["Skill", "discover_skills", "skill_dirs", "skill_prompt"]


@dataclass(frozen=True)
class Skill:
    """A skill: ``<dir>/<name>/SKILL.md`` (``name``/``description`` frontmatter) or ``<dir>/<name>/<name>.md``.

    Example:
        host.skills()["review"].description
    """

    name: str
    """The frontmatter ``name``, else the directory's name."""
    description: str
    """The frontmatter ``description`` (empty when there is none)."""
    path: Path
    """The markdown file."""
    body: str
    """The instructions, frontmatter stripped."""


def skill_dirs(cwd: Path, home: Path | None = None) -> list[Path]:
    """Where pi looks, lowest precedence first: user-wide, then the project's directories."""
    home = home or Path.home()
    return [
        home / ".pi" / "agent" / "skills",
        home / ".agents" / "skills",
        cwd / ".pi" / "skills",
        cwd / ".agents" / "skills",
    ]


def _frontmatter(text: str) -> tuple[dict[str, str], str]:
    if not text.startswith("---"):
        return {}, text
    lines = text.split("\n")
    for end in range(1, len(lines)):
        if lines[end].strip() == "---":
            meta: dict[str, str] = {}
            for line in lines[1:end]:
                key, sep, value = line.partition(":")
                if sep and key.strip() and not line.startswith((" ", "\t")):
                    meta[key.strip()] = value.strip().strip("\"'")
            return meta, "\n".join(lines[end + 1 :]).lstrip("\n")
    return {}, text


def discover_skills(dirs: Sequence[Path]) -> dict[str, Skill]:
    """Every skill under ``dirs``; a later directory's skill replaces an earlier one of the same name."""
    found: dict[str, Skill] = {}
    for base in dirs:
        if not base.is_dir():
            continue
        for sub in sorted(p for p in base.iterdir() if p.is_dir()):
            for candidate in (sub / "SKILL.md", sub / f"{sub.name}.md"):
                if candidate.is_file():
                    meta, body = _frontmatter(candidate.read_text(encoding="utf-8", errors="replace"))
                    name = meta.get("name") or sub.name
                    found[name] = Skill(name, meta.get("description", ""), candidate, body.strip())
                    break
    return found


def find_skill(name: str, dirs: Sequence[Path]) -> Skill:
    """The skill ``name``.

    Raises:
        SkillNotFoundError: it is not there; the error names the places searched and the skills found.
    """
    skills = discover_skills(dirs)
    if name not in skills:
        raise SkillNotFoundError(name, searched=[str(d) for d in dirs], found=list(skills))
    return skills[name]


def skill_prompt(skill: Skill, input: Any) -> str:
    """The user message that runs a skill: its body wrapped in ``<skill>``, then the input."""
    text = input if isinstance(input, str) else ("" if input is None else json.dumps(input))
    wrapped = f'<skill name="{skill.name}">\n{skill.body}\n</skill>'
    return f"{wrapped}\n\n{text}" if text else wrapped
