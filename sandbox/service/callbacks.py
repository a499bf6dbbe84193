"""callback_url: Judge0's PUT of a finished submission to the client's URL.

A callback is a request this server makes on a client's behalf, so it is off
unless the operator names the hosts it may go to (--allow-callback HOST); a URL
to any other host is a 422 when submitted.  Redirects are not followed (one
could point the PUT somewhere else).  Sent from a thread of its own, so a slow
receiver never holds a worker; Judge0's tries and timeout (config_info's
callbacks_max_tries, callbacks_timeout).
"""
import json
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit


def check(url, allowed):
    """None if the URL may be called back, else what is wrong with it."""
    if not isinstance(url, str):
        return "must be a string"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL"
    if not allowed:
        return "callbacks are not enabled on this server (start it with --allow-callback HOST); " \
               "poll GET /submissions/{token} instead"
    if parts.hostname not in allowed:
        return f"host {parts.hostname} is not one this server calls back (--allow-callback: {', '.join(allowed)})"
    return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kw):
        return None


class Sender:
    def __init__(self, tries, timeout):
        self.tries, self.timeout = tries, timeout
        self.queue = queue.Queue()
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._thread = threading.Thread(target=self._loop, name="callbacks", daemon=True)
        self._thread.start()

    def send(self, url, body):
        self.queue.put((url, body))

    def stop(self):
        self.queue.put(None)
        self._thread.join(timeout=self.timeout * self.tries + 1)

    def _loop(self):
        while (item := self.queue.get()) is not None:
            url, body = item
            data = json.dumps(body).encode()
            for attempt in range(1, self.tries + 1):
                request = urllib.request.Request(url, data=data, method="PUT",
                                                 headers={"Content-Type": "application/json"})
                try:
                    with self._opener.open(request, timeout=self.timeout) as response:
                        if 200 <= response.status < 300:
                            break
                except (urllib.error.URLError, OSError, ValueError) as e:
                    if attempt == self.tries:
                        print(f"sandbox serve: callback to {url} for {body.get('token')} failed {self.tries} times: "
                              f"{e}", file=sys.stderr, flush=True)
                    time.sleep(0.2 * attempt)
