"""Subnormal float32 values on silence, counted in the reference (torch, float32): issue 22 section 4.

A state decaying towards zero on silence passes through the subnormal range
(below 2**-126 ~ 1.2e-38), where each operation on x86 and many ARM cores
costs 10-100x: the CPU spikes exactly when the user stops playing. Worse,
a decay by a factor between 0.5 and 1 never leaves it: rounding keeps
``k * 2**-149`` at itself once ``k * (1 - factor) < 0.5`` (a GRU whose update
gate holds 0.9 on silence keeps its state at 4 * 2**-149 forever).

:func:`count_subnormals` runs the parity stream (:func:`modelreg.inputs.stream`)
then a silent tail of the rest input, one frame per step in float32, and counts
subnormal values in every state tensor and every layer's output over the tail.
The tail is :func:`tail_frames` long: at least :data:`MIN_TAIL_FRAMES`, and
twice the frames the state needs to reach rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from .builder import RealtimeModel
    from .rest import RestingState

__all__ = ["MIN_TAIL_FRAMES", "SubnormalCounts", "count_subnormals", "tail_frames"]

#: The silent tail is at least this long (frames).
MIN_TAIL_FRAMES = 4096


def tail_frames(resting: RestingState | None) -> int:
    """Frames of silence after the stream: ``max(4096, 2 x frames to rest)`` (float64 or float32,
    whichever is longer); 4096 when the state has no resting state."""
    if resting is None or not resting.converged:
        return MIN_TAIL_FRAMES
    longest = max(resting.frames or 0, resting.float32_frames or 0)
    return max(MIN_TAIL_FRAMES, 2 * longest)


@attrs.frozen
class SubnormalCounts:
    """Subnormal float32 values over the silent tail.

    ``counts``: per tensor (state names as in ``state_layout()``, ``layers[i]`` for
    each layer's output but the last (0 for a recurrent layer, whose output is its
    state ``h``: counted there), ``y`` for the model's output), the number
    of subnormal values summed over the tail's frames; ``at_end``: the same in
    the tail's last frame only (subnormals that stay); ``first_frame``: the tail
    frame (1-based) where one first appeared, or None; ``stream``: subnormal
    values met during the stream before the tail. Once the state repeats bit for bit
    (a float32 fixed point), the frames left are counted without being run: each
    would compute the same values (``fixed_point_at``).
    """

    counts: dict[str, int]
    at_end: dict[str, int]
    first_frame: int | None
    tail_frames: int
    stream_frames: int
    stream: int
    #: The tail frame from which the float32 state repeated bit for bit (the frames after it were
    #: counted as copies of it, not run), or None.
    fixed_point_at: int | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def figures(self) -> dict[str, Any]:
        return {"subnormals": self.total, "counts": dict(self.counts), "at_end": dict(self.at_end),
                "first_frame": self.first_frame, "tail_frames": self.tail_frames,
                "stream_frames": self.stream_frames, "stream_subnormals": self.stream,
                "fixed_point_at": self.fixed_point_at}


def count_subnormals(module: RealtimeModel, rest_input: tuple[float, ...] | None = None, *,
                     tail: int | None = None, stream_frames: int | None = None) -> SubnormalCounts:
    """Run the parity stream then ``tail`` frames of ``rest_input`` (defaults: the module's rest input,
    :func:`tail_frames` of its resting state) through a float32 copy of ``module``, batch 1, one frame
    per step; count subnormal values in state and outputs over the tail.

    Stateless models are judged on their layers' outputs, on one frame of silence (every frame of it
    gives the same) unless ``tail`` says otherwise. The module itself is not touched.
    """
    import copy
    import hashlib

    import numpy as np
    import torch

    from .inputs import STREAM_FRAMES, stream

    values = module.rest_input if rest_input is None else tuple(rest_input)
    if tail is None:
        # A stateless model gives the same output on every frame of silence: one frame tells.
        tail = tail_frames(module.resting_state()) if module.is_stateful else 1
    frames = STREAM_FRAMES if stream_frames is None else stream_frames
    single: Any = copy.deepcopy(module)
    single.float().eval()
    signal = torch.from_numpy(stream(module.in_features, frames, input_range=module.input_range))
    silence = torch.tensor(values, dtype=torch.float32).view(1, 1, -1)
    names = [name for name, _ in module.state_layout()]
    layer_names = [f"layers[{i}]" for i in range(len(module.layer_specs) - 1)] + ["y"]
    tiny = np.finfo(np.float32).tiny

    def subnormal(tensor: Any) -> int:
        array = tensor.numpy()
        return int(np.count_nonzero((array != 0) & (np.abs(array) < tiny)))

    def any_subnormal(tensors: list[Any]) -> bool:
        # One look at every value of the frame; the per-tensor counts only when there is one.
        flat = torch.cat([tensor.reshape(-1) for tensor in tensors]).abs()
        return bool(((flat != 0) & (flat < tiny)).any())

    def per_tensor(state: Any, outputs: list[Any]) -> dict[str, int]:
        frame = {name: subnormal(tensor) for name, tensor in zip(names, (v for layer in state for v in layer))}
        for name, output, layer_state in zip(layer_names, outputs, state):
            # A recurrent layer's output is its state h: the same values, counted once (under h).
            same = any(v.numel() == output.numel() and torch.equal(v.reshape(-1), output.reshape(-1))
                       for v in layer_state)
            frame[name] = 0 if same and name != "y" else subnormal(output)
        return frame

    counts = dict.fromkeys(names + layer_names, 0)
    zeros = dict(counts)
    fixed_at: int | None = None
    in_stream = 0
    state = single.initial_state(1)
    from .latency import single_thread

    # One thread: frame-by-frame calls of small layers are several times slower on torch's pool.
    with single_thread(), torch.inference_mode():
        for t in range(frames):
            outputs, state = single.step_layers(signal[:, t:t + 1, :], state)
            in_stream += sum(per_tensor(state, outputs).values())
        seen: dict[bytes, int] = {}  # digest of the state after tail frame t -> t
        history: list[dict[str, int]] = []  # per tail frame run, its counts
        cycle: list[dict[str, int]] = []
        for t in range(1, tail + 1):
            outputs, state = single.step_layers(silence, state)
            flat_state = [v for layer in state for v in layer]
            tensors = flat_state + outputs
            history.append(zeros if not any_subnormal(tensors) else per_tensor(state, outputs))
            digest = hashlib.blake2b(b"".join(v.numpy().tobytes() for v in flat_state), digest_size=16).digest()
            if digest in seen:
                # The state repeats bit for bit (a float32 fixed point, or a cycle): with the same input
                # every frame left repeats the cycle's frames (those after the earlier visit), so they
                # are counted, not run.
                cycle = history[seen[digest]:]
                fixed_at = t
                break
            seen[digest] = t
    for frame in history:
        for name, count in frame.items():
            counts[name] += count
    first = next((t for t, frame in enumerate(history, start=1) if any(frame.values())), None)
    at_end = history[-1] if history else zeros
    left = tail - len(history)
    if left and cycle:
        whole, part = divmod(left, len(cycle))
        for name in counts:
            counts[name] += sum(f[name] for f in cycle) * whole + sum(f[name] for f in cycle[:part])
        at_end = cycle[(left - 1) % len(cycle)]
    return SubnormalCounts(counts, at_end, first, tail, frames, in_stream, fixed_at)
