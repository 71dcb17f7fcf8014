"""`python -m elbolab ...` (and `torchrun ... -m elbolab train ...`): the command line."""

from elbolab.cli import main

main()
