"""Typed settings: the frozen, validated, JSON-round-tripping dataclasses every recipe is configured by.

A recipe's whole configuration is one `Settings` tree: its `ModelConfig`, its `TrainConfig` and the settings
of its task (data, search, ...), each a frozen dataclass like `ModelConfig`. The library reads fields; only
`cli/` knows flag names. Errors raised here are `SettingsError`s that name the field by its dotted path
(`data.block_size`), so the command line can say which flag was wrong.

    @dataclass(frozen=True)
    class LMData(Settings):
        block_size: int = 64
        RESUMABLE = ()                           # fields a resumed run may change

        def __post_init__(self):
            self.check_positive("block_size")

    LMData.from_dict({"block_size": 8})          # unknown keys are an error naming them
    settings.to_dict()                           # plain JSON types, nested settings as dicts
    settings.merged({"data.block_size": 32})     # a copy with dotted-path changes, validated again

What a resume may change is declared once, on the settings classes (`RESUMABLE`, a tuple of field names of
that class); `resumable_paths(cls)` collects them through the tree. `EVALUABLE` declares likewise what an
evaluation of a trained run may change (a translation's beam size).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar


class SettingsError(ValueError):
    """A setting with a bad value: ``path`` is the field's dotted path (``train.lr``), ``value`` the value when
    the message should show it first; the message starts with them, so a caller that knows the flag of that field
    can rewrite it (see cli), and so can it other settings the reason names in backquotes (`` `init` ``)."""

    def __init__(self, path: str, message: str, value: Any = None):
        super().__init__(f"{path}{'' if value is None else f' {value}'}: {message}")
        self.path, self.reason, self.value = path, message, value

    def under(self, prefix: str) -> SettingsError:
        """The same error one level down a settings tree (``lr`` -> ``train.lr``)."""
        return SettingsError(f"{prefix}.{self.path}", self.reason, self.value)


class Settings:
    """Mixin for a frozen dataclass of settings: dict/JSON round trip, nested settings, validation helpers."""

    #: the fields of this class a resumed run may change (budgets, where it runs); every other one is kept
    RESUMABLE: ClassVar[tuple[str, ...]] = ()
    #: the fields an evaluation of a trained run (--eval-only) may change (its search, how much it scores)
    EVALUABLE: ClassVar[tuple[str, ...]] = ()

    # -- validation helpers for __post_init__ ------------------------------------------------------------
    def check_choice(self, name: str, choices: Iterable[str]) -> None:
        value, choices = getattr(self, name), tuple(choices)
        if value not in choices:
            raise SettingsError(name, f"{value!r} is not one of {', '.join(map(str, choices))}")

    def check_positive(self, *names: str) -> None:
        """Each of ``names`` is > 0 (or None)."""
        for name in names:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise SettingsError(name, f"must be > 0, got {value}")

    def check_range(self, name: str, low: float, high: float, high_open: bool = False) -> None:
        value = getattr(self, name)
        if value is not None and not (low <= value < high if high_open else low <= value <= high):
            raise SettingsError(name, f"must be in [{low}, {high}{')' if high_open else ']'}, got {value}")

    # -- round trip ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: nested settings (and `ModelConfig`, `TrainConfig`) as dicts, tuples as lists."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        """Rebuild from `to_dict()` output; an unknown key is a `SettingsError` naming it; nested dataclass
        fields are rebuilt by their own `from_dict`, and their errors name the whole path."""
        if not isinstance(d, Mapping):
            raise SettingsError(cls.__name__, f"expected an object of settings, got {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise SettingsError(unknown[0], f"unknown setting of {cls.__name__} (known: {', '.join(fields)})")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for name, value in d.items():
            kind = _dataclass_of(hints[name])
            if kind is not None and isinstance(value, Mapping):
                try:
                    value = kind.from_dict(value)
                except SettingsError as err:
                    raise err.under(name) from None
                except (ValueError, TypeError) as err:  # ModelConfig / TrainConfig name the field themselves
                    raise SettingsError(name, str(err)) from None
            kwargs[name] = value
        try:
            return cls(**kwargs)
        except TypeError as err:
            raise SettingsError(cls.__name__, str(err)) from None

    def merged(self, changes: Mapping[str, Any]) -> Any:
        """A copy with ``changes`` (dotted paths -> values) applied, validated again."""
        tree = self.to_dict()
        for path, value in changes.items():
            node = tree
            *parents, leaf = path.split(".")
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise SettingsError(path, f"no such setting in {type(self).__name__}")
                node = node[part]
            if leaf not in node:
                raise SettingsError(path, f"no such setting in {type(self).__name__}")
            node[leaf] = value
        return type(self).from_dict(tree)


def resumable_paths(cls: type, prefix: str = "", declared: str = "RESUMABLE") -> set[str]:
    """Dotted paths of every field in the settings tree of ``cls`` that a resume may change (``declared``
    "EVALUABLE": that an evaluation of a trained run may change)."""
    paths = {prefix + name for name in getattr(cls, declared, ())}
    for name, hint in typing.get_type_hints(cls).items():
        kind = _dataclass_of(hint)
        if kind is not None and name in {f.name for f in dataclasses.fields(cls)}:
            paths |= resumable_paths(kind, f"{prefix}{name}.", declared)
    return paths


def _dataclass_of(hint: Any) -> type | None:
    """The dataclass a field holds (``X`` or ``X | None``), if it has a ``from_dict``."""
    args = typing.get_args(hint) or (hint,)
    for arg in args:
        if isinstance(arg, type) and dataclasses.is_dataclass(arg) and hasattr(arg, "from_dict"):
            return arg
    return None


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
