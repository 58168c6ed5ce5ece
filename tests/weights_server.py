"""A weights server on 127.0.0.1 for tests (HTTP Range, request log, a response cut short on demand)."""
import http.server
import threading


class Server:
    """Serves ``files`` ({name: bytes}) with HTTP Range support; counts requests; can cut a response short."""

    def __init__(self, files):
        self.files, self.requests, self.cut_after = files, [], None
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server.requests.append((self.path, self.headers.get("Range")))
                data = server.files.get(self.path.lstrip("/"))
                if data is None:
                    self.send_error(404)
                    return
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[:server.cut_after], None
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_state_as(monkeypatch, home, name: str, state) -> Server:
    """Registry entry ``name`` served from 127.0.0.1 as an ``.npz`` of ``state`` ({key: array}); its digest is the
    served file's, ``TF2VISION_HOME`` is ``home`` and the mirror setting points at the server (close it after)."""
    import dataclasses
    import hashlib
    import io

    import numpy as np

    from common.weights import download, registry

    buffer = io.BytesIO()
    np.savez(buffer, **state)
    data = buffer.getvalue()
    real = registry.WEIGHTS[name]
    served = dataclasses.replace(real, url=real.url.replace(".pth", ".npz"), sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(registry.WEIGHTS, real.name, served)
    server = Server({served.filename: data})
    monkeypatch.setenv(download.HOME_ENV, str(home))
    monkeypatch.setenv(download.MIRROR_ENV, server.url)
    return server
