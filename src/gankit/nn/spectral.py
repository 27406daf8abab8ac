"""Spectral normalization (Miyato et al. 2018) behind one helper.

The weight is divided by its largest singular value, estimated by power iteration with persistent vectors
``u`` and ``v`` (``u = W v / |W v|``, ``v = W^T u / |W^T u|``, ``sigma = u^T W v``). In training mode each
forward runs ``n_power_iterations`` steps; in eval mode ``u`` and ``v`` are frozen, so two forwards give
identical output. Dividing by sigma bounds each layer's Lipschitz constant by 1, which keeps the discriminator
(roughly) 1-Lipschitz, the condition of the Wasserstein dual, without WGAN's weight clipping or a gradient
penalty.

:class:`SpectralNorm` is a parametrization (``torch.nn.utils.parametrize``) with the same math, the same
initialisation (random draws included) and the same state-dict keys as PyTorch's
``torch.nn.utils.parametrizations.spectral_norm``, so checkpoints of either load into the other (one difference in
values: under CUDA autocast PyTorch's matrix-vector products ran in half precision; here sigma, u and v are always
float32). Otherwise it differs in cost only: PyTorch flattens the weight to ``(out, in * kh * kw)`` with a copy
whenever the weight is channels_last (gankit's default), and autograd takes the division by sigma and
the ``u^T W v`` product apart into five or six passes over the weight. Here the power iteration reads the
weight in its own memory order (a view, ``v`` permuted instead) and the gradient is one fused
formula (``_DivideBySigma``): on SAGAN-64's largest weight (512x256x4x4, channels_last), forward + backward
15 -> 4.7 ms (both in one process, interleaved; ``benchmarks/spectral_norm.py`` times all eight).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

_NORMALISABLE = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class _MatrixLayout:
    """How a weight is read as the ``(h, w)`` matrix spectral norm works on, without copying it if possible.

    The matrix has the ``dim`` axis as rows (``h`` of them) and every other axis, in natural order, as columns:
    PyTorch's convention, in which ``v`` is stored. When the weight's memory order puts ``dim`` first or last
    (contiguous and channels_last convolutions, linear layers and embeddings; transposed convolutions with
    ``dim = 1`` channels_last), the matrix is a view whose columns follow memory order, and ``v`` is permuted to
    match instead of the weight; any other layout is copied.
    """

    def __init__(self, weight: torch.Tensor, dim: int) -> None:
        nd = weight.dim()
        others = [i for i in range(nd) if i != dim]
        # Size-1 axes have no meaningful stride: leave them out of the sort and put them next to ``dim``.
        wide = sorted((i for i in others if weight.shape[i] > 1), key=lambda i: (-weight.stride(i), i))
        unit = [i for i in others if weight.shape[i] == 1]
        for order in ([dim, *unit, *wide], [*wide, *unit, dim]):
            if weight.permute(order).is_contiguous():
                self.copies = False
                break
        else:
            self.copies, order = True, [dim, *others]
        self.order = order
        self.inverse = [order.index(i) for i in range(nd)]
        self.transposed = order[0] != dim  # the view is (w, h) and the matrix its transpose
        self.rows = weight.shape[dim]
        columns = [i for i in order if i != dim]
        self._natural_shape = [weight.shape[i] for i in others]
        self._memory_shape = [weight.shape[i] for i in columns]
        self._to_memory = [others.index(i) for i in columns]
        self._to_natural = [columns.index(i) for i in others]
        self._identity = self._to_memory == list(range(len(columns)))

    def flat(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` (laid out like the weight) as a 1-D tensor in memory order: a view unless the layout copies."""
        return t.permute(self.order).reshape(-1)

    def memory_view(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` as a 2-D tensor in memory order: the matrix ``(h, w)``, or its transpose ``(w, h)``."""
        p = t.permute(self.order)
        return p.reshape(-1, self.rows) if self.transposed else p.reshape(self.rows, -1)

    def matrix(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` as the ``(h, w)`` matrix, columns in memory order."""
        m = self.memory_view(t)
        return m.t() if self.transposed else m

    def from_memory_view(self, m: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """Inverse of :meth:`memory_view`: a contiguous ``m`` comes back with the weight's strides."""
        return m.reshape([shape[i] for i in self.order]).permute(self.inverse)

    def to_memory(self, v: torch.Tensor) -> torch.Tensor:
        """A column vector in natural order (as stored) -> memory order."""
        if self._identity:
            return v
        return v.view(self._natural_shape).permute(self._to_memory).reshape(-1)

    def to_natural(self, v: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_memory`."""
        if self._identity:
            return v
        return v.view(self._memory_shape).permute(self._to_natural).reshape(-1)


class _DivideBySigma(torch.autograd.Function):
    """``W / sigma`` with ``sigma = u^T W v`` (``u``, ``v`` constants), its gradient as one formula.

    ``d(W / sigma) / dW`` applied to ``g``: ``(g - <g, W> / sigma * u v^T) / sigma``, one dot product and one
    rank-1 update over the weight (autograd's generic chain through ``div``, ``dot`` and ``mv`` makes five or
    six passes and a full-size outer product). The backward is itself differentiable: with ``create_graph`` it
    recomputes sigma from the weight, so second derivatives (a penalty on parameter gradients, Hessian-vector
    products) see sigma's dependence on W too.
    """

    @staticmethod
    def forward(weight: torch.Tensor, matrix: torch.Tensor, u: torch.Tensor, v: torch.Tensor, layout):
        inv_sigma = torch.dot(u, torch.mv(matrix, v)).reciprocal()
        return weight * inv_sigma, inv_sigma  # the product keeps the weight's memory format

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # separate from forward, so torch.func transforms work
        weight, _, u, v, layout = inputs
        inv_sigma = output[1]
        ctx.mark_non_differentiable(inv_sigma)
        ctx.save_for_backward(weight, u, v, inv_sigma)
        ctx.layout = layout

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _grad_inv_sigma: torch.Tensor | None = None):
        weight, u, v, saved_inv_sigma = ctx.saved_tensors
        layout: _MatrixLayout = ctx.layout
        create_graph = torch.is_grad_enabled()
        if create_graph:  # sigma as a function of W, recorded, so the gradient's own gradient is right
            inv_sigma = torch.dot(u, torch.mv(layout.matrix(weight), v)).reciprocal()
        else:
            inv_sigma = saved_inv_sigma
        if grad.stride() != weight.stride():
            grad = torch.empty_like(weight).copy_(grad)  # the matrix view needs the weight's layout
        g_dot_w = torch.dot(layout.flat(grad), layout.flat(weight))
        scaled_u = u * -(g_dot_w * inv_sigma)
        # the rank-1 update in memory order, so the result is contiguous there (the weight's own strides)
        g = layout.memory_view(grad)
        m = torch.addr(g, v, scaled_u) if layout.transposed else torch.addr(g, scaled_u, v)
        m = m * inv_sigma if create_graph else m.mul_(inv_sigma)
        return layout.from_memory_view(m, weight.shape), None, None, None, None


class SpectralNorm(nn.Module):
    """Parametrization ``W -> W / sigma(W)``, ``sigma`` by power iteration over ``dim`` (0; 1 for transposed
    convolutions). Buffers ``_u (h,)`` and ``_v (w,)`` as PyTorch's (natural column order)."""

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12) -> None:
        super().__init__()
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
        self.dim = dim if dim >= 0 else dim + weight.dim()
        self.eps = eps
        self.n_power_iterations = n_power_iterations
        if weight.dim() > 1:
            natural = weight.movedim(self.dim, 0).flatten(1)
            h, w = natural.shape
            # Drawn as PyTorch draws them (u then v), so a seed gives the same network as before.
            u = F.normalize(natural.new_empty(h).normal_(0, 1), dim=0, eps=eps)
            v = F.normalize(natural.new_empty(w).normal_(0, 1), dim=0, eps=eps)
            self.register_buffer("_u", u)
            self.register_buffer("_v", v)
            layout = _MatrixLayout(weight, self.dim)
            self._power_method(layout.matrix(weight).detach(), layout, 15)

    @torch.no_grad()
    def _power_method(self, matrix: torch.Tensor, layout: _MatrixLayout, n: int) -> None:
        u, v = self._u, layout.to_memory(self._v)
        for _ in range(n):
            u = F.normalize(torch.mv(matrix, v), dim=0, eps=self.eps)
            v = F.normalize(torch.mv(matrix.t(), u), dim=0, eps=self.eps)
        self._u.copy_(u)
        self._v.copy_(layout.to_natural(v))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if weight.dim() == 1:
            return F.normalize(weight, dim=0, eps=self.eps)
        # fp32 whatever the autocast: sigma and u, v are reductions (the forward's convolution casts the result).
        # Only where autocast exists: "meta" (models built without memory) has none.
        no_autocast = (
            torch.autocast(weight.device.type, enabled=False)
            if weight.device.type != "meta" and torch.is_autocast_enabled(weight.device.type)
            else contextlib.nullcontext()
        )
        with no_autocast:
            layout = _MatrixLayout(weight, self.dim)
            matrix = layout.matrix(weight.detach())
            if self.training:
                self._power_method(matrix, layout, self.n_power_iterations)
            # clones: the next forward updates u and v in place while this one's backward may still need them
            u = self._u.clone()
            v = layout.to_memory(self._v).clone()
            return _DivideBySigma.apply(weight, matrix, u, v, layout)[0]

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        # assigning ``module.weight = W`` stores W itself (as PyTorch's does: W / sigma has no unique inverse)
        return value


def maybe_spectral_norm(
    module: nn.Module, enabled: bool = True, n_power_iterations: int = 1, eps: float = 1e-12
) -> nn.Module:
    """Return ``module`` with spectral norm on its ``weight`` when ``enabled`` (else unchanged); ``eps`` guards
    the power iteration's normalisations (PyTorch's 1e-12; StudioGAN uses 1e-6)."""
    if not enabled:
        return module
    dim = 1 if isinstance(module, _TRANSPOSED) else 0  # SpectralNorm checks n_power_iterations
    spectral = SpectralNorm(module.weight, n_power_iterations, dim, eps)
    parametrize.register_parametrization(module, "weight", spectral)
    return module


def spectral_norm_all(module: nn.Module, n_power_iterations: int = 1) -> nn.Module:
    """Put spectral norm on every convolution, linear and embedding inside ``module`` (in place)."""
    for child in list(module.modules()):
        if isinstance(child, _NORMALISABLE) and not has_spectral_norm(child):
            maybe_spectral_norm(child, True, n_power_iterations)
    return module


def has_spectral_norm(module: nn.Module) -> bool:
    """True when ``module.weight`` is spectrally normalised."""
    return parametrize.is_parametrized(module, "weight")


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """The effective weight as the ``(out, in * kh * kw)`` matrix that spectral norm normalises."""
    w = module.weight
    if isinstance(module, nn.ConvTranspose2d):
        w = w.transpose(0, 1)  # (in, out, kh, kw) -> (out, in, kh, kw)
    return w.reshape(w.shape[0], -1)


def fold_spectral_norm(module: nn.Module) -> nn.Module:
    """Replace every spectral-norm parametrization by its current effective weight (in place).

    The module must be in eval mode so that the folded weight equals what the module computes.
    ``copy.deepcopy`` of a parametrized module shares its generated class (e.g. ``ParametrizedConv2d``) and
    removal deletes the ``weight`` property from that class, which would break every copy (the EMA generator is
    one): each module gets a private copy of its class first.
    """
    for child in list(module.modules()):
        if has_spectral_norm(child):
            cls = type(child)
            child.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
            parametrize.remove_parametrizations(child, "weight", leave_parametrized=True)
    return module
