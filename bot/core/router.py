"""Choosing the skill for a message."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import entry_points

from skills.base import Skill, SkillContext

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "chatops.skills"
DEFAULT_SKILL = "hr_qa"


@dataclass(frozen=True)
class Route:
    """The skill chosen for a message and the text it receives.

    ``skill`` None means a reply without a skill: help, or ``unavailable`` naming a
    command whose skill this installation does not have.
    """

    skill: Skill | None
    text: str
    unavailable: str | None = None


# Command words the chat platforms offer (Slack's /summarize and /report, the Teams
# command list) whose skills may not be installed. Without one, the message must not
# fall through to HR Q&A, which would treat a ticket as a policy question.
PLATFORM_COMMANDS = {
    "summarize": "summaries of tickets and threads",
    "summarise": "summaries of tickets and threads",
    "report": "report drafts",
}

def load_skills(context: SkillContext) -> dict[str, Skill]:
    """Create every skill registered under the ``chatops.skills`` entry-point group."""
    skills: dict[str, Skill] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        skill_class = entry_point.load()
        skills[skill_class.name] = skill_class(context)
        logger.info("Loaded skill %s from %s", skill_class.name, entry_point.value)
    return skills


class Router:
    """Routes on a leading command word (``ask …``, ``help``); anything else goes to HR Q&A."""

    def __init__(self, skills: dict[str, Skill], default: str = DEFAULT_SKILL) -> None:
        if default not in skills:
            raise ValueError(f"default skill {default!r} is not registered; registered: {sorted(skills)}")
        self.skills = skills
        self.default = skills[default]
        self.commands = {command: skill for skill in skills.values() for command in skill.commands}

    def route(self, text: str) -> Route:
        stripped = text.strip()
        first, _, rest = stripped.partition(" ")
        command = first.lower().lstrip("/").rstrip(":,")
        if command == "help":
            return Route(skill=None, text=rest.strip())
        if command in self.commands and rest.strip():
            return Route(skill=self.commands[command], text=rest.strip())
        if command in PLATFORM_COMMANDS and command not in self.commands:
            return Route(skill=None, text=rest.strip(), unavailable=command)
        return Route(skill=self.default, text=stripped)

    def unavailable_text(self, command: str) -> str:
        what = PLATFORM_COMMANDS.get(command, command)
        return f"This assistant does not offer {what} yet, so `{command}` has nothing to run. " + self.help_text()

    def help_text(self) -> str:
        lines = ["Here is what I can do:"]
        for skill in self.skills.values():
            commands = ", ".join(f"`{command} …`" for command in skill.commands)
            lines.append(f"• {skill.description}" + (f" Start with {commands}." if commands else ""))
        lines.append("Anything else is treated as an HR policy question.")
        return "\n".join(lines)
