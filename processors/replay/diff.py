"""Original vs replayed decisions (`zapstream replay --diff`): pure counting.

Turns are matched by turn id (ids derive from message ids, so a replayed turn has the
live id). A matched turn *changed* when its intent or its actions (the full action
dicts, in order) differ. Counts by intent and by action type are over the matched
turns on both sides; replayed turns without a live decision (a burst cut by the
slice's edge, or a turn the live engine never decided) are counted apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zapstream.log import mask_phone


@dataclass(frozen=True)
class Original:
    intent: str
    actions: list[dict[str, Any]]


def action_types(actions: list[dict[str, Any]]) -> list[str]:
    return [str(a.get("action", "?")) for a in actions]


@dataclass
class Diff:
    originals: Mapping[str, Original]
    max_samples: int = 5
    turns: int = 0
    matched: int = 0
    changed: int = 0
    unmatched: int = 0
    intents: dict[str, list[int]] = field(default_factory=dict)
    """intent → [original count, replayed count] over matched turns."""
    actions: dict[str, list[int]] = field(default_factory=dict)
    """action type → [original count, replayed count] over matched turns."""
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(original intent, replayed intent) → turns, for the changed intents."""
    samples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, turn_id: str, user_id: str, intent: str, actions: list[dict[str, Any]]) -> None:
        self.turns += 1
        original = self.originals.get(turn_id)
        if original is None:
            self.unmatched += 1
            return
        self.matched += 1
        self._count(self.intents, [original.intent], 0)
        self._count(self.intents, [intent], 1)
        self._count(self.actions, action_types(original.actions), 0)
        self._count(self.actions, action_types(actions), 1)
        if original.intent == intent and original.actions == actions:
            return
        self.changed += 1
        if original.intent != intent:
            self.transitions[(original.intent, intent)] += 1
        if len(self.samples) < self.max_samples:
            self.samples.append(
                {
                    "turn_id": turn_id,
                    "user": mask_phone(user_id),
                    "original": {
                        "intent": original.intent,
                        "actions": action_types(original.actions),
                    },
                    "replayed": {"intent": intent, "actions": action_types(actions)},
                }
            )

    def merge(self, other: Diff) -> None:
        """Add another part's counts (the same originals, other partitions)."""
        self.turns += other.turns
        self.matched += other.matched
        self.changed += other.changed
        self.unmatched += other.unmatched
        for mine, theirs in ((self.intents, other.intents), (self.actions, other.actions)):
            for key, (a, b) in theirs.items():
                row = mine.setdefault(key, [0, 0])
                row[0] += a
                row[1] += b
        self.transitions.update(other.transitions)
        self.samples.extend(other.samples[: max(0, self.max_samples - len(self.samples))])

    @staticmethod
    def _count(table: dict[str, list[int]], keys: list[str], side: int) -> None:
        for key in keys:
            table.setdefault(key, [0, 0])[side] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "turns": self.turns,
            "matched": self.matched,
            "changed": self.changed,
            "unmatched": self.unmatched,
            "intents": {
                k: {"original": v[0], "replayed": v[1]} for k, v in sorted(self.intents.items())
            },
            "actions": {
                k: {"original": v[0], "replayed": v[1]} for k, v in sorted(self.actions.items())
            },
            "intent_changes": [
                {"from": a, "to": b, "turns": n} for (a, b), n in self.transitions.most_common()
            ],
            "samples": self.samples,
        }

    def render(self) -> str:
        lines = [
            f"turns replayed {self.turns}: {self.matched} matched a live decision, "
            f"{self.changed} changed, {self.unmatched} without a live decision"
        ]
        for title, table in (("intent", self.intents), ("action", self.actions)):
            if not table:
                continue
            width = max([len(title), *(len(k) for k in table)])
            lines.append(f"{title.ljust(width)}  original  replayed  change")
            for key, (was, now) in sorted(table.items(), key=lambda kv: (-max(kv[1]), kv[0])):
                lines.append(f"{key.ljust(width)}  {was:8d}  {now:8d}  {now - was:+6d}")
        for (before, after), n in self.transitions.most_common(10):
            lines.append(f"intent {before} -> {after}: {n} turns")
        for s in self.samples:
            o, r = s["original"], s["replayed"]
            lines.append(
                f"sample {s['turn_id']} ({s['user']}): {o['intent']} {o['actions']} -> "
                f"{r['intent']} {r['actions']}"
            )
        return "\n".join(lines)
