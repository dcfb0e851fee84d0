"""``params.yaml`` as typed pydantic models: one class per section, one default per key.

* :mod:`~deepsaliency.params.types`: the value types and the words of their one-line errors;
* :mod:`~deepsaliency.params.sections`, :mod:`~deepsaliency.params.attack`: the sections;
* :mod:`~deepsaliency.params.cross`: the rules that join keys;
* :mod:`~deepsaliency.params.load`: :class:`Params`, :func:`load_params`, :func:`validate`;
* :mod:`~deepsaliency.params.docs`: the README's Parameters table (``python -m deepsaliency.params``).

Light to import: pydantic, PyYAML and the torch-free method registry, no torch.
"""

from .attack import ATTACK, UNTARGETED, Attack, AttackRun, Compute, Untargeted
from .load import DEFAULTS, SCHEMA, SECTIONS, Params, load_params, section_defaults, validate, validate_section

__all__ = [
    "ATTACK",
    "DEFAULTS",
    "SCHEMA",
    "SECTIONS",
    "UNTARGETED",
    "Attack",
    "AttackRun",
    "Compute",
    "Params",
    "Untargeted",
    "load_params",
    "section_defaults",
    "validate",
    "validate_section",
]
