"""The PRIME loop: its config (``config``), SFT warm-up (``sft``), the policy's PPO update
(``policy_update``), the update half of a step (``update``), console reporting (``report``) and
``trainer.train``, which runs collect -> update step after step."""
