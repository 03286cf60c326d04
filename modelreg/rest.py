"""The resting state: where a stateful model's state settles when the host feeds it silence.

A recurrent network fed its rest input (zeros by default; the entry's
``rest_input``) does not stay at the zero state: biases drive it elsewhere. A
``reset()`` to zeros therefore makes the first outputs jump, which in audio is
a click. :func:`compute_resting_state` runs the model from the zero state on
the rest input until the state stops moving, and describes what it did when it
never does (oscillates, diverges, still moving).

Convergence, precisely (a float64 copy of the model is the reference):

- a frame *settles* the state when it changes no state value by more than
  :data:`THRESHOLD` (1e-9) and the geometric tail still to come, estimated from
  the last frames' rate of change, is below it too (a slow decay whose steps are
  already small is not taken for rest), or when its steps are float64 rounding
  (64 epsilons, relative beyond magnitude 1: a state at rest may wobble by an ulp);
- :data:`MAX_FRAMES` (20000) frames at most;
- ``frames``: how many frames from the zero state until every state value is
  within :data:`SETTLED` (1e-6, relative beyond magnitude 1) of the resting
  state; ``float32_frames``: the same for the float32 model (within SETTLED for
  :data:`SETTLE_WINDOW` frames in a row), the warm-up a float32 runtime needs.

A model whose state is only conv buffers (every layer kind's :meth:`~modelreg.layers.base.LayerKind.memory`
finite: no recurrent layer anywhere) needs no search: after ``M`` frames of a constant input
(``M`` = the model's memory, its receptive field minus one) every buffer holds only values
computed from that input, so the state is at rest exactly. The resting state is then one
sequence call of ``M`` rest frames (full convolutions, a float64 copy), and ``frames`` and
``float32_frames`` are ``M`` (an upper bound: exactly at rest from there on).

Nothing here imports torch or numpy at module level; the model is any object
with :class:`~modelreg.builder.RealtimeModel`'s ``step`` / ``state_layout``
(named by a protocol: the builder imports this module, not the other way round).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

import attrs

if TYPE_CHECKING:
    import numpy as np

    from .report import CheckResult

__all__ = [
    "FLOAT32_TOLERANCE",
    "MAX_FRAMES",
    "METADATA_RESET",
    "METADATA_REST_STATE",
    "RESET_MODES",
    "SETTLED",
    "SETTLE_WINDOW",
    "THRESHOLD",
    "Behaviour",
    "ResetMode",
    "RestingState",
    "compute_resting_state",
    "rest_check",
]

#: What a stateful model's ``reset()`` restores: zeros (the default), or the resting state.
ResetMode = Literal["zeros", "rest"]
RESET_MODES: tuple[str, ...] = ("zeros", "rest")
#: What the state did on the rest input.
Behaviour = Literal["stateless", "converged", "oscillates", "diverges", "moving"]

#: Settled: no state value moves by more than this in a frame (float64), tail estimate included.
THRESHOLD = 1e-9
#: The bound on frames run looking for the resting state.
MAX_FRAMES = 20_000
#: Within this of the resting state (relative beyond magnitude 1) counts as at rest, for ``frames``.
SETTLED = 1e-6
#: The float32 model counts as settled once within SETTLED for this many frames in a row.
SETTLE_WINDOW = 64
#: Longest oscillation period looked for (frames).
MAX_PERIOD = 128
#: Frames between two looks for an oscillation.
_PERIOD_EVERY = 256
#: Frames over which the rate of decay is estimated.
_RATE_WINDOW = 8
#: Steps below this many float64 epsilons (relative beyond magnitude 1) are rounding, not motion.
_ROUNDING = 64 * 2.0**-52
#: Default tolerance of a click after a resting reset when the caller gives none (the parity default).
FLOAT32_TOLERANCE = 1e-5

#: ONNX metadata_props keys (see modelreg.onnx.exporter): the reset mode and the resting state.
METADATA_RESET = "modelreg.reset"
METADATA_REST_STATE = "modelreg.rest_state"

class RestModule(Protocol):
    """What :func:`compute_resting_state` uses of a :class:`~modelreg.builder.RealtimeModel`."""

    spec_name: str
    rest_input: tuple[float, ...]

    @property
    def is_stateful(self) -> bool: ...

    def state_layout(self) -> list[tuple[str, int]]: ...

    def initial_state(self, batch: int) -> Any: ...

    def step(self, x: Any, state: Any) -> tuple[Any, Any]: ...

    @property
    def frame_period(self) -> int:
        """Frames after which the state's cycle repeats on a constant input (1; a strided conv1d's
        frame counter: the lcm of the strides). The state is compared every that many frames."""

    # Optional: ``memory() -> int | None`` (finite memory: the resting state without a search).


@attrs.frozen(eq=False)
class RestingState:
    """Where a model's state settles on its rest input, or what it did instead.

    - ``behaviour``: ``"converged"``; ``"stateless"`` (no state: the output on the
      rest input is ``output``); ``"oscillates"``, ``"diverges"`` or ``"moving"``
      (no resting state: ``state`` is empty, ``verdict`` says what happened);
    - ``state``: per state tensor, in ``state_layout()`` order, its resting values
      as float32 ``[size]`` arrays (the float64 reference rounded);
    - ``output``: the float64 output at rest ``[out_features]`` (None without rest);
    - ``frames`` / ``float32_frames``: frames from the zero state to rest, in
      float64 and in float32 (None: not reached within the bound);
    - ``frames_run``, ``max_delta`` (the last frame's largest state change),
      ``period`` (of an oscillation), ``threshold``.
    """

    model: str
    rest_input: tuple[float, ...]
    behaviour: Behaviour
    state: Mapping[str, np.ndarray] = attrs.field(factory=dict)
    output: np.ndarray | None = None
    frames: int | None = None
    float32_frames: int | None = None
    frames_run: int = 0
    max_delta: float = 0.0
    period: int | None = None
    threshold: float = THRESHOLD
    #: What the state did, in words, when it did not settle.
    detail: str = ""

    @property
    def converged(self) -> bool:
        """True when there is a resting state (or no state at all)."""
        return self.behaviour in ("converged", "stateless")

    @property
    def stateful(self) -> bool:
        return self.behaviour != "stateless"

    @property
    def verdict(self) -> str | None:
        """None when settled; else one line naming the model and what its state did."""
        return None if self.converged else f"{self.model}: {self.unsettled}"

    @property
    def unsettled(self) -> str:
        """What the state did instead of settling, in words (without the model's name); "" when settled."""
        if self.converged:
            return ""
        return f"the state never settles on the rest input ({_input_words(self.rest_input)}): {self.detail}"

    def metadata(self) -> str:
        """The resting state as the ONNX metadata value: JSON ``{name: [[[v, ...]]]}`` (``[1, 1, size]``,
        float32 values written shortest round-trip), in state order."""
        import json

        import numpy as np

        # str() of a float32 is its shortest text that reads back as the same float32.
        return json.dumps({name: [[[float(str(np.float32(v))) for v in values]]] for name, values in self.state.items()},
                          separators=(",", ":"))

    def tensors(self, batch: int, dtype: Any) -> list[Any]:
        """The resting state as torch tensors ``[1, batch, size]`` of ``dtype``, in state order."""
        import torch

        return [torch.from_numpy(values).to(dtype).view(1, 1, -1).repeat(1, batch, 1) for values in self.state.values()]


def _input_words(values: tuple[float, ...]) -> str:
    if values and all(v == values[0] for v in values):
        return f"{values[0]:g} on all {len(values)} features"
    shown = ", ".join(f"{v:g}" for v in values[:4])
    return f"[{shown}{', ...' if len(values) > 4 else ''}]"


def _flat(state: Any) -> np.ndarray:
    """A model state (per layer, tuples of ``[1, 1, size]`` tensors) as one float64 vector."""
    import numpy as np

    parts = [tensor.reshape(-1).double().numpy() for layer in state for tensor in layer]
    return np.concatenate(parts) if parts else np.zeros(0)


def _period(ring: list[np.ndarray], threshold: float) -> int | None:
    """The shortest period p (2..MAX_PERIOD) the last frames repeat with (twice in a row), or None.

    Only a state that moves by more than ``threshold`` within the cycle oscillates: one creeping
    by less per frame repeats itself at every p to within ``threshold`` too, and is still moving."""
    import numpy as np

    if len(ring) < 4:
        return None
    recent = np.stack(ring)
    for p in range(2, min(MAX_PERIOD, len(ring) // 2) + 1):
        if float(np.max(np.abs(recent[-p:] - recent[-2 * p:-p]))) <= threshold:
            steps = np.abs(np.diff(recent[-p - 1:], axis=0))
            return p if float(np.max(steps)) > threshold else None
    return None


def compute_resting_state(module: RestModule, rest_input: tuple[float, ...] | None = None, *,
                          max_frames: int = MAX_FRAMES, threshold: float = THRESHOLD) -> RestingState:
    """Run ``module`` (a float64 copy) from the zero state on ``rest_input`` (default: the module's,
    the entry's ``rest_frame``) until the state settles; see the module docstring for the rules.

    Never raises for what the model does: a state that does not settle is described in the result
    (``behaviour``, ``verdict``). The module itself is not touched (its state, dtype, mode).
    """
    import copy

    import torch

    values = tuple(float(v) for v in (module.rest_input if rest_input is None else rest_input))
    name = module.spec_name
    # Copies: the caller's module keeps its dtype, mode and state (a thread may be stepping it; the
    # copies only ever step from the zero state, so whatever state they copied does not matter).
    exact: Any = copy.deepcopy(module)
    exact.double().eval()
    single: Any = copy.deepcopy(module)
    single.float().eval()
    from .latency import single_thread

    x64 = torch.tensor(values, dtype=torch.float64).view(1, 1, -1)
    # One thread: frame-by-frame calls of small layers are several times slower on torch's pool.
    with single_thread(), torch.inference_mode():
        if not module.is_stateful:
            y, _ = exact.step(x64, [()] * len(exact.layers))
            return RestingState(name, values, "stateless", output=y.reshape(-1).numpy().copy())
        period = int(getattr(module, "frame_period", 1))
        if period > 1:
            # A frame counter (a strided conv1d's phase) cycles however long the model rests: the state is
            # compared every `period` frames, one step of the copies being that many frames of the rest input.
            settled = _settle(name, values, exact, single, x64.repeat(1, period, 1),
                              max_frames=max(1, max_frames // period), threshold=threshold)
            return _in_frames(settled, period)
        memory_of = getattr(module, "memory", None)
        memory = memory_of() if callable(memory_of) else None
        if memory is not None:  # conv buffers only: at rest exactly after the memory (no frame counter, above)
            return _finite(name, values, exact, x64, memory, threshold)
        return _settle(name, values, exact, single, x64, max_frames=max_frames, threshold=threshold)


def _in_frames(settled: RestingState, period: int) -> RestingState:
    """A result counted in steps of ``period`` frames, counted in frames (its words too)."""
    def scaled(count: int | None) -> int | None:
        return None if count is None else count * period

    # The words (detail) are in frames already: _settle knows its steps' length.
    return attrs.evolve(settled, frames=scaled(settled.frames), float32_frames=scaled(settled.float32_frames),
                        frames_run=settled.frames_run * period,
                        period=None if settled.period is None else settled.period * period)


def _named(exact: Any, flat: Any) -> dict[str, Any]:
    """A flat state vector as the model's named float32 state tensors (its ``state_layout`` order)."""
    import numpy as np

    tensors, position = {}, 0
    for state_name, size in exact.state_layout():
        tensors[state_name] = flat[position:position + size].astype(np.float32)
        position += size
    return tensors


def _finite(name: str, values: tuple[float, ...], exact: Any, x64: Any, memory: int,
            threshold: float) -> RestingState:
    """The resting state of a finite-memory model: ``memory`` rest frames in one sequence call from
    the zero state (every buffer then holds only values of the rest input), then one more frame for
    the output at rest (and the proof: the state it leaves is the same)."""
    import numpy as np

    state = exact.initial_state(1)
    if memory:
        _, state = exact.step(x64.expand(1, memory, x64.shape[-1]), state)
    rest = _flat(state)
    y, after = exact.step(x64, state)
    if not np.isfinite(rest).all() or not np.isfinite(y.numpy()).all():
        bad = [n for n, tensor in zip(_names(exact), (v for layer in state for v in layer))
               if not bool(np.isfinite(tensor.numpy()).all())]
        return RestingState(name, values, "diverges", frames_run=memory, max_delta=float("inf"), threshold=threshold,
                            detail=f"it diverges: state {', '.join(bad) or 'output'} is not finite on the rest input")
    delta = float(np.max(np.abs(_flat(after) - rest))) if rest.size else 0.0
    tensors = _named(exact, rest)
    return RestingState(name, values, "converged", state=tensors, output=y.reshape(-1).numpy().copy(),
                        frames=memory, float32_frames=memory, frames_run=memory + 1, max_delta=delta,
                        threshold=threshold)


def _settle(name: str, values: tuple[float, ...], exact: Any, single: Any, x64: Any, *,
            max_frames: int, threshold: float) -> RestingState:
    import numpy as np

    unit = int(x64.shape[1])  # frames per step (more than one: a frame counter's period)
    state = exact.initial_state(1)
    previous = _flat(state)
    # The last states, for finding an oscillation's period (32 MB at most, whatever the state size).
    ring_length = int(max(8, min(2 * MAX_PERIOD + 2, 32_000_000 // (8 * max(1, previous.size)))))
    ring: list[np.ndarray] = [previous]
    deltas: list[float] = []
    half_magnitude = half_delta = 0.0
    frames_run = 0
    delta = 0.0
    for t in range(1, max_frames + 1):
        _, state = exact.step(x64, state)
        current = _flat(state)
        frames_run = t
        if not np.isfinite(current).all():
            bad = [n for n, tensor in zip(_names(exact), (v for layer in state for v in layer))
                   if not bool(np.isfinite(tensor.numpy()).all())]
            return RestingState(name, values, "diverges", frames_run=t, max_delta=float("inf"), threshold=threshold,
                                detail=f"it diverges: state {', '.join(bad)} is no longer finite at frame {t * unit}")
        delta = float(np.max(np.abs(current - previous))) if current.size else 0.0
        deltas.append(delta)
        # float64 rounding can keep a state at rest wobbling by an ulp: steps that small are rest.
        noise = _ROUNDING * max(1.0, float(np.max(np.abs(current)))) if current.size else 0.0
        if delta <= noise or _settled(deltas, threshold):
            return _at_rest(name, values, exact, single, x64, state, t, delta, threshold, max_frames)
        if t == max_frames // 2:
            half_magnitude, half_delta = float(np.max(np.abs(current))), delta
        ring.append(current)
        if len(ring) > ring_length:
            del ring[0]
        if len(deltas) > _RATE_WINDOW + 1:
            del deltas[0]
        previous = current
        if t % _PERIOD_EVERY == 0 or t == max_frames:
            period = _period(ring, threshold)
            if period is not None:
                cycle = np.stack(ring[-period:])
                swing = float(np.max(cycle.max(axis=0) - cycle.min(axis=0)))
                return RestingState(name, values, "oscillates", frames_run=t, max_delta=delta, period=period,
                                    threshold=threshold,
                                    detail=f"it oscillates with a period of {period * unit} frames (state values swing "
                                           f"by up to {swing:.3g}; found after {t * unit} frames)")
    magnitude = float(np.max(np.abs(previous))) if previous.size else 0.0
    # Growing, and not slowing down (a slow approach to a far rest shrinks its steps: still moving).
    if magnitude > half_magnitude and delta >= 0.99 * half_delta > 0.0:
        return RestingState(name, values, "diverges", frames_run=frames_run, max_delta=delta, threshold=threshold,
                            detail=f"it diverges: the largest state value grows from {half_magnitude:.3g} at frame "
                                   f"{max_frames // 2 * unit} to {magnitude:.3g} at frame {frames_run * unit}")
    return RestingState(name, values, "moving", frames_run=frames_run, max_delta=delta, threshold=threshold,
                        detail=f"it is still moving after {frames_run * unit} frames (a state value still changes by "
                               f"{delta:.3g} per {'frame' if unit == 1 else f'{unit} frames'}; settled means at most "
                               f"{threshold:g})")


def _names(module: Any) -> list[str]:
    return [n for n, _ in module.state_layout()]


def _settled(deltas: list[float], threshold: float) -> bool:
    """The last frame moved the state by at most ``threshold``, and so will all the frames after it
    together, judging by the rate the steps shrank at over the last few frames."""
    delta = deltas[-1]
    if delta == 0.0:
        return True
    if delta > threshold or len(deltas) < 2:
        return False
    earlier = deltas[0]
    if earlier <= 0.0:
        return False
    rate = (delta / earlier) ** (1.0 / (len(deltas) - 1))
    return rate < 1.0 and delta * rate / (1.0 - rate) <= threshold


def _at_rest(name: str, values: tuple[float, ...], exact: Any, single: Any, x64: Any, state: Any, t: int,
             delta: float, threshold: float, max_frames: int) -> RestingState:
    """The result for a state that settled at frame ``t``: resting values, output and frame counts."""
    import numpy as np
    import torch

    rest = _flat(state)
    y, _ = exact.step(x64[:, :1], state)  # the first frame after rest (a block of frames: the first of them)
    scale = np.maximum(1.0, np.abs(rest))
    # float64: frames until within SETTLED of rest (never more than t, when it was already there).
    frames = _frames_to(exact, x64, lambda s: bool(np.all(np.abs(_flat(s) - rest) <= SETTLED * scale)), t, window=1)
    # float32: within SETTLED for SETTLE_WINDOW frames in a row.
    frames32 = _frames_to(single, x64.to(torch.float32),
                          lambda s: bool(np.all(np.abs(_flat(s) - rest) <= SETTLED * scale)), max_frames,
                          window=SETTLE_WINDOW)
    tensors = _named(exact, rest)
    return RestingState(name, values, "converged", state=tensors, output=y.reshape(-1).numpy().copy(),
                        frames=frames, float32_frames=frames32, frames_run=t, max_delta=delta, threshold=threshold)


def _frames_to(module: Any, x: Any, inside: Callable[[Any], bool], bound: int, *, window: int) -> int | None:
    """Frames from the zero state until ``inside(state)`` holds for ``window`` frames in a row
    (the first of them counted); None when not within ``bound`` frames."""
    state = module.initial_state(1)
    since: int | None = 0 if inside(state) else None
    run = 1 if since is not None else 0
    if run >= window:
        return 0
    for t in range(1, bound + window + 1):
        _, state = module.step(x, state)
        if inside(state):
            if since is None:
                since, run = t, 0
            run += 1
            if run >= window:
                return since if since <= bound else None
        else:
            since, run = None, 0
    return None


# ---------------------------------------------------------------- the clicks a reset makes


def rest_check(
    name: str,
    run: Callable[[np.ndarray, ResetMode], np.ndarray | None],
    resting: RestingState,
    *,
    reset: ResetMode,
    tolerance: float = FLOAT32_TOLERANCE,
    runtime: str = "torch",
) -> CheckResult:
    """The ``state.rest`` verdict for one runtime: how large a click each kind of reset makes.

    ``run(frames, mode)`` runs the artifact (or module) in its runtime: reset it
    (``mode`` ``"zeros"``: the state zeroed; ``"rest"``: the resting state
    restored, i.e. the artifact's own ``reset()`` when the entry asks for
    ``reset = "rest"``), then feed ``frames`` (float32 ``[1, time, in_features]``,
    the rest input repeated) one frame per step and return the outputs
    ``[1, time, out_features]``; or None when that reset is not available there.
    ``resting`` is the model's :func:`compute_resting_state`, ``reset`` the
    entry's mode, ``name`` the check's name (``state.rest``, ``onnx.rest``...).

    Figures: ``click_zero`` and ``click_rest`` (max |first output after the reset -
    resting output|; None when not measured), ``frames_to_rest``,
    ``float32_frames``, ``threshold``, ``tolerance`` (scaled by ``max(1, |resting
    output|)``), ``reset``, ``behaviour``. Fails when the state does not settle
    (the verdict names the model and what it did), and when ``reset`` is
    ``"rest"`` and the resting reset's click is above tolerance or not measured.
    """
    import numpy as np

    from .report import CheckResult

    figures: dict[str, Any] = {"reset": reset, "behaviour": resting.behaviour, "threshold": resting.threshold,
                               "frames_to_rest": resting.frames, "float32_frames": resting.float32_frames,
                               "tolerance": tolerance, "click_zero": None, "click_rest": None}
    if not resting.stateful:
        figures.update(click_zero=0.0, click_rest=0.0, frames_to_rest=0, float32_frames=0)
        return CheckResult(name, "pass", f"{runtime}: no state, so a reset changes nothing", figures)
    if not resting.converged or resting.output is None:
        figures.update(frames_run=resting.frames_run, max_delta=resting.max_delta, period=resting.period)
        return CheckResult(name, "fail", resting.verdict or f"{resting.model}: no resting state", figures)
    frames = np.broadcast_to(np.asarray(resting.rest_input, np.float32), (1, 1, len(resting.rest_input))).copy()
    reference = resting.output.astype(np.float64)
    allowed = tolerance * max(1.0, float(np.max(np.abs(reference)))) if reference.size else tolerance

    def click(mode: ResetMode) -> float | None:
        outputs = run(frames, mode)
        if outputs is None:
            return None
        array = np.asarray(outputs, np.float64)
        if array.ndim != 3 or array.shape[0] != 1 or array.shape[1] < 1 or array.shape[2] != reference.size:
            return float("inf")  # not [1, time, out_features]: never a pass
        difference = np.abs(array[0, 0] - reference)
        return float("nan") if np.isnan(difference).any() else float(np.max(difference))

    click_zero, click_rest = click("zeros"), click("rest")
    figures.update(click_zero=click_zero, click_rest=click_rest, allowed=allowed)
    zero_words = "not measured" if click_zero is None else f"{click_zero:.3g}"
    rest_words = "not measured" if click_rest is None else f"{click_rest:.3g}"
    settle = f"at rest after {resting.frames} frames"
    if resting.float32_frames is not None and resting.float32_frames != resting.frames:
        settle += f" ({resting.float32_frames} in float32)"
    if reset == "rest" and (click_rest is None or not click_rest <= allowed):
        why = ("the resting reset could not be measured" if click_rest is None
               else f"the first output after reset() differs from the resting output by {click_rest:.3g} (> {allowed:.3g})")
        return CheckResult(name, "fail", f"{runtime}: reset = \"rest\" is not honoured: {why}; a zero reset's click "
                                         f"is {zero_words}", figures)
    if reset == "rest":
        return CheckResult(name, "pass", f"{runtime}: reset() restores the resting state (reset = \"rest\"): click "
                                         f"{rest_words}, against {zero_words} after a zero reset; {settle}", figures)
    return CheckResult(name, "pass", f"{runtime}: reset() zeroes the state (reset = \"zeros\"): click {zero_words} "
                                     f"on the rest input ({rest_words} with reset = \"rest\"); {settle}", figures)
