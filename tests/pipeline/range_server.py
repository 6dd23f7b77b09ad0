"""A static HTTP server with byte ranges, for the /vsicurl/ tests: run as its own process.

    python range_server.py ROOT LOG

serves ROOT on 127.0.0.1 (a free port, printed on the first line of stdout), answers HEAD
and GET with ``Range: bytes=a-b`` (206), and appends one JSON line per request to LOG:
``{"method", "path", "range"}``. It runs in a process of its own because rasterio holds the
GIL while GDAL opens a dataset: a server thread in the test process could not answer.
The ETag changes with the file's size and modification time, as an object store's does
with the content.
"""

from __future__ import annotations

import email.utils
import http.server
import json
import os
import re
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    root = "."
    log_path = "requests.jsonl"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _record(self) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path, "range": self.headers.get("Range")}) + "\n")

    def _file(self) -> str | None:
        p = os.path.join(self.root, self.path.split("?", 1)[0].lstrip("/"))
        return p if os.path.isfile(p) else None

    def _head(self, path: str, length: int, code: int = 200, content_range: str | None = None) -> None:
        st = os.stat(path)
        self.send_response(code)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{st.st_mtime_ns:x}-{st.st_size:x}"')
        self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
        if content_range:
            self.send_header("Content-Range", content_range)
        self.end_headers()

    def do_HEAD(self) -> None:
        self._record()
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        self._head(path, os.path.getsize(path))

    def do_GET(self) -> None:
        self._record()
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        size = os.path.getsize(path)
        m = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range") or "")
        with open(path, "rb") as f:
            if m is None:
                self._head(path, size)
                self.wfile.write(f.read())
                return
            a, b = int(m.group(1)), min(int(m.group(2) or size - 1), size - 1)
            f.seek(a)
            data = f.read(b - a + 1)
        self._head(path, len(data), 206, f"bytes {a}-{b}/{size}")
        self.wfile.write(data)


def main() -> None:
    Handler.root, Handler.log_path = sys.argv[1], sys.argv[2]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
