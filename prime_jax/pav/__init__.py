"""Rewarding Progress (PAV, arXiv 2410.08146): provers, process advantages and the effective
reward (``provers``), how distinguishable and aligned a prover's advantages are for a policy
(``prover_quality``), the didactic planted sub-sequence task with its exact prover values
(``didactic``), Monte-Carlo ``Q^pi`` from step prefixes (``mc_q``), the didactic
policy-gradient experiment (``didactic_rl``), PAV-RL step rewards from a Q^pi model for the
trainer (``rl_rewards``), and test-time step-level beam search (``beam_search``) ranked by step
scorers (``step_scorers``: the PAV effective reward with a Best-of-K prover, Q^pi, implicit and
explicit PRM step scores)."""
