"""Service A of the trace-context chain tests: a python3 ThreadingHTTPServer that calls
service B for every request and answers with B's answer.

GET /proxy?port=P&path=X          one call to 127.0.0.1:P X from the serving thread
GET /proxy-thread?port=P&path=X   the call is made from a child thread of the serving thread
GET /proxy-own?port=P&path=X      the call carries the application's own traceparent
"""
import http.client
import http.server
import signal
import sys
import threading
import urllib.parse

OWN_TRACEPARENT = "00-11111111111111111111111111111111-2222222222222222-01"


def call(port, path, headers):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle and delayed ACKs
    # stall every keep-alive request by ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        port = int(query.get("port", ["0"])[0])
        path = query.get("path", ["/headers"])[0]
        headers = {}
        if url.path == "/proxy-own":
            headers["traceparent"] = OWN_TRACEPARENT
        if url.path == "/proxy-thread":
            result = {}
            worker = threading.Thread(target=lambda: result.update(answer=call(port, path, headers)))
            worker.start()
            worker.join()
            status, body = result["answer"]
        else:
            status, body = call(port, path, headers)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
