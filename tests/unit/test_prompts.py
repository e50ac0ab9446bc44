"""Tests of the versioned prompt files and their rendering."""

import subprocess
import sys
from pathlib import Path

import pytest

from bot.prompts import PromptLibrary

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_render_keeps_braces_in_values():
    prompt = PromptLibrary().get("hr_qa")

    text = prompt.render("user", sources="[1] Leave: 25 days {per year}", question="Is {salary} paid in €?")

    assert "[1] Leave: 25 days {per year}" in text
    assert "Is {salary} paid in €?" in text


def test_missing_value_names_the_placeholder():
    prompt = PromptLibrary().get("hr_qa")

    with pytest.raises(KeyError, match="question"):
        prompt.render("user", sources="[1] Leave")


def test_newest_version_of_a_prompt_wins(tmp_path):
    (tmp_path / "greeting.v2.toml").write_text('version = "v2"\ntext = "Hello {name}"\n', encoding="utf-8")
    (tmp_path / "greeting.v10.toml").write_text('version = "v10"\ntext = "Hi {name}"\n', encoding="utf-8")

    prompt = PromptLibrary(tmp_path).get("greeting")

    assert prompt.version == "v10"
    assert prompt.render("text", name="Ada") == "Hi Ada"


def test_rendering_does_not_load_langchain_runnables():
    # langchain-core's PromptTemplate pulls in its runnables and tracing, 25 MB in
    # every process, for templates its strict formatter renders alone.
    code = (
        "import sys, bot.runtime\n"
        "from bot.prompts import PromptLibrary\n"
        "PromptLibrary().get('hr_qa').render('system', company='Northwind')\n"
        "print(sorted(m for m in ('langchain_core.prompts', 'langchain_core.runnables', 'langsmith') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert result.stdout.strip() == "[]"
