"""Standard status conditions (``metav1.Condition``), set the way Kubernetes sets them.

`set_condition` changes ``last_transition_time`` only when the condition's status flips, as
apimachinery's ``meta.SetStatusCondition`` does, so a condition that stays True keeps the time it
became True however often it is rewritten.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs


class ConditionStatus(enum.Enum):
    """The three states of a condition."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


@attrs.frozen
class Condition:
    """One condition of an object's status.

    Attributes:
        type: What it is about (``Ready``).
        status: True, False or Unknown.
        reason: One CamelCase word a program can switch on.
        message: What happened and what to do, for a person.
        last_transition_time: When ``status`` last flipped, RFC 3339.
        observed_generation: The object generation this was computed from.
    """

    type: str
    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: str
    observed_generation: int | None = None


def set_condition(conditions: Sequence[Condition], new: Condition) -> tuple[Condition, ...]:
    """``conditions`` with ``new`` in place of the condition of the same type.

    The transition time of ``new`` is used only if the status flipped (or the type is new);
    otherwise the old transition time is kept.
    """
    result: list[Condition] = []
    replaced = False
    for old in conditions:
        if old.type != new.type:
            result.append(old)
            continue
        replaced = True
        if old.status == new.status:
            result.append(attrs.evolve(new, last_transition_time=old.last_transition_time))
        else:
            result.append(new)
    if not replaced:
        result.append(new)
    return tuple(result)


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of ``type_``, if present."""
    return next((c for c in conditions if c.type == type_), None)
