"""How large is SPRO's process term next to its outcome term? (issue 26)

    python experiments/self_prm_scale.py runs/rp50/spro_0 [--prompts 64] [--samples 4] [--beta 0.05]

Loads a finished run's policy (latest checkpoint) and its reference (the run's base model), samples
``--samples`` responses for each of ``--prompts`` held-out arithmetic problems at T = 1, and computes
SPRO's masked step advantage ``MSA[i,t] = CPR[i,t] - mean_{j in group, len_j > t} CPR[j,t]`` with
``CPR`` the cumulative ``beta log pi / pi_ref`` (``credit.masked_step_process_returns``). Prints the
mean and 99th percentile of |MSA| over response tokens, and the per-token |beta log pi / pi_ref|;
SPRO's outcome term is the GRPO-normalised outcome, |A_o| = 0.87 for a group of 4 with 2 right
(0.5 to 1.5 for the other mixed groups). Appends nothing; the numbers go to experiments/LOG.md by hand.
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import numpy as np
from flax import nnx

from prime_jax import credit, rollout
from prime_jax.data import PromptPipeline, make_synthetic_rl_prompts
from prime_jax.experience.batch import join_sequences
from prime_jax.models import from_pretrained
from prime_jax.run_dir import RunInfo, load_role
from prime_jax.training.forward import make_logprob_fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--beta", type=float, default=0.05)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    args = parser.parse_args()
    policy, tokenizer = load_role(args.workdir, "policy")
    reference = from_pretrained(RunInfo.read(args.workdir).base_model)
    pipeline = PromptPipeline(make_synthetic_rl_prompts("arithmetic", 0, args.prompts, "eval"), tokenizer,
                              num_samples=args.samples, max_prompt_length=16, shuffle=False)
    prompts = pipeline.next_prompts(args.prompts)
    out = rollout.sample(policy, prompts.prompt_ids, prompts.prompt_mask, key=jax.random.key(0),
                         config=rollout.SamplingConfig(max_new_tokens=args.max_new_tokens,
                                                       eos_id=tokenizer.eos_token_id,
                                                       pad_id=tokenizer.pad_token_id or 0))
    batch = join_sequences(prompts, np.asarray(out.tokens), np.asarray(out.mask))
    logp = {name: np.asarray(make_logprob_fn(nnx.graphdef(model))(nnx.state(model), batch))
            for name, model in (("policy", policy), ("reference", reference))}
    mask = batch.response_mask_bl.astype(bool)
    r = args.beta * (logp["policy"] - logp["reference"]) * mask
    msa = np.asarray(credit.masked_step_process_returns(r, mask, num_samples=args.samples))
    print(f"self_prm_scale: run={pathlib.Path(args.workdir).name} tokens={int(mask.sum())} "
          f"|r| mean={np.abs(r[mask]).mean():.2e} |MSA| mean={np.abs(msa[mask]).mean():.2e} "
          f"p99={np.percentile(np.abs(msa[mask]), 99):.2e} max={np.abs(msa[mask]).max():.2e}")


if __name__ == "__main__":
    main()
