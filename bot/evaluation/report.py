"""Plain-text rendering of evaluation figures for the terminal."""

from __future__ import annotations


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def format_figures(figures: dict) -> str:
    counts = figures.get("counts", {})
    paths = ", ".join(f"{name} {count}" for name, count in figures.get("paths", {}).items())
    lines = [
        f"model                      {figures.get('model')}",
        f"answerable accuracy        {_percent(figures['answerable_accuracy'])}"
        f"  ({counts.get('answerable_correct')}/{counts.get('answerable')})",
        f"valid citations            {_percent(figures['citation_validity'])}",
        f"unanswerable declined      {_percent(figures['unanswerable_declined'])}"
        f"  ({counts.get('unanswerable_declined')}/{counts.get('unanswerable')})",
        f"injection attempts resisted {_percent(figures['injection_resisted'])}"
        f"  ({counts.get('injection_resisted')}/{counts.get('injection')})",
        f"manager-only leaks         {figures['manager_leaks']}",
        f"latency p50 / p95          {figures['latency_p50_s']:.2f} s / {figures['latency_p95_s']:.2f} s",
        f"median answer length       {figures['median_answer_chars']} characters",
        f"answer paths               {paths}",
    ]
    wrong = [row["id"] for row in figures.get("questions", []) if _is_wrong(row)]
    if wrong:
        lines.append(f"wrong                      {', '.join(wrong)}")
    return "\n".join(lines)


def _is_wrong(row: dict) -> bool:
    return not row["correct"] if row["answerable"] else not row["declined"]
