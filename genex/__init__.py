"""genex: imagination-driven planning under partial observability.

Subpackages: :mod:`genex.envs` (Gymnasium envs with hidden state),
:mod:`genex.planners`, :mod:`genex.recording` (episode datasets),
:mod:`genex.cli` (the ``genex`` command).
"""

__version__ = "0.1.0"
