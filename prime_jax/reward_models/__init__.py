"""Reward models and their training: the implicit PRM's and the ORM's jitted updates
(``updates``) and offline training from verifier-labelled samples (``offline``). Scoring responses
with a trained one is ``step_verifiers``."""
