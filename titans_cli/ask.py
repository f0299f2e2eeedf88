"""`ask`: answer questions against a saved memory, and point at where the answer occurs in the sources.

Each question is read through the model in the prompt template it was trained with, starting from the
memory's saved state, and the answer is decoded (greedily by default). Questions whose prompts have the
same length are answered together as one batch; every one starts from the same saved state, and the
memory directory is never written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from titans_cli.errors import UserError
from titans_cli.evaluation.generate import decode, expand_state, prompt_ids, read, stop_ids
from titans_cli.memory_store import SourceRecord
from titans_cli.models import tokenizer_for
from titans_cli.readers import InputError, file_sha256, open_input
from titans_cli.saved_memory import LoadedMemory


@dataclass
class AskOptions:
    max_tokens: int = 64
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # with sampling: only the k most likely tokens (0: all)
    seed: int = 0  # with sampling: the generator's seed, so a run can be repeated


@dataclass
class Evidence:
    path: str
    offset: int  # byte offset of the match in the (decompressed) source
    snippet: str


@dataclass
class Answer:
    question: str
    answer: str
    mean_logprob: float  # natural log, per generated token (the stop token included when one came)
    tokens: int
    seconds: float
    stopped: bool  # False: cut at --max-tokens
    evidence: list[Evidence] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "evidence"}
        out["evidence"] = [e.__dict__ for e in self.evidence]
        return out


def read_questions(path: Path) -> list[str]:
    """Questions from a file: one per line, or JSON lines (a string, or an object with "question")."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read questions ({err})") from err
    questions = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        if text[0] in "{\"":
            try:
                item = json.loads(text)
            except ValueError as err:
                raise UserError(f"{path}:{number}: not valid JSON ({err.args[0]}); fix the line") from err
            item = item.get("question") if isinstance(item, dict) else item
            if not isinstance(item, str):
                raise UserError(f'{path}:{number}: a JSON line must be a string or have a "question" string')
            text = item
        questions.append(text)
    if not questions:
        raise UserError(f"{path}: no questions in it")
    return questions


def ask(memory: LoadedMemory, questions: list[str], options: AskOptions | None = None) -> list[Answer]:
    """Answer every question from the memory's saved state; answers come back in question order."""
    options = options or AskOptions()
    model = memory.model
    if model.config.tokenizer != "bytes":
        raise UserError(
            f"{memory.path} holds DNA read by {memory.model_ref.name}: ask needs a text model; "
            "score sequences against it with `titans score --memory`"
        )
    tokenizer = tokenizer_for(model.config.tokenizer)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(options.seed)
    prompts = [prompt_ids(model.config, tokenizer, q) for q in questions]
    by_length: dict[int, list[int]] = {}
    for index, prompt in enumerate(prompts):
        by_length.setdefault(len(prompt), []).append(index)
    answers: list[Answer | None] = [None] * len(questions)
    for indices in by_length.values():
        started = time.monotonic()
        batch = torch.stack([prompts[i] for i in indices]).to(device)
        logits, state = read(model, batch, expand_state(memory.state, len(indices)))
        decoded, _ = decode(model, logits, state, options.max_tokens, stop_ids(tokenizer),
                            options.temperature, options.top_k, generator)  # fmt: skip
        seconds = (time.monotonic() - started) / len(indices)
        for i, out in zip(indices, decoded):
            text = tokenizer.decode(out.ids).decode("utf-8", errors="replace")
            answers[i] = Answer(questions[i], text, out.mean_logprob, len(out.ids), seconds, out.stopped)
    return answers  # type: ignore[return-value]


def find_evidence(
    sources: list[SourceRecord], answer: str, limit: int = 3, context: int = 40
) -> tuple[list[Evidence], list[str]]:
    """Places in the memory's sources where `answer` occurs, from sources still present and unchanged.

    Returns the places (at most `limit`) and a note per source that could not be checked.
    """
    needle = answer.strip().encode()
    found: list[Evidence] = []
    notes: list[str] = []
    if not needle:
        return found, notes
    for record in sources:
        problem = _unchanged_problem(record)
        if problem:
            notes.append(problem)
            continue
        found += _search(record.path, needle, limit - len(found), context)
        if len(found) >= limit:
            break
    return found, notes


def _unchanged_problem(record: SourceRecord) -> str:
    if record.path == "-":
        return "stdin: not kept, cannot be searched"
    path = Path(record.path)
    if not record.complete:
        return f"{record.path}: only partly ingested; not searched"
    if not path.is_file():
        return f"{record.path}: no longer present"
    if path.stat().st_size != record.size or file_sha256(path) != record.sha256:
        return f"{record.path}: changed since it was ingested; not searched"
    return ""


def _search(path: str, needle: bytes, limit: int, context: int) -> list[Evidence]:
    """Occurrences of `needle` in a text source, streamed; a match may straddle two pieces."""
    found: list[Evidence] = []
    carry, carry_start = b"", 0  # the end of the previous piece: context before, and a straddling match
    try:
        with open_input([path], kind="text") as reader:
            for piece in reader:
                buffer, start = carry + piece.data, carry_start
                at = buffer.find(needle, max(0, len(carry) - len(needle) + 1))
                while at >= 0 and len(found) < limit:
                    before = buffer[max(0, at - context) : at]
                    after = buffer[at + len(needle) : at + len(needle) + context]
                    snippet = (before + needle + after).decode("utf-8", errors="replace")
                    found.append(Evidence(path, start + at, " ".join(snippet.split())))
                    at = buffer.find(needle, at + 1)
                if len(found) >= limit:
                    break
                keep = context + len(needle) - 1
                carry, carry_start = buffer[-keep:], start + max(0, len(buffer) - keep)
    except InputError:
        return found
    return found
