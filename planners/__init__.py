"""Planners (installed as ``genex.planners``): react, imagine, lookahead, oracle, explore, particle.

Not implemented yet; see the project's issues.
"""
