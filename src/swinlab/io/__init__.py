"""File-level services shared by every layer: crash-safe writes
(:mod:`.files`), downloads with a hash check and the cache folder
(:mod:`.download`), verified torch checkpoints (:mod:`.checkpoint`), run
folders and their lock (:mod:`.rundir`).

``swinlab.io`` sits below the models, weights and data layers: it imports
nothing of swinlab but :mod:`swinlab.errors` and :mod:`swinlab.constants`.
"""
