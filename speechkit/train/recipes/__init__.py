"""Training recipes, one per shipped checkpoint (see ``speechkit.train.cli.RECIPES``)."""
