"""Hugging Face checkpoints <-> Transformer, through ONE name table used in both directions.

``NAME_TABLE`` rows are (HF tensor name, NNX parameter path, kind); ``{i}`` is the layer index.
Kinds say how a tensor changes shape between the two layouts:

* ``copy``: same shape (embedding, norm scales);
* ``flat``: HF stores the NNX array flattened (q/k/v biases ``(heads * head_dim,)``);
* ``linear``: HF ``nn.Linear`` weight ``(out, in)``; NNX kernel ``(in, *out_dims)``:
  ``kernel = weight.T.reshape(param_shape)``;
* ``linear2``: as ``linear`` with two input dims (o_proj kernel ``(heads, head_dim, d)``).

``load_orm`` / ``save_orm`` do the same for an ``OutcomeRewardModel`` in the
``*ForSequenceClassification`` layout (backbone names as above, plus ``score.weight``), and
``load_explicit_prm`` / ``save_explicit_prm`` for an ``ExplicitPRM`` in the
``*ForTokenClassification`` layout (``score.weight`` (1, D) and ``score.bias`` (1,)); both have
``num_labels = 1``.

``from_pretrained`` builds the model abstractly (``nnx.eval_shape``) and fills every parameter
straight into its target sharding with ``jax.make_array_from_callback``: no random-initialised
full model is ever materialised.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from prime_jax import sharding
from prime_jax.models.config import ModelConfig
from prime_jax.models.layers import param_shardings
from prime_jax.models.reward_head import OutcomeRewardModel, orm_config
from prime_jax.models.step_head import ExplicitPRM
from prime_jax.models.transformer import Transformer

_L = "model.layers.{i}."
NAME_TABLE: tuple[tuple[str, str, str], ...] = (
    ("model.embed_tokens.weight", "embed", "copy"),
    ("model.norm.weight", "final_norm.weight", "copy"),
    ("lm_head.weight", "lm_head", "linear"),
    (_L + "input_layernorm.weight", "layers.{i}.input_norm.weight", "copy"),
    (_L + "post_attention_layernorm.weight", "layers.{i}.post_attn_norm.weight", "copy"),
    (_L + "self_attn.q_proj.weight", "layers.{i}.attn.q_proj", "linear"),
    (_L + "self_attn.k_proj.weight", "layers.{i}.attn.k_proj", "linear"),
    (_L + "self_attn.v_proj.weight", "layers.{i}.attn.v_proj", "linear"),
    (_L + "self_attn.o_proj.weight", "layers.{i}.attn.o_proj", "linear2"),
    (_L + "self_attn.q_proj.bias", "layers.{i}.attn.q_bias", "flat"),
    (_L + "self_attn.k_proj.bias", "layers.{i}.attn.k_bias", "flat"),
    (_L + "self_attn.v_proj.bias", "layers.{i}.attn.v_bias", "flat"),
    (_L + "self_attn.q_norm.weight", "layers.{i}.attn.q_norm.weight", "copy"),
    (_L + "self_attn.k_norm.weight", "layers.{i}.attn.k_norm.weight", "copy"),
    (_L + "mlp.gate_proj.weight", "layers.{i}.mlp.gate_proj", "linear"),
    (_L + "mlp.up_proj.weight", "layers.{i}.mlp.up_proj", "linear"),
    (_L + "mlp.down_proj.weight", "layers.{i}.mlp.down_proj", "linear"),
)
# Tensors some checkpoints carry that the model recomputes or does not need.
_IGNORED = re.compile(r".*rotary_emb\.inv_freq$")


def _pattern(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)") + "$")


_HF_TO_NNX = [(_pattern(hf), nnx_path, kind) for hf, nnx_path, kind in NAME_TABLE]
_NNX_TO_HF = [(_pattern(nnx_path), hf, kind) for hf, nnx_path, kind in NAME_TABLE]


def _lookup(table, name: str) -> tuple[str, str] | None:
    for pattern, template, kind in table:
        match = pattern.match(name)
        if match:
            return template.format(**match.groupdict()), kind
    return None


def hf_to_nnx_name(hf_name: str) -> tuple[str, str] | None:
    """(NNX path, kind) of a HF tensor name, or None if the table has no row for it."""
    return _lookup(_HF_TO_NNX, hf_name)


def nnx_to_hf_name(nnx_path: str) -> tuple[str, str]:
    """(HF tensor name, kind) of an NNX parameter path."""
    found = _lookup(_NNX_TO_HF, nnx_path)
    if found is None:
        raise KeyError(f"no HF name for parameter {nnx_path!r} in hf.NAME_TABLE")
    return found


def _in_dims(kind: str) -> int:
    return {"linear": 1, "linear2": 2}.get(kind, 0)


def hf_shape(kind: str, param_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape the HF tensor must have for an NNX parameter of ``param_shape``."""
    if kind == "copy":
        return tuple(param_shape)
    if kind == "flat":
        return (math.prod(param_shape),)
    k = _in_dims(kind)
    return (math.prod(param_shape[k:]), math.prod(param_shape[:k]))


def to_nnx_layout(kind: str, tensor: np.ndarray, param_shape: tuple[int, ...]) -> np.ndarray:
    if _in_dims(kind):
        tensor = tensor.T
    return np.ascontiguousarray(tensor.reshape(param_shape))


def to_hf_layout(kind: str, array: np.ndarray) -> np.ndarray:
    k = _in_dims(kind)
    if k:
        array = array.reshape(math.prod(array.shape[:k]), -1).T
    elif kind == "flat":
        array = array.reshape(-1)
    return np.ascontiguousarray(array)


def _path_str(path: tuple) -> str:
    return ".".join(str(p) for p in path)


class _SafetensorsReader:
    """Tensors of ``model.safetensors`` or of a sharded ``model.safetensors.index.json``."""

    def __init__(self, directory: str):
        index = os.path.join(directory, "model.safetensors.index.json")
        single = os.path.join(directory, "model.safetensors")
        if os.path.exists(index):
            with open(index) as f:
                weight_map = json.load(f)["weight_map"]
            self.files = {name: os.path.join(directory, file) for name, file in weight_map.items()}
        elif os.path.exists(single):
            with safe_open(single, framework="np") as f:
                self.files = {name: single for name in f.keys()}
        else:
            raise FileNotFoundError(f"{directory}: neither model.safetensors nor "
                                    "model.safetensors.index.json found")
        self._stack = contextlib.ExitStack()
        self._handles: dict = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stack.close()

    def names(self) -> list[str]:
        return list(self.files)

    def get(self, name: str) -> np.ndarray:
        file = self.files[name]
        if file not in self._handles:
            self._handles[file] = self._stack.enter_context(safe_open(file, framework="np"))
        return self._handles[file].get_tensor(name)

    def shape(self, name: str) -> tuple[int, ...]:
        file = self.files[name]
        if file not in self._handles:
            self._handles[file] = self._stack.enter_context(safe_open(file, framework="np"))
        return tuple(self._handles[file].get_slice(name).get_shape())


def from_pretrained(path: str | os.PathLike, *, dtype=jnp.float32, param_dtype=None,
                    mesh: jax.sharding.Mesh | None = None, remat: bool = False,
                    remat_barriers: bool = True, logits_chunk: int | None = None,
                    attention: str = "auto") -> Transformer:
    """Load a local HF directory (config.json + safetensors) as a ``Transformer``.

    ``dtype`` is the compute dtype, ``param_dtype`` the storage dtype (default: ``dtype``).
    With ``mesh``, each parameter is placed straight into its ``PARAM_RULES`` sharding.
    ``remat``, ``remat_barriers``, ``logits_chunk`` and ``attention`` set those compute settings of
    the ``ModelConfig``.
    """
    path = os.fspath(path)
    config = ModelConfig.from_hf_file(
        path, dtype=jnp.dtype(dtype).name, param_dtype=jnp.dtype(param_dtype or dtype).name,
        remat=remat, remat_barriers=remat_barriers, logits_chunk=logits_chunk, attention=attention)
    return _load(path, lambda: Transformer(config, rngs=nnx.Rngs(0)), config, mesh, nnx_to_hf_name)


def _orm_name(nnx_path: str) -> tuple[str, str]:
    """HF name and kind of an ``OutcomeRewardModel`` parameter (``*ForSequenceClassification``)."""
    if nnx_path == "score":
        return "score.weight", "linear"
    return nnx_to_hf_name(nnx_path.removeprefix("backbone."))


def load_orm(path: str | os.PathLike, *, dtype=jnp.float32, param_dtype=None,
             mesh: jax.sharding.Mesh | None = None, remat: bool = False) -> OutcomeRewardModel:
    """Load a ``*ForSequenceClassification`` directory with ``num_labels = 1`` (e.g. one written
    by ``save_orm``) as an ``OutcomeRewardModel``; dtypes and ``mesh`` as in ``from_pretrained``."""
    path = os.fspath(path)
    config = _head_config(path, "ForSequenceClassification", "an outcome reward model", dtype, param_dtype, remat)
    return _load(path, lambda: OutcomeRewardModel(config, rngs=nnx.Rngs(0)), config, mesh, _orm_name)


def _head_config(path: str, suffix: str, what: str, dtype, param_dtype, remat: bool) -> ModelConfig:
    """The backbone config of a one-label ``*<suffix>`` directory (refused if it is another kind)."""
    with open(os.path.join(path, "config.json")) as f:
        hf = json.load(f)
    labels = len(hf.get("id2label") or {}) or hf.get("num_labels", 2)
    if not any(a.endswith(suffix) for a in hf.get("architectures") or []) or labels != 1:
        raise ValueError(f"{path}/config.json: {what} needs architectures [*{suffix}] with one label, "
                         f"got {hf.get('architectures')} with {labels} labels")
    return orm_config(ModelConfig.from_hf(
        hf, source=os.path.join(path, "config.json"), dtype=jnp.dtype(dtype).name,
        param_dtype=jnp.dtype(param_dtype or dtype).name, remat=remat))


def _explicit_prm_name(nnx_path: str) -> tuple[str, str]:
    """HF name and kind of an ``ExplicitPRM`` parameter (``*ForTokenClassification``)."""
    if nnx_path == "score":
        return "score.weight", "linear"
    if nnx_path == "score_bias":
        return "score.bias", "copy"
    return nnx_to_hf_name(nnx_path.removeprefix("backbone."))


def load_explicit_prm(path: str | os.PathLike, *, dtype=jnp.float32, param_dtype=None,
                      mesh: jax.sharding.Mesh | None = None, remat: bool = False) -> ExplicitPRM:
    """Load a ``*ForTokenClassification`` directory with ``num_labels = 1`` and a score bias (e.g.
    one written by ``save_explicit_prm``) as an ``ExplicitPRM``; dtypes and ``mesh`` as in
    ``from_pretrained``."""
    path = os.fspath(path)
    config = _head_config(path, "ForTokenClassification", "an explicit PRM", dtype, param_dtype, remat)
    with open(os.path.join(path, "config.json")) as f:
        if json.load(f).get("token_classification_bias", True) is False:
            raise ValueError(f"{path}/config.json: token_classification_bias is false, but an explicit "
                             "PRM's score head has a bias")
    return _load(path, lambda: ExplicitPRM(config, rngs=nnx.Rngs(0)), config, mesh, _explicit_prm_name)


def _load(path: str, build, config: ModelConfig, mesh, hf_name_of):
    """The module ``build()`` makes, every parameter read from ``path``'s safetensors under the
    name ``hf_name_of(nnx_path)`` gives; every checkpoint tensor must be used."""
    mesh_ctx = jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext()
    with mesh_ctx, nnx.logical_axis_rules(sharding.PARAM_RULES):
        abstract = nnx.eval_shape(build)
        graphdef, state = nnx.split(abstract)
        if mesh is not None:
            shardings = param_shardings(state, mesh)
    params = dict(state.flat_state())
    if mesh is not None:
        flat_shardings = dict(shardings.flat_state())
    expected = {}
    for key, variable in params.items():
        hf_name, kind = hf_name_of(_path_str(key))
        expected[hf_name] = (key, variable, kind)

    with _SafetensorsReader(path) as reader:
        unexpected = [n for n in reader.names() if n not in expected and not _IGNORED.match(n)
                      and not (n == "lm_head.weight" and config.tie_word_embeddings)]
        if unexpected:
            raise ValueError(f"{path}: checkpoint tensors not used by the {config.architecture} "
                             f"model built from config.json: {sorted(unexpected)[:8]}")
        for hf_name, (key, variable, kind) in expected.items():  # check all before reading
            if hf_name not in reader.files:
                raise ValueError(f"{path}: missing tensor {hf_name!r} (needed for parameter "
                                 f"{_path_str(key)!r})")
            want, got = hf_shape(kind, tuple(variable.shape)), reader.shape(hf_name)
            if got != want:
                raise ValueError(f"{path}: tensor {hf_name!r} has shape {got}, but config.json "
                                 f"implies {want}")
        for hf_name, (key, variable, kind) in expected.items():
            param_shape = tuple(variable.shape)
            host = to_nnx_layout(kind, reader.get(hf_name), param_shape).astype(
                config.weight_dtype)
            if mesh is None:
                value = jnp.asarray(host)
            else:
                value = jax.make_array_from_callback(
                    param_shape, flat_shardings[key].get_value(), lambda idx, h=host: h[idx])
            variable.set_value(value)
    return nnx.merge(graphdef, state)


def save_pretrained(model: Transformer, path: str | os.PathLike, tokenizer=None, *,
                    max_shard_bytes: int = 5 * 2**30) -> None:
    """Write config.json + safetensors (sharded with an index above ``max_shard_bytes``).

    Loadable by ``transformers.AutoModelForCausalLM.from_pretrained``. Multi-process runs gather
    every parameter on all processes; only process 0 writes.
    """
    _save(model, model.config.to_hf(), nnx_to_hf_name, path, tokenizer, max_shard_bytes)


def save_orm(model: OutcomeRewardModel, path: str | os.PathLike, tokenizer=None, *,
             max_shard_bytes: int = 5 * 2**30) -> None:
    """Write an ORM as ``<Arch>ForSequenceClassification`` (one label), loadable by
    ``transformers.AutoModelForSequenceClassification`` and ``load_orm``."""
    hf = model.config.to_hf()
    hf["architectures"] = [hf["architectures"][0].replace("ForCausalLM", "ForSequenceClassification")]
    hf.update(id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    _save(model, hf, _orm_name, path, tokenizer, max_shard_bytes)


def save_explicit_prm(model: ExplicitPRM, path: str | os.PathLike, tokenizer=None, *,
                      max_shard_bytes: int = 5 * 2**30) -> None:
    """Write an explicit PRM as ``<Arch>ForTokenClassification`` (one label, score bias), loadable
    by ``transformers.AutoModelForTokenClassification`` and ``load_explicit_prm``."""
    hf = model.config.to_hf()
    hf["architectures"] = [hf["architectures"][0].replace("ForCausalLM", "ForTokenClassification")]
    hf.update(id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0}, token_classification_bias=True)
    _save(model, hf, _explicit_prm_name, path, tokenizer, max_shard_bytes)


def _save(model: nnx.Module, hf_config: dict, hf_name_of, path, tokenizer, max_shard_bytes: int) -> None:
    path = os.fspath(path)
    tensors: dict[str, np.ndarray] = {}
    for key, variable in nnx.state(model, nnx.Param).flat_state():
        hf_name, kind = hf_name_of(_path_str(key))
        value = variable.get_value()
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            value = multihost_utils.process_allgather(value, tiled=True)
        tensors[hf_name] = to_hf_layout(kind, np.asarray(jax.device_get(value)))
    if jax.process_index() != 0:
        return
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(hf_config, f, indent=2)
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name in sorted(tensors, key=_hf_sort_key):
        nbytes = tensors[name].nbytes
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensors[name]
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards):
            file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, os.path.join(path, file), metadata={"format": "pt"})
            weight_map.update({name: file for name in shard})
        total = sum(t.nbytes for t in tensors.values())
        with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


def _hf_sort_key(name: str):
    match = re.search(r"layers\.(\d+)\.", name)
    return (int(match.group(1)) if match else -1, name)

