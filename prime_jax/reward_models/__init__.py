"""Reward models and their training: the implicit PRM's and the ORM's jitted updates
(``updates``), their scores of sampled responses (``scoring``) and offline training from
verifier-labelled samples (``offline``)."""
