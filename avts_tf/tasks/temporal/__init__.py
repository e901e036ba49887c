"""Temporal audio-visual self-supervision (Jenni, Black & Collomosse, AAAI 2023).

See ``docs/temporal.md`` for what the paper states and what is our choice; every choice
of ours is a gin parameter documented as "our choice".

* ``views``: ``ViewSpec`` and ``cut_views``: K views per video, each (start, speed,
  direction) applied identically to the video clip and its aligned audio.
* ``ordering``: ``order_labels``: {overlap, i before j, j before i} from view intervals.
* ``contrastive``: InfoNCE with a feature queue and sample-dependent extras.
"""
