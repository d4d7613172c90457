"""Per-worker gradients for all n workers of a step, and flat-parameter helpers.

``per_worker_gradients(model, xs, ys, engine, loss)`` returns ``G`` of shape
``(n, d)``: row i is the gradient of worker i's mean loss over its batch
``xs[i]`` (``b`` examples), flattened in ``model.parameters()`` order (the
order of :func:`flatten_params`), and the n losses.

Engines:

* ``loop``: one forward / backward per worker (``torch.autograd.grad``).
* ``vmap``: ``torch.func.vmap(torch.func.grad(loss of functional_call))``
  over the worker axis, with ``randomness="different"`` so that each worker
  draws its own dropout masks.
* ``fused``: one forward and one backward over all n * b examples, autograd
  asked only for the gradients at the layers' outputs; each worker's weight
  gradients are then formed from its examples' saved inputs and output
  gradients, all workers of a layer in one call (Linear: a batched matrix
  product; Conv2d: one grouped convolution with a group per worker, see
  ``_conv2d_worker_grads``). On CPU a convolutional model's workers go in
  groups of at most 128 examples a call (:func:`fused_group_size`: the
  paper CNN's 600-example call ran out of cache). Only for models whose
  parameters all sit in ``nn.Linear`` / ``nn.Conv2d`` layers (all four
  models of :mod:`mixtailor_game.models`); other models raise ``ValueError``.
* ``auto``: a fixed rule, not a timing, so that a seeded run takes the same
  path on every machine: ``fused`` when the model allows it, else ``loop``
  on CPU and ``vmap`` on CUDA. ``benchmarks/bench_engines.py`` (paper CNN,
  n = 12, b = 50, MNIST shape, 2 CPU threads) gives the time of one step's
  gradients over the time of one 600-example gradient; see
  ``benchmarks/results/engines.json`` (two idle cores) and
  ``engines_loaded.json`` (two busy processes beside it) for the numbers
  and :func:`resolve_engine` for a summary. On an H100
  (``--device cuda``, ``benchmarks/results/engines_cuda.json``) fused takes
  2.1x the single-batch time, vmap 3.1x and the loop 12x. :func:`fastest_engine` times the
  engines for a given model and shapes when you want a measurement instead.

All engines give the same gradients (up to float rounding) when the model
has no active dropout (``model.eval()`` or ``make_model(..., dropout=0.0)``).
With active dropout the masks differ between engines (vmap draws all
workers' masks in one batched call, fused one call per group of workers,
whose size differs between CPU and CUDA), so each engine is reproducible on
its own device: pass ``generator`` (a ``torch.Generator``) and the engine runs inside
``torch.random.fork_rng`` seeded from it, leaving the global random state as
it was. Without ``generator`` dropout uses torch's global generator, as any
``nn.Dropout`` does.

Losses: ``cross_entropy`` (mean softmax cross-entropy, int64 labels) and
``mse`` (0.5 * mean squared error; float targets, one output per example
with ``ys`` of shape (n, b) or the model's output shape).

BatchNorm in training mode is not supported by the vmap engine (its running
statistics would be updated in place under vmap); such a model raises.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

from mixtailor_game._checks import check_int, fail

__all__ = [
    "ENGINES",
    "LOSSES",
    "per_worker_gradients",
    "fastest_engine",
    "flatten_params",
    "set_flat_params",
    "flat_to_grads",
    "num_params",
]

ENGINES = ("loop", "vmap", "fused", "auto")
LOSSES = ("cross_entropy", "mse")
_WHERE = "per_worker_gradients"


# ----------------------------------------------------------------------------- flat parameters
def num_params(model: nn.Module) -> int:
    """d: the number of entries of a flat parameter / gradient vector."""
    return sum(p.numel() for p in model.parameters())


def flatten_params(model: nn.Module) -> torch.Tensor:
    """A detached copy of all parameters as one flat vector (``model.parameters()`` order)."""
    params = list(model.parameters())
    if not params:
        raise fail("flatten_params", "model", "a module with parameters", type(model).__name__)
    return torch.cat([p.detach().reshape(-1) for p in params])


def _check_flat(where: str, model: nn.Module, flat) -> list[nn.Parameter]:
    if not isinstance(flat, torch.Tensor):
        raise TypeError(f"{where}: flat must be a torch.Tensor, got {type(flat).__name__}")
    params = list(model.parameters())
    d = sum(p.numel() for p in params)
    if flat.dim() != 1 or flat.numel() != d:
        raise fail(where, "flat", f"a 1-D tensor of length d={d}", tuple(flat.shape))
    return params


def set_flat_params(model: nn.Module, flat: torch.Tensor) -> None:
    """Copy a flat vector into the model's parameters, in place (dtype/device of each parameter kept)."""
    params = _check_flat("set_flat_params", model, flat)
    offset = 0
    with torch.no_grad():
        for p in params:
            p.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


def flat_to_grads(model: nn.Module, flat: torch.Tensor) -> list[torch.Tensor]:
    """Set each parameter's ``.grad`` from a flat gradient (e.g. the aggregate) and return them.

    After it, any ``torch.optim`` optimizer's ``step()`` applies the flat
    gradient. The ``.grad`` tensors are copies: later changes to ``flat`` do
    not reach them.
    """
    params = _check_flat("flat_to_grads", model, flat)
    grads, offset = [], 0
    for p in params:
        g = flat[offset : offset + p.numel()].detach().view_as(p).to(dtype=p.dtype, device=p.device).clone()
        p.grad = g
        grads.append(g)
        offset += p.numel()
    return grads


# ----------------------------------------------------------------------------- losses
def _loss_fn(loss: str):
    if loss == "cross_entropy":
        return nn.functional.cross_entropy

    def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if out.dim() == y.dim() + 1 and out.shape[-1] == 1:
            out = out.squeeze(-1)
        return 0.5 * (out - y).pow(2).mean()

    return mse


# ----------------------------------------------------------------------------- validation
def _check_inputs(model, xs, ys, engine: str, loss: str):
    if not isinstance(model, nn.Module):
        raise TypeError(f"{_WHERE}: model must be a torch.nn.Module, got {type(model).__name__}")
    if engine not in ENGINES:
        raise fail(_WHERE, "engine", f"one of {', '.join(ENGINES)}", engine)
    if loss not in LOSSES:
        raise fail(_WHERE, "loss", f"one of {', '.join(LOSSES)}", loss)
    for name, t in (("xs", xs), ("ys", ys)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{_WHERE}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if xs.dim() < 3:
        raise fail(_WHERE, "xs", "of shape (n, b, ...) with n, b >= 1", tuple(xs.shape))
    if ys.dim() < 2 or tuple(ys.shape[:2]) != tuple(xs.shape[:2]):
        raise fail(_WHERE, "ys", f"of shape (n, b, ...) = {tuple(xs.shape[:2])} + ...", tuple(ys.shape))
    if xs.shape[0] < 1 or xs.shape[1] < 1:
        raise fail(_WHERE, "xs", "of shape (n, b, ...) with n, b >= 1", tuple(xs.shape))
    if loss == "cross_entropy" and ys.dtype != torch.int64:
        raise TypeError(f"{_WHERE}: ys must be int64 class labels for cross_entropy, got {ys.dtype}")
    if loss == "mse" and not ys.is_floating_point():
        raise TypeError(f"{_WHERE}: ys must be floating targets for mse, got {ys.dtype}")
    params = list(model.parameters())
    if not params:
        raise fail(_WHERE, "model", "a module with parameters", type(model).__name__)
    device = params[0].device
    if xs.device != device or ys.device != device:
        raise fail(_WHERE, "xs, ys", f"on the model's device {device}", f"{xs.device}, {ys.device}")
    return params, device


def resolve_engine(engine: str, device: torch.device, model: nn.Module | None = None) -> str:
    """The engine ``auto`` stands for: ``fused`` if ``model`` allows it, else ``vmap`` on CUDA and ``loop`` on CPU.

    Measured (``benchmarks/bench_engines.py``, paper CNN, n = 12, b = 50; time
    of one step's per-worker gradients / one gradient over the same 600
    examples): on an H100 fused is the fastest (4.6 ms against vmap's 6.9 ms
    and the loop's 26.6 ms, ratios 2.1 / 3.1 / 12;
    ``benchmarks/results/engines_cuda.json``). On a 2-core CPU (2026-11-29,
    fused in groups of 128 examples, :func:`fused_group_size`) fused and the
    loop are about even when the machine is quiet (fused 0.70, loop 0.67, vmap
    1.14; ``benchmarks/results/engines.json``) and fused is the fastest with
    two busy processes beside it (``--competitors 2``,
    ``benchmarks/results/engines_loaded.json``: fused 1.02, loop 1.11, vmap
    1.28), where the loop's many small calls each pay for the threads'
    synchronisation (an unstored earlier run had the loop near 5). Not
    measured on CPUs with more cores.
    """
    if engine != "auto":
        return engine
    if model is not None and _fused_supported(model) is None:
        return "fused"
    return "vmap" if torch.device(device).type == "cuda" else "loop"


def _has_active_dropout(model: nn.Module) -> bool:
    return model.training and any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())


class _SeededRNG:
    """Context: fork torch's RNG (CPU and ``device``) and seed it from ``generator``; restore on exit."""

    def __init__(self, generator: torch.Generator | None, device: torch.device):
        self.generator, self.device = generator, torch.device(device)
        self._fork = None

    def __enter__(self):
        if self.generator is None:
            return self
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator, device=self.generator.device).item())
        cuda = [self.device] if self.device.type == "cuda" else []
        self._fork = torch.random.fork_rng(devices=cuda)
        self._fork.__enter__()
        torch.default_generator.manual_seed(seed)
        if cuda:
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            torch.cuda.default_generators[index].manual_seed(seed)
        return self

    def __exit__(self, *exc):
        if self._fork is not None:
            return self._fork.__exit__(*exc)
        return False


# ----------------------------------------------------------------------------- engines
def _loop(model: nn.Module, params: Sequence[nn.Parameter], xs, ys, loss_fn):
    n = xs.shape[0]
    trainable = [i for i, p in enumerate(params) if p.requires_grad]
    sizes = [p.numel() for p in params]
    offsets = [0]
    for s in sizes:
        offsets.append(offsets[-1] + s)
    grads = torch.zeros(n, offsets[-1], dtype=params[0].dtype, device=params[0].device)
    losses = torch.empty(n, dtype=params[0].dtype, device=params[0].device)
    for i in range(n):
        value = loss_fn(model(xs[i]), ys[i])
        gs = torch.autograd.grad(value, [params[j] for j in trainable])
        for j, g in zip(trainable, gs):
            grads[i, offsets[j] : offsets[j + 1]] = g.reshape(-1)
        losses[i] = value.detach()
    return grads, losses


def _vmap(model: nn.Module, xs, ys, loss_fn):
    from torch.func import functional_call, grad, vmap

    if model.training and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise fail(_WHERE, "engine", "'loop' for a model with BatchNorm in training mode", "vmap")
    names = [name for name, _ in model.named_parameters()]
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b for name, b in model.named_buffers()}
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]

    def worker_loss(theta, x, y):
        value = loss_fn(functional_call(model, {**theta, **buffers}, (x,)), y)
        return value, value.detach()

    per_worker = vmap(grad(worker_loss, has_aux=True), in_dims=(None, 0, 0), randomness="different")
    gdict, losses = per_worker(params, xs, ys)
    n = xs.shape[0]
    rows = [
        (torch.zeros_like(gdict[name]) if name in frozen else gdict[name]).reshape(n, -1) for name in names
    ]
    return torch.cat(rows, dim=1), losses


def _fused_supported(model: nn.Module) -> str | None:
    """None if the fused engine handles every parameter of ``model``, else the reason it does not."""
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        if isinstance(module, nn.Linear):
            continue
        if type(module) is nn.Conv2d and module.groups == 1 and module.padding_mode == "zeros" and isinstance(module.padding, tuple):
            continue
        return f"module {name or type(module).__name__} ({type(module).__name__}) has parameters"
    return None


def _fused(model: nn.Module, params: Sequence[nn.Parameter], xs, ys, loss_fn_name: str):
    """One forward / backward over all n * b examples; per-worker weight gradients from saved signals.

    For a Linear layer with input a_i and output gradient g_i of example i
    (worker w holding examples B_w): dL_w/dW = sum_{i in B_w} g_i a_i^T,
    dL_w/db = sum_{i in B_w} g_i; for a Conv2d layer the same with a_i
    replaced by its patches, summed over positions (computed as one grouped
    convolution, :func:`_conv2d_worker_grads`). The
    backward pass asks autograd only for the gradients with respect to the
    layers' outputs, so no parameter gradient is computed twice.
    """
    n, b = xs.shape[:2]
    modules = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and any(True for _ in m.parameters(recurse=False))]
    saved: dict[nn.Module, list] = {m: [] for m in modules}

    def hook(module, inputs, output):
        saved[module].append((inputs[0], output))

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        out = model(xs.reshape(n * b, *xs.shape[2:]))
    finally:
        for h in handles:
            h.remove()
    y = ys.reshape(n * b, *ys.shape[2:])
    if loss_fn_name == "cross_entropy":
        per_example = nn.functional.cross_entropy(out, y, reduction="none")
    else:
        o = out.squeeze(-1) if out.dim() == y.dim() + 1 and out.shape[-1] == 1 else out
        per_example = 0.5 * (o - y).pow(2).reshape(n * b, -1).mean(1)
    losses = per_example.reshape(n, b).mean(1)
    pairs = [pair for m in modules for pair in saved[m]]
    outs = [o for _, o in pairs]
    grads_out = torch.autograd.grad(losses.sum(), outs, allow_unused=True)
    with torch.no_grad():
        G = _fused_weight_grads(modules, saved, grads_out, params, n, b)
    return G, losses.detach()


# On CPU the fused engine takes a convolutional model's workers in groups of at most this
# many examples a call: the paper CNN's 600-example call ran out of cache (bench_engines.py:
# fused 1.01 -> 0.70 of one 600-example gradient on two quiet cores, 1.11 -> 1.02 with two
# busy processes beside it; README). Linear-only models keep one call (an MLP's 6 ms went to
# 9 ms in groups). Fixed, not timed, so that a seeded run with dropout draws the same masks
# on every CPU.
FUSED_CPU_EXAMPLES = 128


def fused_group_size(model: nn.Module, n: int, b: int, device: torch.device) -> int:
    """Workers per call of the fused engine: all ``n`` on CUDA and for models without
    ``nn.Conv2d``; on CPU for convolutional models as many as fit in
    :data:`FUSED_CPU_EXAMPLES` examples (at least one)."""
    if torch.device(device).type != "cpu" or not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return n
    return max(1, min(n, FUSED_CPU_EXAMPLES // max(1, b)))


def _fused_in_groups(model: nn.Module, params: Sequence[nn.Parameter], xs, ys, loss_fn_name: str):
    """:func:`_fused` over groups of :func:`fused_group_size` workers, rows written in place."""
    n, b = xs.shape[:2]
    k = fused_group_size(model, n, b, xs.device)
    if k >= n:
        return _fused(model, params, xs, ys, loss_fn_name)
    G = losses = None
    for i in range(0, n, k):
        g, loss = _fused(model, params, xs[i:i + k], ys[i:i + k], loss_fn_name)
        if G is None:
            G = torch.empty(n, g.shape[1], dtype=g.dtype, device=g.device)
            losses = torch.empty(n, dtype=loss.dtype, device=loss.device)
        G[i:i + k], losses[i:i + k] = g, loss
    return G, losses


def _fused_weight_grads(modules, saved, grads_out, params, n: int, b: int) -> torch.Tensor:
    per_param: dict[int, torch.Tensor] = {}

    def add(p, g):
        if p is None or not p.requires_grad:
            return
        per_param[id(p)] = per_param[id(p)] + g if id(p) in per_param else g

    k = 0
    for m in modules:
        for a, _ in saved[m]:
            g = grads_out[k]
            k += 1
            if g is None:
                continue
            if isinstance(m, nn.Linear):
                a2 = a.detach().reshape(n, -1, a.shape[-1])
                g2 = g.reshape(n, -1, g.shape[-1])
                add(m.weight, torch.bmm(g2.transpose(1, 2), a2))
                add(m.bias, g2.sum(1))
            else:
                gw, gb = _conv2d_worker_grads(m, a.detach(), g, n, b)
                add(m.weight, gw)
                add(m.bias, gb)
    rows = [
        per_param[id(p)].reshape(n, -1) if id(p) in per_param else torch.zeros(n, p.numel(), dtype=p.dtype, device=p.device)
        for p in params
    ]
    return torch.cat(rows, dim=1)


def _conv2d_worker_grads(m: nn.Conv2d, a: torch.Tensor, g: torch.Tensor, n: int, b: int):
    """All n workers' weight (n, C_out, C_in, kH, kW) and bias (n, C_out) gradients of a Conv2d in one call.

    With a the layer's input (n * b, C_in, H, W), zero-padded by p, and g the
    gradient at its output (n * b, C_out, Ho, Wo), worker w's weight gradient
    is dW_w[o, c, i, j] = sum_{e in B_w, y, x} g[e, o, y, x] a[e, c, s y + d i, s x + d j]
    (stride s, dilation d). That is a cross-correlation of a with g over the
    spatial axes, summed over the worker's examples: one grouped convolution
    with the C_in channels as its batch, the n * b examples as its input
    channels, the n * C_out maps g[e, o] as its filters (one group per worker:
    b input channels, C_out filters), stride d, dilation s and padding p; its
    output is cropped to (kH, kW) (it can be larger when s does not divide
    H + 2p - d (k - 1) - 1). One call instead of n per-worker weight-gradient
    calls: on 2 CPU threads with other processes competing for the cores,
    many small calls each pay for the threads' synchronisation
    (benchmarks/bench_engines.py). Channels-last layout when C_in > 1 (the
    grouped convolution's batch), contiguous otherwise: the faster of the two
    in that benchmark for each of the paper CNN's layers.
    """
    c_in, (k_h, k_w) = m.in_channels, m.kernel_size
    c_out, h_out, w_out = g.shape[1:]
    inputs = a.transpose(0, 1)  # (C_in, n * b, H, W)
    filters = g.reshape(n, b, c_out, h_out, w_out).transpose(1, 2).reshape(n * c_out, b, h_out, w_out)
    if c_in > 1:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        filters = filters.contiguous(memory_format=torch.channels_last)
    out = nn.functional.conv2d(inputs, filters, stride=m.dilation, padding=m.padding, dilation=m.stride, groups=n)
    out = out[:, :, :k_h, :k_w]  # (C_in, n * C_out, kH, kW)
    weight = out.reshape(c_in, n, c_out, k_h, k_w).permute(1, 2, 0, 3, 4)
    bias = g.reshape(n, b, c_out, h_out * w_out).sum((1, 3)) if m.bias is not None else None
    return weight, bias


def per_worker_gradients(
    model: nn.Module,
    xs: torch.Tensor,
    ys: torch.Tensor,
    engine: str = "auto",
    loss: str = "cross_entropy",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of each worker's mean loss: ``(G: Tensor[n, d], losses: Tensor[n])``.

    Parameters: ``model`` (its current parameters are the point of
    evaluation; train / eval mode is respected, nothing is mutated: no
    ``.grad`` is written, parameters are untouched); ``xs`` of shape
    ``(n, b, *input_shape)`` and ``ys`` of shape ``(n, b)`` on the model's
    device; ``engine`` in ``loop``, ``vmap``, ``fused``, ``auto`` (module docstring);
    ``loss`` in ``cross_entropy``, ``mse``; ``generator`` seeds the dropout
    masks (optional, module docstring).

    Frozen parameters (``requires_grad=False``) get zero gradient entries so
    that d always equals :func:`num_params`.

    Errors: ``ValueError`` / ``TypeError`` with one line for a bad engine,
    loss, shape, dtype or device.

    >>> from mixtailor_game.models import make_model
    >>> m = make_model("logreg", (4,), 3)
    >>> G, losses = per_worker_gradients(m, torch.randn(5, 8, 4), torch.randint(0, 3, (5, 8)), engine="loop")
    >>> tuple(G.shape), tuple(losses.shape)
    ((5, 15), (5,))
    """
    params, device = _check_inputs(model, xs, ys, engine, loss)
    engine = resolve_engine(engine, device, model)
    loss_fn = _loss_fn(loss)
    seeded = generator is not None and _has_active_dropout(model)
    with _SeededRNG(generator if seeded else None, device):
        if engine == "fused":
            reason = _fused_supported(model)
            if reason is not None:
                raise fail(_WHERE, "engine", "'loop' or 'vmap' for this model (fused handles Linear and Conv2d only)", f"fused; {reason}")
            with torch.enable_grad():
                return _fused_in_groups(model, params, xs, ys, loss)
        if engine == "loop":
            with torch.enable_grad():
                return _loop(model, params, xs, ys, loss_fn)
        return _vmap(model, xs, ys, loss_fn)


def fastest_engine(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor, loss: str = "cross_entropy", repeats: int = 3) -> str:
    """Time the engines on these inputs (best of ``repeats`` after one warm-up) and name the fastest.

    Costs about ``3 * (repeats + 1)`` steps; the result depends on the
    machine's load, so use it to choose an engine once, not inside a
    reproducible run.
    """
    repeats = check_int("fastest_engine", "repeats", repeats, low=1)
    best = {}
    for engine in ("loop", "vmap", "fused"):
        if engine == "fused" and _fused_supported(model) is not None:
            continue
        times = []
        for _ in range(repeats + 1):
            if xs.device.type == "cuda":
                torch.cuda.synchronize(xs.device)
            start = time.perf_counter()
            per_worker_gradients(model, xs, ys, engine=engine, loss=loss)
            if xs.device.type == "cuda":
                torch.cuda.synchronize(xs.device)
            times.append(time.perf_counter() - start)
        best[engine] = min(times[1:])
    return min(best, key=best.get)
