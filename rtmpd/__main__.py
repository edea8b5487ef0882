"""`python -m rtmpd` is the `rtmpd` command."""

from rtmpd.cli import main

raise SystemExit(main())
