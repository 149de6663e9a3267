"""CLI: ``python -m prime_jax.memory_plan --gin CONFIG --topology NAME [--gin BINDING ...] [--out FILE.json]``.
Exit status 0 when every program fits, 1 when one does not, 2 on a bad argument.

Compile-time memory plan of a PRIME run on a TPU slice or GPU nodes, without the hardware. The gin
config is parsed as ``prime_jax.train`` parses it; the run's step programs are then lowered and
compiled ahead of time (``jax.jit(...).lower(...).compile()``) for the topology ``NAME`` that
``prime_jax.topologies`` describes (TPU: libtpu's ``v5e:2x4``, ``v4:4x4x4``, ...; NVIDIA GPU through
the CUDA plugin: ``h100:8``, ``h200:2x8``, ...), over the config's ``MeshConfig`` mesh built on that
topology's devices. No weight is ever materialised: the model, its optimiser states, the KV cache
and the batches are abstract arrays (``nnx.eval_shape``,
``jax.ShapeDtypeStruct`` with their ``NamedSharding``), laid out by ``sharding.PARAM_RULES`` /
``ACTIVATION_RULES`` exactly as the trainer lays them out. The programs are the project's own:

* ``decode``        one rollout step: ``Transformer.__call__`` on one token per row over the KV
                    cache at its largest length (P + L - 1 slots, ``SamplingConfig.cache_dtype``),
                    then ``rollout.engine``'s token choice; B = prompts per round x samples, the
                    cache donated (it is the while-loop carry of the real sampler);
* ``sample``        (on request) the whole sampler the config selects: ``rollout.engine``'s static
                    batch (prefill + all decode segments; slow to compile), or with
                    ``SamplingConfig.decode_slots`` the continuous-batching loop
                    (``rollout.continuous``) or, with ``kv_blocks``, the paged one
                    (``rollout.paged``) over the round's requests. Slot samplers keep their cache
                    in the loop, so for them ``sample`` replaces ``decode`` in the plan;
* ``logprob``       ``training.forward.make_logprob_fn`` (old / reference log-probs) over one
                    rollout round, ``PrimeConfig.logprob_rows_per_pass`` rows per pass;
* ``prm_update``    ``reward_models.updates.make_prm_update`` on one PRM mini-batch split into
                    its micro-batches, weights and optimiser state donated;
* ``policy_update`` ``rl.policy_update.make_policy_update`` on one PPO mini-batch likewise.

For each program ``compiled.memory_analysis()`` gives, per device: argument, output, alias
(outputs written into donated arguments), temp (XLA's scratch and activations) and generated-code
bytes. ``program = argument + output - alias + temp + code`` is the program's own footprint; the
trainer also keeps the rest of its state on the device meanwhile (policy, PRM and reference
weights, both optimiser states: whatever the program does not take as an argument), counted as
``resident``. ``fits`` compares ``program + resident`` with the device's memory
(``topologies.memory_per_device``: a TPU chip's HBM, v4 and v5p compiled as megacore, one device per
chip, as JAX runs them; a GPU's memory times JAX's allocator fraction, ``XLA_PYTHON_CLIENT_MEM_FRACTION``,
default 0.75).

The optimiser state is laid out as ``training.state.init_optimizer`` creates it (Adam's moments
sharded like their weights). ``--extrapolate-from A,B``
compiles the update programs at A and B layers and takes each byte count linearly to the model's
depth (a quick look: full-depth update compiles took 5.5-9.5 min on 2 CPU cores for the 0.5B and
7B configs, and the linear extrapolation was off by up to 20%; the forward programs stay compiled at
full depth); such rows say so.

``--attention BACKEND`` plans the run with that attention kernel (``models.attention``; default: the
config's ``ModelSource.attention``; ``auto`` = splash on TPU, cuDNN on GPU), ``xla`` being the einsum
reference.
``--gin 'prime_jax.models.source.ModelSource.remat_barriers = False'`` plans it with the CSE
barriers of the rematerialised blocks dropped (kept by default).

The weights' architecture comes from ``ModelSource.config``, else ``ModelSource.hf_path``'s
config.json, else ``--model PRESET`` or a known checkpoint name in ``hf_path``
(``KNOWN_CHECKPOINTS``). ``--num-layers`` plans a shallower copy (cheaper to compile; every layer
holds the same bytes). The compile runs on the CPU and needs no accelerator.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import json
import pathlib
import sys
import time

KNOWN_CHECKPOINTS = {"qwen2.5-0.5b": "qwen2.5-0.5b", "qwen2.5-math-7b": "qwen2.5-math-7b",  # hf_path name
                     "eurus-2-7b": "qwen2.5-math-7b"}  # -> models.PRESETS (Eurus-2-7B-SFT: a Qwen2.5-Math-7B)
PROGRAMS = ("decode", "logprob", "prm_update", "policy_update")
ALL_PROGRAMS = (*PROGRAMS, "sample")
FITS = {True: "yes", False: "NO", None: "?"}


class PlanError(ValueError):
    """A topology, model or config the plan cannot use; the message says which and why."""


from prime_jax import topologies  # noqa: E402 - quiets libtpu before jax loads it
import gin  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from prime_jax import gin_cli, sharding  # noqa: E402
from prime_jax.models import PRESETS, ModelConfig  # noqa: E402
from prime_jax.models.attention import resolve as resolve_attention  # noqa: E402
from prime_jax.models.config import ATTENTION_BACKENDS  # noqa: E402
from prime_jax.reward_models.updates import LabelledMiniBatch, make_prm_update  # noqa: E402
from prime_jax.rl.policy_update import PolicyMiniBatch, make_policy_update  # noqa: E402
from prime_jax.rl.step import source_class  # noqa: E402
from prime_jax.rollout import continuous, engine, paged  # noqa: E402
from prime_jax.training.abstract_arrays import (abstract_cache, abstract_model, abstract_opt_state,  # noqa: E402
                                                per_device_bytes, rows_array, sequence_batch)
from prime_jax.training.forward import make_logprob_fn  # noqa: E402


# ----------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class RunSettings:
    """What the plan reads from the gin config of ``trainer.train``."""

    model: ModelConfig
    mesh: sharding.MeshConfig
    prime: object
    sampling: object
    policy_loss: object
    prm_loss: object
    policy_tx: optax.GradientTransformation
    prm_tx: optax.GradientTransformation
    prompt_length: int


def model_config(source, preset: str | None = None, num_layers: int | None = None,
                 attention: str | None = None) -> ModelConfig:
    """The architecture (see the module docstring) with ``ModelSource``'s compute settings
    (``attention``, when given, replaces ``ModelSource.attention``)."""
    hf_path = source.hf_path or ""
    if preset is not None:
        if preset not in PRESETS:
            raise PlanError(f"--model {preset!r}: not a preset; one of {sorted(PRESETS)}")
        base = PRESETS[preset]
    elif source.config is not None:
        base = source.config
    elif hf_path and (pathlib.Path(hf_path) / "config.json").is_file():
        base = ModelConfig.from_hf_file(hf_path)
    else:
        known = [v for k, v in KNOWN_CHECKPOINTS.items() if k in pathlib.Path(hf_path).name.lower()]
        if not known:
            raise PlanError(f"ModelSource.hf_path={hf_path!r} has no config.json here and is no known "
                            f"checkpoint name; give --model, one of {sorted(PRESETS)}")
        base = PRESETS[known[0]]
    base = source.settings_on(base).replace(attention=attention or source.attention)
    return base.replace(num_layers=num_layers) if num_layers else base


def read_settings(values, preset=None, num_layers=None, attention=None) -> RunSettings:
    """Parse ``--gin`` values as ``prime_jax.train`` does and read ``trainer.train``'s arguments."""
    from prime_jax.rl import trainer  # gin files bind prime_jax.rl.trainer.train

    if not values:
        raise PlanError("give at least one --gin config file (e.g. configs/prime_qwen2.5_0.5b.gin)")
    try:
        gin_cli.parse(values)
    except gin_cli.GinError as error:
        raise PlanError(str(error)) from error
    bound = gin.get_bindings("prime_jax.rl.trainer.train")
    defaults = {k: p.default for k, p in inspect.signature(trainer.train).parameters.items()}
    arg = lambda name: bound.get(name, defaults.get(name))  # noqa: E731
    task = arg("task")
    return RunSettings(
        model=model_config(arg("model"), preset, num_layers, attention), mesh=arg("run").mesh, prime=arg("prime"),
        sampling=arg("sampling"), policy_loss=arg("prime").policy_loss, prm_loss=arg("prime").prm_loss,
        # trainer.train's own defaults when no optimiser is bound
        policy_tx=arg("policy_optimizer") or optax.adamw(5e-7, weight_decay=0.01),
        prm_tx=arg("prm_optimizer") or optax.adamw(1e-6, weight_decay=0.0),
        prompt_length=task.max_prompt_length)


# ----------------------------------------------------------------------------- the programs
@dataclasses.dataclass(frozen=True)
class Program:
    """A jitted function, its abstract arguments, and which training state it takes."""

    name: str
    fn: object
    args: tuple
    takes: tuple[str, ...]  # keys of the state table passed as arguments
    shapes: str


def decode_step_fn(graphdef, sampling):
    """One step of the sampler's decode loop (``rollout.engine``'s loop body without the loop)."""
    def step(params, cache, prev_b, positions_b1, key_data, i):
        policy = nnx.merge(graphdef, params)
        logits_b1v, cache = policy(prev_b[:, None], positions_bt=positions_b1, cache=cache)
        key = jax.random.fold_in(jax.random.wrap_key_data(key_data), i)
        token_b, logp_b = engine._pick(logits_b1v[:, 0], key, sampling)
        return token_b, logp_b, cache

    return jax.jit(step, donate_argnums=(1,))


def sampler_fn(graphdef, sampling, rows: int, p: int):
    """The sampler ``rollout.sample`` runs for ``sampling`` over ``rows`` prompts (already repeated
    per sample) of P = ``p`` columns, as ``fn(params, ids, mask, key)``, and its shapes line."""
    s, length = sampling.decode_slots, sampling.max_new_tokens
    if not s:
        return (functools.partial(engine._sample_jit, graphdef, n=1, config=sampling),
                f"B={rows} rows, P={p}, L={length}, {sampling.decode_segments} segments")
    if not sampling.kv_blocks:
        return (functools.partial(continuous._continuous_impl, graphdef, num_slots=s, config=sampling),
                f"R={rows} requests, {s} slots of {p + length - 1}, P={p}, L={length}")
    blocks, size = sampling.kv_blocks, sampling.kv_block_size
    return (functools.partial(paged._paged_impl, graphdef, num_slots=s, num_blocks=blocks, block_size=size,
                              config=sampling),
            f"R={rows} requests, {s} slots, {blocks} blocks of {size}, P={p}, L={length}")


def build_programs(run: RunSettings, mesh, names=PROGRAMS):
    """The step programs of ``run`` on ``mesh`` with abstract arguments, and the abstract state."""
    prime, sampling = run.prime, run.sampling
    n = prime.num_samples
    p, length = run.prompt_length, sampling.max_new_tokens
    s = p + length
    rollout_rows = prime.collect.prompts_per_round * n
    graphdef, params = abstract_model(run.model, mesh)
    state = {"policy_params": params, "policy_opt": abstract_opt_state(run.policy_tx, params, mesh)}
    source = source_class(prime)  # what the trainer keeps resident for the run's process-reward source
    if source.trains_weights:
        state["prm_params"] = params
        state["prm_opt"] = abstract_opt_state(run.prm_tx, params, mesh)
    if source.reads_reference or run.policy_loss.kl_coef:
        state["reference_params"] = params
    shardings = lambda tree: jax.tree.map(lambda x: x.sharding, tree)  # noqa: E731
    replicated = sharding.named_sharding(mesh, ())
    scalar = lambda dtype: jax.ShapeDtypeStruct((), dtype, sharding=replicated)  # noqa: E731
    programs = []
    if "decode" in names:
        cache_dtype = jnp.dtype(sampling.cache_dtype or run.model.compute_dtype)
        cache = abstract_cache(run.model, mesh, rollout_rows, s - 1, cache_dtype)
        args = (params, cache, rows_array(mesh, (rollout_rows,), jnp.int32),
                rows_array(mesh, (rollout_rows, 1), jnp.int32),
                jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=replicated), scalar(jnp.int32))
        programs.append(Program("decode", decode_step_fn(graphdef, sampling), args, ("policy_params",),
                                f"B={rollout_rows} rows, cache {s - 1} slots {cache_dtype.name}"))
    if "sample" in names:
        args = (params, rows_array(mesh, (rollout_rows, p), jnp.int32), rows_array(mesh, (rollout_rows, p), jnp.int32),
                jax.random.key(0))
        fn, shapes = sampler_fn(graphdef, sampling, rollout_rows, p)
        programs.append(Program("sample", jax.jit(fn), args, ("policy_params",), shapes))
    if "logprob" in names:
        rows = prime.logprob_rows_per_pass
        args = (params, sequence_batch(mesh, (rollout_rows,), s, length))
        # remat only changes a backward pass; with it, nnx.remat inside make_logprob_fn's lax.map
        # raises TraceContextError (flax 0.12.8), so the gradient-free pass is planned without it.
        forward_graphdef = abstract_model(run.model.replace(remat=False), mesh)[0] if run.model.remat else graphdef
        programs.append(Program("logprob", make_logprob_fn(forward_graphdef, rows), args, ("policy_params",),
                                f"B={rollout_rows} rows x S={s}, {rows} rows per pass"))
    if "prm_update" in names and source.trains_weights:
        k, b = prime.prm_micro_batches, prime.prm_mini_batch // prime.prm_micro_batches
        mb = LabelledMiniBatch(sequences=sequence_batch(mesh, (k, b), s, length),
                               ref_logp_bl=rows_array(mesh, (k, b, length), jnp.float32, True),
                               acc_b=rows_array(mesh, (k, b), jnp.float32, True))
        fn = make_prm_update(graphdef, run.prm_tx, run.prm_loss, prime.reward, n,
                             (shardings(state["prm_params"]), shardings(state["prm_opt"])))
        programs.append(Program("prm_update", fn, (state["prm_params"], state["prm_opt"], mb),
                                ("prm_params", "prm_opt"), f"{k} micro-batches x {b} rows x S={s}"))
    if "policy_update" in names:
        k, b = prime.policy_micro_batches, prime.policy_mini_batch // prime.policy_micro_batches
        logp = lambda: rows_array(mesh, (k, b, length), jnp.float32, True)  # noqa: E731
        mb = PolicyMiniBatch(sequences=sequence_batch(mesh, (k, b), s, length), old_logp_bl=logp(),
                             advantages_bl=logp(), ref_logp_bl=logp())
        fn = make_policy_update(graphdef, run.policy_tx, run.policy_loss,
                                (shardings(state["policy_params"]), shardings(state["policy_opt"])))
        programs.append(Program("policy_update", fn, (state["policy_params"], state["policy_opt"], mb),
                                ("policy_params", "policy_opt"), f"{k} micro-batches x {b} rows x S={s}"))
    return programs, state


class OutOfMemory(Exception):  # noqa: N818 - XLA's compiler refused: the buffers exceed the device's memory
    pass


def compile_program(program: Program, mesh) -> dict:
    """Compile ``program``; its per-device bytes from ``memory_analysis`` (see the module docstring).
    Raise ``OutOfMemory`` when the compiler itself finds that it cannot fit."""
    t0 = time.time()
    with jax.set_mesh(mesh):
        lowered = program.fn.lower(*program.args)
        t1 = time.time()
        try:
            compiled = lowered.compile()
        except jax.errors.JaxRuntimeError as error:
            if "RESOURCE_EXHAUSTED" not in str(error):
                raise
            raise OutOfMemory(str(error).splitlines()[0]) from error
    stats = compiled.memory_analysis()
    return {"shapes": program.shapes,
            "argument": int(stats.argument_size_in_bytes), "output": int(stats.output_size_in_bytes),
            "alias": int(stats.alias_size_in_bytes), "temp": int(stats.temp_size_in_bytes),
            "code": int(stats.generated_code_size_in_bytes),
            "peak": int(getattr(stats, "peak_memory_in_bytes", 0) or 0),
            "lower_seconds": round(t1 - t0, 1), "compile_seconds": round(time.time() - t1, 1)}


BYTE_KEYS = ("argument", "output", "alias", "temp", "code", "peak")
UPDATES = ("prm_update", "policy_update")


def _finish(row: dict, resident: int, hbm: int) -> dict:
    row["program"] = row["argument"] + row["output"] - row["alias"] + row["temp"] + row["code"]
    row["resident"] = resident
    row["total"] = row["program"] + resident
    row["fits"] = row["total"] <= hbm if row.get("extrapolation_valid", True) else None
    return row


def extrapolate(rows: dict[int, dict], layers: int) -> dict:
    """Each byte count of ``rows`` (compiled at two depths ``a < b``) taken linearly to ``layers``:
    ``x(n) = x(a) + (x(b) - x(a)) (n - a) / (b - a)`` (every layer holds the same bytes)."""
    (a, ra), (b, rb) = sorted(rows.items())
    row = {k: int(round(ra[k] + (rb[k] - ra[k]) * (layers - a) / (b - a))) for k in BYTE_KEYS}
    # XLA may plan a shallow program's scratch differently (e.g. less temp at b than at a layers):
    # then the line says nothing about the full depth, and the row says so.
    linear = all(rb[k] >= ra[k] for k in BYTE_KEYS if k != "peak")
    return {"shapes": ra["shapes"], **row, "extrapolated_from_layers": [a, b], "extrapolation_valid": linear,
            "at_layers": {str(a): ra, str(b): rb},
            "compile_seconds": ra["compile_seconds"] + rb["compile_seconds"]}


def plan(values, topology: str, *, preset=None, num_layers=None, programs=PROGRAMS, extrapolate_from=None,
         attention=None, log=print) -> dict:
    """The memory plan of the gin config ``values`` on ``topology`` (see the module docstring).
    With ``extrapolate_from = (a, b)`` the update programs are compiled at a and b layers and
    their bytes extrapolated to the model's depth (``extrapolate``)."""
    try:
        devices = topologies.devices(topology)
    except topologies.TopologyError as error:
        raise PlanError(f"--{error}") from error
    run = read_settings(values, preset, num_layers, attention)
    try:
        mesh = sharding.make_mesh(run.mesh, devices)
    except ValueError as error:
        raise PlanError(f"{error} (topology {topology} has {len(devices)} devices; bind "
                        "prime_jax.sharding.MeshConfig.* to fit it)") from error
    if run.sampling.decode_slots and "decode" in programs:
        log(f"SamplingConfig.decode_slots = {run.sampling.decode_slots}: planning the slot sampler (sample) "
            "instead of the static batch's decode step")
        programs = tuple(dict.fromkeys("sample" if name == "decode" else name for name in programs))
    hbm = topologies.memory_per_device(topology)
    shallow = tuple(p for p in programs if p in UPDATES) if extrapolate_from else ()
    built, state = build_programs(run, mesh, tuple(p for p in programs if p not in shallow))
    state_bytes = {k: per_device_bytes(v) for k, v in state.items()}
    c, platform = run.model, devices[0].platform
    backend = resolve_attention(c.attention, platform=platform, dtype=c.compute_dtype, head_dim=c.head_dim)
    result = {
        "topology": topology, "devices": len(devices), "device_kind": devices[0].device_kind,
        "hbm_per_device": hbm,
        "gpu_memory_fraction": None if platform == "tpu" else topologies.gpu_memory_fraction(),
        "mesh": dict(mesh.shape), "gin": list(values),
        "model": {"layers": c.num_layers, "hidden": c.hidden_size, "vocab": c.vocab_size, "dtype": c.dtype,
                  "param_dtype": c.param_dtype, "remat": c.remat, "remat_barriers": c.remat_barriers,
                  "logits_chunk": c.logits_chunk, "attention": backend},
        "state_per_device": state_bytes, "programs": {},
    }
    resident = lambda takes: sum(v for k, v in state_bytes.items() if k not in takes)  # noqa: E731
    for program in built:
        log(f"compiling {program.name} ({program.shapes}) ...")
        try:
            result["programs"][program.name] = _finish(compile_program(program, mesh), resident(program.takes), hbm)
        except OutOfMemory as error:
            result["programs"][program.name] = {"shapes": program.shapes, "fits": False, "compile_error": str(error)}
    depth_rows: dict[str, dict[int, dict]] = {}
    refused: dict[str, dict] = {}  # a shallower model that does not fit: neither does the full one
    for depth in extrapolate_from or ():
        shallow_run = dataclasses.replace(run, model=c.replace(num_layers=depth))
        for program in build_programs(shallow_run, mesh, shallow)[0]:
            if program.name in refused:
                continue
            log(f"compiling {program.name} at {depth} layers ({program.shapes}) ...")
            try:
                depth_rows.setdefault(program.name, {})[depth] = compile_program(program, mesh)
            except OutOfMemory as error:
                refused[program.name] = {"shapes": program.shapes, "fits": False,
                                         "compile_error": f"already at {depth} layers: {error}"}
    for name, rows in depth_rows.items():
        takes = ("prm_params", "prm_opt") if name == "prm_update" else ("policy_params", "policy_opt")
        if name not in refused:
            result["programs"][name] = _finish(extrapolate(rows, c.num_layers), resident(takes), hbm)
    result["programs"].update(refused)
    return result


# ----------------------------------------------------------------------------- output
def table(result: dict) -> str:
    gib = lambda x: f"{x / topologies.GIB:8.2f}"  # noqa: E731
    memory, fraction = result["hbm_per_device"], result["gpu_memory_fraction"]
    head = (f"memory plan: {result['topology']} ({result['devices']} x {result['device_kind']}, "
            + (f"{memory / topologies.GIB:.0f} GiB HBM per device" if fraction is None
               else f"{memory / topologies.GIB:.1f} GiB per device: JAX's allocator takes {fraction:g} of "
                    f"{memory / fraction / topologies.GIB:.1f}")
            + f"), mesh {result['mesh']}, "
            f"{result['model']['layers']} layers, {result['model']['attention']} attention"
            + (f", remat {'with' if result['model']['remat_barriers'] else 'without'} CSE barriers"
               if result['model']['remat'] else "") + "\n"
            "per device, GiB (resident: the trainer's other weights and optimiser states):\n")
    cols = ("argument", "output", "alias", "temp", "code", "program", "resident", "total")
    lines = [f"{'program':<14}" + "".join(f"{c:>9}" for c in cols) + "  fits   shapes"]
    for name, row in result["programs"].items():
        if "compile_error" in row:
            lines.append(f"{name:<14} does not fit: the compiler refused it: {row['compile_error']}")
            continue
        depths = row.get("extrapolated_from_layers")
        note = f" (extrapolated from {depths[0]} and {depths[1]} layers)" if depths else ""
        if depths and not row["extrapolation_valid"]:
            note = f" (NOT linear between {depths[0]} and {depths[1]} layers: no plan, see at_layers)"
        lines.append(f"{name:<14}" + "".join(" " + gib(row[c]) for c in cols)
                     + f"  {FITS[row['fits']]:<5}  {row['shapes']}{note}")
    return head + "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m prime_jax.memory_plan",
        description="Ahead-of-time compile a PRIME config's step programs for a TPU or GPU topology (no "
                    "accelerator needed: libtpu or the CUDA plugin describes it) and report per-device memory. "
                    "Example: python -m prime_jax.memory_plan --gin configs/prime_qwen2.5_0.5b.gin --topology v5e:2x4")
    gin_cli.add_gin_arguments(parser)
    parser.add_argument("--topology", required=True,
                        help=f"KIND:SHAPE, TPU ({', '.join(topologies.WORKING_TPU_TOPOLOGIES)}) or NVIDIA GPU "
                             f"({', '.join(sorted(topologies.GPUS))}: COUNT or HOSTSxCOUNT, e.g. h100:8)")
    parser.add_argument("--out", help="write the plan as JSON here")
    parser.add_argument("--model", help=f"architecture preset when hf_path has no config.json: {sorted(PRESETS)}")
    parser.add_argument("--attention", choices=ATTENTION_BACKENDS,
                        help="attention backend (default: the config's ModelSource.attention; auto = splash on "
                             "TPU, cudnn on GPU)")
    parser.add_argument("--num-layers", type=int, help="plan a model with this many layers (cheaper compile)")
    parser.add_argument("--programs", default=",".join(PROGRAMS),
                        help=f"comma-separated subset of {', '.join(ALL_PROGRAMS)} (default: {','.join(PROGRAMS)})")
    parser.add_argument("--extrapolate-from", metavar="A,B",
                        help="compile the update programs at A and B layers and extrapolate their bytes to the "
                             "model's depth (a quick look: full depth takes minutes and extrapolation was off by "
                             "up to 20%%); forward programs are compiled at full depth")
    return parser.parse_args(gin_cli.split_gin_args(argv))


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    programs = tuple(p for p in args.programs.split(",") if p)
    unknown = sorted(set(programs) - set(ALL_PROGRAMS))
    try:
        if unknown:
            raise PlanError(f"--programs: unknown {unknown}; choose from {', '.join(ALL_PROGRAMS)}")
        depths = None
        if args.extrapolate_from:
            parts = args.extrapolate_from.split(",")
            depths = tuple(sorted(int(x) for x in parts)) if all(x.isdigit() for x in parts) else ()
            if len(depths) != 2 or depths[0] < 1 or depths[0] == depths[1]:
                raise PlanError(f"--extrapolate-from {args.extrapolate_from!r}: give two different depths A,B >= 1")
        result = plan(args.gin, args.topology, preset=args.model, num_layers=args.num_layers, programs=programs,
                      extrapolate_from=depths, attention=args.attention,
                      log=lambda m: print(m, file=sys.stderr))
    except PlanError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table(result))
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(r["fits"] for r in result["programs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
