"""How well imagination can be read: measurements of a world model (or of a planner reading it) on held-out
recordings, some of them with privileged access to the simulator, so no planner may use them to decide (a planner
may only read the *results*, e.g. ``fidelity.json``).

Modules, one job each (importing this package imports none of them):

* :mod:`.windows`: evaluation windows of recorded episodes (:class:`~.windows.Window`, :func:`~.windows.make_windows`)
  and their labelling, once (:func:`~.windows.label_window`: is something shown in the context, does it come over
  the horizon), which the three measurements below call;
* :mod:`.metrics`: image metrics of imagined against real frames (``mse``, ``psnr``, ``psnr_of_mse``, ``ssim``);
* :mod:`.fidelity`: the recall and false-alarm rate of facts in imagined vs real futures (``fidelity.json``: measure,
  load, apply to probes, pool over envs, staleness checks);
* :mod:`.outcomes`: outcome tests, does the imagined future show the agent that really comes
  (``agent_sightings``, ``outcome_agreement``);
* :mod:`.counterfactual`: crosswalk episodes replayed with the hidden pedestrian's presence flipped, the window groups
  and the per-sample choice between the two real futures that the counterfactual stochasticity test counts, and the
  picture of such windows.

The ``genex eval-world-model`` job itself (scoring models, figures, tables) is :mod:`genex.world_model.evaluate`.
"""
