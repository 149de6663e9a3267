"""Evaluation after training: problems (``benchmark``), verified samples and their step-verifier
scores (``samples``), metrics (``metrics``: pass@k, majority, best-of-N curves), selector curves
(``best_of_n``), ProcessBench over a step verifier (``processbench``) and the written report
(``report``)."""
