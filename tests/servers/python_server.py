"""A python3 http.server for the integration tests (ThreadingHTTPServer, HTTP/1.1 keep-alive).

/slow?ms=N sleeps N ms, /status/N answers N, /headers echoes the request headers,
anything else answers 200 "hello". Prints "ready" once listening.
"""
import http.server
import signal
import sys
import time
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle and delayed ACKs
    # stall every keep-alive request by ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # keep the test output quiet
        pass

    def _answer(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/slow":
            ms = int(urllib.parse.parse_qs(url.query).get("ms", ["100"])[0])
            time.sleep(ms / 1000.0)
            self._answer(200, "slow")
        elif url.path.startswith("/status/"):
            self._answer(int(url.path[len("/status/"):]), "status")
        elif url.path == "/headers":
            self._answer(200, "".join(f"{k}: {v}\n" for k, v in self.headers.items()))
        else:
            self._answer(200, "hello")


if __name__ == "__main__":
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    server = http.server.ThreadingHTTPServer((host, int(sys.argv[1])), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
