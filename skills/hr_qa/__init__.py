"""HR policy questions answered from the sources HR maintains, with citations."""

from skills.hr_qa.skill import HRQuestionSkill

__all__ = ["HRQuestionSkill"]
