"""Rewarding Progress (PAV, arXiv 2410.08146): provers, process advantages and the effective
reward (``provers``), the didactic planted sub-sequence task with its exact prover values
(``didactic``), Monte-Carlo ``Q^pi`` from step prefixes (``mc_q``) and the didactic
policy-gradient experiment (``didactic_rl``)."""
