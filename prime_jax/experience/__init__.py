"""From prompts to scored rollouts: sample -> decode -> verify (``generate``), the RL step's
collection (``collect``) with the accuracy-band filter (``accuracy_filter``), and held-out greedy
accuracy (``greedy``)."""
