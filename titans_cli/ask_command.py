"""`titans ask` output: answers on stdout (plain or JSON lines), evidence and notes on stderr."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from titans_cli.ask import AskOptions, ask, evidence_for, read_questions
from titans_cli.errors import UserError
from titans_cli.saved_memory import load_memory

stderr = Console(stderr=True)


def run_ask(
    memory: Path,
    question: str | None,
    questions_file: Path | None,
    max_tokens: int,
    temperature: float,
    top_k: int,
    seed: int,
    evidence: bool,
    device: str,
    as_json: bool,
    model: str | None = None,
) -> None:
    if max_tokens < 1 or temperature < 0 or top_k < 0:
        raise UserError("--max-tokens must be ≥ 1, --temperature ≥ 0 and --top-k ≥ 0")
    if questions_file is None and not (question or "").strip():
        raise UserError('the question is empty; give its text, e.g. titans ask MEM "What is the magic number?"')
    questions = read_questions(questions_file) if questions_file else [question or ""]
    loaded = load_memory(memory, device, model)
    answers = ask(loaded, questions, AskOptions(max_tokens, temperature, top_k, seed))
    notes: list[str] = []
    if evidence:
        places, notes = evidence_for(loaded.model.config, loaded.snapshot.sources, [a.answer for a in answers])
        for answer, found in zip(answers, places):
            answer.evidence = found
    for answer in answers:
        if as_json:
            print(json.dumps(answer.to_json(), ensure_ascii=False))
        else:
            print(answer.answer, flush=True)
            for place in answer.evidence:
                stderr.print(f"  {escape(place.path)}:{place.offset}: {escape(place.snippet)}", highlight=False)
            if evidence and not answer.evidence:
                stderr.print("  (no occurrence in the sources that could be checked)")
    for note in notes:
        stderr.print(f"note: {escape(note)}", highlight=False)
