"""torchvision video ResNet weights (``r3d_18``, ``mc3_18``, ``r2plus1d_18``) as avts_tf towers.

:func:`convert_state_dict` maps a ``torchvision.models.video`` ResNet ``state_dict`` onto
the tower of the same name (:mod:`avts_tf.backbones.video_resnet`), which pads as PyTorch
does, so the converted model computes torchvision's outputs (to float rounding):

* conv weights ``(O, I, D, H, W)`` -> Keras kernels ``(D, H, W, I, O)``;
* BatchNorm ``weight``/``bias``/``running_mean``/``running_var`` -> gamma, beta, moving
  mean and variance (``num_batches_tracked`` is ignored);
* ``fc`` -> a ``num_classes``-way ``fc`` head (kernel transposed), when the checkpoint
  has one and ``include_head`` is set, so the model returns torchvision's logits.

Width (stem channels) and blocks per group are read from the checkpoint; every other
tensor must then have exactly the tower's shape. A ``module.`` prefix on every key
(``DataParallel``) is removed. Unknown keys, missing keys and shape mismatches raise
:class:`TorchvisionImportError` with one line naming them and how to fix it.

Input: torchvision's Kinetics-400 weights expect RGB frames in [0, 1] normalised with
:data:`KINETICS_MEAN` / :data:`KINETICS_STD` (its ``VideoClassification`` transform),
and were trained on 16 x 112 x 112 clips. The avts_tf pipeline yields frames in [0, 1]
without normalisation; ``normalize=True`` puts that normalisation (a Keras
``Normalization`` layer named ``kinetics_normalization``) in front of the tower so it
takes the pipeline's frames. The layout is channels last: a PyTorch ``(B, C, T, H, W)``
clip is ``(B, T, H, W, C)`` here.

:func:`load_torchvision` reads a ``.pth`` file (``torch.load(weights_only=True)``; a bare
``state_dict`` or ``{"state_dict": ...}`` / ``{"model": ...}``); only it imports torch,
an optional extra (``pip install "avts_tf[torch]"``).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from avts_tf.backbones import video_resnet

# The towers torchvision.models.video has (it has no mc2_18), with their layouts.
ARCHS: dict[str, tuple[tuple[str, ...], str]] = {
    name: video_resnet.LAYOUTS[name] for name in ("r3d_18", "mc3_18", "r2plus1d_18")
}
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
_IGNORED_SUFFIX = ".num_batches_tracked"
_CONTAINER_KEYS = ("state_dict", "model")
_LISTED = 4  # keys named in an error message before "(+N more)"


class TorchvisionImportError(ValueError):
    """A checkpoint that does not fit the requested tower; the message is one line."""


# Keras layer name -> torchvision module path (substitutions tried in order).
_NAME_RULES = (
    (r"^stem_conv$", "stem.0"),
    (r"^stem_bn$", "stem.1"),
    (r"^stem_s_conv$", "stem.0"),
    (r"^stem_s_bn$", "stem.1"),
    (r"^stem_t_conv$", "stem.3"),
    (r"^stem_t_bn$", "stem.4"),
    (r"^layer(\d+)_(\d+)_conv(\d)_s$", r"layer\1.\2.conv\3.0.0"),
    (r"^layer(\d+)_(\d+)_conv(\d)_s_bn$", r"layer\1.\2.conv\3.0.1"),
    (r"^layer(\d+)_(\d+)_conv(\d)_t$", r"layer\1.\2.conv\3.0.3"),
    (r"^layer(\d+)_(\d+)_conv(\d)$", r"layer\1.\2.conv\3.0"),
    (r"^layer(\d+)_(\d+)_bn(\d)$", r"layer\1.\2.conv\3.1"),
    (r"^layer(\d+)_(\d+)_downsample_conv$", r"layer\1.\2.downsample.0"),
    (r"^layer(\d+)_(\d+)_downsample_bn$", r"layer\1.\2.downsample.1"),
    (r"^fc$", "fc"),
)
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")


def torch_module_name(layer_name: str) -> str | None:
    """The torchvision module path of a tower layer (``layer2_0_conv1`` -> ``layer2.0.conv1.0``)."""
    for pattern, replacement in _NAME_RULES:
        if re.match(pattern, layer_name):
            return re.sub(pattern, replacement, layer_name)
    return None


def guess_arch(state_dict: Mapping[str, Any]) -> str | None:
    """The torchvision architecture a state_dict looks like, or ``None``."""
    if "stem.3.weight" in state_dict or "layer1.0.conv1.0.0.weight" in state_dict:
        return "r2plus1d_18"
    kernel = state_dict.get("layer2.0.conv1.0.weight")
    if kernel is None or len(kernel.shape) != 5:
        return None
    return "mc3_18" if kernel.shape[2] == 1 else "r3d_18"


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor (torch itself is not imported here)
        value = value.detach().cpu().float().numpy()
    return np.asarray(value, dtype=np.float32)


def _names(keys: Sequence[str]) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - _LISTED} more)" if len(keys) > _LISTED else ""
    return ", ".join(keys[:_LISTED]) + more


def _hint(arch: str, state_dict: Mapping[str, Any]) -> str:
    guess = guess_arch(state_dict)
    if guess is not None and guess != arch:
        return f"it looks like a {guess} checkpoint: pass that architecture"
    return f"pass the state_dict of a torchvision {arch} (torchvision.models.video.{arch})"


def _stem_width(arch: str, state_dict: Mapping[str, Any]) -> int:
    key = "stem.3.weight" if ARCHS[arch][1] == "r2plus1d" else "stem.0.weight"
    if key not in state_dict:
        raise TorchvisionImportError(
            f"missing key {key} (the stem) in the {arch} state_dict; {_hint(arch, state_dict)}"
        )
    return int(state_dict[key].shape[0])


def _depths(arch: str, state_dict: Mapping[str, Any]) -> tuple[int, ...]:
    depths = []
    for g in range(1, len(ARCHS[arch][0]) + 1):
        blocks = {int(m.group(1)) for k in state_dict if (m := re.match(rf"layer{g}\.(\d+)\.", k))}
        if 0 not in blocks:
            raise TorchvisionImportError(
                f"missing keys layer{g}.0.* in the {arch} state_dict; {_hint(arch, state_dict)}"
            )
        depths.append(max(blocks) + 1)  # a gap shows up as missing keys below
    return tuple(depths)


def keras_weights(layer: keras.layers.Layer, params: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """A conv, BatchNorm or Dense layer's ``set_weights`` list from its PyTorch tensors.

    Args:
        layer: The Keras layer.
        params: Its PyTorch module's tensors by parameter name (``weight``, ``bias``,
            ``running_mean``, ``running_var``).
    """
    if isinstance(layer, keras.layers.BatchNormalization):
        return [params[p] for p in _BN_PARAMS]  # gamma, beta, moving mean, moving variance
    if isinstance(layer, keras.layers.Dense):
        return [params["weight"].T, params["bias"]]
    weight = params["weight"]
    return [np.transpose(weight, tuple(range(2, weight.ndim)) + (1, 0))]  # OI... -> ...IO


def _expected_torch_shapes(layer: keras.layers.Layer) -> dict[str, tuple[int, ...]]:
    shapes = [tuple(int(d) for d in w.shape) for w in layer.weights]
    if isinstance(layer, keras.layers.BatchNormalization):
        return dict(zip(_BN_PARAMS, shapes, strict=True))
    if isinstance(layer, keras.layers.Dense):
        return {"weight": shapes[0][::-1], "bias": shapes[1]}
    kernel = shapes[0]  # (..., I, O) -> (O, I, ...)
    return {"weight": (kernel[-1], kernel[-2]) + kernel[:-2]}


def convert_state_dict(
    arch: str,
    state_dict: Mapping[str, Any],
    input_shape: Sequence[int | None] = video_resnet.DEFAULT_VIDEO_SHAPE,
    include_head: bool = True,
    normalize: bool = False,
) -> keras.Model:
    """The avts_tf tower holding a torchvision video ResNet's weights.

    Args:
        arch: ``"r3d_18"``, ``"mc3_18"`` or ``"r2plus1d_18"``.
        state_dict: torchvision's ``model.state_dict()``: names to torch tensors or arrays.
        input_shape: ``(T, H, W)`` or ``(T, H, W, 3)`` of the tower; entries may be ``None``.
        include_head: Convert ``fc`` (when present) to a ``num_classes``-way ``fc`` head;
            if false, ``fc`` is dropped and the tower returns the pooled features.
        normalize: Put torchvision's Kinetics normalisation in front of the tower, so it
            takes frames in [0, 1] (see module docstring).

    Returns:
        A functional ``keras.Model`` named ``arch`` with input ``"video"``.

    Raises:
        TorchvisionImportError: For an unknown ``arch``, unknown or missing keys, or a
            tensor whose shape differs from the tower's.
    """
    if arch not in ARCHS:
        raise TorchvisionImportError(
            f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}"
        )
    tensors = {
        str(k): _as_numpy(v) for k, v in state_dict.items() if not str(k).endswith(_IGNORED_SUFFIX)
    }
    if tensors and all(k.startswith("module.") for k in tensors):  # saved from DataParallel
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    has_fc = any(k.startswith("fc.") for k in tensors)
    if not include_head:
        tensors = {k: v for k, v in tensors.items() if not k.startswith("fc.")}
    input_shape = tuple(input_shape)
    if len(input_shape) == 3:
        input_shape += (3,)
    num_classes = None
    if include_head and has_fc:
        if "fc.weight" not in tensors:
            raise TorchvisionImportError(
                f"missing key fc.weight in the {arch} state_dict; {_hint(arch, tensors)}"
            )
        num_classes = int(tensors["fc.weight"].shape[0])
    conv_types, stem = ARCHS[arch]
    model = video_resnet.video_resnet(
        arch,
        conv_types,
        stem,
        input_shape=input_shape,
        width=_stem_width(arch, tensors),
        depths=_depths(arch, tensors),
        num_classes=num_classes,
        input_mean_std=(KINETICS_MEAN, KINETICS_STD) if normalize else None,
    )
    expected: dict[str, tuple[keras.layers.Layer, str, tuple[int, ...]]] = {}
    for layer in model.layers:
        if not layer.weights or layer.name == video_resnet.NORMALIZATION_LAYER:
            continue
        module = torch_module_name(layer.name)
        if module is None:  # a tower layer this importer does not know: a bug here
            raise AssertionError(f"no torchvision name for layer {layer.name}")
        for param, shape in _expected_torch_shapes(layer).items():
            expected[f"{module}.{param}"] = (layer, param, shape)
    unknown = set(tensors) - set(expected)
    if unknown:
        raise TorchvisionImportError(
            f"unexpected keys in the {arch} state_dict: {_names(unknown)}; {_hint(arch, tensors)}"
        )
    missing = set(expected) - set(tensors)
    if missing:
        raise TorchvisionImportError(
            f"missing keys in the {arch} state_dict: {_names(missing)}; {_hint(arch, tensors)}"
        )
    params: dict[str, dict[str, np.ndarray]] = {}
    for key, (layer, param, shape) in expected.items():
        value = tensors[key]
        if tuple(value.shape) != shape:
            raise TorchvisionImportError(
                f"{key} has shape {tuple(value.shape)} but the {arch} tower expects {shape}; "
                f"{_hint(arch, tensors)}"
            )
        params.setdefault(layer.name, {})[param] = value
    for layer in model.layers:
        if layer.name in params:
            layer.set_weights(keras_weights(layer, params[layer.name]))
    return model


def _load_failure(path: Path, err: Exception) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, in a few words."""
    with path.open("rb") as file:
        head = file.read(2)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":  # torch.save: zip or pickle
        return f"not a file torch.save writes: it starts with {head!r}"
    unsupported = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
    if unsupported:  # torch.save(model): a pickled module, loadable only by running code
        return (
            f"it holds a pickled {unsupported.group(1)} object, not only tensors; we load "
            "tensors only"
        )
    return " ".join(f"{type(err).__name__}: {err}".split())[:200]


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """The ``state_dict`` stored in a ``.pth`` file, as float32 numpy arrays.

    Accepts a bare ``state_dict`` or a dict holding it under ``"state_dict"`` or
    ``"model"``.

    Raises:
        TorchvisionImportError: If torch is missing or the file is not such a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise TorchvisionImportError(
            f"checkpoint {path} does not exist; pass a .pth file written by "
            f"torch.save(model.state_dict(), path)"
        )
    try:
        import torch
    except ImportError:
        raise TorchvisionImportError(
            "reading a .pth checkpoint needs torch, which is not installed; "
            "pip install 'avts_tf[torch]' (torch==2.14.1)"
        ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any load failure is a bad checkpoint.
        raise TorchvisionImportError(
            f"cannot read {path} as a PyTorch checkpoint ({_load_failure(path, err)}); pass a "
            f"file written by torch.save(model.state_dict(), path)"
        ) from None
    for key in _CONTAINER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TorchvisionImportError(
            f"{path} holds no state_dict (names to tensors); pass a file written by "
            f"torch.save(model.state_dict(), path)"
        )
    return {str(k): _as_numpy(v) for k, v in obj.items()}


def load_torchvision(
    arch: str,
    path: str | Path,
    input_shape: Sequence[int | None] = video_resnet.DEFAULT_VIDEO_SHAPE,
    include_head: bool = True,
    normalize: bool = False,
) -> keras.Model:
    """:func:`convert_state_dict` of the checkpoint at ``path`` (see :func:`load_state_dict`)."""
    return convert_state_dict(arch, load_state_dict(path), input_shape, include_head, normalize)
