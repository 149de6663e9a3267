"""Evaluation after training: problems (``benchmark``), verified samples (``samples``), metrics
(``metrics``: pass@k, majority, best-of-N curves), selector curves (``best_of_n``) and the written
report (``report``)."""
