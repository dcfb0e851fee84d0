"""Attacks on explanations and on predictions.

* :mod:`~deepsaliency.attack.manipulation`: the targeted explanation manipulation of
  Dombrowski et al. 2019 (:func:`run_attack`, :func:`perform_attack`);
* :mod:`~deepsaliency.attack.untargeted`: Ghorbani et al. 2019's top-k and centre-of-mass attacks;
* :mod:`~deepsaliency.attack.loop`: the optimisation both share, run to convergence (:class:`AttackResult`);
* :mod:`~deepsaliency.attack.network`: the smoothed, fast network the attack differentiates;
* :mod:`~deepsaliency.attack.params`: the one set of defaults and checks;
* :mod:`~deepsaliency.attack.pgd`: PGD on the prediction (Madry et al. 2018, Captum).
"""

from .loop import AttackResult, attack_loop, convergence_start, has_converged
from .manipulation import perform_attack, run_attack
from .network import AttackNetwork, attack_network, beta_schedule, check_curvature
from .params import ATTACK_METHOD_DEFAULTS, GRADIENT_METHODS, RESAMPLE_DEFAULT, check_attack_params, prepare_input
from .pgd import pgd_attack
from .untargeted import untargeted_attack

__all__ = [
    "ATTACK_METHOD_DEFAULTS",
    "GRADIENT_METHODS",
    "RESAMPLE_DEFAULT",
    "AttackNetwork",
    "AttackResult",
    "attack_loop",
    "attack_network",
    "beta_schedule",
    "check_attack_params",
    "check_curvature",
    "convergence_start",
    "has_converged",
    "perform_attack",
    "pgd_attack",
    "prepare_input",
    "run_attack",
    "untargeted_attack",
]
