"""`python -m hoitool ...` (and `torchrun --nproc_per_node N -m hoitool train ...`)."""

from hoitool.cli.main import main

main()
