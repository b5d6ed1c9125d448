"""Time a training step with the mix inside ``torch.compile`` against the same step in eager mode.

Run ``python benchmarks/compile_step.py`` (CPU by default; ``--device cuda`` on a GPU). For every
mix (none, ``CutMix``, ``CutMix(per_sample=True)``, ``AttentiveCutMix`` with precomputed attention)
the step is: mix the batch, a small CNN's forward pass, cross-entropy, backward, SGD update.
The eager and compiled steps run interleaved, round by round, each on its own copy of the model
and its own mix seeded alike; the script prints the median time per step, how many graphs the
compiled step compiled in its first call and afterwards (over all the timed steps: new boxes must
not recompile), and the first call's time (compilation included). It also checks that both steps
mixed the same pixels and labels and computed close losses. Then it times the mix alone, eager
against compiled.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

NUM_CLASSES = 10


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, NUM_CLASSES),
    )


def make_mix(name: str, seed: int) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Any]:
    """callable(images, labels, attention) -> (images, labels)."""
    from torchvision_mix import AttentiveCutMix, CutMix

    g = torch.Generator().manual_seed(seed)
    if name == "none":
        return lambda x, y, a: (x, nn.functional.one_hot(y, NUM_CLASSES).float())
    if name == "CutMix":
        mix = CutMix(num_classes=NUM_CLASSES, generator=g)
    elif name == "CutMix per_sample":
        mix = CutMix(num_classes=NUM_CLASSES, per_sample=True, generator=g)
    elif name == "AttentiveCutMix precomputed":
        attentive = AttentiveCutMix(num_classes=NUM_CLASSES, grid_size=7, generator=g)

        def mix_dict(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor) -> Any:
            out = attentive({"image": x, "labels": y, "attention": a})
            return out["image"], out["labels"]

        return mix_dict
    else:
        raise ValueError(name)
    return lambda x, y, a: mix(x, y)


MIXES = ("none", "CutMix", "CutMix per_sample", "AttentiveCutMix precomputed")


class CountingBackend:
    """Inductor, counting the graphs it is handed (recompiles included)."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        from torch._inductor.compile_fx import compile_fx

        self.graphs += 1
        return compile_fx(gm, example_inputs)


def make_step(model: nn.Module, mix: Callable[..., Any]) -> Callable[..., Any]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def loss_of(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, y = mix(x, y, a)
        loss = nn.functional.cross_entropy(model(x), y)
        value = loss.detach()  # before backward(): a loss kept past it makes dynamo warn
        loss.backward()
        return value, x, y

    def step(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, fn: Callable[..., Any]) -> tuple[torch.Tensor, ...]:
        out = fn(x, y, a)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out

    step.loss_of = loss_of  # type: ignore[attr-defined]
    return step


def run(name: str, batch: int, size: int, steps: int, device: torch.device) -> dict[str, float]:
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g).to(device)
    y = torch.randint(NUM_CLASSES, (batch,), generator=g).to(device)
    a = torch.rand(batch, 7, 7, generator=g).to(device)
    base = small_cnn().to(device)
    eager_model, compiled_model = small_cnn().to(device), small_cnn().to(device)
    eager_model.load_state_dict(base.state_dict())
    compiled_model.load_state_dict(base.state_dict())
    eager = make_step(eager_model, make_mix(name, seed=1))
    compiled = make_step(compiled_model, make_mix(name, seed=1))
    backend = CountingBackend()
    compiled_fn = torch.compile(compiled.loss_of, backend=backend)  # type: ignore[attr-defined]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    start = time.perf_counter()
    c_out = compiled(x, y, a, compiled_fn)
    sync()
    first = time.perf_counter() - start
    first_graphs = backend.graphs
    e_out = eager(x, y, a, eager.loss_of)  # type: ignore[attr-defined]
    same_mix = torch.equal(c_out[1], e_out[1]) and torch.equal(c_out[2], e_out[2])
    loss_diff = abs(float(c_out[0]) - float(e_out[0]))
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for i in range(steps):
        for mode in ("eager", "compiled") if i % 2 == 0 else ("compiled", "eager"):
            step = compiled if mode == "compiled" else eager
            fn = compiled_fn if mode == "compiled" else eager.loss_of  # type: ignore[attr-defined]
            sync()
            start = time.perf_counter()
            out = step(x, y, a, fn)
            sync()
            times[mode].append(time.perf_counter() - start)
            if mode == "compiled":
                c_out = out
            else:
                e_out = out
        same_mix = same_mix and torch.equal(c_out[1], e_out[1]) and torch.equal(c_out[2], e_out[2])
        loss_diff = max(loss_diff, abs(float(c_out[0]) - float(e_out[0])))
    # The mix alone, eager against compiled (fresh mixes seeded alike).
    eager_mix, compiled_mix = make_mix(name, seed=2), make_mix(name, seed=2)
    compiled_mix = torch.compile(compiled_mix, backend=CountingBackend())
    compiled_mix(x, y, a)
    eager_mix(x, y, a)
    alone: dict[str, list[float]] = {"eager": [], "compiled": []}
    for i in range(steps):
        for mode in ("eager", "compiled") if i % 2 == 0 else ("compiled", "eager"):
            fn = compiled_mix if mode == "compiled" else eager_mix
            sync()
            start = time.perf_counter()
            fn(x, y, a)
            sync()
            alone[mode].append(time.perf_counter() - start)
    return {
        "mix_eager_ms": statistics.median(alone["eager"]) * 1e3,
        "mix_compiled_ms": statistics.median(alone["compiled"]) * 1e3,
        "eager_ms": statistics.median(times["eager"]) * 1e3,
        "compiled_ms": statistics.median(times["compiled"]) * 1e3,
        "first_call_s": first,
        "graphs_first_call": first_graphs,
        "graphs_after": backend.graphs - first_graphs,
        "same_mix": float(same_mix),
        "max_loss_diff": loss_diff,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per mode, after the first call")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mix", action="append", choices=MIXES, help="mixes to time (default: all)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
        f"batch {args.batch} x 3 x {args.size} x {args.size}, {args.steps} steps"
    )
    print(
        "| mix | eager ms/step | compiled ms/step | mix alone, eager ms | mix alone, compiled ms | "
        "first compiled step s | graphs (first step) | graphs compiled after | same mix | max loss diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for name in args.mix or MIXES:
        r = run(name, args.batch, args.size, args.steps, device)
        ok = ok and bool(r["same_mix"])
        print(
            f"| {name} | {r['eager_ms']:.2f} | {r['compiled_ms']:.2f} | {r['mix_eager_ms']:.2f} | "
            f"{r['mix_compiled_ms']:.2f} | {r['first_call_s']:.1f} | "
            f"{r['graphs_first_call']} | {r['graphs_after']} | {'yes' if r['same_mix'] else 'NO'} | "
            f"{r['max_loss_diff']:.1e} |",
            flush=True,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
