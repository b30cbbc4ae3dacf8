"""A training run's survival: rerunning an interrupted command continues it exactly
(docs/resuming.md).

`resume` decides, before the fit, whether to continue and from which checkpoint; `checkpoints`
reads, writes and finds checkpoint files; `fault_tolerance` saves on schedule and on termination
signals; `state` holds what an exact continuation adds to Lightning's checkpoints (RNG, epoch
sums, the CSV log's rows); `history` keeps the epoch history and names the best epoch; `guards`
keeps non-finite losses out of the weights; `lightning_internals` is the one adapter to what
Lightning does not make public.
"""
