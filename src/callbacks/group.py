"""CallbackGroup: several callbacks behind one, so Lightning dispatches each hook once instead of once per callback.

Lightning 2.6 calls every hook of every callback on every step, overridden or not (``_call_callback_hooks``:
a ``getattr``, the callback's ``state_key``, an f-string and a profiler context per callback and hook, about
six per-step hooks). A run with a dozen callbacks pays that dozen times six on every step, which on a small
network is a larger share of the step than the callbacks' own work (``scripts/bench.py loop``, docs/
benchmarks.md). A group answers each hook with its members that override it, in their order, by a plain
method call; a hook no member overrides stays Callback's no-op.

Checkpoints: the group's state is its members' states under their own ``state_key`` (one group per Trainer);
a checkpoint written before the members were grouped (their states at the top level of
``checkpoint["callbacks"]``) restores them too. Callbacks that Lightning finds by type (checkpointing, early
stopping, the progress bar, the timer) cannot be grouped: ``groupable`` says which can. A model summary can: the
Trainer looks for one only to decide whether to add its own, so a group holding one needs the Trainer's
``enable_model_summary=False`` (``src/build.py`` does that), or the summary is printed twice.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping, ProgressBar, Timer
from typing_extensions import override

# what the Trainer looks up in trainer.callbacks by type (trainer.checkpoint_callback, progress_bar_callback, ...)
FOUND_BY_TYPE = (Checkpoint, EarlyStopping, ProgressBar, Timer)
# every hook but on_load_checkpoint, which the group itself implements (it also restores ungrouped states)
HOOKS = tuple(
    name
    for name in vars(Callback)
    if (name.startswith("on_") or name in ("setup", "teardown")) and name != "on_load_checkpoint"
)


def groupable(callback: Callback) -> bool:
    """Whether ``callback`` can run inside a group: Lightning does not look it up by its type."""
    return not isinstance(callback, FOUND_BY_TYPE)


def _overrides(callback: Callback, hook: str) -> bool:
    return getattr(type(callback), hook) is not getattr(Callback, hook)


def _fan_out(members: Sequence[Callable[..., None]]) -> Callable[..., None]:
    def call(*args: Any, **kwargs: Any) -> None:
        for member in members:
            member(*args, **kwargs)

    return call


class CallbackGroup(Callback):
    """Runs ``callbacks`` as one Lightning callback: each hook reaches the members that override it, in order.

    Args:
        callbacks: the members; none of them of a type Lightning looks up (``groupable``).

    Raises:
        ValueError: a member Lightning looks up by type, or two members with the same ``state_key``.
    """

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        for callback in callbacks:
            if not groupable(callback):
                raise ValueError(f"{type(callback).__name__} cannot be grouped: Lightning looks it up by type")
        keys = [c.state_key for c in callbacks]
        if len(set(keys)) < len(keys):
            raise ValueError(f"two grouped callbacks share a state_key: {keys}")
        self.callbacks = list(callbacks)
        for hook in HOOKS:  # bound per instance: a hook with one member is that member's method itself
            members = [getattr(c, hook) for c in self.callbacks if _overrides(c, hook)]
            if members:
                setattr(self, hook, members[0] if len(members) == 1 else _fan_out(members))

    @property
    @override
    def state_key(self) -> str:
        """One key whatever the members: a resume with more or fewer of them restores those it has."""
        return type(self).__qualname__

    @override
    def state_dict(self) -> dict[str, Any]:
        return {c.state_key: state for c in self.callbacks if (state := c.state_dict())}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for callback in self.callbacks:
            if callback.state_key in state_dict:
                callback.load_state_dict(state_dict[callback.state_key])

    @override
    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("callbacks") or {}
        if self.state_key not in states:  # saved before the members were grouped: their states at the top level
            self.load_state_dict(copy.deepcopy(states))
        for callback in self.callbacks:
            if _overrides(callback, "on_load_checkpoint"):
                callback.on_load_checkpoint(trainer, pl_module, checkpoint)


def callback_states(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Every callback's saved state in a loaded checkpoint by its ``state_key``, a group's members included
    (a group saves theirs inside its own entry)."""
    states: dict[str, Any] = {}
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if str(key) == CallbackGroup.__qualname__ and isinstance(state, dict):
            states.update(state)
        else:
            states[str(key)] = state
    return states


def group_callbacks(callbacks: Sequence[Callback]) -> list[Callback]:
    """``callbacks`` with every groupable one in one CallbackGroup, at the place of the first of them; a list
    with fewer than two groupable callbacks is returned as it is."""
    members = [c for c in callbacks if groupable(c)]
    if len(members) < 2:
        return list(callbacks)
    group = CallbackGroup(members)
    first = callbacks.index(members[0])
    rest = [c for c in callbacks if not groupable(c)]
    return [*rest[:first], group, *rest[first:]]
