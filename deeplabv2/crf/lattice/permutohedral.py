"""A hash-free, batched permutohedral lattice (Adams, Baek & Davis 2010) in PyTorch.

This reproduces the lattice of Krähenbühl's ``densecrf`` (the code inside pydensecrf) step by
step, so that filtering agrees with it to float32 precision:

* feature scaling ``sqrt(2/3) (d+1) / sqrt((i+1)(i+2))`` and the elevation ``y = E f`` computed in
  float32 in the same operation order;
* the closest 0-coloured point by rounding half to even (the SSE path), the rank of each
  coordinate with ties giving the later coordinate the higher rank, and the wrap-around fix;
* barycentric weights, including the wrap-around ``b[0] += 1 + b[d+1]``;
* the lattice keys of the ``d+1`` enclosing vertices (only the first ``d`` coordinates, since the
  coordinates of a lattice point sum to zero);
* splat, then a blur along axes ``0..d`` with weights ``(0.5, 1, 0.5)`` that reads the values of
  the previous axis pass (missing neighbours count as zero), then slice scaled by
  ``1 / (1 + 2^-d)``.  The self-contribution is not subtracted.

Instead of the C++ hash table the vertex keys are packed into one int64 per vertex (a mixed-radix
number with a margin wide enough that the neighbour shifts never wrap), deduplicated with one
stable sort and looked up with ``torch.searchsorted``. Splat, each axis' blur and slice are then
sparse CSR matrices, built once and applied with sparse-dense products (on CUDA by the kernel
of :mod:`.cuda_spmm`). Every step is a tensor operation, so the lattice runs on any device, handles
a batch of images at once, of one size or of different sizes (each point's image index is the
most significant digit of its keys, so images never share vertices; each image is padded on its
own, :mod:`.ragged`) and is differentiable with respect to the filtered values.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import Tensor

from .geometry import key_layout, neighbour_shifts, scale_factors
from .ragged import check_sizes, padded_layout
from .sparse import csr, csr_cols, csr_rows, matmul, scale_csr

__all__ = ["PermutohedralLattice"]


def _elevate(features: Tensor) -> Tensor:
    """``(P, d) float32`` features -> ``(P, d+1) float32`` points on the hyperplane."""
    d = features.shape[1]
    cf = features * scale_factors(d, features.device)
    elevated: list[Tensor] = []  # coordinates d, d-1, ..., 0
    sm = torch.zeros_like(cf[:, 0])
    for j in range(d, 0, -1):
        elevated.append(sm - float(j) * cf[:, j - 1])
        sm = sm + cf[:, j - 1]
    elevated.append(sm)
    return torch.stack(elevated[::-1], dim=1)


def _rank(delta: Tensor) -> Tensor:
    """Rank of each coordinate as the C++ counts it: ``(P, d+1)`` -> ``(P, d+1) int64``.

    For every pair ``i < j`` the C++ adds one to ``rank[i]`` if ``delta[i] < delta[j]`` and one to
    ``rank[j]`` otherwise, so ties give the later coordinate the higher rank.
    """
    n = delta.shape[1]
    lt = delta.unsqueeze(2) < delta.unsqueeze(1)  # lt[p, i, j] = delta_i < delta_j
    later = torch.ones(n, n, dtype=torch.bool, device=delta.device).triu(1)  # j > i
    from_later = (lt & later).sum(dim=2)  # i counts the later j it is smaller than
    from_earlier = (~lt & later).sum(dim=1)  # j counts the earlier i it is not smaller than
    return from_later + from_earlier


class PermutohedralLattice:
    """Gaussian filtering of values attached to feature points, batched over images.

    Args:
        features: ``(B, N, d) float32`` feature vectors (already divided by their standard
            deviations) of ``B`` images of ``N`` points each, ``1 <= d``; or, with ``sizes``,
            ``(P, d) float32`` the points of images of different sizes one after the other.
        sizes: the number of points of each image (a ragged batch, ``sum(sizes) == P``), or
            None for ``(B, N, d)`` features.

    Every point carries its image as the most significant digit of its vertex keys, so no two
    images share a vertex and filtering the batch equals filtering each image on its own. The
    lattice is built once in the constructor; :meth:`filter` can then be applied many times.

    Attributes:
        sizes: the number of points of each image.
        batch: the number of images.
        num_points: ``N`` for ``(B, N, d)`` features, ``P`` for a ragged batch.
    """

    def __init__(self, features: Tensor, sizes: Optional[Sequence[int]] = None) -> None:
        dims, layout = (3, "(B, N, d)") if sizes is None else (2, "(P, d)")
        if features.dim() != dims or features.dtype != torch.float32:
            raise ValueError(
                f"features must be a {layout} float32 tensor, got {tuple(features.shape)} "
                f"{features.dtype}"
            )
        d = features.shape[-1]
        self._uniform = sizes is None
        if sizes is None:
            self.num_points = features.shape[1]
            sizes = (self.num_points,) * features.shape[0]
        self.sizes = check_sizes(sizes, features.numel() // max(d, 1))
        self.batch, self.dim = len(self.sizes), d
        if not self._uniform:
            self.num_points = sum(self.sizes)
        self.alpha = float(torch.tensor(1.0, dtype=torch.float32) / (1.0 + 2.0**-d))
        with torch.no_grad():
            self._build(features.reshape(-1, d))

    def _build(self, features: Tensor) -> None:
        """Build the splat, blur and slice matrices of ``(P, d) float32`` points, the images'
        points one after the other (:attr:`sizes`)."""
        n, d = features.shape
        # densecrf's SSE code handles points in blocks of 4 and inserts the vertices of the
        # last block's missing points, whose features are all zero, into the lattice. They
        # never receive values, but as blur neighbours they pass values on between axes, so
        # they are reproduced here: each image is padded to a multiple of 4 points.
        layout = padded_layout(self.sizes, features.device)
        padding = layout.total != n  # else the points are their own layout: views, no copies
        real_rows = layout.real if padding else slice(None)
        padded = features
        if padding:
            padded = features.new_zeros(layout.total, d).index_copy_(0, layout.real, features)
        rem0, rank, bary = self._simplices(padded)
        packed, strides = self._pack_vertices(rem0, rank, layout.image, self.batch)
        # One stable sort gives the distinct vertices, each entry's vertex index and the
        # splat matrix's entries grouped by vertex (points in order within a vertex).
        sorted_keys, order = torch.sort(packed.reshape(-1), stable=True)
        first = torch.ones_like(sorted_keys, dtype=torch.bool)
        first[1:] = sorted_keys[1:] != sorted_keys[:-1]
        vertices = sorted_keys[first]
        self.num_vertices = m = vertices.numel()
        vertex_of_sorted = torch.cumsum(first, dim=0) - 1
        offsets = torch.empty_like(vertex_of_sorted)
        offsets[order] = vertex_of_sorted
        offsets = offsets.reshape(layout.total, d + 1)[real_rows]
        bary = bary[real_rows]
        # the sorted entries of real points, renumbered without the padding points
        real = torch.zeros(layout.total, dtype=torch.bool, device=features.device)
        real[real_rows] = True
        keep = real[order // (d + 1)]
        entries = order[keep]
        point = entries // (d + 1)
        if padding:
            point = (torch.cumsum(real, dim=0) - 1)[point]
        self._splat = csr(
            torch.zeros_like(vertices).index_add_(0, vertex_of_sorted, keep.to(torch.int64)),
            point,
            bary.reshape(-1)[point * (d + 1) + entries % (d + 1)],
            (m, n),
        )
        columns, within = torch.sort(offsets, dim=1)
        self._slice = csr(
            torch.full((n,), d + 1, dtype=torch.int64, device=features.device),
            columns.reshape(-1),
            (bary.gather(1, within) * self.alpha).reshape(-1),
            (n, m),
        )
        self._blur = [self._blur_matrix(vertices, shift) for shift in neighbour_shifts(strides, d)]

    # -- construction ------------------------------------------------------------------------

    @staticmethod
    def _simplices(features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Enclosing simplex of each point: remainder-0 point, rank and barycentric weights."""
        d = features.shape[1]
        inv_dp1 = torch.tensor(1.0 / (d + 1), dtype=torch.float32, device=features.device)
        dp1 = float(d + 1)
        elevated = _elevate(features)
        v = torch.round(elevated * inv_dp1)  # torch.round rounds half to even, like SSE
        rem0 = v * dp1
        total = v[:, 0]
        for i in range(1, d + 1):
            total = total + v[:, i]
        rank = _rank(elevated - rem0).to(torch.float32) + total.unsqueeze(1)
        shift = torch.where(rank < 0, dp1, 0.0) - torch.where(rank >= dp1, dp1, 0.0)
        rank = rank + shift
        rem0 = rem0 + shift
        rank_i = rank.to(torch.int64)

        v = (elevated - rem0) * inv_dp1
        by_rank = torch.zeros_like(v).scatter_(1, rank_i, v)  # by_rank[:, r] = v of rank r
        bary = torch.empty_like(v)
        # b[p] for p = 1..d: + v(rank d-p) - v(rank d-p+1); b[0] = v(rank d) + (1 - v(rank 0)).
        bary[:, 1:] = by_rank[:, :d].flip(1) - by_rank[:, 1:].flip(1)
        bary[:, 0] = by_rank[:, d] + (1.0 - by_rank[:, 0])
        return rem0.to(torch.int64), rank_i, bary

    @staticmethod
    def _pack_vertices(
        rem0: Tensor, rank: Tensor, image: Tensor, batch: int
    ) -> tuple[Tensor, list[int]]:
        """Packed keys of the ``d+1`` vertices of each point: ``(P, d+1) int64``, and the strides;
        ``image`` is the ``(P,) int64`` image (``0 .. batch-1``) of each point.

        The key of vertex ``r`` is ``rem0[k] + canonical(r, rank[k])`` for the first ``d``
        coordinates ``k``, where ``canonical(r, q) = r`` if ``q <= d - r`` else ``r - (d+1)``.
        It is packed as a mixed-radix number (image index most significant) whose digits have a
        margin of ``2(d+1)`` on both sides, so that neighbour shifts never carry between digits.
        """
        d = rem0.shape[1] - 1
        coords = rem0[:, :d]
        low, high = torch.stack(torch.aminmax(coords, dim=0)).tolist()
        offsets, strides, image_stride = key_layout(low, high, batch)
        device = rem0.device
        offset_t = torch.tensor(offsets, dtype=torch.int64, device=device)
        stride_t = torch.tensor(strides, dtype=torch.int64, device=device)
        base = ((coords - offset_t) * stride_t).sum(dim=1) + image * image_stride
        # sum of the strides of the coordinates whose rank exceeds d - r, for r = 0..d
        by_rank = torch.zeros_like(rank).scatter_(1, rank[:, :d], stride_t.expand(rank.shape[0], d))
        # (a running sum by columns: CUDA's cumsum along rows of d+1 int64 took 12 ms for the
        # 1.9 M points of a batch of 10 on an H200)
        flipped = by_rank.flip(1)
        above = torch.zeros_like(rank)
        for k in range(1, d + 1):
            above[:, k] = above[:, k - 1] + flipped[:, k - 1]
        r = torch.arange(d + 1, device=device)
        packed = base.unsqueeze(1) + r * sum(strides) - (d + 1) * above
        return packed, strides

    @staticmethod
    def _blur_matrix(vertices: Tensor, shift: int) -> Tensor:
        """``(M, M)`` CSR matrix of ``L + 0.5 (L[n1] + L[n2])``; absent neighbours are dropped."""
        m = vertices.numel()
        own = torch.arange(m, device=vertices.device)
        # One search finds both neighbours: if b = a + |shift| then a = b - |shift|.
        query = vertices + abs(shift)
        pos = torch.searchsorted(vertices, query).clamp_(max=m - 1)
        found = vertices[pos] == query
        upper = torch.where(found, pos, -1)
        # lower[upper[v]] = v; the vertices without an upper neighbour write to a spare slot
        lower = torch.full((m + 1,), -1, dtype=torch.int64, device=vertices.device)
        lower = lower.index_put_((torch.where(found, pos, m),), own)[:m]
        cols = torch.stack((lower, own, upper), dim=1)  # ascending, as the keys are sorted
        entries = (cols >= 0).reshape(-1).nonzero().squeeze(1)
        values = torch.tensor([0.5, 1.0, 0.5], device=vertices.device).repeat(m)
        row_counts = 1 + (lower >= 0).to(torch.int64) + found.to(torch.int64)
        return csr(row_counts, cols.reshape(-1)[entries], values[entries], (m, m))

    # -- filtering -----------------------------------------------------------------------------

    def filter(self, values: Tensor, reverse: bool = False) -> Tensor:
        """Splat, blur and slice ``values``: ``(P, C) float32`` (all the points, image after
        image) or, for a lattice of ``(B, N, d)`` features, also ``(B, N, C) float32`` -> the same
        shape.

        ``reverse=True`` blurs the axes in the order ``d..0``, which applies the transpose of the
        filter (densecrf's ``compute(..., reverse)``). Differentiable with respect to ``values``.
        """
        total = sum(self.sizes)
        shapes = [(total,)] + ([(self.batch, self.num_points)] if self._uniform else [])
        if tuple(values.shape[:-1]) not in shapes:
            expected = " or ".join(f"({', '.join(map(str, s))}, C)" for s in shapes)
            raise ValueError(f"values must have shape {expected}, got {tuple(values.shape)}")
        if values.dtype != torch.float32:
            raise ValueError(f"values must be float32, got {values.dtype}")
        flat = values.reshape(total, values.shape[-1])
        return _Filter.apply(flat, self, reverse).reshape(values.shape)

    def symmetric_normalized(self, weight: float = 1.0) -> PermutohedralLattice:
        """The operator ``x -> weight * D K (D x)`` with ``D = 1 / sqrt(K 1 + 1e-20)``.

        This is densecrf's ``NORMALIZE_SYMMETRIC`` kernel (with the Potts weight folded in): the
        normalisation is folded into the splat and slice matrices, so filtering costs no more
        than with ``K`` alone. The result is again self-adjoint up to the blur order, so
        :meth:`filter` and its gradient keep working.
        """
        ones = torch.ones(sum(self.sizes), 1, device=self._splat.device)
        with torch.no_grad():
            total = self.filter(ones).reshape(-1).to(torch.float64)
        norm = (1.0 / torch.sqrt(total + 1e-20)).to(torch.float32)
        other = copy.copy(self)
        other._splat = scale_csr(self._splat, norm[csr_cols(self._splat)])
        other._slice = scale_csr(self._slice, weight * norm[csr_rows(self._slice)])
        return other

    def _apply(self, flat: Tensor, reverse: bool) -> Tensor:
        blurs = self._blur[::-1] if reverse else self._blur
        x = matmul(self._splat, flat.contiguous())
        for blur in blurs:
            x = matmul(blur, x)
        return matmul(self._slice, x)


class _Filter(torch.autograd.Function):
    """``y = K x``; the backward pass applies ``K^T``, which is ``K`` with the blur reversed."""

    @staticmethod
    def forward(ctx: Any, flat: Tensor, lattice: PermutohedralLattice, reverse: bool) -> Tensor:
        ctx.lattice, ctx.reverse = lattice, reverse
        return lattice._apply(flat, reverse)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        return ctx.lattice._apply(grad, not ctx.reverse), None, None
