"""What every role's training shares: the train state (``state``), gradient-free forward passes
(``forward``) and the accumulate -> clip -> apply pattern of the jitted updates (``updates``)."""
