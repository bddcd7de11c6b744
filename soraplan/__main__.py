"""`python -m soraplan` == the `soraplan` command."""

from soraplan.cli import main

main()
