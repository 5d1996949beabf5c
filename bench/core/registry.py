"""A generic name -> entry registry, the base of every registry in the project (methods, datasets,
metrics, scheduling backends): registration by decorator, a duplicate name is an error, an unknown
name is a one-line UserError that suggests the closest names, and entries may be checked against a
base class when they are registered."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from bench.core.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind (`kind` names it in messages: "method", "dataset", ...)."""

    def __init__(self, kind: str, check: Callable[[str, T], None] | None = None) -> None:
        self.kind = kind
        self._check = check  # raises TypeError for an entry that does not fit (wrong base class, ...)
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, entry: T, aliases: tuple[str, ...] = ()) -> T:
        for n in (name, *aliases):
            if n in self._entries or n in self._aliases:
                raise ValueError(f"{self.kind} {n!r} is already registered")
        if self._check is not None:
            self._check(name, entry)
        self._entries[name] = entry
        for a in aliases:
            self._aliases[a] = name
        return entry

    def register(self, name: str, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator form of `add`: the decorated object is the entry."""

        def wrap(obj: T) -> T:
            return self.add(name, obj, aliases)

        return wrap

    def remove(self, name: str) -> None:
        """Take an entry and its aliases out (tests that register temporary entries)."""
        self._entries.pop(name, None)
        for a in self.aliases_of(name):
            del self._aliases[a]

    def canonical(self, name: str) -> str:
        """The registered name of a name or an alias; UserError with suggestions if neither."""
        name = self._aliases.get(name, name)
        if name not in self._entries:
            raise UserError(unknown_name_message(self.kind, name, self.names(with_aliases=True)))
        return name

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self, with_aliases: bool = False) -> list[str]:
        return sorted(self._entries) + (sorted(self._aliases) if with_aliases else [])

    def aliases_of(self, name: str) -> tuple[str, ...]:
        return tuple(sorted(a for a, n in self._aliases.items() if n == name))

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.names()]


def suggest(name: str, choices: list[str]) -> str:
    """` (did you mean 'vqgan'?)`, or nothing when no choice is close."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    """`unknown method 'vqgn' (did you mean 'vqgan'?); available: ...`: the same words for every registry."""
    return f"unknown {kind} {name!r}" + suggest(name, choices) + f"; available: {', '.join(choices)}"
