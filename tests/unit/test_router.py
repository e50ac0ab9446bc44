"""Routing: command words, help, and commands whose skill is not installed."""

from __future__ import annotations

import pytest

from bot.core.router import Router
from skills.base import Skill, SkillRequest, SkillResult


class EchoSkill(Skill):
    name = "hr_qa"
    description = "Answers HR questions."
    commands = ("ask",)

    async def handle(self, request: SkillRequest) -> SkillResult:
        return SkillResult(text=request.text, path="echo")


@pytest.fixture
def router() -> Router:
    return Router({"hr_qa": EchoSkill(context=None)})


def test_command_word_removed(router):
    route = router.route("ask how many sick days?")

    assert route.skill is not None
    assert route.text == "how many sick days?"


def test_plain_text_goes_to_default(router):
    route = router.route("How many sick days?")

    assert route.skill is router.default
    assert route.text == "How many sick days?"


def test_help_has_no_skill(router):
    route = router.route("help")

    assert route.skill is None
    assert route.unavailable is None


@pytest.mark.parametrize("text", ["summarize ticket 4412", "/summarise this thread", "report weekly HR questions"])
def test_missing_skill_command_not_sent_to_hr(router, text):
    route = router.route(text)

    assert route.skill is None
    assert route.unavailable is not None
    assert "does not offer" in router.unavailable_text(route.unavailable)
