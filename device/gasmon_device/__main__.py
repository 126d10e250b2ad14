"""`python -m gasmon_device` is `gasmon-device`."""

from .cli import main

raise SystemExit(main())
