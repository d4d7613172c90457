"""Shared plumbing of the pre-aggregation wrappers (centered clipping, bucketing, NNM).

A wrapper takes its base rule as a rule object, a rule name (``"krum"``) or a
dict (``{"name": "krum", "p": 3}``); names and dicts are built with
:func:`mixtailor_game.rules.registry.as_rule`, passing the wrapper's ``f`` on
when the dict does not set its own.
"""

from __future__ import annotations

from .._checks import check_int, fail


def resolve_base(where: str, base, f):
    """Return ``(base_rule, f)`` for a wrapper configured with ``base`` and ``f``.

    ``f=None`` takes the base object's ``f`` (0 for a name or dict without
    one). A rule object whose ``f`` differs from an explicit ``f`` is an error:
    the wrapper would claim a tolerance its base is not configured for.
    """
    from .registry import as_rule  # registry imports the wrappers: import late

    if f is not None:
        f = check_int(where, "f", f, low=0)
    if isinstance(base, (str, dict)):
        rule = as_rule(base, 0 if f is None else f)
    elif callable(base):
        rule = base
    else:
        raise TypeError(
            f"{where}: base must be a rule, a rule name or a dict with a 'name', got {type(base).__name__}"
        )
    base_f = int(getattr(rule, "f", 0))
    if f is None:
        f = base_f
    elif base_f != f:
        raise fail(where, "f", f"equal to the base rule's f ({base_f}) or None", f)
    return rule, f


def check_base(where: str, base, n_base: int, condition: str, got: str) -> None:
    """Run ``base.check(n_base)``; re-raise a regime error under the wrapper's name.

    The message reads ``"bucketing: needs <condition> (<base's message>), got <got>"``.
    """
    check = getattr(base, "check", None)
    if check is None:
        return
    try:
        check(n_base)
    except ValueError as exc:
        raise ValueError(f"{where}: needs {condition} ({exc}), got {got}") from None
