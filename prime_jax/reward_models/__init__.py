"""Reward models and their training: the jitted updates (``updates``), the reward-model kinds
(``kinds.ImplicitPrm``, ``kinds.Orm``, ``explicit_prm.ExplicitPrm``), the data they are built from
(``sources``, ``step_rows``, ``mc_labels``) and offline training (``offline.train_reward``).
Scoring responses with a trained one is ``step_verifiers``."""
