"""``python -m tune_recipes <tune arguments>``: torchtune's ``tune`` CLI, the same as the ``tune`` command.

Kept so that the commands written before torchtune imported unpatched keep working; it adds
nothing now (``python -m`` puts the working directory on ``sys.path``, as ``tune run`` does).
"""

from torchtune._cli.tune import main

if __name__ == "__main__":
    main()
