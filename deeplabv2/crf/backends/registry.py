"""The registry of CRF backends: what each one is, and which one ``backend="auto"`` runs.

A backend is a :class:`Backend` record passed to :func:`register_backend`. Everything that lists
or chooses backends reads this registry: ``DenseCRF``'s ``backend`` argument, ``"auto"``,
``deeplabv2.crf.BACKENDS`` and ``CPU_BACKENDS``, :func:`backend_help` (the CLI's help text) and
the benchmarks. ``docs/crf.md`` ("Adding a CRF backend") has the recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Protocol

if TYPE_CHECKING:
    from torch import Tensor

    from ..params import CRFParams

__all__ = [
    "AUTO",
    "Backend",
    "MeanField",
    "RaggedMeanField",
    "auto_backend",
    "backend_choices",
    "backend_help",
    "cpu_backends",
    "get_backend",
    "list_backends",
    "register_backend",
    "unregister_backend",
]

#: the backend name that picks one per call (:func:`auto_backend`)
AUTO = "auto"


class MeanField(Protocol):
    """The one calling convention of every backend: mean-field inference for a batch.

    Args:
        images: ``(B, 3, H, W) uint8`` RGB images, 0..255, on the device of ``probs``.
        probs: ``(B, C, H, W) float32`` class probabilities (finite, >= 0, ``C >= 2``,
            ``H, W >= 1``), on a device the backend runs on (:meth:`Backend.runs_on`); they
            need gradients only if the backend is :attr:`~Backend.differentiable`.
        params: the CRF parameters (iterations, kernels, compatibility matrix).

    Returns:
        ``(B, C, H, W) float32`` marginals on the device of ``probs``.

    ``DenseCRF`` validates the inputs, converts them to this layout and moves them to the CPU
    (and the result back) for a backend that does not run on their device. :meth:`Backend.run`
    passes the three positionally, so a backend may name them as it likes and take optional
    extras of its own (the torch backend's ``weights``, ``compatibility`` and ``batched``).
    Images of different sizes reach it one at a time through :meth:`Backend.run_ragged`, unless
    the backend also has a :class:`RaggedMeanField`.
    """

    def __call__(self, images: Tensor, probs: Tensor, params: CRFParams, /) -> Tensor: ...


class RaggedMeanField(Protocol):
    """Mean-field inference for images of different sizes in one go (a backend's optional
    :attr:`~Backend.ragged`): one lattice per kernel over the points of all the images, which
    share no vertex, so that each result equals :class:`MeanField`'s for that image alone.

    Args:
        images: ``(3, H_i, W_i) uint8`` RGB images, 0..255, on the device of ``probs``.
        probs: ``(C, H_i, W_i) float32`` class probabilities, all with the same ``C`` and on
            one device the backend runs on; at least one image.
        params: the CRF parameters.

    Returns:
        ``(C, H_i, W_i) float32`` marginals on the device of ``probs``, in the order of
        ``images``.

    :meth:`Backend.run_ragged` calls it, or :attr:`~Backend.mean_field` image by image.
    """

    def __call__(
        self, images: Sequence[Tensor], probs: Sequence[Tensor], params: CRFParams, /
    ) -> list[Tensor]: ...


def _nothing_to_load() -> None:
    """The ``require`` of a backend that needs nothing beyond deeplabv2's own dependencies."""


@dataclass(frozen=True)
class Backend:
    """A CRF backend as ``DenseCRF`` and ``"auto"`` see it.

    Attributes:
        name: what ``DenseCRF(backend=...)`` and ``--crf-backend`` take.
        mean_field: the inference (:class:`MeanField`).
        require: imports what the backend needs (compiling it if need be) and raises
            ImportError naming the install command when that is missing; ``DenseCRF`` calls it
            when it is built with this backend, :meth:`available` asks it.
        devices: the tensor device types (``torch.device.type``) it computes on, e.g.
            ``("cpu",)``; None for every device PyTorch runs on. Tensors elsewhere are moved to
            the CPU and back.
        differentiable: whether gradients flow from the marginals back to the probabilities.
        priority: ``"auto"`` runs the installed backend of the highest priority among those that
            compute on the tensors' device (and take gradients, where they are needed).
        summary: a short description, for listings.
        ragged: one call for images of different sizes (:class:`RaggedMeanField`), or None:
            :meth:`run_ragged` then calls :attr:`mean_field` image by image.
    """

    name: str
    mean_field: MeanField
    require: Callable[[], object] = _nothing_to_load
    devices: Optional[tuple[str, ...]] = ("cpu",)
    differentiable: bool = False
    priority: int = 0
    summary: str = ""
    ragged: Optional[RaggedMeanField] = None

    def __post_init__(self) -> None:
        if self.devices is not None:  # any sequence of names, kept as a tuple
            object.__setattr__(self, "devices", tuple(self.devices))

    def available(self) -> bool:
        """Whether it is installed (:attr:`require` succeeds)."""
        try:
            self.require()
        except ImportError:
            return False
        return True

    def runs_on(self, device_type: str) -> bool:
        """Whether it computes on tensors of this device type (``"cpu"``, ``"cuda"``, ...)."""
        return self.devices is None or device_type in self.devices

    def run(self, images: Tensor, probs: Tensor, params: CRFParams) -> Tensor:
        """:attr:`mean_field` on the tensors' device, or on the CPU with the result moved back;
        ValueError for probabilities that need gradients it cannot give. Shapes and dtypes as
        :class:`MeanField`, ``probs`` on any device."""
        self._check_gradients(probs.requires_grad)
        if self.runs_on(probs.device.type):
            return self.mean_field(images, probs, params)
        return self.mean_field(images.cpu(), probs.cpu(), params).to(probs.device)

    def run_ragged(
        self,
        images: Sequence[Tensor],
        probs: Sequence[Tensor],
        params: CRFParams,
        *,
        batched: Optional[bool] = None,
    ) -> list[Tensor]:
        """Images of different sizes: ``(3, H_i, W_i) uint8`` images and ``(C, H_i, W_i)
        float32`` probabilities (one device, any) -> ``(C, H_i, W_i) float32`` marginals there;
        an empty list for empty lists.

        ``batched=True`` runs :attr:`ragged` (one lattice for all the images) on the tensors'
        device, or on the CPU with the results moved back; ``False`` runs :attr:`mean_field`
        image by image; None: :attr:`ragged` where it computes on a GPU, image by image on the
        CPU, where one image's working set stays in cache and that measured faster
        (``docs/benchmarks.md``). A backend without :attr:`ragged` always goes image by image.
        ValueError as :meth:`run` for gradients it cannot give.
        """
        self._check_gradients(any(p.requires_grad for p in probs))
        if not probs:
            return []
        device = probs[0].device
        computes_on = device.type if self.runs_on(device.type) else "cpu"
        if batched is None:
            batched = computes_on != "cpu"
        if self.ragged is None or not batched:
            return [self.run(im[None], p[None], params)[0] for im, p in zip(images, probs)]
        if computes_on == device.type:
            return list(self.ragged(images, probs, params))
        on_cpu = self.ragged([im.cpu() for im in images], [p.cpu() for p in probs], params)
        return [q.to(device) for q in on_cpu]

    def _check_gradients(self, requires_grad: bool) -> None:
        """ValueError for probabilities that need gradients this backend cannot give."""
        if requires_grad and not self.differentiable:
            advice = [f"backend={b.name!r}" for b in _by_priority() if b.differentiable]
            advice.append("detach the probabilities")
            raise ValueError(
                f"the {self.name!r} backend is not differentiable; use {' or '.join(advice)}"
            )


_REGISTRY: dict[str, Backend] = {}


def register_backend(backend: Backend, *, replace: bool = False) -> Backend:
    """Add ``backend`` to the registry (after those already there) and return it.

    ValueError for the name ``"auto"`` or, unless ``replace``, a name already registered; with
    ``replace`` a registered backend of that name is swapped in place.
    """
    if backend.name == AUTO or not backend.name:
        raise ValueError(f"a CRF backend cannot be called {backend.name!r}")
    if backend.name in _REGISTRY and not replace:
        raise ValueError(f"a CRF backend called {backend.name!r} is already registered")
    _REGISTRY[backend.name] = backend
    return backend


def unregister_backend(name: str) -> Backend:
    """Remove a backend from the registry and return it (ValueError if there is none)."""
    backend = get_backend(name)
    del _REGISTRY[name]
    return backend


def get_backend(name: str) -> Backend:
    """The registered backend called ``name``; ValueError naming the choices otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"no CRF backend called {name!r}; registered: {tuple(_REGISTRY)}")
    return _REGISTRY[name]


def list_backends() -> tuple[Backend, ...]:
    """Every registered backend, in registration order (``torch``, ``numba``, ``pydensecrf``,
    then any registered later)."""
    return tuple(_REGISTRY.values())


def backend_choices() -> tuple[str, ...]:
    """``"auto"`` and the registered names: ``DenseCRF``'s and the CLI's choices."""
    return (AUTO, *_REGISTRY)


def _by_priority() -> list[Backend]:
    return sorted(_REGISTRY.values(), key=lambda backend: -backend.priority)  # stable


def cpu_backends() -> tuple[str, ...]:
    """The CPU-only backends, in the order ``"auto"`` tries them on the CPU (fastest first); it
    runs the first installed one, else the best of the others (``torch``)."""
    return tuple(b.name for b in _by_priority() if b.devices == ("cpu",))


def auto_backend(device_type: str, requires_grad: bool) -> Backend:
    """What ``backend="auto"`` runs for probabilities on this device type: the installed
    backend of the highest priority that computes there and, if ``requires_grad``, is
    differentiable. With the built-in backends: ``torch`` for CUDA tensors and for probabilities
    that need gradients, else the first installed of ``numba``, ``pydensecrf``, else ``torch``.
    """
    for backend in _by_priority():
        fits = backend.runs_on(device_type) and (backend.differentiable or not requires_grad)
        if fits and backend.available():
            return backend
    need = " with gradients" if requires_grad else ""
    raise ValueError(f"no installed CRF backend runs on {device_type!r} tensors{need}")


def backend_help() -> str:
    """One line on what ``"auto"`` picks, for the CLI's ``--crf-backend`` help; with the
    built-in backends ``"auto: torch on a GPU; on the CPU numba, else pydensecrf, else torch"``.
    """
    ordered = _by_priority()
    gpu = [b.name for b in ordered if b.runs_on("cuda")]
    cpu = [b.name for b in ordered if b.runs_on("cpu")]
    parts = ([f"{', else '.join(gpu)} on a GPU"] if gpu else []) + [
        f"on the CPU {', else '.join(cpu)}"
    ]
    return f"{AUTO}: {'; '.join(parts)}"
