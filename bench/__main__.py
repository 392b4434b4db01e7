"""``python -m bench``: the comparison table (see bench/command.py, or ``python -m bench --help``);
``python -m bench --web``: the management page's JSON API on a large broker (bench/web.py)."""

import sys

if "--web" in sys.argv[1:]:
    from .web import main as web_main

    sys.exit(web_main())

from .command import main  # noqa: E402

sys.exit(main())
