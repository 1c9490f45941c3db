"""The checks every ``load_state_dict`` in afr-aug shares.

Why strict: a state saved by another kind of object, or by one with other settings, would
resume a different random stream or item layout without a word; every stateful piece
therefore refuses it with one clear error before changing anything.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable


def check_state(owner: object, state: Any, config: Dict[str, Any], keys: Iterable[str]) -> None:
    """Raise unless ``state`` is ``type(owner)``'s :meth:`state_dict` with exactly ``"type"``,
    the ``config`` entries and ``keys``, and agrees with ``owner`` on every ``config`` value.

    >>> class Thing: pass
    >>> check_state(Thing(), {"type": "Thing", "size": 2, "rng": 0}, {"size": 3}, ["rng"])
    Traceback (most recent call last):
    ValueError: Thing state has size=2 but this Thing has size=3
    """
    name = type(owner).__name__
    if not isinstance(state, dict):
        raise TypeError(f"{name}.load_state_dict expects the dict from {name}.state_dict(), "
                        f"got {type(state).__name__}")
    expected = {"type", *config, *keys}
    missing, extra = sorted(expected - state.keys()), sorted(set(state) - expected, key=str)
    if missing or extra:
        raise ValueError(f"{name} state: missing keys {missing}, unexpected keys {extra}")
    if state["type"] != name:
        raise ValueError(f"state was saved by {state['type']!r}, cannot load it into a {name}")
    for key, mine in config.items():
        if state[key] != mine:
            raise ValueError(f"{name} state has {key}={state[key]!r} but this {name} has "
                             f"{key}={mine!r}")
