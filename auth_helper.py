"""Entry point: reads the token from standard input (never from argv) and runs the setup.

    printf '%s' "$TOKEN" | python auth_helper.py --token-stdin [flags]

`bash setup.sh` is the usual way in; it finds the token and pipes it here. Run with --help for
every flag, environment variable and exit code.
"""

import sys

from gatedfetch.cli import main

if __name__ == "__main__":
    sys.exit(main())
