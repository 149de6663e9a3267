"""Test-time search guided by step verifiers: step-level beam search (``beam_search``) over the
candidates of each round (``candidates``), scored by a ``StepVerifier`` (``scorers``)."""
