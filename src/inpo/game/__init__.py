"""A tabular lab for general preferences: the regularized game, its Nash policy, INPO and iterative DPO.

core:       validation, omd_step, regularized_nash, duality_gap, kl (numpy closed forms)
learning:   INPO by loss minimization and the iterative Bradley-Terry DPO baseline (torch)
experiment: run(cfg) of the app `python -m inpo.game`; eta_sweep: `python -m inpo.game.eta_sweep`
"""

from inpo.game.core import (
    check_distribution,
    check_preference_matrix,
    duality_gap,
    kl,
    omd_step,
    regularized_nash,
)
from inpo.game.learning import (
    dpo_iterates,
    dpo_step,
    expected_pair_table,
    inpo_iterates,
    inpo_step,
    pair_table,
    sampled_pair_table,
)

__all__ = [
    "check_distribution",
    "check_preference_matrix",
    "dpo_iterates",
    "dpo_step",
    "duality_gap",
    "expected_pair_table",
    "inpo_iterates",
    "inpo_step",
    "kl",
    "omd_step",
    "pair_table",
    "regularized_nash",
    "sampled_pair_table",
]
