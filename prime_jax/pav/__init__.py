"""Rewarding Progress (PAV, arXiv 2410.08146): provers, process advantages and the effective
reward (``provers``), how distinguishable and aligned a prover's advantages are for a policy
(``prover_quality``), the didactic planted sub-sequence task with its exact prover values
(``didactic``), Monte-Carlo ``Q^pi`` from step prefixes (``mc_q``), the didactic
policy-gradient experiment (``didactic_rl``) and PAV-RL step rewards from a Q^pi model for the
trainer (``rl_rewards``). The PAV step verifier (a Q model plus a Best-of-K prover) is
``step_verifiers.PavVerifier``; test-time beam search is ``search.beam_search``."""
