"""python -m deploy.wait_healthy URL SECONDS: exit 0 once URL answers 200, 1 on time-out."""
import sys
import time

import requests


def wait_healthy(url, seconds):
    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = requests.get(url, timeout=3)
            if response.status_code == 200:
                return True
            last = response.text
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(0.5)
    print(f"not healthy after {seconds} s: {last}", file=sys.stderr)
    return False


if __name__ == "__main__":
    sys.exit(0 if wait_healthy(sys.argv[1], float(sys.argv[2])) else 1)
