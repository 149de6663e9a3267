"""From prompts to scored rollouts: sample -> decode -> verify (``generate``), the RL step's
collection with the accuracy filter (``collect``), and held-out greedy accuracy (``greedy``)."""
