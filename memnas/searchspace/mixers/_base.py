"""The `Mixer` spec base class and the registry that the default spaces draw from."""

from __future__ import annotations

from typing import Any, Callable, TypeVar, overload

import pyglove as pg
from torch import nn

_MixerT = TypeVar("_MixerT", bound=type)

_REGISTRY: dict[str, type["Mixer"]] = {}


class Mixer(pg.Object):
    """Symbolic spec of a causal sequence mixer.

    A mixer spec is a small PyGlove object whose fields are its hyperparameters.
    ``build(d_model)`` returns a fresh ``torch.nn.Module`` mapping a float tensor
    of shape ``(B, T, d_model)`` to the same shape, where output ``t`` depends only
    on inputs ``0..t`` (causal).

    Subclasses implement ``build``, ``summary`` and the classmethod ``space``, and
    are made visible to `memory_space` with `register_mixer`.
    """

    def build(self, d_model: int) -> nn.Module:
        """Returns a new torch module for model width ``d_model``."""
        raise NotImplementedError(f"{type(self).__name__}.build")

    def summary(self) -> str:
        """A short human-readable label, e.g. ``"attn(h=2)"``."""
        return type(self).__name__

    def check(self, d_model: int) -> None:
        """Raises ValueError if this mixer cannot be built at width ``d_model``."""
        heads = getattr(self, "num_heads", None)
        if heads is not None and (heads < 1 or d_model % heads):
            raise ValueError(
                f"{type(self).__name__}: num_heads must be >= 1 and divide d_model, "
                f"but got num_heads={heads}, d_model={d_model}."
            )

    def state_numbers(self, d_model: int, max_len: int) -> int | None:
        """Numbers one sequence's inference-time memory holds after ``max_len`` tokens.

        The KV cache of attention (``2 * min(window, max_len) * d_model``), the fixed
        state of a recurrent mixer (e.g. ``H * d_k * d_v`` plus a short
        convolution's last inputs), whatever a decoder must keep to produce the
        next token. Multiplied by the element size it is the model's
        ``state_bytes`` cost. None when unknown (a mixer that does not say).
        """
        return None

    @classmethod
    def space(cls) -> Any:
        """Returns this mixer's default search space (a PyGlove hyper value)."""
        raise NotImplementedError(f"{cls.__name__}.space")


@overload
def register_mixer(cls: _MixerT) -> _MixerT: ...


@overload
def register_mixer(*, name: str | None = None) -> Callable[[_MixerT], _MixerT]: ...


def register_mixer(cls: Any = None, *, name: str | None = None) -> Any:
    """Class decorator that registers a `Mixer` subclass for the default spaces.

    Usable bare (``@register_mixer``) or with a name (``@register_mixer(name="x")``).
    The name defaults to the class name. Registering another class under a taken
    name is an error; re-registering the same class (e.g. on module reload) replaces it.

    Args:
      cls: The mixer class (when used bare).
      name: Registry name; defaults to ``cls.__name__``.

    Returns:
      The class itself, unchanged.

    Raises:
      TypeError: if the class is not a `Mixer` subclass.
      ValueError: if the name is taken by a different class.
    """

    def _register(c: Any) -> Any:
        if not (isinstance(c, type) and issubclass(c, Mixer)):
            raise TypeError(f"register_mixer expects a Mixer subclass, got {c!r}")
        key = name or c.__name__
        old = _REGISTRY.get(key)
        if old is not None and _qualname(old) != _qualname(c):
            raise ValueError(
                f"mixer name {key!r} is already registered to {_qualname(old)}, "
                f"cannot register {_qualname(c)}"
            )
        _REGISTRY[key] = c
        return c

    return _register(cls) if cls is not None else _register


def registered_mixers() -> dict[str, type[Mixer]]:
    """Returns the registered mixer classes by name, sorted by name."""
    return dict(sorted(_REGISTRY.items()))


def get_mixer(name: str) -> type[Mixer]:
    """Returns the mixer class registered under ``name``.

    Raises:
      KeyError: naming the unknown name and the known ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"no mixer registered as {name!r}; registered: {sorted(_REGISTRY)}"
        ) from None


def _qualname(c: type) -> str:
    return f"{c.__module__}.{c.__qualname__}"
