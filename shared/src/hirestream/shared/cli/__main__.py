"""`python -m hirestream.shared.cli`, the same as the `hirestream` console script."""

from hirestream.shared.cli.main import main

raise SystemExit(main())
