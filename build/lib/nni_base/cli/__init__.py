"""Entry points: the nnictl trial (``python -m nni_base.cli.trial``), the multi-resolution recipes
(``python -m nni_base.cli.recipes``) and retraining (``python -m nni_base.cli.retrain``).

Top layer: may import everything below it.
"""
