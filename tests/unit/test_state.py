"""The app-state keys live apart from what they hold, so route modules do not load the mailer."""

import subprocess
import sys


def test_route_modules_do_not_load_the_mailer():
    code = "import sys, authgres.routes; assert 'authgres.mailer' not in sys.modules, 'routes load the mailer'"
    subprocess.run([sys.executable, "-c", code], check=True)
