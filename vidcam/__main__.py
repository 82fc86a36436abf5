"""``python -m vidcam``."""

from vidcam.cli import main

main()
