"""`ask`: answer questions against a saved memory, and point at where the answer occurs in the sources.

Each question is read through the model in the prompt template it was trained with, starting from the
memory's saved state, and the answer is decoded (greedily by default). Questions whose prompts have the
same length are answered together as one batch; every one starts from the same saved state, and the
memory directory is never written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from titans_cli.errors import UserError
from titans_cli.evaluation.generate import decode, expand_state, prompt_ids, read, stop_ids
from titans_cli.memory_store import SourceRecord
from titans_cli.models import TitansConfig, tokenizer_for
from titans_cli.readers import InputError, file_sha256, open_input
from titans_cli.saved_memory import LoadedMemory
from titans_cli.tasks.niah import quoted_values

MAX_BATCH = 32  # questions read together: each row carries a full copy of the memory state


@dataclass
class AskOptions:
    max_tokens: int = 128  # room for one quoted needle sentence, about 90 bytes with a UUID
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
    """Questions from a file: one per line, or JSON lines (a string, or an object with "question").

    A line is read as JSON only when it is an object ({...}) or a whole quoted string; anything else is
    the question as written.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read questions ({err})") from err
    questions = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                item = json.loads(text)
            except ValueError as err:
                raise UserError(f"{path}:{number}: not valid JSON ({err.args[0]}); fix the line") from err
            if not isinstance(item, dict) or not isinstance(item.get("question"), str):
                raise UserError(f'{path}:{number}: a JSON line needs a "question" string')
            text = item["question"]
        elif text.startswith('"') and text.endswith('"'):  # a JSON string, unless it is not one
            with contextlib.suppress(ValueError):
                text = json.loads(text)
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
    prompts = [prompt_ids(model.config, tokenizer, q) for q in questions]
    by_length: dict[int, list[int]] = {}
    for index, prompt in enumerate(prompts):
        by_length.setdefault(len(prompt), []).append(index)
    groups = [same[i : i + MAX_BATCH] for same in by_length.values() for i in range(0, len(same), MAX_BATCH)]
    answers: list[Answer | None] = [None] * len(questions)
    for indices in groups:
        started = time.monotonic()
        batch = torch.stack([prompts[i] for i in indices]).to(device)
        logits, state = read(model, batch, expand_state(memory.state, len(indices)))
        generators = [question_generator(options.seed, questions[i]) for i in indices]
        decoded, _ = decode(model, logits, state, options.max_tokens, stop_ids(tokenizer),
                            options.temperature, options.top_k, generators)  # fmt: skip
        seconds = (time.monotonic() - started) / len(indices)
        for i, out in zip(indices, decoded):
            text = tokenizer.decode(out.ids).decode("utf-8", errors="replace")
            answers[i] = Answer(questions[i], text, out.mean_logprob, len(out.ids), seconds, out.stopped)
    return answers  # type: ignore[return-value]


def question_generator(seed: int, question: str) -> torch.Generator:
    """The sampling generator of one question: from the seed and the question's text, so a question gets the
    same answer with the same --seed whichever questions are asked beside it."""
    digest = hashlib.sha256(f"{seed}\0{question}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def evidence_for(
    config: TitansConfig, sources: list[SourceRecord], answers: list[str], limit: int = 3
) -> tuple[list[list[Evidence]], list[str]]:
    """`--evidence`: `find_evidence` for each answer, or for a quoting model (`answer_style = "quote"`) for
    each value its answer quotes, which the sources hold even when the model mis-copied the sentence; at
    most `limit` distinct places per answer."""
    terms = [(config.answer_style == "quote" and quoted_values(a)) or [a] for a in answers]
    places, notes = find_evidence(sources, [t for group in terms for t in group], limit)
    per_answer, at = [], 0
    for group in terms:
        found = {(p.path, p.offset): p for places_of in places[at : at + len(group)] for p in places_of}
        per_answer.append(sorted(found.values(), key=lambda p: (p.path, p.offset))[:limit])
        at += len(group)
    return per_answer, notes


def find_evidence(
    sources: list[SourceRecord], answers: list[str], limit: int = 3, context: int = 40
) -> tuple[list[list[Evidence]], list[str]]:
    """Places in the memory's sources where each answer occurs, from sources still present and unchanged.

    Every source is checked (size, sha256) and read once for all the answers. Returns, per answer, at
    most `limit` places, and a note per source that could not be searched.
    """
    needles = [a.strip().encode() for a in answers]
    found: list[list[Evidence]] = [[] for _ in answers]
    notes: list[str] = []
    if not any(needles):
        return found, notes
    for record in sources:
        problem = _unchanged_problem(record)
        if problem:
            notes.append(problem)
            continue
        _search(record.path, needles, found, limit, context)
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


def _search(path: str, needles: list[bytes], found: list[list[Evidence]], limit: int, context: int) -> None:
    """Add the occurrences of each needle in a text source to `found`, streaming; a match may straddle
    two pieces (the end of the previous piece is kept in front of the next)."""
    longest = max(len(n) for n in needles)
    keep = context + longest - 1
    carry, carry_start = b"", 0
    try:
        with open_input([path], kind="text") as reader:
            for piece in reader:
                buffer, start = carry + piece.data, carry_start
                for needle, places in zip(needles, found):
                    if not needle:
                        continue
                    at = buffer.find(needle, max(0, len(carry) - len(needle) + 1))  # not already found
                    while at >= 0 and len(places) < limit:
                        before = buffer[max(0, at - context) : at]
                        after = buffer[at + len(needle) : at + len(needle) + context]
                        snippet = (before + needle + after).decode("utf-8", errors="replace")
                        places.append(Evidence(path, start + at, " ".join(snippet.split())))
                        at = buffer.find(needle, at + 1)
                if all(len(p) >= limit for n, p in zip(needles, found) if n):
                    return
                cut = max(0, len(buffer) - keep)
                carry, carry_start = buffer[cut:], start + cut
    except InputError:
        return
