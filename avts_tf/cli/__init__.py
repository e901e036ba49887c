"""The command-line tools (``avts-train``, ``avts-prepare``, ...), one module each.

Each module defines its absl flags and a ``main()`` that console scripts call; the files in
``tools/`` are thin wrappers around them. :mod:`avts_tf.cli.app` holds the shared error
path: a user's mistake ends with one line ``error: <problem>; <fix>`` and exit code 2.
"""
