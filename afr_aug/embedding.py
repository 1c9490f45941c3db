"""Logits and embeddings of *any* classifier from one forward pass (paper §3.1).

AFR needs each image's penultimate-layer embedding next to the model's logits: the splitter
compares embeddings, the attack pulls them. A torchvision, timm or home-made model does not
return its embedding, so :class:`Embedder` captures it with a forward hook during the one call
``model(x)`` that gives the logits. :func:`run_inference` is the single "run a model over a
loader" pass that the splitter, :func:`afr_aug.metrics.evaluate` and the benchmark share.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .model_mode import eval_mode, preserved_modes  # kept importable from here

__all__ = [
    "Embedder",
    "Inference",
    "eval_mode",
    "is_classifier",
    "logits_of",
    "model_device",
    "preserved_modes",
    "run_inference",
    "unwrap_model",
]


def unwrap_model(model: nn.Module, compiled: bool = True) -> nn.Module:
    """The user's module inside ``DistributedDataParallel``/``DataParallel`` and (with
    ``compiled``) ``torch.compile`` wrappers: layer names refer to it.

    >>> net = nn.Linear(2, 2)
    >>> unwrap_model(nn.DataParallel(net)) is net
    True
    """
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif compiled and isinstance(orig := getattr(model, "_orig_mod", None), nn.Module):
            model = orig
        else:
            return model


def logits_of(output, what: str = "model(x)") -> torch.Tensor:
    """Logits from what a classifier returns: a tensor, a tuple whose first item is the logits
    (torchvision's Inception in train mode) or an object with ``.logits`` (Hugging Face)."""
    if not isinstance(output, torch.Tensor):
        if hasattr(output, "logits"):
            output = output.logits
        elif isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
            output = output[0]
    if not isinstance(output, torch.Tensor) or output.ndim != 2:
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"{what} must return logits [N, C], got {got}")
    return output


def is_classifier(module: nn.Module) -> bool:
    """Whether ``module`` is a classifier layer: an ``nn.Linear``, or a custom module that sets
    ``is_classifier = True`` (afr-aug's cosine ``NormedLinear``)."""
    return isinstance(module, nn.Linear) or getattr(module, "is_classifier", False) is True


class Embedder:
    """``Embedder(model, layer)(x) -> (logits, embedding)`` from one call of ``model(x)``.

    The embedding is captured by a forward hook that lives only for that call (removed also
    when the forward raises), so the model is never modified and works unchanged elsewhere.

    Args:
        model: any classifier returning logits ``[N, C]``; a ``DistributedDataParallel``,
            ``DataParallel`` or ``torch.compile`` wrapper is called as it is, while layer names
            refer to the wrapped module.
        layer: name of a sub-module (as in ``model.named_modules()``, e.g. ``"avgpool"``,
            ``"head.fc"``) whose output, flattened to ``[N, D]``, is the embedding. ``None``:
            the *input* of the last ``nn.Linear`` that runs during the forward (the classifier;
            a custom classifier module counts too when it sets ``is_classifier = True``, as
            afr-aug's cosine ``NormedLinear`` does),
            which is the penultimate-layer embedding of afr-aug's ``resnet32``, torchvision's
            ResNets, MobileNets and ViTs, timm models and a user's ``nn.Sequential``. It is
            found on the first call (one forward, no extra pass) and remembered in
            :attr:`classifier` (its name: the embedding is that module's *input*, while a
            ``layer`` name means a module's *output*). If the chosen module runs several times
            in one forward, its last call counts.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3))
        >>> logits, emb = Embedder(net)(torch.rand(4, 3, 2, 2))
        >>> tuple(logits.shape), tuple(emb.shape)      # emb: the input of the last Linear
        ((4, 3), (4, 5))
        >>> Embedder(net).where
        'the input of the last nn.Linear (found on the first call)'

        >>> Embedder(net, layer="1")(torch.rand(4, 3, 2, 2))[1].shape
        torch.Size([4, 5])
    """

    def __init__(self, model: nn.Module, layer: str | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if layer is not None and not isinstance(layer, str):
            raise TypeError(
                f"layer must be a module name (str) or None, got {type(layer).__name__}"
            )
        self.model = model
        self.layer = layer
        self.classifier: str | None = None  # with layer=None: the module whose input counts
        self._modules = dict(unwrap_model(model).named_modules())
        if layer is not None and layer not in self._modules:
            close = difflib.get_close_matches(layer, [n for n in self._modules if n], n=5)
            hint = f"; close names: {', '.join(close)}" if close else ""
            raise ValueError(
                f"{type(unwrap_model(model)).__name__} has no sub-module named "
                f"{layer!r}{hint} (see model.named_modules())"
            )
        if layer is None and not any(is_classifier(m) for m in self._modules.values()):
            raise ValueError(
                f"{type(unwrap_model(model)).__name__} has no nn.Linear classifier: "
                f"pass layer='<module name>' whose output is the embedding"
            )

    @property
    def where(self) -> str:
        """Where the embedding is taken, in words (``"the input of 'fc'"``, ``"the output of
        'avgpool'"``)."""
        if self.layer is not None:
            return f"the output of {self.layer!r}"
        if self.classifier is not None:
            return f"the input of {self.classifier!r}"
        return "the input of the last nn.Linear (found on the first call)"

    def __repr__(self) -> str:
        return f"Embedder({type(unwrap_model(self.model)).__name__}, {self.where})"

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        captured = {}

        def keep_input(name):
            def hook(_module, args):
                captured["name"], captured["emb"] = name, args[0]

            return hook

        def keep_output(_module, _args, output):
            captured["emb"] = output

        if self.layer is not None:
            handles = [self._modules[self.layer].register_forward_hook(keep_output)]
        elif self.classifier is not None:
            module = self._modules[self.classifier]
            handles = [module.register_forward_pre_hook(keep_input(self.classifier))]
        else:  # first call: watch every Linear, the last one to run wins
            watched = [(n, m) for n, m in self._modules.items() if is_classifier(m)]
            handles = [m.register_forward_pre_hook(keep_input(n)) for n, m in watched]
        try:
            logits = logits_of(self.model(x))
        finally:
            for h in handles:
                h.remove()
        if "emb" not in captured:
            where = repr(self.layer) if self.layer is not None else "no nn.Linear"
            raise RuntimeError(
                f"{where} did not run during model(x): no embedding captured; "
                f"pass layer='<module name>' of a module the forward uses"
            )
        if self.layer is None:
            self.classifier = captured["name"]
        emb = captured["emb"]
        if not isinstance(emb, torch.Tensor):
            raise TypeError(
                f"{self.where} is a {type(emb).__name__}, not a tensor; choose a "
                f"layer whose output is a tensor"
            )
        if emb.ndim == 0 or emb.shape[0] != logits.shape[0]:
            raise ValueError(
                f"{self.where} has shape {tuple(emb.shape)}, expected one row per "
                f"image ({logits.shape[0]})"
            )
        return logits, emb.flatten(1)


@dataclass
class Inference:
    """What :func:`run_inference` returns (CPU tensors, rows in dataset order when the loader
    gave indices, gathered over ``torch.distributed`` ranks)."""

    predictions: torch.Tensor  # int64 [N], argmax of the logits
    labels: torch.Tensor  # int64 [N]
    num_classes: int  # the logits' width
    embeddings: torch.Tensor | None = None  # float32 [N, D] with layer/embed
    logits: torch.Tensor | None = None  # float32 [N, C] with keep_logits
    index: torch.Tensor | None = None  # int64 [N], when the loader yields indices


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters (else buffers) are; the CPU for a model without either."""
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def run_inference(
    model: nn.Module,
    loader: Iterable,
    *,
    embed: bool = False,
    layer: str | None = None,
    keep_logits: bool = False,
    device=None,
    progress: bool = True,
    desc: str = "inference",
    indexed: bool = True,
) -> Inference:
    """One pass of ``model`` over ``loader`` in eval mode (modes restored), without gradients.

    The loader yields ``(images, labels)`` or ``(images, labels, indices)``; with indices the
    rows come back sorted by index (a repeated index kept once), which makes the result
    independent of shuffling and of how ``torch.distributed`` ranks sharded the data: under a
    process group every rank passes its own shard and gets the gathered whole. Batches are
    moved to ``device`` (default: the model's); the model is never moved. ``embed=True``
    (implied by ``layer``) also returns the :class:`Embedder` embeddings. ``indexed=False``
    ignores a third item instead of reading it as indices (rows then in loader order).
    ``progress`` shows a tqdm bar (on rank 0, cleared when done), as every afr-aug pass over a
    whole dataset does by default.

    >>> model = nn.Linear(4, 3)
    >>> x, y = torch.rand(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    >>> batches = [(x[3:], y[3:], torch.arange(3, 6)), (x[:3], y[:3], torch.arange(3))]
    >>> out = run_inference(model, batches, embed=True, progress=False)
    >>> out.index.tolist(), tuple(out.embeddings.shape), out.num_classes
    ([0, 1, 2, 3, 4, 5], (6, 4), 3)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    # Under DDP each rank runs its own shard: the wrapper's per-forward collectives (buffer
    # broadcasts) would hang when shards have different numbers of batches.
    model = unwrap_model(model, compiled=False)
    embed = embed or layer is not None
    device = model_device(model) if device is None else torch.device(device)
    cols, num_classes = _run_batches(
        model,
        loader,
        Embedder(model, layer) if embed else None,
        device,
        keep_logits=keep_logits,
        indexed=indexed,
        progress=progress,
        desc=desc,
    )
    out, num_classes, has_index = _concat_and_gather(cols, num_classes)
    if len(out["labels"]) == 0:
        raise ValueError("the loader yielded no batch: nothing to run the model on")
    if has_index:
        out = _in_index_order(out)
    return Inference(
        predictions=out["predictions"],
        labels=out["labels"],
        num_classes=num_classes,
        embeddings=out["embeddings"] if embed else None,
        logits=out["logits"] if keep_logits else None,
        index=out["index"] if has_index else None,
    )


def _batch_parts(batch, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``i``'s images and labels (int64, 1-D), with a clear error for any other shape."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        what = type(batch).__name__ + (
            f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""
        )
        raise TypeError(f"loader must yield (images, labels[, indices]); batch {i} is {what}")
    if not isinstance(batch[0], torch.Tensor):
        raise TypeError(f"loader must yield image tensors; batch {i} has {type(batch[0]).__name__}")
    return batch[0], torch.as_tensor(batch[1]).reshape(-1).long()


def _run_batches(
    model: nn.Module,
    loader: Iterable,
    embedder: Embedder | None,
    device,
    *,
    keep_logits: bool,
    indexed: bool,
    progress: bool,
    desc: str,
):
    """The forward passes: per-batch CPU columns of :class:`Inference` and the logits' width."""
    from tqdm.auto import tqdm

    from .distributed import get_rank

    cols: dict[str, list[torch.Tensor]] = {
        "predictions": [],
        "labels": [],
        "embeddings": [],
        "logits": [],
        "index": [],
    }
    num_classes = 0
    batches = tqdm(loader, desc=desc, leave=False, disable=not progress or get_rank() != 0)
    with eval_mode(model):
        for i, batch in enumerate(batches):
            images, target = _batch_parts(batch, i)
            images = images.to(device, non_blocking=True)
            if embedder is not None:
                logits, emb = embedder(images)
                cols["embeddings"].append(emb.float().cpu())
            else:
                logits = logits_of(model(images), f"batch {i}: model(x)")
            if len(target) != len(logits):
                raise ValueError(
                    f"batch {i}: labels has {len(target)} entries, model outputs {len(logits)}"
                )
            if num_classes and logits.shape[1] != num_classes:
                raise ValueError(
                    f"batch {i}: model returns {logits.shape[1]} logits, earlier "
                    f"batches {num_classes}"
                )
            num_classes = int(logits.shape[1])
            cols["predictions"].append(logits.argmax(1).cpu())
            cols["labels"].append(target.cpu())
            if keep_logits:
                cols["logits"].append(logits.float().cpu())
            if indexed and len(batch) > 2:
                cols["index"].append(torch.as_tensor(batch[2]).reshape(-1).long().cpu())
    return cols, num_classes


def _concat_and_gather(cols, num_classes: int):
    """The columns as tensors (empty ones shaped right), gathered over ``torch.distributed``
    ranks: ``(columns, num_classes, whether indices were given)``."""
    from .distributed import all_gather_cat, is_distributed

    d = cols["embeddings"][0].shape[1] if cols["embeddings"] else 0
    empty = {
        "predictions": (0,),
        "labels": (0,),
        "index": (0,),
        "embeddings": (0, d),
        "logits": (0, num_classes),
    }
    out = {
        k: torch.cat(v)
        if v
        else torch.empty(
            empty[k], dtype=torch.long if k in ("predictions", "labels", "index") else None
        )
        for k, v in cols.items()
    }
    has_index = bool(cols["index"])
    if is_distributed():  # a rank with an empty shard still takes part in every collective
        info = all_gather_cat(torch.tensor([[num_classes, d, int(has_index)]]))
        num_classes, d, has_index = (
            int(info[:, 0].max()),
            int(info[:, 1].max()),
            bool(info[:, 2].any()),
        )
        out["embeddings"] = out["embeddings"].reshape(len(out["embeddings"]), d)
        out["logits"] = out["logits"].reshape(len(out["logits"]), num_classes)
        out = {k: all_gather_cat(v) for k, v in out.items()}
    return out, num_classes, has_index


def _in_index_order(out):
    """Rows sorted by dataset index, a repeated index kept once."""
    if len(out["index"]) != len(out["labels"]):
        raise ValueError("the loader yielded indices for some batches only")
    order = torch.argsort(out["index"], stable=True)
    keep = torch.ones(len(order), dtype=torch.bool)
    keep[1:] = out["index"][order][1:] != out["index"][order][:-1]
    order = order[keep]
    return {k: v[order] if len(v) else v for k, v in out.items()}
