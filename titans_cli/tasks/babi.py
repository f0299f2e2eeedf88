"""bAbI-style stories told by a small world simulator, with answers read off the simulated world.

The world has actors, locations and objects. Each story sentence is one action, applied to the world only
when it is legal: ``move`` (an actor goes to another location), ``grab`` (an actor takes an object that is
free and either unseen or lying where the actor is), ``drop`` (the object stays where the actor is) and
``give`` (to an actor in the same location). Objects travel with whoever carries them. The simulator keeps
each object's location history and which sentences support each fact, so every answer comes from the true
world state rather than from templates. Tasks use bAbI's numbering:

* 1, single supporting fact: ``Where is Mary?`` (stories contain only moves, as in bAbI);
* 2, two supporting facts: ``Where is the football?`` (who took it, and where they or it went);
* 3, three supporting facts: ``Where was the apple before the kitchen?`` where the kitchen is the object's
  current location, visited once, and the answer is the location it was in just before;
* 8, who has what: ``What is Daniel carrying?``; the answer lists objects in the order they were
  acquired, joined with ``,`` (bAbI's list format), or ``nothing``.

``make_babi(task, seed, n_sentences=12, length_chars=None, split="train", n_actors=4, n_locations=6,
n_objects=4)``: without ``length_chars`` the document is the story, one sentence per line; with it, the
sentences are spread in order over ``Haystack(split)`` background text at sentence boundaries and the
document is exactly ``length_chars`` characters, so the supporting facts can be far apart. A story that
cannot pose the question (e.g. nobody has carried anything) is redrawn from the same generator.
Deterministic per (task, seed). ``meta`` holds the story sentences, their character offsets and the
indices of the supporting sentences.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

from titans_cli.tasks.example import QAExample
from titans_cli.tasks.haystack import Haystack, Split, insert_at_sentence_boundaries

TASKS: dict[int, str] = {
    1: "single supporting fact",
    2: "two supporting facts",
    3: "three supporting facts",
    8: "who has what",
}
ACTORS: tuple[str, ...] = ("Mary", "John", "Sandra", "Daniel", "Fred", "Bill", "Julie", "Emily")
LOCATIONS: tuple[str, ...] = (
    "kitchen", "garden", "hallway", "bathroom", "bedroom", "office", "cellar", "attic",
)
OBJECTS: tuple[str, ...] = ("football", "apple", "milk", "book", "umbrella", "key", "hat", "box")
MOVE_VERBS: tuple[str, ...] = ("went to", "moved to", "journeyed to", "travelled to", "went back to")
GRAB_VERBS: tuple[str, ...] = ("picked up", "got", "grabbed", "took")
DROP_VERBS: tuple[str, ...] = ("dropped", "discarded", "put down", "left")
GIVE_VERBS: tuple[str, ...] = ("gave", "handed", "passed")
_MAX_ATTEMPTS = 500


@dataclass
class _Visit:
    location: str
    support: frozenset[int]  # sentences that together establish that the object got there


@dataclass
class World:
    """True state of a story; each mutator is only called with a legal action (see ``legal_actions``)."""

    locations: list[str]
    actor_at: dict[str, str | None]  # None until the story has placed the actor
    holder: dict[str, str | None]
    lying_at: dict[str, str | None]  # where a free object lies, once the story has shown it
    history: dict[str, list[_Visit]]  # each object's successive locations
    carried_by: dict[str, list[str]]  # actor -> objects held, in acquisition order
    holder_changes: dict[str, list[tuple[int, str | None, str | None]]]  # (sentence, from, to)
    last_move: dict[str, int] = field(default_factory=dict)
    acquired: dict[str, int] = field(default_factory=dict)  # sentence that gave the current holder the object
    dropped: dict[str, frozenset[int]] = field(default_factory=dict)

    @classmethod
    def empty(cls, actors: list[str], locations: list[str], objects: list[str]) -> World:
        return cls(
            locations=locations,
            actor_at=dict.fromkeys(actors),
            holder=dict.fromkeys(objects),
            lying_at=dict.fromkeys(objects),
            history={o: [] for o in objects},
            carried_by={a: [] for a in actors},
            holder_changes={o: [] for o in objects},
        )

    def where(self, obj: str) -> str | None:
        holder = self.holder[obj]
        return self.actor_at[holder] if holder is not None else self.lying_at[obj]

    def _visit(self, obj: str, location: str, support: set[int]) -> None:
        if not self.history[obj] or self.history[obj][-1].location != location:
            self.history[obj].append(_Visit(location, frozenset(support)))

    def _set_holder(self, step: int, obj: str, actor: str | None) -> None:
        previous = self.holder[obj]
        if previous is not None:
            self.carried_by[previous].remove(obj)
        if actor is not None:
            self.carried_by[actor].append(obj)
            self.acquired[obj] = step
        self.holder[obj] = actor
        self.holder_changes[obj].append((step, previous, actor))

    def legal_actions(self, with_objects: bool) -> dict[str, list[tuple[str, ...]]]:
        actions: dict[str, list[tuple[str, ...]]] = {"move": [], "grab": [], "drop": [], "give": []}
        for actor, at in self.actor_at.items():
            actions["move"].extend(("move", actor, loc) for loc in self.locations if loc != at)
            if not with_objects or at is None:
                continue
            for obj, holder in self.holder.items():
                if holder is None and self.lying_at[obj] in (None, at):
                    actions["grab"].append(("grab", actor, obj))
                elif holder == actor:
                    actions["drop"].append(("drop", actor, obj))
                    actions["give"].extend(
                        ("give", actor, other, obj)
                        for other, other_at in self.actor_at.items()
                        if other != actor and other_at == at
                    )
        return actions

    def apply(self, step: int, action: tuple[str, ...]) -> None:
        kind, actor, *rest = action
        if kind == "move":
            (location,) = rest
            self.actor_at[actor] = location
            self.last_move[actor] = step
            for obj in self.carried_by[actor]:
                self._visit(obj, location, {self.acquired[obj], step})
        elif kind == "grab":
            (obj,) = rest
            location = self.actor_at[actor]
            assert location is not None
            self._set_holder(step, obj, actor)
            self.lying_at[obj] = None
            self._visit(obj, location, {self.last_move[actor], step})
        elif kind == "drop":
            (obj,) = rest
            self._set_holder(step, obj, None)
            self.lying_at[obj] = self.actor_at[actor]
            self.dropped[obj] = frozenset({self.last_move[actor], step})
        else:
            receiver, obj = rest
            self._set_holder(step, obj, receiver)


# Moves dominate, as in bAbI, so carried objects actually travel.
_ACTION_WEIGHTS = {"move": 0.45, "grab": 0.25, "drop": 0.15, "give": 0.15}


def _sentence(rng: random.Random, action: tuple[str, ...]) -> str:
    kind, actor, *rest = action
    if kind == "move":
        return f"{actor} {rng.choice(MOVE_VERBS)} the {rest[0]}."
    if kind == "grab":
        return f"{actor} {rng.choice(GRAB_VERBS)} the {rest[0]}."
    if kind == "drop":
        return f"{actor} {rng.choice(DROP_VERBS)} the {rest[0]}."
    return f"{actor} {rng.choice(GIVE_VERBS)} the {rest[1]} to {rest[0]}."


def _tell_story(
    rng: random.Random, task: int, n_sentences: int, n_actors: int, n_locations: int, n_objects: int
) -> tuple[list[str], World]:
    world = World.empty(rng.sample(ACTORS, n_actors), rng.sample(LOCATIONS, n_locations),
                        rng.sample(OBJECTS, n_objects))
    sentences = []
    for step in range(n_sentences):
        legal = world.legal_actions(with_objects=task != 1)
        kinds = [kind for kind in _ACTION_WEIGHTS if legal[kind]]
        kind = rng.choices(kinds, weights=[_ACTION_WEIGHTS[k] for k in kinds])[0]
        action = rng.choice(legal[kind])
        sentences.append(_sentence(rng, action))
        world.apply(step, action)
    return sentences, world


def _ask(rng: random.Random, task: int, world: World) -> tuple[str, str, list[int]] | None:
    """A question the world can answer: (question, answer, supporting sentence indices), or None."""
    placed = [a for a, at in world.actor_at.items() if at is not None]
    if task == 1:
        if not placed:
            return None
        actor = rng.choice(placed)
        return f"Where is {actor}?", str(world.actor_at[actor]), [world.last_move[actor]]
    if task == 2:
        seen = [o for o in world.holder if world.where(o) is not None]
        if not seen:
            return None
        obj = rng.choice(seen)
        holder = world.holder[obj]
        support = world.dropped[obj] if holder is None else {world.acquired[obj], world.last_move[holder]}
        return f"Where is the {obj}?", str(world.where(obj)), sorted(support)
    if task == 3:
        # The last location must be visited once, or "before the kitchen" would be ambiguous.
        travelled = [
            o for o, visits in world.history.items()
            if len(visits) >= 2 and all(v.location != visits[-1].location for v in visits[:-1])
        ]
        if not travelled:
            return None
        obj = rng.choice(travelled)
        before, last = world.history[obj][-2:]
        return (f"Where was the {obj} before the {last.location}?", before.location,
                sorted(before.support | last.support))
    if not placed:
        return None
    carrying = [a for a in placed if world.carried_by[a]]
    involved = [a for a in placed if any(a in c[1:] for cs in world.holder_changes.values() for c in cs)]
    # Mostly ask about someone carrying something, so "nothing" does not dominate the answers.
    actor = rng.choice(carrying if carrying and rng.random() < 0.75 else involved or placed)
    support = []
    for changes in world.holder_changes.values():
        mine = [step for step, giver, taker in changes if actor in (giver, taker)]
        support.extend(mine[-1:])
    return f"What is {actor} carrying?", ",".join(world.carried_by[actor]) or "nothing", sorted(support)


def make_babi(
    task: int,
    seed: int,
    n_sentences: int = 12,
    length_chars: int | None = None,
    split: Split = "train",
    n_actors: int = 4,
    n_locations: int = 6,
    n_objects: int = 4,
) -> QAExample:
    """One bAbI-style story and question (see the module docstring)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    if n_sentences < 1:
        raise ValueError(f"n_sentences must be >= 1, got {n_sentences}")
    if not (1 <= n_actors <= len(ACTORS) and 2 <= n_locations <= len(LOCATIONS)
            and 1 <= n_objects <= len(OBJECTS)):
        raise ValueError("n_actors, n_locations or n_objects out of range")
    rng = random.Random(f"babi:{task}:{seed}")  # tasks with the same seed tell different stories
    for _ in range(_MAX_ATTEMPTS):
        sentences, world = _tell_story(rng, task, n_sentences, n_actors, n_locations, n_objects)
        asked = _ask(rng, task, world)
        if asked is not None:
            break
    else:
        raise ValueError(f"no story of {n_sentences} sentences could pose a task-{task} question")
    question, answer, support = asked

    if length_chars is None:
        document = "\n".join(sentences)
        offsets = [0, *itertools.accumulate(len(s) + 1 for s in sentences[:-1])]
    else:
        insertions = [s + " " for s in sentences]
        filler_chars = length_chars - sum(len(s) for s in insertions)
        if filler_chars < 0:
            story_chars = length_chars - filler_chars
            raise ValueError(f"length_chars={length_chars} is shorter than the story ({story_chars})")
        filler = Haystack(split).text(filler_chars, random.Random(rng.getrandbits(64)))
        depths = sorted(rng.random() for _ in sentences)
        document, offsets = insert_at_sentence_boundaries(filler, list(zip(depths, insertions, strict=True)))
    return QAExample(
        document=document,
        question=question,
        answer=answer,
        task=f"babi_{task}",
        meta={"story": sentences, "offsets": offsets, "supporting": support, "split": split, "seed": seed},
    )
