"""Train one adaptive-inference model, or sweep many with -m (also installed as `sweet-train`).

    python launch.py method=sweet task=glue/rte model=minilm_l6
    python launch.py -m method=early_exit,sweet,cascade task=glue/* model=minilm_l6

The Hydra app itself is sweet_lightning/launch.py.
"""

from sweet_lightning.launch import main

if __name__ == "__main__":
    main()
