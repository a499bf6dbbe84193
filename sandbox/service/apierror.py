"""An HTTP error a route raises: its status, JSON body and headers.  Apart from app.py so that
native.py's routes use it without importing the application that includes them."""


class ApiError(Exception):
    def __init__(self, status, body, headers=None):
        super().__init__(body)
        self.status, self.body, self.headers = status, body, headers


def error(status, message, **extra):
    return ApiError(status, {"error": message, **extra})
